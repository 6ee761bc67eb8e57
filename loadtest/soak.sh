#!/usr/bin/env bash
# Tollgate soak: a steady mixed load for DURATION seconds (30 minutes by default) against the mock
# provider, with the gateway's RSS, open fds and threads sampled every SAMPLE s. The load
# (loadtest/soak.py, an open loop per class, about 190 requests/s in all) mixes normal JSON and
# streamed chat, cache hits, redacted prompts, 200 KB prompts, fallbacks (a first target that
# answers 503), injected errors (500), 429s (a virtual key allowed half its rate), streams the
# provider cuts, and clients that go away mid-stream or before the header. Afterwards it checks that
#   - no request failed unless its class injects that failure, and then only as injected;
#   - the gateway counted every request sent, and its SQLite ledger holds exactly one record per
#     request, per class, each with its class's signature (status, error, attempts, cache,
#     redactions), after the ledger caught up; nothing dropped;
#   - memory plateaus: the median RSS of the last WINDOW s of the run is within RSS_PCT % of that
#     of the last WINDOW s of the warm-up (the first WARMUP s); open fds at the end are no more than
#     FD_SLACK above those after the warm-up; no thread growth;
# prints each check as ok/FAIL (exit 1 on any failure) and plots RSS, fds and req/s over time.
#
#   bash loadtest/soak.sh                                      # 30 min (warm-up: the first 5)
#   DURATION=120 bash loadtest/soak.sh                         # a short try (warm-up: the first 30 s)
#   TOLLGATE_BIN=/path/to/tollgate PLOT=loadtest/soak.png bash loadtest/soak.sh   # the RESULTS run
#
# The samples (CSV) and the client's tally (JSON) are kept in OUT (target/soak); the plot needs
# matplotlib, installed from PyPI into VENV (target/soak-venv) when missing. Loopback only; every
# process it starts is stopped on exit, also on error or Ctrl-C.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

DURATION=${DURATION:-1800}        # seconds of load
WARMUP=${WARMUP:-300}             # seconds of warm-up (lowered to DURATION/4 for short runs)
WINDOW=${WINDOW:-60}              # seconds compared: the end of the warm-up, the end of the run
SAMPLE=${SAMPLE:-5}               # seconds between samples of RSS and fds
RSS_PCT=${RSS_PCT:-10}            # RSS at the end within this many % of RSS after the warm-up
FD_SLACK=${FD_SLACK:-10}          # open fds at the end at most this many above after the warm-up
SCALE=${SCALE:-1}                 # multiplies every class's rate (soak.py CLASSES)
GW_THREADS=${GW_THREADS:-1}       # server.threads
CATCHUP=${CATCHUP:-120}           # longest wait, in seconds, for the ledger to catch up afterwards
OUT=${OUT:-$ROOT/target/soak}     # samples.csv, tally.json of the last run
PLOT=${PLOT:-$OUT/soak.png}       # the plot (off: none)
VENV=${VENV:-$ROOT/target/soak-venv}
BUILD=${BUILD:-1}                 # 1: `cargo build --release` first (no-op when fresh); 0: don't
KEEP=${KEEP:-0}                   # 1: keep the work dir (config, logs, ledger, metrics)

die() {
    echo "soak.sh: $*" >&2
    exit 1
}
. "$HERE/lib.sh"

is_pos() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
for v in DURATION WARMUP WINDOW SAMPLE RSS_PCT FD_SLACK GW_THREADS CATCHUP; do
    is_pos "${!v}" || die "$v must be a positive integer"
done
[[ $SCALE =~ ^[0-9]*\.?[0-9]+$ ]] || die "SCALE must be a positive number"
((DURATION >= 60)) || die "DURATION must be at least 60 s"
WARMUP_NOTE=""
if ((WARMUP * 2 > DURATION)); then
    WARMUP=$((DURATION / 4))
    WARMUP_NOTE=" (lowered to DURATION/4 for a short run)"
fi
((WINDOW > WARMUP)) && WINDOW=$WARMUP
((WINDOW >= 2 * SAMPLE)) || die "WINDOW must hold at least two samples"

# ---------------------------------------------------------------- packages, binary, work dir

