#!/usr/bin/env bash
# Does the rate limiter add p50 latency? Measured A/B on ONE gateway process: wrk (ab.lua, one
# connection) alternates every request between two virtual keys, and times each on the client.
#
#   A  key `plain`, team `plain`: no limits anywhere, so its requests skip the token estimate and
#      the limiter entirely (the gateway's `off` path);
#   B  key `limited`, team `limited`: rpm, tpm, tpd, concurrency and a daily USD budget on the
#      key and on its team, all far above the load: every B request is estimated (tiktoken
#      o200k), admitted and settled in two scopes, answers with x-ratelimit-* headers, and is
#      never refused.
#
# Both keys' requests come from the same seconds of the same process behind the same mock, so
# the machine's noise (this project's CI and dev machines are shared 2-vCPU VMs whose latency
# drifts by 2-4x between runs, which swamps a separate-runs comparison such as limits.sh) falls
# on both alike; what is left is the limiter's own cost. Per round (a fresh gateway each) it
# prints both keys' p50/p90/p99, p50(B) - p50(A), that difference in each tenth of the run (its
# spread is the measurement's noise) and the median of adjacent pairs' differences; at the end the
# medians over rounds. Fails (exit 1) on any non-200 answer, a refused request, or a key whose
# x-ratelimit-* headers say its limiter did (not) run.
#
# The control (CONTROL=1): B's answers carry six more headers than A's, and the client pays for
# reading them (wrk parses them and hands them to Lua as new strings). What that costs by itself
# is measured the same way, in each round, against nginx serving two canned answers that differ
# only in those six x-ratelimit-* headers (values changing per answer, as the gateway's do), on
# the gateway's CPU. The gateway's B - A minus the control's is what the limiter costs beyond
# the bytes of the headers the API requires.
#
#   bash loadtest/limits-ab.sh                        # 3 rounds of 30 s
#   BACKEND=redis ROUNDS=5 bash loadtest/limits-ab.sh # B's counters shared through a private Redis
#   AB_GUARD="{ pii: redact, secrets: redact }" BODY=loadtest/body-pii.json bash loadtest/limits-ab.sh
#       # B differs from A by a guardrail policy instead of limits (see ab_config in lib.sh)
#
# Loopback only; every process it starts is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

