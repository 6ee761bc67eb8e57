#!/usr/bin/env bash
# The limiter's cost in instructions, which (unlike time on a shared VM) repeats exactly: the
# gateway runs under `valgrind --tool=callgrind` with the same two keys as limits-ab.sh (A: no
# limits, B: limits on key and team), and serves first N1, then N2 requests of ONE key (after 50
# unmeasured ones); the difference of the two runs' totals over N2 - N1 is the gateway's
# instructions per request, start-up excluded. Printed per key, with the split that matters for
# latency: before the upstream request is written ("pre"), while the provider works (the upstream
# call, including what the gateway does meanwhile), after its answer ("relay"), and after the
# response ("logging").
#
#   bash loadtest/instructions.sh                            # the release build
#   TOLLGATE_BIN=/tmp/tollgate-old bash loadtest/instructions.sh
#   AB_GUARD='{ pii: redact, secrets: redact }' BODY=loadtest/body-pii.json bash loadtest/instructions.sh
#       # B differs by a guardrail policy instead of limits (see ab_config in lib.sh)
#
# Slow (valgrind runs the gateway ~50x slower): about a minute per key. Loopback only.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
N1=${N1:-100}
N2=${N2:-400}
BUILD=${BUILD:-1}

die() {
    echo "instructions.sh: $*" >&2
    exit 1
}
. "$HERE/lib.sh"

((N2 > N1)) || die "N2 must be larger than N1"
need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v python3 >/dev/null || need+=(python3)
command -v curl >/dev/null || need+=(curl)
install_missing "${need[@]}"
tollgate_binary "$BUILD"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-instructions.XXXXXX")
MOCK_PID=
GW_PID=
LOAD_PIN=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM ERR
    stop_pid "$GW_PID"
    stop_pid "$MOCK_PID"
    finish_work "$rc"
}
on_exit cleanup

start_mock 16
free_port
GW_PORT=$REPLY
free_port
ADMIN_PORT=$REPLY
ab_config instructions.sh >"$WORK/gw.yaml"

# measure KEY N: callgrind output of a gateway that served 50 + N requests with KEY, counting
# from after the 50th (start-up, config compilation and warm-up are not counted: their cost
# varies by millions of instructions from run to run, hash seeds and all).
measure() {
    local out=$WORK/cg-$1-$2.out
    KEY_A=tg-plain KEY_B=tg-limited NO_COLOR=1 valgrind --tool=callgrind \
        --callgrind-out-file="$out" \
        "$BIN" run --config "$WORK/gw.yaml" --runtime-dir "$WORK/rt-$1-$2" >"$WORK/gateway-$1-$2.log" 2>&1 &
    GW_PID=$!
    wait_ready "http://127.0.0.1:$ADMIN_PORT/ready" "$GW_PID" "gateway (valgrind)" "$WORK/gateway-$1-$2.log"
    python3 - "$GW_PORT" "$1" "$2" "${BODY:-$HERE/body-json.json}" "$GW_PID" <<'PY' || die "requests to the gateway failed"
import http.client, json, subprocess, sys
port, key, n, body_file, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
body = json.load(open(body_file))
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
def send(i):
    b = dict(body)
    b["messages"] = [dict(m) for m in body["messages"]]
    b["messages"][-1]["content"] = f"#{i} " + b["messages"][-1]["content"]  # as VARY=1
    c.request("POST", "/v1/chat/completions", json.dumps(b),
              {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"status {r.status}")
for i in range(50):
    send(i)
subprocess.run(["callgrind_control", "--zero", pid], check=True, capture_output=True)
for i in range(50, 50 + n):
    send(i)
PY
    stop_pid "$GW_PID"
    GW_PID=
    [[ -s $out ]] || die "no callgrind output ($out)"
}

for key in tg-plain tg-limited; do
    measure "$key" "$N1"
    measure "$key" "$N2"
done

python3 - "$WORK" "$N1" "$N2" <<'PY'
import os, re, subprocess, sys
work, n1, n2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
SPLIT = {
    "total": None,
    "request_filter": r"ProxyHttp>::request_filter::\{\{closure\}\}$",
    "upstream": r"^tollgate::proxy::(upstream::send|attempts::send)::\{\{closure\}\}$",
    "relay": r"^tollgate::proxy::answer::relay::\{\{closure\}\}$",
    "logging": r"ProxyHttp>::logging::\{\{closure\}\}$",
}
def load(path):
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--auto=no", "--threshold=100", path],
                         capture_output=True, text=True, check=True).stdout
    found = {"total": int(re.search(r"([\d,]+) \([^)]*\)\s+PROGRAM TOTALS", out).group(1).replace(",", ""))}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+[^:]*:(.*?)( \[.*\])?$", line)
        if not m:
            continue
        for name, pat in SPLIT.items():
            if pat and re.search(pat, m.group(2).strip()):
                found[name] = max(found.get(name, 0), int(m.group(1).replace(",", "")))
    return found
per = {}
for key in ("tg-plain", "tg-limited"):
    a, b = load(f"{work}/cg-{key}-{n2}.out"), load(f"{work}/cg-{key}-{n1}.out")
    d = {k: (a.get(k, 0) - b.get(k, 0)) / (n2 - n1) for k in SPLIT}
    # A function the optimiser inlined has no figure of its own: the split is then "n/a".
    missing = [k for k in ("upstream", "relay") if k not in a or k not in b]
    d["pre"] = None if missing else d["request_filter"] - d["upstream"] - d["relay"]
    for k in missing:
        d[k] = None
    per[key] = d
rows = ["total", "request_filter", "pre", "upstream", "relay", "logging"]
print(f"instructions per request ({n2 - n1} requests of each key, callgrind)")
b_name = "B (guarded)" if os.environ.get("AB_GUARD") else "B (limited)"
print(f"{'':16s} {'A (no limits)':>14s} {b_name:>12s} {'B - A':>8s}")
for r in rows:
    a, b = per["tg-plain"][r], per["tg-limited"][r]
    if a is None or b is None:
        print(f"{r:16s} {'n/a':>14s} {'n/a':>12s}")
    else:
        print(f"{r:16s} {a:14.0f} {b:12.0f} {b - a:+8.0f}")
print("pre: before the upstream request is written; upstream: the call, with what the gateway does "
      "while the provider works; relay: after the answer; logging: after the response")
PY