need=()
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
install_missing "${need[@]}"
tollgate_binary "$BUILD"
if [[ $PLOT != off ]] && ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
    echo "installing matplotlib into $VENV" >&2
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q matplotlib >&2 ||
        die "could not install matplotlib into $VENV (PLOT=off skips the plot)"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-soak.XXXXXX")
mkdir -p "$OUT"
# The run's binary: a copy, so a `cargo build` elsewhere cannot swap it mid-run.
cp "$BIN" "$WORK/tollgate" || die "could not copy $BIN"
BIN_SHOWN=$BIN
BIN=$WORK/tollgate
# The commit the binary was built from: that of the work tree it lies in (a worktree of another
# commit, say), else this checkout's.
COMMIT=$(git -C "$(dirname "$BIN_SHOWN")" rev-parse --short HEAD 2>/dev/null ||
    git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$(dirname "$BIN_SHOWN")" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ", dirty tree")
CSV=$WORK/samples.csv
TALLY=$WORK/tally.json
LOAD_PIN=()
MOCK_PID=
GW_PID=
SAMPLER_PID=
LOAD_PID=
FAILED=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    term_pid "$SAMPLER_PID"
    term_pid "$LOAD_PID"
    stop_pid "$GW_PID"
    stop_pid "$MOCK_PID"
    finish_work "$rc"
}
on_exit cleanup

alive_or_die() {
    if ! kill -0 "$1" 2>/dev/null; then
        FAILED=1
        echo "--- $2 log ($3), last 100 lines ---" >&2
        tail -n 100 "$3" >&2 || true
        die "$2 (pid $1) died during the run"
    fi
}

# ---------------------------------------------------------------- mock and gateway

start_mock 16
free_port
GW_PORT=$REPLY
free_port
ADMIN_PORT=$REPLY
LIMITED_KEY="tg-soak-limited-$RANDOM$RANDOM"
# The limited class sends 4 × SCALE requests/s: its key allows half of that.
LIMITED_RPM=$(awk -v s="$SCALE" 'BEGIN { r = int(120 * s + 0.5); print (r < 1 ? 1 : r) }')
MOCK_URL="http://127.0.0.1:$MOCK_PORT/v1"
# One mock behind four providers: `broken` and `flaky` send the mock's fault directive in a
# header on every request. The breakers are off (`consecutive_failures: 0` disables that trigger,
# and no failure ratio reaches 2.0), so every injected fault reaches the provider and every
# fallback really falls back, for the whole run, instead of a breaker skipping the target.
cat >"$WORK/tollgate.yaml" <<EOF
# Written by loadtest/soak.sh.
server:
  listen: "127.0.0.1:$GW_PORT"
  admin_listen: "127.0.0.1:$ADMIN_PORT"
  threads: $GW_THREADS
  shutdown_grace: 1s
  reload_poll: 0s
usage:
  ledger: "sqlite:$WORK/ledger.db"
  spill_dir: "$WORK/spill"
  access_log: "off"
routing:
  retries: 1
  backoff: 10ms
  backoff_max: 50ms
  breaker: { consecutive_failures: 0, error_ratio: 2.0 }
providers:
  mock:
    kind: openai_compatible
    base_url: "$MOCK_URL"
    api_keys: ["mock-key"]
  broken:
    kind: openai_compatible
    base_url: "$MOCK_URL"
    api_keys: ["mock-key"]
    headers: { x-mock-behavior: "status=503" }
  flaky:
    kind: openai_compatible
    base_url: "$MOCK_URL"
    api_keys: ["mock-key"]
    headers: { x-mock-behavior: "status=500" }
models:
  demo:
    targets: [ { provider: mock, model: mock-gpt } ]
  cached:
    targets: [ { provider: mock, model: mock-gpt } ]
  guarded:
    targets: [ { provider: mock, model: mock-gpt } ]
  fallback:
    targets: [ { provider: broken, model: mock-gpt-broken } ]
    fallbacks: [demo]
  failing:
    targets: [ { provider: flaky, model: mock-gpt-flaky } ]
pricing:
  models:
    - { provider: mock, model: mock-gpt, input: 1, output: 2 }
    - { provider: broken, model: mock-gpt-broken, input: 1, output: 2 }
    - { provider: flaky, model: mock-gpt-flaky, input: 1, output: 2 }
