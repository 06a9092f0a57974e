# syntax=docker/dockerfile:1
# The trainer base image: PyTorch with CUDA + Gantry's training runtime (DDP, checkpoints,
# progress reporting, ONNX/TorchScript export) and the bundled digits example. Users build
# their own training images FROM it. It also carries model_repo (ONNX Runtime path), so a
# cluster without TensorRT (kind, CPU) can use it as the optimizer image and skip the
# multi-GB TensorRT one. Build from the repository root:
#   docker build -f docker/trainer.Dockerfile -t ghcr.io/gantry-dev/gantry-trainer:0.1.0 .
# The base image's torch must be the version pyproject.toml pins (torch==2.13.0), so that
# `pip install .[training,model-repo]` keeps it instead of downloading another CUDA build.
ARG PYTORCH_IMAGE=pytorch/pytorch:2.13.0-cuda12.8-cudnn9-runtime

FROM ${PYTORCH_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/gantry/src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY training_jobs/ training_jobs/
COPY model_repo/ model_repo/
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[training,model-repo]" \
    && python -c "import torch, training_jobs.examples.digits, model_repo.optimize" \
    && rm -rf /opt/gantry/src \
    && (getent group 1000 >/dev/null || groupadd --gid 1000 gantry) \
    && (getent passwd 1000 >/dev/null || useradd --uid 1000 --gid 1000 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin gantry)
USER 1000:1000
# Checkpoints and outputs are volumes; /tmp is writable for torch's caches.
ENV HOME=/tmp
WORKDIR /tmp
CMD ["python", "-m", "training_jobs.examples.digits"]
