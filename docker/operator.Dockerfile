# syntax=docker/dockerfile:1
# The Gantry operator: `python -m gantry.controller` (kopf), as the Helm chart runs it.
# Build from the repository root:
#   docker build -f docker/operator.Dockerfile -t ghcr.io/gantry-dev/gantry-operator:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
# A wheel of the controller package only; the other packages are not needed to run it.
# (The `gantry` command belongs to the `cli` extra and package gantry_cli: not in this image.)
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
# The operator extra pins its dependencies' ranges in pyproject.toml.
# hadolint ignore=DL3013
RUN WHEEL="$(ls /wheels/gantry-*.whl)" \
    && pip install --no-cache-dir "${WHEEL}[operator]" \
    && rm -rf /wheels \
    && groupadd --gid 1000 gantry \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin gantry
# Numeric, so the kubelet can verify runAsNonRoot.
USER 1000:1000
WORKDIR /tmp
EXPOSE 8080 8081
CMD ["python", "-m", "gantry.controller"]