auth:
  required: false
keys:
  - { id: limited, key: "\${LIMITED_KEY}", limits: { rpm: $LIMITED_RPM } }
limits:
  default_completion_tokens: 64
routes:
  - name: cached
    match: { model: cached }
    cache: { mode: exact, ttl: 2m }
  - name: guarded
    match: { model: guarded }
    guardrails: { pii: redact, secrets: redact }
EOF
LIMITED_KEY=$LIMITED_KEY NO_COLOR=1 "$BIN" run --config "$WORK/tollgate.yaml" --runtime-dir "$WORK/rt" \
    >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
wait_ready "http://127.0.0.1:$ADMIN_PORT/ready" "$GW_PID" "gateway" "$WORK/gateway.log"
wait_listener "$GW_PORT" || die "the gateway's data plane did not open port $GW_PORT"

SMOKE=1
code=$(curl -sS -o "$WORK/smoke.out" -w '%{http_code}' --max-time 10 -H 'content-type: application/json' \
    -H 'x-tollgate-feature: smoke' --data-binary "@$HERE/body-json.json" \
    "http://127.0.0.1:$GW_PORT/v1/chat/completions") || code=000
[[ $code == 200 ]] || { cat "$WORK/smoke.out" >&2; die "the smoke request answered $code"; }

# ---------------------------------------------------------------- the run, sampled

