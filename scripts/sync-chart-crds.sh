#!/usr/bin/env bash
# Copies the generated files the Helm chart ships into charts/gantry/files/:
#   - crds/*.yaml (generated from the API models by `make crds`) -> files/crds/
#   - the operator's RBAC allow-list (gantry.rbac.RULES)        -> files/rbac-rules.yaml
#   - the hpa mode's prometheus-adapter rules
#     (gantry.autoscaler.prometheus_adapter.RULES_YAML)          -> files/prometheus-adapter-rules.yaml
# Helm cannot read files outside the chart (nor reliably follow symlinks out of it), so the
# chart holds copies; tests/chart fails when a copy drifts from its source.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
DEST="$ROOT/charts/gantry/files"
mkdir -p "$DEST/crds"
rm -f "$DEST"/crds/*.yaml
cp "$ROOT"/crds/*.yaml "$DEST/crds/"
"$PY" -m gantry.rbac "$DEST/rbac-rules.yaml"
"$PY" -c 'import sys; from gantry.autoscaler.prometheus_adapter import RULES_YAML; sys.stdout.write(RULES_YAML)' \
    >"$DEST/prometheus-adapter-rules.yaml"
echo "synced $(ls "$DEST"/crds/*.yaml | wc -l) CRDs, the RBAC rules and the prometheus-adapter rules into $DEST"
