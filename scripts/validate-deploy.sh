#!/usr/bin/env bash
# Validates what deploy/ ships:
#   - deploy/kubernetes/*.yaml against the Kubernetes JSON schemas (kubernetes-validate from PyPI,
#     pinned; strict: an unknown field is an error), for the oldest and the newest Kubernetes
#     version the manifests target; the ServiceMonitor (a Prometheus Operator CRD, not in those
#     schemas) against a schema of its own below;
#   - the gateway config inside the ConfigMap, with `tollgate check` (its secret files replaced by
#     dummy ones in a temp dir).
# Uses (or creates) a venv at target/deploy-venv. Run by scripts/test.sh after the Rust tests.
#
#   TOLLGATE_BIN=target/debug/tollgate scripts/validate-deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${TOLLGATE_BIN:-target/debug/tollgate}
VENV=target/deploy-venv
K8S_VERSIONS=${K8S_VERSIONS:-"1.30.0 1.37.0"}

die() {
    echo "validate-deploy.sh: $*" >&2
    exit 1
}
[[ -x $BIN ]] || die "no tollgate binary at $BIN (cargo build first, or set TOLLGATE_BIN)"
if ! "$VENV/bin/python" -c 'import kubernetes_validate' >/dev/null 2>&1; then
    python3 -m venv "$VENV" >/dev/null 2>&1 || die "python3 -m venv failed (apt-get install python3-venv)"
    "$VENV/bin/pip" install -q --disable-pip-version-check kubernetes-validate==1.37.0 ||
        die "could not install kubernetes-validate from PyPI"
fi

manifests=()
for f in deploy/kubernetes/*.yaml; do
    [[ $(basename "$f") == servicemonitor.yaml ]] || manifests+=("$f")
done
for v in $K8S_VERSIONS; do
    out=$("$VENV/bin/kubernetes-validate" --strict -k "$v" "${manifests[@]}" 2>&1) || true
    echo "$out"
    # It exits 0 even when a resource fails; its lines say. A kind without a schema is a warning
    # there and an error here.
    if grep -qE '^(ERROR|WARN)' <<<"$out"; then
        die "the manifests do not validate against Kubernetes $v"
    fi
    passed=$(grep -c '^INFO .* passed for resource' <<<"$out" || true)
    ((passed == ${#manifests[@]})) || die "Kubernetes $v: $passed of ${#manifests[@]} manifests passed"
done

"$VENV/bin/python" - deploy/kubernetes/servicemonitor.yaml <<'PY'
import sys, yaml, jsonschema
schema = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {"type": "object", "required": ["matchLabels"]},
                "endpoints": {
                    "type": "array", "minItems": 1,
                    "items": {
                        "type": "object", "required": ["port", "path"], "additionalProperties": False,
                        "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                                       "interval": {"type": "string", "pattern": "^[0-9]+[smh]$"}},
                    },
                },
            },
        },
    },
}
doc = yaml.safe_load(open(sys.argv[1]))
jsonschema.validate(doc, schema)
print(f"INFO {sys.argv[1]} passed for resource servicemonitor/{doc['metadata']['name']} (the Prometheus Operator's fields used here)")
PY

# The config in the ConfigMap, with its secret files present (dummy values) in a temp dir.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/secrets"
for s in openai-api-key admin-token postgres-password; do
    echo "dummy-$s" >"$tmp/secrets/$s"
done
"$VENV/bin/python" - deploy/kubernetes/configmap.yaml "$tmp" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
text = doc["data"]["tollgate.yaml"].replace("/var/run/secrets/tollgate/", sys.argv[2] + "/secrets/")
open(sys.argv[2] + "/tollgate.yaml", "w").write(text)
PY
"$BIN" check --config "$tmp/tollgate.yaml" || die "the ConfigMap's tollgate.yaml does not pass tollgate check"
echo "deploy/: all manifests and the ConfigMap's config are valid"