ROUNDS=${ROUNDS:-3}       # rounds, each with a fresh gateway; medians are taken across them
DURATION=${DURATION:-30}  # seconds per measured run
WARMUP=${WARMUP:-3}       # seconds of unmeasured load on each fresh gateway first
CHUNKS=${CHUNKS:-16}      # mock content chunks per answer
VARY=${VARY:-1}           # 1: a new user message per request, 0: one body throughout
BACKEND=${BACKEND:-local} # limits.backend: local or redis
PIN=${PIN:-auto}          # auto: gateway on GATEWAY_CPU, mock/wrk/Redis on LOAD_CPU (>= 2 CPUs)
GATEWAY_CPU=${GATEWAY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BUILD=${BUILD:-1}         # 1: `cargo build --release` first (no-op when fresh)
CONTROL=${CONTROL:-1}     # 1: also measure the six headers alone (nginx), per round
KEEP=${KEEP:-0}           # 1: keep the work dir

die() {
    echo "limits-ab.sh: $*" >&2
    exit 1
}
. "$HERE/lib.sh"

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive number of seconds"
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be a number of seconds"
[[ $VARY == 0 || $VARY == 1 ]] || die "VARY must be 0 or 1"
[[ $BACKEND == local || $BACKEND == redis ]] || die "BACKEND must be local or redis"
[[ $CONTROL == 0 || $CONTROL == 1 ]] || die "CONTROL must be 0 or 1"

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
[[ $BACKEND == redis ]] && ! command -v redis-server >/dev/null && need+=(redis-server)
((CONTROL)) && ! command -v nginx >/dev/null && ! [[ -x /usr/sbin/nginx ]] && need+=(nginx-light)
install_missing "${need[@]}"
tollgate_binary "$BUILD"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-limits-ab.XXXXXX")
cp "$BIN" "$WORK/tollgate" || die "could not copy $BIN into $WORK"
BIN_SHOWN=$BIN
BIN=$WORK/tollgate
MOCK_PID=
GW_PID=
NGINX_PID=
REDIS_STARTED=0
FAILED=0

cleanup() {
    local rc=$?
    trap - EXIT INT TERM ERR
    stop_pid "$GW_PID"
    stop_pid "$MOCK_PID"
    stop_pid "$NGINX_PID"
    if ((REDIS_STARTED)); then
        stop_redis "$WORK/redis"
    fi
    finish_work "$rc"
}
on_exit cleanup

fail() {
    FAILED=1
    echo "!!!!!!!!!! FAIL: $*" >&2
}
kv() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

LOAD_PIN=()
GW_PIN=()
if [[ $PIN != off ]] && command -v taskset >/dev/null && (($(nproc) >= 2)); then
    LOAD_PIN=(taskset -c "$LOAD_CPU")
    GW_PIN=(taskset -c "$GATEWAY_CPU")
    PINNING="gateway on CPU $GATEWAY_CPU; mock provider, wrk and Redis on CPU $LOAD_CPU"
else
    PINNING="none"
fi

KEY_A="tg-ab-plain-$RANDOM$RANDOM"
KEY_B="tg-ab-limited-$RANDOM$RANDOM"

start_mock "$CHUNKS"

BACKEND_CONF=""
if [[ $BACKEND == redis ]]; then
    free_port
    REDIS_PORT=$REPLY
    REDIS_STARTED=1
    "${LOAD_PIN[@]}" bash "$ROOT/scripts/redis.sh" start "$WORK/redis" "$REDIS_PORT" >/dev/null ||
        die "Redis did not start (log: $WORK/redis/redis.log)"
    BACKEND_CONF="  backend: redis
  redis:
    url: redis://127.0.0.1:$REDIS_PORT/
    on_failure: open"
fi

config() { ab_config limits-ab.sh "$BACKEND_CONF"; }
# B carries x-ratelimit-* headers unless it differs from A by a guardrail policy instead.
B_LIMITED=1 B_DESC="limits on key and team: $AB_LIMITS"
[[ -z ${AB_GUARD:-} ]] || { B_LIMITED=0; B_DESC="guardrails $AB_GUARD, no limits"; }

# wrk_ab SECONDS OUT [PORT]: the A/B load against the gateway (or the control on PORT).
wrk_ab() {
    local rc=0
    BODY_FILE=${BODY:-$HERE/body-json.json} KEY_A=$KEY_A KEY_B=$KEY_B VARY=$VARY B_LIMITED=$B_LIMITED \
        "${LOAD_PIN[@]}" wrk -t 1 -c 1 -d "${1}s" --timeout 30s -s "$HERE/ab.lua" \
        "http://127.0.0.1:${3:-$GW_PORT}/v1/chat/completions" >"$2" 2>&1 || rc=$?
    ((rc == 0)) || { cat "$2" >&2; die "wrk exited with $rc"; }
    grep -q '^AB_RESULT ' "$2" || { cat "$2" >&2; die "no AB_RESULT line from ab.lua"; }
}

# The control: nginx answers both keys with the same canned chat completion, B's with the six
# x-ratelimit-* headers (three of their values change per answer, as the gateway's do).
ANSWER='{"id":"chatcmpl-control","object":"chat.completion","created":0,"model":"mock-gpt","choices":[{"index":0,"message":{"role":"assistant","content":"This is the control answer of the A/B, the same for both keys."},"finish_reason":"stop"}],"usage":{"prompt_tokens":64,"completion_tokens":16,"total_tokens":80}}'
control_config() {
    cat <<EOF
# Written by loadtest/limits-ab.sh (the control).
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 16; }
http {
    access_log off;
    server_tokens off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$CONTROL_PORT;
        location / {
            default_type application/json;
            if (\$http_authorization ~ "$KEY_B") {
                add_header x-ratelimit-limit-requests 100000000;
                add_header x-ratelimit-limit-tokens 10000000000;
                add_header x-ratelimit-remaining-requests 9999\$connection_requests;
                add_header x-ratelimit-remaining-tokens 99999\$connection_requests;
                add_header x-ratelimit-reset-requests 1ms;
                add_header x-ratelimit-reset-tokens \${connection_requests}ms;
                return 200 '$ANSWER';
            }
            return 200 '$ANSWER';
        }
    }
}
EOF
}

if ((CONTROL)); then
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    free_port
    CONTROL_PORT=$REPLY
    mkdir -p "$WORK/nginx"
    control_config >"$WORK/nginx/nginx.conf"
    "${GW_PIN[@]}" "$NGINX" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" >"$WORK/nginx/out.log" 2>&1 &
    NGINX_PID=$!
    wait_ready "http://127.0.0.1:$CONTROL_PORT/" "$NGINX_PID" "nginx (the control)" "$WORK/nginx/error.log"
fi