# Every SAMPLE s from T0 (on schedule, not drifting): seconds since T0, the gateway's RSS (KiB),
# open fds, threads, the mock's RSS, and the gateway's Σ tollgate_requests_total.
sampler() {
    local i=0 t due rss thr fds mrss req
    echo "t_s,rss_kib,fds,threads,mock_rss_kib,requests" >"$CSV"
    while :; do
        due=$(awk -v a="$T0" -v i="$i" -v s="$SAMPLE" -v n="${EPOCHREALTIME/,/.}" 'BEGIN { d = a + i * s - n; print (d > 0 ? d : 0) }')
        sleep "$due"
        t=$(awk -v a="$T0" -v n="${EPOCHREALTIME/,/.}" 'BEGIN { printf "%.1f", n - a }')
        read -r rss thr < <(awk '/^VmRSS:/ { r = $2 } /^Threads:/ { t = $2 } END { print r, t }' "/proc/$GW_PID/status") || break
        fds=(/proc/"$GW_PID"/fd/*)
        mrss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$MOCK_PID/status" 2>/dev/null || echo 0)
        req=0
        scrape "$WORK/sample.prom" 2>/dev/null && req=$(msum "$WORK/sample.prom" tollgate_requests_total)
        echo "$t,$rss,${#fds[@]},$thr,$mrss,$req" >>"$CSV"
        i=$((i + 1))
    done
}

cpu_model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
echo "# Tollgate soak"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- machine: $(nproc) CPUs, ${cpu_model:-unknown CPU}, kernel $(uname -r), no pinning"
echo "- tollgate: $BIN_SHOWN ($COMMIT$DIRTY); server.threads $GW_THREADS; SQLite ledger; breakers off; retries 1"
echo "- load: ${DURATION}s of loadtest/soak.py (rates × $SCALE); warm-up: the first ${WARMUP}s$WARMUP_NOTE;" \
    "compared: the median of the last ${WINDOW}s of the warm-up and of the last ${WINDOW}s of the run; samples every ${SAMPLE}s"
echo

T0=${EPOCHREALTIME/,/.}
sampler &
SAMPLER_PID=$!
SOAK_LIMITED_KEY=$LIMITED_KEY python3 "$HERE/soak.py" load "$GW_PORT" "$DURATION" "$TALLY" "$SCALE" \
    2> >(tee "$WORK/load.log" >&2) &
LOAD_PID=$!
rc=0
wait "$LOAD_PID" || rc=$?
LOAD_PID=
((rc == 0)) || die "the load client exited with $rc (see above)"
sleep "$SAMPLE" # one more sample after the last request
term_pid "$SAMPLER_PID"
SAMPLER_PID=
alive_or_die "$GW_PID" gateway "$WORK/gateway.log"
alive_or_die "$MOCK_PID" "mock provider" "$WORK/mock.log"

# ---------------------------------------------------------------- the ledger catches up

caught_up=0
for ((i = 0; i < CATCHUP * 2; i++)); do
    if scrape "$WORK/metrics.txt"; then
        M_REQ=$(msum "$WORK/metrics.txt" tollgate_requests_total)
        if [[ $(msum "$WORK/metrics.txt" tollgate_ledger_queue_depth) == 0 &&
            $(msum "$WORK/metrics.txt" tollgate_ledger_spill_pending) == 0 &&
            $(($(msum "$WORK/metrics.txt" tollgate_ledger_written_total) + $(msum "$WORK/metrics.txt" tollgate_ledger_dropped_total))) == "$M_REQ" ]]; then
            caught_up=1
            break
        fi
    fi
    sleep 0.5
done
scrape "$WORK/metrics.txt" || die "GET /metrics failed"
cp "$CSV" "$OUT/samples.csv"
cp "$TALLY" "$OUT/tally.json"

# ---------------------------------------------------------------- the checks

check() { # check NAME OK(0/1) DETAIL
    if [[ $2 == 1 ]]; then
        printf '| ok | %s | %s |\n' "$1" "$3"
    else
        FAILED=1
        printf '| **FAIL** | %s | %s |\n' "$1" "$3"
    fi
}

echo "Per class (requests/s as scheduled; ok: a normal answer; injected: the failure the class injects, as expected; unexpected: anything else):"
echo
python3 "$HERE/soak.py" classes "$TALLY"
echo
echo "| result | check | detail |"
echo "|---|---|---|"
python3 "$HERE/soak.py" outcomes "$TALLY" || FAILED=1
SENT=$(python3 "$HERE/soak.py" sent "$TALLY")
M_REQ=$(msum "$WORK/metrics.txt" tollgate_requests_total)
check "gateway counted every request" "$((M_REQ == SENT + SMOKE ? 1 : 0))" \
    "Σ tollgate_requests_total $M_REQ = $SENT sent + $SMOKE smoke"
M_WRITTEN=$(msum "$WORK/metrics.txt" tollgate_ledger_written_total)
M_DROPPED=$(msum "$WORK/metrics.txt" tollgate_ledger_dropped_total)
M_SPILLED=$(msum "$WORK/metrics.txt" tollgate_ledger_spilled_total)
M_WERR=$(msum "$WORK/metrics.txt" tollgate_ledger_write_errors_total)
check "ledger caught up, nothing dropped" "$((caught_up == 1 && M_DROPPED == 0 ? 1 : 0))" \
    "written $M_WRITTEN, dropped $M_DROPPED, spilled $M_SPILLED, write errors $M_WERR$( ((caught_up)) || echo "; NOT caught up after ${CATCHUP}s")"
python3 "$HERE/soak.py" ledger "$WORK/ledger.db" "$TALLY" "$SMOKE" || FAILED=1
python3 "$HERE/soak.py" memory "$CSV" "$WARMUP" "$WINDOW" "$DURATION" "$RSS_PCT" "$FD_SLACK" || FAILED=1
echo
echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg); gateway CPU: $(awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.0f s", ($12 + $13) / hz }' "/proc/$GW_PID/stat") user+system; ledger file $(du -h "$WORK/ledger.db" | cut -f1)"
echo "- samples: $OUT/samples.csv; tally: $OUT/tally.json"
if [[ $PLOT != off ]]; then
    "$VENV/bin/python" "$HERE/soak.py" plot "$CSV" "$WARMUP" "$WINDOW" "$DURATION" "$RSS_PCT" "$PLOT" && echo "- plot: $PLOT" ||
        { FAILED=1; echo "- the plot failed"; }
fi
if grep -qE '\b(ERROR|WARN)\b' "$WORK/gateway.log"; then
    echo "- gateway log: $(grep -cE '\b(ERROR|WARN)\b' "$WORK/gateway.log") WARN/ERROR lines; first 5:"
    grep -E '\b(ERROR|WARN)\b' "$WORK/gateway.log" | head -n 5 | cut -c1-240 | sed 's/^/    /'
fi
if ((FAILED)); then
    echo
    die "a check failed (see above); logs, config, ledger and samples in $WORK"
fi
echo
echo "All checks passed."
