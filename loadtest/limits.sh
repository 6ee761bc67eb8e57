#!/usr/bin/env bash
# What does a feature cost? The same non-streamed chat load (wrk + post.lua, with a virtual key
# in `Authorization: Bearer`) through the gateway in several configurations, each run against a
# freshly started gateway process, all behind ONE mock provider. A mode is a base and optional
# features joined by `+` (`local+ledger+log`); the first mode of MODES is the baseline the others
# are compared with. Bases:
#
#   off    auth with the key, but no limits anywhere (key, team, provider): the limiter and its
#          tokenizer estimate are skipped entirely;
#   local  the same key with limits on the key, its team and the provider (rpm, tpm, tpd,
#          concurrency and a USD budget per day), all far above the load: every request is
#          estimated, admitted and settled in 3 scopes, and nothing is ever refused;
#   redis  like local, with the counters shared through a private Redis (limits.backend: redis,
#          on_failure: open). Only with BACKEND_REDIS=1 or `redis` in MODES.
#
# Features (each off unless named):
#
#   ledger the SQLite spend ledger (usage.ledger: sqlite:…, a fresh file per run); after the run
#          the gateway is stopped and the ledger must hold exactly one record per answered request;
#   log    the access log to a file (usage.access_log: a fresh file per run), likewise checked;
#   guard  a route for the key's team with the guardrail policy GUARD (default
#          `{ pii: redact, secrets: redact }`); BODY then defaults to body-pii.json (an email and
#          a phone number to redact) for every mode, and a guard run must count actions.
#
# Without RATE the load is a closed loop of CONNECTIONS (few: service time; many: the maximum
# throughput and the CPU per request at it). With RATE (requests/s) post.lua paces the requests to
# that rate (open loop as far as wrk allows: every request has a due time), for the p99 at a fixed
# rate.
#
# The load is light (CONNECTIONS=4 in a closed loop) so p50 is mostly service time, not queueing;
# rounds interleave the modes (off, local, [redis], off, local, ...) so drift on a shared machine
# hits them all alike. Per run it prints requests/s, p50/p90/p99, errors, the gateway's
# `tollgate_rate_limited_total` and its CPU time per request; at the end a markdown table of
# medians with the p50 difference to `off` (µs and ratio) next to the off-vs-off spread across
# rounds (the noise floor). Any non-200 answer, socket error or rate-limit refusal fails the run
# (exit 1). See loadtest/README.md.
#
#   bash loadtest/limits.sh                           # off, local; 3 rounds of 10 s, 4 connections
#   BACKEND_REDIS=1 bash loadtest/limits.sh           # off, local, redis
#   MODES="off local redis" ROUNDS=5 DURATION=20 bash loadtest/limits.sh
#   MODES="off off+guard" CONNECTIONS=64 bash loadtest/limits.sh      # the guardrails' CPU per request
#   MODES="local local+ledger local+log local+ledger+log" CONNECTIONS=64 bash loadtest/limits.sh
#   MODES="local local+ledger+log" RATE=2000 CONNECTIONS=32 bash loadtest/limits.sh   # p99 at 2,000/s
#
# Loopback only; every process it starts (mock, gateways, Redis) is stopped on exit, also on
# error or Ctrl-C.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

MODES=${MODES:-off local}         # which configurations (base[+feature…]), in this order per round
BACKEND_REDIS=${BACKEND_REDIS:-0} # 1: add `redis` to MODES
ROUNDS=${ROUNDS:-3}               # interleaved rounds; medians are taken across them
DURATION=${DURATION:-10}          # seconds per measured run
WARMUP=${WARMUP:-2}               # seconds of unmeasured load on each fresh gateway first (0: none)
CONNECTIONS=${CONNECTIONS:-4}     # wrk connections (closed loop); keep it low: service time, not queueing
WRK_THREADS=${WRK_THREADS:-1}     # wrk threads
CHUNKS=${CHUNKS:-16}              # mock content chunks per answer
VARY=${VARY:-1}                   # 1: a new user message per request (post.lua), 0: one body throughout
PIN=${PIN:-auto}                  # auto: pin with taskset when there are >= 2 CPUs; off: never
GATEWAY_CPU=${GATEWAY_CPU:-0}     # CPU list for the gateway
LOAD_CPU=${LOAD_CPU:-1}           # CPU list for the mock provider, wrk and Redis
BUILD=${BUILD:-1}                 # 1: `cargo build --release` first (no-op when fresh); 0: don't
KEEP=${KEEP:-0}                   # 1: keep the work dir (configs, logs, metrics, raw wrk output)
RATE=${RATE:-}                    # requests/s to pace the load to (empty: a closed loop)
GUARD=${GUARD:-'{ pii: redact, secrets: redact }'}   # the guardrail policy of `+guard` modes

