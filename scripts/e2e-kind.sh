#!/usr/bin/env bash
# End-to-end on a kind cluster (CPU): build the images, load them into kind, install the
# chart, train the digits example, serve it on Triton (ONNX Runtime) and classify the
# held-out digits over gRPC. Needs docker, kind, kubectl and helm (.tools/bin is used first).
#
#   scripts/e2e-kind.sh            # creates the kind cluster "gantry-e2e" when absent
#   GANTRY_KIND_DELETE=1 scripts/e2e-kind.sh   # delete the cluster afterwards
#
# Environment: GANTRY_KIND_CLUSTER (gantry-e2e), GANTRY_IMAGE_TAG (0.1.0),
# GANTRY_E2E_NAMESPACE (ml), GANTRY_KIND_DELETE (0), PYTHON (.venv/bin/python).
# The Triton image (nvcr.io/nvidia/tritonserver:24.08-py3, ~15 GB) is pulled by the kind
# node: the first run takes a while.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH="$ROOT/.tools/bin:$PATH"
CLUSTER=${GANTRY_KIND_CLUSTER:-gantry-e2e}
TAG=${GANTRY_IMAGE_TAG:-0.1.0}
NS=${GANTRY_E2E_NAMESPACE:-ml}
PY=${PYTHON:-$ROOT/.venv/bin/python}
OPERATOR_IMAGE=ghcr.io/gantry-dev/gantry-operator:$TAG
TRAINER_IMAGE=ghcr.io/gantry-dev/gantry-trainer:$TAG
CONTEXT="kind-$CLUSTER"
PORT_FORWARD_PID=""

log() { printf '\n==> %s\n' "$*"; }
for tool in docker kind kubectl helm; do
    command -v "$tool" >/dev/null || { echo "e2e-kind: $tool is not installed" >&2; exit 2; }
done
docker info >/dev/null 2>&1 || { echo "e2e-kind: the docker engine is not reachable" >&2; exit 2; }

cleanup() {
    [ -n "$PORT_FORWARD_PID" ] && kill "$PORT_FORWARD_PID" 2>/dev/null || true
    if [ "${GANTRY_KIND_DELETE:-0}" = "1" ]; then
        log "deleting kind cluster $CLUSTER"
        kind delete cluster --name "$CLUSTER"
    fi
}
trap cleanup EXIT

if ! kind get clusters | grep -qx "$CLUSTER"; then
    log "creating kind cluster $CLUSTER"
    kind create cluster --name "$CLUSTER" --wait 180s
fi
k() { kubectl --context "$CONTEXT" "$@"; }

log "building images"
docker build -f docker/operator.Dockerfile -t "$OPERATOR_IMAGE" .
docker build -f docker/trainer.Dockerfile -t "$TRAINER_IMAGE" .
kind load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE" "$TRAINER_IMAGE"

log "installing the chart"
# Without TensorRT the trainer image (which carries model_repo) also runs the optimize Jobs.
helm upgrade --install gantry charts/gantry --kube-context "$CONTEXT" \
    --namespace gantry-system --create-namespace --wait --timeout 5m \
    --set image.tag="$TAG" \
    --set config.trainerImage="$TRAINER_IMAGE" \
    --set config.optimizerImage="$TRAINER_IMAGE" \
    --set 'config.tritonBackends={onnxruntime_onnx,python}'

log "training the digits example in namespace $NS"
k create namespace "$NS" --dry-run=client -o yaml | k apply -f -
k -n "$NS" apply -f examples/trainingjob-digits.yaml
k -n "$NS" wait trainingjob/digits-cnn --for=jsonpath='{.status.phase}'=Succeeded --timeout=20m
k -n "$NS" get trainingjob digits-cnn -o jsonpath='{.status.model.metrics}{"\n"}'

log "serving it"
k -n "$NS" apply -f examples/inferenceservice-digits.yaml
k -n "$NS" wait inferenceservice/digits --for=jsonpath='{.status.phase}'=Ready --timeout=30m
k -n "$NS" get trainingjobs,inferenceservices

log "classifying the held-out digits over gRPC"
k -n "$NS" port-forward service/digits 18001:8001 >/dev/null &
PORT_FORWARD_PID=$!
for _ in $(seq 1 30); do
    (exec 3<>/dev/tcp/127.0.0.1/18001) 2>/dev/null && break
    sleep 1
done
"$PY" examples/digits_grpc_client.py --target 127.0.0.1:18001 --model digits
log "e2e on kind passed"
