#!/usr/bin/env bash
# Does the limiter add latency? The same non-streamed chat load through the gateway with a
# virtual key, in up to three configurations, each a fresh gateway process:
#   off    the key has no limits anywhere: the limiter (and its tokenizer estimate) is skipped;
#   local  limits on the key, its team and the provider (rpm, tpm, tpd, concurrency and a budget),
#          all far above the load, so every request is admitted and settled in 3 scopes;
#   redis  the same limits shared through a private Redis (limits.backend: redis).
# Each request carries a new user message (VARY=1), so the tokenizer's prompt cache only helps
# with the repeated system prompt, as in real traffic. The load is light (CONNECTIONS=1): p50 is
# then service time, not queueing. Rounds interleave
# the modes (off, local, redis, off, ...) so drift on this shared machine hits all of them alike.
# Prints per mode: requests/s, p50/p90/p99, the median p50 difference to `off`, the spread of
# `off` across rounds (the noise floor), and for redis how many requests needed a Redis call.
# Any non-200 answer or a rate-limit refusal fails the run.
#
#   bash loadtest/limits.sh                          # off, local, redis; 3 rounds of 10 s
#   MODES="off local" ROUNDS=5 DURATION=20 bash loadtest/limits.sh
#
# Loopback only; every process it starts is stopped on exit (also on error or Ctrl-C).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