echo "# Tollgate limiter latency, A/B on one gateway"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- machine: $(nproc) CPUs, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1), kernel $(uname -r)"
echo "- tollgate: $BIN_SHOWN ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo no-git)$(cd "$ROOT" && git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ', dirty tree'))"
echo "- load: wrk, 1 connection alternating keys A (no limits) and B ($B_DESC), ${BODY:-body-json.json}, VARY=$VARY, ${DURATION}s per round after ${WARMUP}s warm-up, $ROUNDS round(s), limits.backend $BACKEND"
echo "- pinning: $PINNING"
((CONTROL)) && echo "- control: nginx on the gateway's CPU, the same A/B for ${DURATION}s after each round; B's answers differ from A's only by the six x-ratelimit-* headers"
echo

ROWS=$WORK/rows.tsv
: >"$ROWS"
for ((round = 1; round <= ROUNDS; round++)); do
    free_port
    GW_PORT=$REPLY
    free_port
    ADMIN_PORT=$REPLY
    config >"$WORK/gw-$round.yaml"
    [[ $BACKEND == redis ]] && { redis-cli -p "$REDIS_PORT" flushall >/dev/null || die "redis-cli flushall failed"; }
    mkdir -p "$WORK/rt-$round"
    KEY_A=$KEY_A KEY_B=$KEY_B NO_COLOR=1 "${GW_PIN[@]}" "$BIN" run --config "$WORK/gw-$round.yaml" \
        --runtime-dir "$WORK/rt-$round" >"$WORK/gateway-$round.log" 2>&1 &
    GW_PID=$!
    wait_ready "http://127.0.0.1:$ADMIN_PORT/ready" "$GW_PID" "gateway" "$WORK/gateway-$round.log"
    wait_listener "$GW_PORT" || true
    ((WARMUP > 0)) && wrk_ab "$WARMUP" "$WORK/warmup-$round.txt"
    wrk_ab "$DURATION" "$WORK/wrk-$round.txt"
    curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" >"$WORK/metrics-$round.prom" ||
        die "could not read /metrics"
    kill -0 "$GW_PID" 2>/dev/null || { tail -n 50 "$WORK/gateway-$round.log" >&2; die "the gateway died"; }
    stop_pid "$GW_PID"
    GW_PID=

    line=$(grep '^AB_RESULT ' "$WORK/wrk-$round.txt")
    wline=$(grep '^AB_RESULT ' "$WORK/warmup-$round.txt" 2>/dev/null || echo "AB_RESULT bad=0 header_mismatch=0")
    bad=$(($(kv "$line" bad) + $(kv "$wline" bad)))
    mismatch=$(($(kv "$line" header_mismatch) + $(kv "$wline" header_mismatch)))
    limited=$(awk '$1 ~ /^tollgate_rate_limited_total/ { s += $2 } END { printf "%.0f", s }' "$WORK/metrics-$round.prom")
    if [[ $BACKEND == redis ]]; then
        # With on_failure: open a Redis problem would quietly make this a local run.
        msum() { awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%.0f", s }' "$WORK/metrics-$round.prom"; }
        up=$(msum tollgate_limits_backend_up)
        calls=$(msum tollgate_limits_backend_calls_total)
        unavailable=$(msum tollgate_limits_backend_unavailable_total)
        [[ $up == 1 && $unavailable == 0 && $calls -gt 0 ]] ||
            fail "round $round: Redis was not used throughout (up=$up calls=$calls unavailable=$unavailable)"
    fi
    ((bad == 0)) || fail "round $round: $bad answers were not a 200 with choices"
    ((mismatch == 0)) || fail "round $round: $mismatch answers whose x-ratelimit-* headers did not match their key"
    ((limited == 0)) || fail "round $round: tollgate_rate_limited_total = $limited"
    ((FAILED == 0)) || die "round $round failed (work dir $WORK)"
    printf 'round %d: A p50 %s µs, B p50 %s µs (B - A %+d µs; per tenth of the run: %s; adjacent pairs median %+d µs); p90 %s / %s; p99 %s / %s; gateway overhead p50 %s / %s µs; %s + %s requests\n' \
        "$round" "$(kv "$line" a_p50)" "$(kv "$line" b_p50)" "$(kv "$line" diff_p50)" "$(kv "$line" block_diffs)" \
        "$(kv "$line" paired_median)" "$(kv "$line" a_p90)" "$(kv "$line" b_p90)" "$(kv "$line" a_p99)" \
        "$(kv "$line" b_p99)" "$(kv "$line" a_overhead_p50)" "$(kv "$line" b_overhead_p50)" "$(kv "$line" a_n)" "$(kv "$line" b_n)"
    if [[ -n ${AB_GUARD:-} ]]; then
        # B's guardrail check alone (tollgate_guardrail_check_seconds, warm-up included): its
        # mean, and the bucket bound half of the checks fell within.
        awk '$1 == "tollgate_guardrail_check_seconds_sum" { s = $2 }
             $1 == "tollgate_guardrail_check_seconds_count" { c = $2 }
             /^tollgate_guardrail_check_seconds_bucket/ { match($0, /le="[^"]*"/); le[++n] = substr($0, RSTART + 4, RLENGTH - 5); v[n] = $2 }
             END {
                 if (c == 0) { print "         guardrail check: no samples"; exit }
                 for (i = 1; i <= n; i++) if (v[i] >= c / 2) { half = le[i]; break }
                 within = (half == "+Inf") ? "over 100 ms" : sprintf("within %g µs", half * 1e6)
                 printf "         guardrail check (B): mean %.1f µs over %d checks; half of them %s\n", s / c * 1e6, c, within
             }' "$WORK/metrics-$round.prom"
    fi
    cdiff=- cpaired=- cblocks=-
    if ((CONTROL)); then
        wrk_ab "$DURATION" "$WORK/control-$round.txt" "$CONTROL_PORT"
        cline=$(grep '^AB_RESULT ' "$WORK/control-$round.txt")
        (($(kv "$cline" bad) == 0)) || fail "round $round: the control's answers were not all a 200 with choices"
        (($(kv "$cline" header_mismatch) == 0)) || fail "round $round: the control's x-ratelimit-* headers did not match its keys"
        ((FAILED == 0)) || die "round $round failed (work dir $WORK)"
        cdiff=$(kv "$cline" diff_p50) cpaired=$(kv "$cline" paired_median) cblocks=$(kv "$cline" block_diffs)
        printf '         control: A p50 %s µs, B p50 %s µs (B - A %+d µs; per tenth of the run: %s; adjacent pairs median %+d µs); %s + %s requests\n' \
            "$(kv "$cline" a_p50)" "$(kv "$cline" b_p50)" "$cdiff" "$cblocks" "$cpaired" "$(kv "$cline" a_n)" "$(kv "$cline" b_n)"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$(kv "$line" a_p50)" "$(kv "$line" b_p50)" \
        "$(kv "$line" diff_p50)" "$(kv "$line" paired_median)" "$(kv "$line" block_diffs)" \
        "$(kv "$line" a_p90)" "$(kv "$line" b_p90)" "$(kv "$line" a_n)" "$(kv "$line" b_n)" "$cdiff" "$cpaired" >>"$ROWS"
done

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { cut -f "$1" "$ROWS"; }
BLOCKS_ALL=$(cut -f 6 "$ROWS" | tr ',' '\n' | grep -v '^-$' || true)
A50=$(col 2 | median)
B50=$(col 3 | median)
D50=$(col 4 | median)
echo
echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| round | A p50 µs | B p50 µs | B − A µs | per tenth of the run, B − A µs | adjacent pairs, median B − A µs | A p90 | B p90 | requests A + B | control: B − A µs (pairs) |"
echo "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"
awk -F'\t' '{ c = ($11 == "-") ? "-" : sprintf("%+d (%+d)", $11, $12)
    printf "| %s | %s | %s | %+d | %s | %+d | %s | %s | %s + %s | %s |\n", $1, $2, $3, $4, $6, $5, $7, $8, $9, $10, c }' "$ROWS"
echo
if [[ -n $BLOCKS_ALL ]]; then
    BMIN=$(sort -g <<<"$BLOCKS_ALL" | head -n 1)
    BMAX=$(sort -g <<<"$BLOCKS_ALL" | tail -n 1)
    BMED=$(median <<<"$BLOCKS_ALL")
    BPOS=$(awk '$1 > 0 { n++ } END { print n + 0 }' <<<"$BLOCKS_ALL")
    BN=$(wc -l <<<"$BLOCKS_ALL")
    echo "Medians over $ROUNDS round(s): A p50 $A50 µs, B p50 $B50 µs, B − A $D50 µs ($(awk -v a="$A50" -v d="$D50" 'BEGIN { printf "%+.1f %%", 100 * d / a }'))."
    echo "Over all $BN tenths: B − A median $BMED µs, range $BMIN … $BMAX µs; B slower in $BPOS of $BN."
fi
if ((CONTROL)); then
    C50=$(col 11 | median)
    P50=$(col 5 | median)
    CP50=$(col 12 | median)
    echo "The six headers alone (the control): B − A median $C50 µs (adjacent pairs $CP50 µs)."
    echo "The limiter beyond its headers: $(awk -v d="$D50" -v c="$C50" 'BEGIN { printf "%+g", d - c }') µs at p50 (adjacent pairs: $(awk -v d="$P50" -v c="$CP50" 'BEGIN { printf "%+g", d - c }') µs)."
fi