die() {
    echo "limits.sh: $*" >&2
    exit 1
}
. "$HERE/lib.sh"

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_pos() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
is_pos "$ROUNDS" || die "ROUNDS must be a positive integer"
is_pos "$DURATION" || die "DURATION must be a positive number of seconds"
is_uint "$WARMUP" || die "WARMUP must be a number of seconds"
is_pos "$CONNECTIONS" || die "CONNECTIONS must be a positive integer"
is_pos "$WRK_THREADS" || die "WRK_THREADS must be a positive integer"
is_pos "$CHUNKS" || die "CHUNKS must be a positive integer"
[[ $VARY == 0 || $VARY == 1 ]] || die "VARY must be 0 or 1"
if [[ $BACKEND_REDIS == 1 && " $MODES " != *" redis "* ]]; then
    MODES="$MODES redis"
fi
[[ -z $RATE ]] || is_pos "$RATE" || die "RATE must be a positive number of requests per second"
HAS_REDIS=0
HAS_GUARD=0
for m in $MODES; do
    [[ $m =~ ^(off|local|redis)(\+(ledger|log|guard))*$ ]] ||
        die "a mode is off, local or redis, then any of +ledger +log +guard; not '$m'"
    [[ $m == redis* ]] && HAS_REDIS=1
    [[ $m == *+guard* ]] && HAS_GUARD=1
done
BASE=${MODES%% *}
if ((HAS_GUARD)); then
    BODY=${BODY:-$HERE/body-pii.json}
else
    BODY=${BODY:-$HERE/body-json.json}
fi
[[ -f $BODY ]] || die "BODY: no such file: $BODY"
# has MODE FEATURE: does MODE include +FEATURE?
has() { [[ $1 == *+$2* ]]; }

# ---------------------------------------------------------------- packages, binary, work dir

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
if ((HAS_REDIS)); then
    command -v redis-server >/dev/null || need+=(redis-server)
fi
install_missing "${need[@]}"
if ((HAS_REDIS)); then
    [[ -f $ROOT/scripts/redis.sh ]] || die "MODES includes redis but scripts/redis.sh is missing"
fi

tollgate_binary "$BUILD"

CLK_TCK=$(getconf CLK_TCK)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-limits.XXXXXX")
# Every gateway of the run starts from this snapshot of the binary: a `cargo build` elsewhere
# replaces target/release/tollgate, and the runs must not straddle two builds.
cp "$BIN" "$WORK/tollgate" || die "could not copy $BIN into $WORK"
BIN_SHOWN=$BIN
BIN=$WORK/tollgate
REDIS_DIR=$WORK/redis
REDIS_STARTED=0
MOCK_PID=
GW_PID=
FAILED=0


cleanup() {
    local rc=$?
    trap - EXIT INT TERM ERR
    stop_pid "$GW_PID"
    stop_pid "$MOCK_PID"
    if ((REDIS_STARTED)); then
        stop_redis "$REDIS_DIR"
    fi
    finish_work "$rc"
}
on_exit cleanup
trap 'echo "limits.sh: line $LINENO: a command failed (exit $?)" >&2' ERR

# ---------------------------------------------------------------- helpers