MODES=${MODES:-off local redis}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}          # seconds per measured run
WARMUP=${WARMUP:-2}               # seconds of unmeasured load first
CONNECTIONS=${CONNECTIONS:-1}
CHUNKS=${CHUNKS:-16}
PIN=${PIN:-auto}
GATEWAY_CPU=${GATEWAY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BUILD=${BUILD:-1}
KEEP=${KEEP:-0}
VARY=${VARY:-1}                   # 1: a new user message per request (see post.lua); 0: one body

die() { echo "limits.sh: $*" >&2; exit 1; }
is_pos() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
is_pos "$ROUNDS" || die "ROUNDS must be a positive integer"
is_pos "$DURATION" || die "DURATION must be a positive number of seconds"
is_pos "$CONNECTIONS" || die "CONNECTIONS must be a positive integer"
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be a number of seconds"
for m in $MODES; do
    [[ $m == off || $m == local || $m == redis ]] || die "MODES may hold off, local and redis, not '$m'"
done

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
[[ " $MODES " == *" redis "* ]] && ! command -v redis-server >/dev/null && need+=(redis-server)
if ((${#need[@]} > 0)); then
    echo "installing missing packages: ${need[*]}" >&2
    sudo_cmd=()
    [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi

BIN=${TOLLGATE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/tollgate}
if [[ -z ${TOLLGATE_BIN:-} && $BUILD == 1 ]]; then
    echo "building: cargo build --release --bin tollgate" >&2
    (cd "$ROOT" && cargo build --release --bin tollgate) || die "the release build failed"
fi
[[ -x $BIN ]] || die "no tollgate binary at $BIN (build it, or set TOLLGATE_BIN)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-limits.XXXXXX")
MOCK_PID= GW_PID= REDIS_STARTED=0

stop_pid() {
    local pid=$1 i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -INT "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$GW_PID"
    stop_pid "$MOCK_PID"
    ((REDIS_STARTED)) && bash "$ROOT/scripts/redis.sh" stop "$WORK/redis" kill >/dev/null 2>&1
    if [[ $KEEP == 1 || $rc != 0 ]]; then echo "work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PORTS_TAKEN=" "
free_port() {
    local p i
    for ((i = 0; i < 500; i++)); do
        p=$((10000 + RANDOM % 20000))
        [[ $PORTS_TAKEN == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            PORTS_TAKEN+="$p "
            REPLY=$p
            return 0
        fi
    done
    die "found no free loopback port"
}
wait_ready() {
    local url=$1 pid=$2 log=$3 i
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "$url: the process exited during start-up"; }
        curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
        sleep 0.1
    done
    tail -n 50 "$log" >&2
    die "$url did not answer within 15 s"
}
metric() { awk -v n="$2" '$1 == n { print $2 }' "$1" | head -n 1; }

NCPU=$(nproc)
GW_PIN=() LOAD_PIN=()
if [[ $PIN == auto ]] && ((NCPU >= 2)) && command -v taskset >/dev/null; then
    GW_PIN=(taskset -c "$GATEWAY_CPU")
    LOAD_PIN=(taskset -c "$LOAD_CPU")
fi

free_port
MOCK_PORT=$REPLY
NO_COLOR=1 "${LOAD_PIN[@]}" "$BIN" mock-provider --listen "127.0.0.1:$MOCK_PORT" --threads 1 \
    --record-limit 1 --chunks "$CHUNKS" >"$WORK/mock.log" 2>&1 &
MOCK_PID=$!
wait_ready "http://127.0.0.1:$MOCK_PORT/_mock/health" "$MOCK_PID" "$WORK/mock.log"

if [[ " $MODES " == *" redis "* ]]; then
    free_port
    REDIS_PORT=$REPLY
    "${LOAD_PIN[@]}" bash "$ROOT/scripts/redis.sh" start "$WORK/redis" "$REDIS_PORT" >/dev/null
    REDIS_STARTED=1
fi

# config MODE: the gateway's config for one mode.
config() {
    local limits="" backend="" provider_limits="" key_limits="" team="{}"
    if [[ $1 != off ]]; then
        limits='{ rpm: 100000000, tpm: 10000000000, tpd: 10000000000, concurrency: 100000, budgets: [ { usd: 1000000, period: 1d } ] }'
        provider_limits="    limits: $limits"
        key_limits=", limits: $limits"
        team="{ limits: $limits }"
    fi
    if [[ $1 == redis ]]; then
        backend="  backend: redis
  redis:
    url: \"redis://127.0.0.1:$REDIS_PORT/\"
    on_failure: closed"
    fi
    cat <<YAML
server:
  listen: "127.0.0.1:$GW_PORT"
  admin_listen: "127.0.0.1:$ADMIN_PORT"
  threads: 1
  shutdown_grace: 0s
  reload_poll: 0s
usage:
  ledger: off
  access_log: off
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
YAML
}

RESULTS=$WORK/results.txt
: >"$RESULTS"
for ((round = 1; round <= ROUNDS; round++)); do
    for mode in $MODES; do
        free_port
        GW_PORT=$REPLY
        free_port
        ADMIN_PORT=$REPLY
        config "$mode" >"$WORK/$mode.yaml"
        LOAD_KEY=tg-load NO_COLOR=1 "${GW_PIN[@]}" "$BIN" run --config "$WORK/$mode.yaml" --runtime-dir "$WORK" \
            >"$WORK/gateway-$mode.log" 2>&1 &
        GW_PID=$!
        wait_ready "http://127.0.0.1:$ADMIN_PORT/ready" "$GW_PID" "$WORK/gateway-$mode.log"
        url="http://127.0.0.1:$GW_PORT/v1/chat/completions"
        export BODY_FILE=$HERE/body-json.json MODE=json AUTH_TOKEN=tg-load VARY
        if ((WARMUP > 0)); then
            "${LOAD_PIN[@]}" wrk -t 1 -c "$CONNECTIONS" -d "${WARMUP}s" -s "$HERE/post.lua" "$url" >/dev/null 2>&1
        fi
        curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" >"$WORK/before.prom"
        "${LOAD_PIN[@]}" wrk -t 1 -c "$CONNECTIONS" -d "${DURATION}s" --latency -s "$HERE/post.lua" "$url" \
            >"$WORK/wrk-$mode-$round.txt" 2>&1
        curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" >"$WORK/after.prom"
        stop_pid "$GW_PID"
        GW_PID=
        out=$WORK/wrk-$mode-$round.txt
        line=$(grep '^WRK_RESULT ' "$out") || { cat "$out" >&2; die "no WRK_RESULT from post.lua"; }
        kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
        requests=$(kv requests) ok=$(kv ok)
        ((requests > 0 && ok == requests)) || { cat "$out" >&2; die "$mode round $round: $ok of $requests answered 200"; }
        p50=$(awk '$1 == "50%" { print $2 }' "$out")
        p90=$(awk '$1 == "90%" { print $2 }' "$out")
        p99=$(awk '$1 == "99%" { print $2 }' "$out")
        to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else print n * 1e6 }'; }
        rps=$(awk -v r="$requests" -v d="$(kv duration_us)" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
        limited=$(metric "$WORK/after.prom" tollgate_rate_limited_total)
        [[ -z $limited || $limited == 0 ]] || die "$mode round $round: $limited requests refused by a limit"
        c0=$(metric "$WORK/before.prom" tollgate_limits_backend_calls_total)
        c1=$(metric "$WORK/after.prom" tollgate_limits_backend_calls_total)
        calls=$((${c1:-0} - ${c0:-0}))
        echo "$mode $round $rps $(to_us "$p50") $(to_us "$p90") $(to_us "$p99") $requests ${calls:-0}" >>"$RESULTS"
        printf '%-6s round %d: %6s req/s  p50 %6.0f us  p90 %6.0f us  p99 %6.0f us  (%d requests%s)\n' \
            "$mode" "$round" "$rps" "$(to_us "$p50")" "$(to_us "$p90")" "$(to_us "$p99")" "$requests" \
            "$([[ $mode == redis ]] && echo ", $calls Redis round trips")"
    done
done

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { awk -v m="$1" -v c="$2" '$1 == m { print $c }' "$RESULTS"; }
off_p50=$(col off 4 | median)
echo
echo "## Limiter latency ($(date -u '+%Y-%m-%d'), $NCPU CPUs, $CONNECTIONS connections, ${DURATION}s x $ROUNDS rounds, medians)"
echo
echo "| mode | req/s | p50 (us) | p90 (us) | p99 (us) | p50 - off (us) | Redis calls / request |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for mode in $MODES; do
    p50=$(col "$mode" 4 | median)
    ratio=$(awk -v m="$mode" '$1 == m { r += $7; c += $8 } END { if (m == "redis" && r > 0) printf "%.4f", c / r; else print "-" }' "$RESULTS")
    printf '| %s | %s | %s | %s | %s | %+.0f | %s |\n' "$mode" "$(col "$mode" 3 | median)" "$p50" \
        "$(col "$mode" 5 | median)" "$(col "$mode" 6 | median)" "$(awk -v a="$p50" -v b="$off_p50" 'BEGIN { print a - b }')" "$ratio"
done
spread=$(col off 4 | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print hi - lo }')
echo
echo "Noise floor: p50 of \`off\` ranged over $spread us across its $ROUNDS rounds."
