# syntax=docker/dockerfile:1
# The optimizer image: ONNX -> TensorRT engine builds, the accuracy gate, the engine cache and
# Triton model repositories (`python -m model_repo.optimize`), plus model fetching
# (`python -m model_repo.fetch`). Its TensorRT must be the one inside the serving Triton
# image: Triton 24.08 ships TensorRT 10.3, as does this NGC TensorRT 24.08 release.
# Build from the repository root:
#   docker build -f docker/optimizer.Dockerfile -t ghcr.io/gantry-dev/gantry-optimizer:0.1.0 .
ARG TENSORRT_IMAGE=nvcr.io/nvidia/tensorrt:24.08-py3
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.8.0

FROM ${UV_IMAGE} AS uv

FROM ${TENSORRT_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
COPY --from=uv /uv /usr/local/bin/uv
WORKDIR /opt/gantry/src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY model_repo/ model_repo/
# The NGC image's Python is 3.10 and Gantry needs 3.11: a standalone CPython 3.11 venv gets
# the image's own TensorRT 10.3 wheel for cp311 (or the same release from NVIDIA's index).
# Device memory for the accuracy gate comes from cuda-bindings (cuda-python), kept below 13
# to match this CUDA 12.6 base; there is no torch in this image.
RUN uv venv --python 3.11 /opt/venv \
    && WHEEL="$(find /opt/tensorrt/python -name 'tensorrt-10.3*-cp311-*.whl' 2>/dev/null | head -n 1)" \
    && if [ -n "${WHEEL}" ]; then uv pip install "${WHEEL}"; \
       else uv pip install "tensorrt-cu12==10.3.0"; fi \
    && uv pip install ".[model-repo]" "cuda-bindings>=12.6,<13" \
    && python -c "import tensorrt, cuda.bindings.runtime, model_repo.optimize, model_repo.tensorrt_build; assert tensorrt.__version__.startswith('10.3')" \
    && rm -rf /opt/gantry/src /root/.cache \
    && (getent group 1000 >/dev/null || groupadd --gid 1000 gantry) \
    && (getent passwd 1000 >/dev/null || useradd --uid 1000 --gid 1000 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin gantry)
USER 1000:1000
ENV HOME=/tmp
WORKDIR /tmp
CMD ["python", "-m", "model_repo.optimize", "--help"]