# A loopback TCP port nothing listens on (and not handed out before); sets REPLY. Below the
# kernel's ephemeral range when there is room, so an outgoing connection cannot take it between
# this check and the bind (a fresh gateway binds two new ports per run).


alive_or_die() {
    local pid=$1 name=$2 log=$3
    if ! kill -0 "$pid" 2>/dev/null; then
        FAILED=1
        echo "--- $name log ($log), last 100 lines ---" >&2
        tail -n 100 "$log" >&2 || true
        die "$name (pid $pid) died during the load run"
    fi
}

# utime + stime of a process (all its threads), in clock ticks.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# kv LINE KEY: the value of KEY=value in a WRK_RESULT line.
kv() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

# fail MESSAGE: a failed check. Loud, counted, and the script exits 1 after the report.
fail() {
    FAILED=1
    {
        echo
        echo "!!!!!!!!!! FAIL: $*"
        echo
    } >&2
}

# wrk_run SECONDS OUT: the load, through the gateway of the current run.
wrk_run() {
    local rc=0
    BODY_FILE=$BODY MODE=json AUTH_TOKEN=$LOAD_KEY VARY=$VARY RATE=$RATE WRK_THREADS=$WRK_THREADS \
        "${LOAD_PIN[@]}" wrk -t "$WRK_THREADS" -c "$CONNECTIONS" -d "${1}s" --timeout 30s --latency \
        -s "$HERE/post.lua" "http://127.0.0.1:$GW_PORT/v1/chat/completions" >"$2" 2>&1 || rc=$?
    ((rc == 0)) || { cat "$2" >&2; die "wrk exited with $rc"; }
}

# ---------------------------------------------------------------- the mock (and Redis)

LOAD_PIN=()
GW_PIN=()
NCPU=$(nproc)
REDIS_TOO=""
((HAS_REDIS)) && REDIS_TOO=" and Redis"
if [[ $PIN != off ]] && command -v taskset >/dev/null && ((NCPU >= 2)); then
    LOAD_PIN=(taskset -c "$LOAD_CPU")
    GW_PIN=(taskset -c "$GATEWAY_CPU")
    PINNING="gateway on CPU $GATEWAY_CPU; mock provider, wrk${REDIS_TOO} on CPU $LOAD_CPU (taskset)"
else
    PINNING="none (PIN=$PIN, $NCPU CPUs, taskset $(command -v taskset >/dev/null && echo found || echo missing))"
fi

LOAD_KEY="tg-limits-load-$RANDOM$RANDOM"

start_mock "$CHUNKS"

REDIS_PORT=
if ((HAS_REDIS)); then
    free_port
    REDIS_PORT=$REPLY
    REDIS_STARTED=1
    "${LOAD_PIN[@]}" bash "$ROOT/scripts/redis.sh" start "$REDIS_DIR" "$REDIS_PORT" >/dev/null ||
        die "Redis did not start (log: $REDIS_DIR/redis.log)"
fi

# ---------------------------------------------------------------- configs

# One limit set for every scope in `local` and `redis`: far above anything this load reaches.
BIG='{ rpm: 100000000, tpm: 10000000000, tpd: 10000000000, concurrency: 100000, budgets: [ { usd: 1000000, period: 1d } ] }'

