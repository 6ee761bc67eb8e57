#!/usr/bin/env bash
# The guardrail request stage's cold cost as figures that repeat exactly: instructions and cache
# misses per call of `guard::request::check` on one body, each call after 16 MiB of other memory
# was touched (examples/guard_stage.rs), counted by callgrind's cache simulation (32 KiB L1
# instruction and data caches, 1 MiB last level, 64-byte lines). Two runs of N1 and N2 calls; the
# difference over N2 - N1 is one call, the first call's set-up excluded. Prints the totals and
# the functions with the most misses (inclusive).
#
#   bash loadtest/guard-misses.sh                                  # loadtest/body-pii.json
#   BODY=loadtest/body-pii-2k.json bash loadtest/guard-misses.sh
#   WARM=1 bash loadtest/guard-misses.sh                           # no eviction between calls
#
# A miss costs ~5-15 ns when it comes from L2/L3 and more from memory: on this project's 2-core VM
# the check took 7.7 µs in the gateway with the load body (tollgate_guardrail_check_seconds under
# loadtest/limits-ab.sh with AB_GUARD) for ~19k instructions and ~300 simulated misses, against
# 1.5 µs warm in criterion (README, Guardrails, Cost).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BODY=${BODY:-$HERE/body-pii.json}
N1=${N1:-11}
N2=${N2:-41}
WARM=${WARM:-0}
TOP=${TOP:-25}

die() {
    echo "guard-misses.sh: $*" >&2
    exit 1
}
. "$HERE/lib.sh"

((N2 > N1)) || die "N2 must be larger than N1"
[[ -f $BODY ]] || die "BODY: no such file: $BODY"
need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v python3 >/dev/null || need+=(python3)
install_missing "${need[@]}"

(cd "$ROOT" && cargo build --release --example guard_stage) || die "the build failed"
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/guard_stage
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-guard-misses.XXXXXX")
cleanup() {
    local rc=$?
    trap - EXIT INT TERM ERR
    finish_work "$rc"
}
on_exit cleanup

mode=()
[[ $WARM == 1 ]] && mode=(warm)
for n in "$N1" "$N2"; do
    valgrind --tool=callgrind --cache-sim=yes --I1=32768,8,64 --D1=32768,8,64 --LL=1048576,16,64 \
        --toggle-collect='tollgate::guard::request::check' --callgrind-out-file="$WORK/cg-$n.out" \
        "$BIN" "$n" "$BODY" "${mode[@]}" >"$WORK/run-$n.log" 2>&1 || {
        cat "$WORK/run-$n.log" >&2
        die "callgrind run of $n calls failed"
    }
done

python3 - "$WORK" "$N1" "$N2" "$TOP" <<'PY'
import re, subprocess, sys
work, n1, n2, top = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
EV = ["Ir", "I1mr", "D1mr", "D1mw"]
def totals(path):
    events = None
    for line in open(path):
        if line.startswith("events:"):
            events = line.split()[1:]
        if line.startswith("summary:") or line.startswith("totals:"):
            return dict(zip(events, map(int, line.split()[1:])))
    sys.exit(f"no totals in {path}")
def inclusive(path):
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--auto=no", "--threshold=100",
                          "--show=" + ",".join(EV), path], capture_output=True, text=True, check=True).stdout
    num = r"([\d,]+|\.)\s*(?:\(\s*[\d.]+%\))?\s+"
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s*" + num * 4 + r"([^:\s]*):(.*?)( \[.*\])?$", line)
        if m and "PROGRAM TOTALS" not in line:
            v = [0 if g == "." else int(g.replace(",", "")) for g in m.groups()[:4]]
            name = m.group(6).strip()
            if name not in found or v[0] > found[name][0]:
                found[name] = v
    return found
a, b = totals(f"{work}/cg-{n2}.out"), totals(f"{work}/cg-{n1}.out")
per = {e: (a.get(e, 0) - b.get(e, 0)) / (n2 - n1) for e in EV}
misses = per["I1mr"] + per["D1mr"] + per["D1mw"]
print(f"per call of guard::request::check ({n2 - n1} calls, callgrind cache simulation)")
print(f"  instructions {per['Ir']:.0f}; L1 misses {misses:.0f} "
      f"(instruction {per['I1mr']:.0f}, data read {per['D1mr']:.0f}, data write {per['D1mw']:.0f})")
fa, fb = inclusive(f"{work}/cg-{n2}.out"), inclusive(f"{work}/cg-{n1}.out")
rows = []
for name, v in fa.items():
    w = fb.get(name, [0] * 4)
    d = [(x - y) / (n2 - n1) for x, y in zip(v, w)]
    rows.append((d[1] + d[2] + d[3], d[0], name))
rows.sort(reverse=True)
print(f"\n{'misses':>7} {'instr':>7}  function (inclusive)")
# The callers above the stage (main, the runtime's start) cost what it costs: left out.
rows = [r for r in rows if not re.search(r"(^|::)(main|lang_start|__rust_begin_short_backtrace)|below main|__libc_start|^0x", r[2])]
for m, ir, name in rows[:top]:
    if m < 1:
        break
    print(f"{m:7.0f} {ir:7.0f}  {name[:110]}")
PY
