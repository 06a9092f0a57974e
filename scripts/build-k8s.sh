#!/usr/bin/env bash
# Builds the dev cluster's control plane from the pinned Go module in dev_cluster/k8s:
# kube-apiserver, kube-controller-manager, kube-scheduler and kubectl from
# k8s.io/kubernetes, and etcd from go.etcd.io/etcd/server/v3. Nothing prebuilt is downloaded: the Go module proxy
# serves sources, `go build` compiles them. The result is keyed by a digest of go.mod and
# go.sum, so an unchanged pin is never rebuilt.
set -euo pipefail
DEST=${1:-.tools}
mkdir -p "$DEST/bin"
DEST=$(cd "$DEST" && pwd)
MOD=$(cd "$(dirname "$0")/../dev_cluster/k8s" && pwd)
KEY=$(cat "$MOD/go.mod" "$MOD/go.sum" "$0" | sha256sum | cut -c1-16)
STAMP="$DEST/bin/.k8s-$KEY"
BINS=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)
if [ -f "$STAMP" ]; then
    for b in "${BINS[@]}"; do [ -x "$DEST/bin/$b" ] || rm -f "$STAMP"; done
fi
[ -f "$STAMP" ] && exit 0

command -v go >/dev/null || { echo "go is required to build the dev cluster's control plane" >&2; exit 1; }
K8S_VERSION=$(cd "$MOD" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)
V=k8s.io/component-base/version
LDFLAGS="-s -w -X $V.gitVersion=$K8S_VERSION -X $V.gitMajor=1 -X $V.gitMinor=$MINOR \
 -X $V.gitTreeState=clean -X $V.buildDate=1970-01-01T00:00:00Z \
 -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
echo "building the control plane ($K8S_VERSION, etcd $(cd "$MOD" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)) into $DEST/bin; a cold build takes a while"
start=$(date +%s)
cd "$MOD"
go build -trimpath -buildvcs=false -ldflags "$LDFLAGS" -o "$DEST/bin/etcd" ./cmd/etcd
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    go build -trimpath -buildvcs=false -ldflags "$LDFLAGS" -o "$DEST/bin/$b" "k8s.io/kubernetes/cmd/$b"
done
rm -f "$DEST"/bin/.k8s-*
touch "$STAMP"
echo "control plane built in $(( $(date +%s) - start )) s"