# config MODE TAG: the gateway's config for one mode (uses GW_PORT, ADMIN_PORT).
config() {
    local mode=$1 tag=$2 provider_limits="" key_limits="" team="{}" backend="" routes=""
    local ledger=off access_log=off
    has "$mode" ledger && ledger="sqlite:$WORK/ledger-$tag.db"
    has "$mode" log && access_log="$WORK/access-$tag.log"
    if has "$mode" guard; then
        routes=$'routes:\n  - name: guarded\n    match: { team: loadteam }\n    guardrails: '"$GUARD"
    fi
    if [[ $mode != off* ]]; then
        provider_limits="    limits: $BIG"
        key_limits=", limits: $BIG"
        team="{ limits: $BIG }"
    fi
    if [[ $mode == redis* ]]; then
        backend="  backend: redis
  redis:
    url: redis://127.0.0.1:$REDIS_PORT/
    on_failure: open"
    fi
    cat <<EOF
# Written by loadtest/limits.sh, mode $mode.
server:
  listen: "127.0.0.1:$GW_PORT"
  admin_listen: "127.0.0.1:$ADMIN_PORT"
  threads: 1
  shutdown_grace: 1s
  reload_poll: 0s
usage:
  ledger: "$ledger"
  access_log: "$access_log"
  spill_dir: "$WORK/spill-$tag"
providers:
  mock:
    kind: openai_compatible
    base_url: "http://127.0.0.1:$MOCK_PORT/v1"
    api_keys: ["mock-key"]
$provider_limits
models:
  demo:
    targets:
      - { provider: mock, model: mock-gpt }
pricing:
  models:
    - { provider: mock, model: mock-gpt, input: 1, output: 2 }
auth:
  required: true
keys:
  - { id: load, key: "\${LOAD_KEY}", team: loadteam$key_limits }
teams:
  loadteam: $team
limits:
  default_completion_tokens: 64
$backend
$routes
EOF
}

# ---------------------------------------------------------------- header

cpu_model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "# Tollgate: what a feature costs (limits, ledger, access log, guardrails)"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- machine: ${NCPU} CPUs, ${cpu_model:-unknown CPU}, kernel $(uname -r)"
echo "- load average before: $LOAD_BEFORE"
echo "- tollgate: $BIN_SHOWN ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo no-git)$(cd "$ROOT" && git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ', dirty tree'))"
echo "- load: wrk ($(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2)), $WRK_THREADS thread(s), $CONNECTIONS connections, non-streamed chat ($(basename "$BODY"), VARY=$VARY), ${RATE:+paced to $RATE req/s, }${DURATION}s per run after ${WARMUP}s warm-up, $ROUNDS round(s) of: $MODES (baseline: $BASE)"
echo "- gateway: a fresh process per run, server.threads 1, ledger and access log off unless the mode names them (+ledger: SQLite; +log: a file), auth.required with one virtual key (team loadteam)"
((HAS_GUARD)) && echo "- +guard: a route for team loadteam with guardrails $GUARD"
REDIS_NOTE=""
LIMITED_MODES=local
if ((HAS_REDIS)); then
    LIMITED_MODES="local, redis"
    REDIS_NOTE="; redis: private redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') on 127.0.0.1:$REDIS_PORT, on_failure open"
fi
echo "- limits ($LIMITED_MODES): key, team and provider each $BIG$REDIS_NOTE"
echo "- pinning: $PINNING"
echo

# ---------------------------------------------------------------- the runs

ROWS=$WORK/rows.tsv
: >"$ROWS"

for ((round = 1; round <= ROUNDS; round++)); do
    for mode in $MODES; do
        tag=$mode-$round
        free_port
        GW_PORT=$REPLY
        free_port
        ADMIN_PORT=$REPLY
        config "$mode" "$tag" >"$WORK/$tag.yaml"
        if [[ $mode == redis* ]]; then
            # Every redis run starts from an empty store, as the local runs start from empty counters.
            redis-cli -p "$REDIS_PORT" flushall >/dev/null || die "redis-cli flushall failed"
        fi
        mkdir -p "$WORK/rt-$tag"
        LOAD_KEY=$LOAD_KEY NO_COLOR=1 "${GW_PIN[@]}" "$BIN" run --config "$WORK/$tag.yaml" \
            --runtime-dir "$WORK/rt-$tag" >"$WORK/gateway-$tag.log" 2>&1 &
        GW_PID=$!
        wait_ready "http://127.0.0.1:$ADMIN_PORT/ready" "$GW_PID" "gateway ($mode)" "$WORK/gateway-$tag.log"
        # The admin listener can be up before the data plane's.
        wait_listener "$GW_PORT" || true

        # Smoke: one request with the key must be served; the limiter's headers tell whether it ran.
        code=$(curl -sS -D "$WORK/smoke-$tag.headers" -o "$WORK/smoke-$tag.out" -w '%{http_code}' --max-time 10 \
            -H 'Content-Type: application/json' -H "Authorization: Bearer $LOAD_KEY" \
            --data-binary "@$BODY" "http://127.0.0.1:$GW_PORT/v1/chat/completions") || code=000
        if [[ $code != 200 ]]; then
            FAILED=1
            cat "$WORK/smoke-$tag.out" >&2 || true
            tail -n 30 "$WORK/gateway-$tag.log" >&2 || true
            die "$mode round $round: the smoke request answered $code"
        fi
        if grep -qi '^x-ratelimit-limit-requests:' "$WORK/smoke-$tag.headers"; then
            limiter_on=1
        else
            limiter_on=0
        fi
        if [[ $mode == off* && $limiter_on == 1 ]]; then
            fail "$mode round $round: x-ratelimit-* headers in mode off (the limiter ran)"
        elif [[ $mode != off* && $limiter_on == 0 ]]; then
            fail "$mode round $round: no x-ratelimit-limit-requests header (the limiter did not run)"
        fi

        if ((WARMUP > 0)); then
            wrk_run "$WARMUP" "$WORK/warmup-$tag.txt"
        fi
        scrape "$WORK/before-$tag.prom" || die "could not read /metrics"
        gw0=$(cpu_ticks "$GW_PID")
        wrk_run "$DURATION" "$WORK/wrk-$tag.txt"
        gw1=$(cpu_ticks "$GW_PID")
        scrape "$WORK/after-$tag.prom" || die "could not read /metrics"
        alive_or_die "$GW_PID" "gateway ($mode)" "$WORK/gateway-$tag.log"
        alive_or_die "$MOCK_PID" "mock provider" "$WORK/mock.log"
        served=$(msum "$WORK/after-$tag.prom" tollgate_requests_total)
        stop_pid "$GW_PID"
        GW_PID=

        out=$WORK/wrk-$tag.txt
        line=$(grep '^WRK_RESULT ' "$out") || { cat "$out" >&2; die "no WRK_RESULT line from post.lua"; }
        reqs=$(kv "$line" requests)
        rps=$(awk -v n="$reqs" -v d="$(kv "$line" duration_us)" 'BEGIN { printf "%.0f", n / (d / 1e6) }')
        p50=$(kv "$line" p50_us)
        p90=$(kv "$line" p90_us)
        p99=$(kv "$line" p99_us)
        errors=$(($(kv "$line" bad_status) + $(kv "$line" bad_body) + $(kv "$line" connect_errors) + $(kv "$line" read_errors) + $(kv "$line" write_errors) + $(kv "$line" timeouts)))
        # Also the warm-up's: a refusal or an error there fails the run as well.
        if [[ -f $WORK/warmup-$tag.txt ]]; then
            wline=$(grep '^WRK_RESULT ' "$WORK/warmup-$tag.txt") || die "no WRK_RESULT line in the warm-up"
            werrors=$(($(kv "$wline" bad_status) + $(kv "$wline" bad_body) + $(kv "$wline" connect_errors) + $(kv "$wline" read_errors) + $(kv "$wline" write_errors) + $(kv "$wline" timeouts)))
            ((werrors == 0)) || fail "$mode round $round: $werrors errors in the warm-up ($(kv "$wline" statuses))"
        fi
        # Since the gateway started (smoke, warm-up and the run): must stay 0.
        limited=$(msum "$WORK/after-$tag.prom" tollgate_rate_limited_total)
        ticks=$((gw1 - gw0))
        cpu_us=$(awk -v t="$ticks" -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "-" }')
        cpu_pct=$(awk -v t="$ticks" -v hz="$CLK_TCK" -v d="$(kv "$line" duration_us)" 'BEGIN { printf "%.0f", 100 * t / hz / (d / 1e6) }')
        extra=""
        if has "$mode" guard; then
            actions=$(msum "$WORK/after-$tag.prom" tollgate_guardrail_actions_total)
            extra="$extra; guardrail actions $actions"
            ((actions > 0)) || fail "$mode round $round: no guardrail action counted (does BODY hold anything to act on?)"
        fi
        # The writers: every request the gateway counted has exactly one record once it stopped.
        if has "$mode" ledger; then
            records=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from usage_records").fetchone()[0])' "$WORK/ledger-$tag.db") ||
                die "could not count the ledger's records"
            extra="$extra; ledger records $records"
            ((records == served)) || fail "$mode round $round: the ledger holds $records records for $served requests"
        fi
        if has "$mode" log; then
            lines=$(wc -l <"$WORK/access-$tag.log")
            extra="$extra; access-log lines $lines"
            ((lines == served)) || fail "$mode round $round: the access log holds $lines lines for $served requests"
        fi
        if [[ $mode == redis* ]]; then
            calls=$(($(msum "$WORK/after-$tag.prom" tollgate_limits_backend_calls_total) - $(msum "$WORK/before-$tag.prom" tollgate_limits_backend_calls_total)))
            leased=$(($(msum "$WORK/after-$tag.prom" tollgate_limits_admissions_total 'path="lease"') - $(msum "$WORK/before-$tag.prom" tollgate_limits_admissions_total 'path="lease"')))
            up=$(msum "$WORK/after-$tag.prom" tollgate_limits_backend_up)
            unavailable=$(msum "$WORK/after-$tag.prom" tollgate_limits_backend_unavailable_total)
            berrors=$(msum "$WORK/after-$tag.prom" tollgate_limits_backend_errors_total)
            extra="$extra; Redis: $calls round trips, $leased admissions needed a lease, up=$up, unavailable=$unavailable, errors=$berrors"
            # on_failure: open would fall back to local limits silently: then this is no redis run.
            [[ $up == 1 && $unavailable == 0 && $berrors == 0 ]] ||
                fail "redis round $round: the gateway did not use Redis throughout (up=$up unavailable=$unavailable errors=$berrors)"
            ((calls > 0)) || fail "redis round $round: no round trip to Redis during the run"
        fi
        printf '%-5s round %d: %6s req/s  p50 %5s µs  p90 %5s µs  p99 %5s µs  errors %s  rate_limited %s  gateway CPU %s µs/req (%s%% of a core)  [%s requests, statuses %s%s]\n' \
            "$mode" "$round" "$rps" "$p50" "$p90" "$p99" "$errors" "$limited" "$cpu_us" "$cpu_pct" "$reqs" "$(kv "$line" statuses)" "$extra"
        ((reqs > 0)) || fail "$mode round $round: no request completed"
        ((errors == 0)) || fail "$mode round $round: $errors failed requests (non-200, incomplete body or socket error): statuses=$(kv "$line" statuses) bad_body=$(kv "$line" bad_body) connect=$(kv "$line" connect_errors) read=$(kv "$line" read_errors) write=$(kv "$line" write_errors) timeout=$(kv "$line" timeouts)"
        ((limited == 0)) || fail "$mode round $round: tollgate_rate_limited_total = $limited (a limit refused requests): $(grep '^tollgate_rate_limited_total' "$WORK/after-$tag.prom" | tr '\n' ' ')"
        ((cpu_pct < 90)) || echo "  note: the gateway used ${cpu_pct}% of its core: close to saturation, p50 includes queueing (lower CONNECTIONS)"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$round" "$rps" "$p50" "$p90" "$p99" "$errors" "$limited" "$cpu_us" "$cpu_pct" >>"$ROWS"
    done
done

# ---------------------------------------------------------------- report

# col MODE N: column N of the rows of MODE, one per line, in round order.
col() { awk -F'\t' -v m="$1" -v c="$2" '$1 == m { print $c }' "$ROWS"; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
total() { awk '{ s += $1 } END { print s + 0 }'; }
# paired MODE N: per round, column N of MODE minus that of the baseline in the same round.
paired() { paste <(col "$1" "$2") <(col "$BASE" "$2") | awk '{ print $1 - $2 }'; }

BASE_P50=$(col "$BASE" 4 | median)
BASE_P99=$(col "$BASE" 6 | median)
BASE_CPU=$(col "$BASE" 9 | median)
BASE_MIN=$(col "$BASE" 4 | sort -g | head -n 1)
BASE_MAX=$(col "$BASE" 4 | sort -g | tail -n 1)
BASE_SPREAD=$((BASE_MAX - BASE_MIN))

echo
echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "Per run (µs; errors = non-200 + incomplete bodies + socket errors; rate-limited = the gateway's tollgate_rate_limited_total):"
echo
echo "| round | mode | req/s | p50 | p90 | p99 | errors | rate-limited | gateway CPU µs/req | gateway CPU % |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $2, $1, $3, $4, $5, $6, $7, $8, $9, $10 }' "$ROWS"
echo
echo "Medians over $ROUNDS round(s) ($CONNECTIONS connections${RATE:+, paced to $RATE req/s}, ${DURATION}s each; differences against the baseline \`$BASE\`):"
echo
echo "| mode | req/s | p50 µs | p90 µs | p99 µs | errors | rate-limited | p50 − base µs | p50 ÷ base | paired p50 − base µs (per round) | p99 − base µs | gateway CPU µs/req | CPU − base µs/req |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"
for mode in $MODES; do
    p50=$(col "$mode" 4 | median)
    p99=$(col "$mode" 6 | median)
    cpu=$(col "$mode" 9 | median)
    if [[ $mode == "$BASE" ]]; then
        d="-" r="-" pr="-" d99="-" dc="-"
    else
        d=$(awk -v a="$p50" -v b="$BASE_P50" 'BEGIN { printf "%+.0f", a - b }')
        r=$(awk -v a="$p50" -v b="$BASE_P50" 'BEGIN { printf "%.3f", a / b }')
        pr="median $(paired "$mode" 4 | median | awk '{ printf "%+.0f", $1 }') ($(paired "$mode" 4 | awk '{ printf "%s%+d", (NR > 1 ? ", " : ""), $1 }'))"
        d99=$(awk -v a="$p99" -v b="$BASE_P99" 'BEGIN { printf "%+.0f", a - b }')
        dc=$(awk -v a="$cpu" -v b="$BASE_CPU" 'BEGIN { printf "%+.1f", a - b }')
    fi
    echo "| $mode | $(col "$mode" 3 | median) | $p50 | $(col "$mode" 5 | median) | $p99 | $(col "$mode" 7 | total) | $(col "$mode" 8 | total) | $d | $r | $pr | $d99 | $cpu | $dc |"
done
echo
echo "Noise floor: p50 of \`$BASE\` ranged over $BASE_MIN–$BASE_MAX µs across its $ROUNDS round(s) (spread $BASE_SPREAD µs)."
for mode in $MODES; do
    [[ $mode == "$BASE" ]] && continue
    p50=$(col "$mode" 4 | median)
    slower=$(paired "$mode" 4 | awk '$1 > 0 { n++ } END { print n + 0 }')
    awk -v m="$mode" -v base="$BASE" -v a="$p50" -v b="$BASE_P50" -v s="$BASE_SPREAD" -v n="$ROUNDS" -v k="$slower" 'BEGIN {
        d = a - b; ad = d < 0 ? -d : d
        if (n < 2) { printf "%s − %s: %+.0f µs (one round: no noise estimate).\n", m, base, d; exit }
        if (ad <= s) printf "%s − %s: %+.0f µs, within the baseline'"'"'s own spread (%d µs)", m, base, d, s
        else printf "%s − %s: %+.0f µs, larger than the baseline'"'"'s own spread (%d µs)", m, base, d, s
        # With no effect, each round is slower or faster by chance: all n slower has odds 1 in 2^n.
        printf "; %s had the higher p50 in %d of %d rounds (paired with the baseline run of the same round).\n", m, k, n
    }'
done

if ((FAILED)); then
    echo
    echo "!!!!!!!!!! FAILED: see the FAIL lines above (requests refused or failed); the numbers are not valid."
    exit 1
fi
