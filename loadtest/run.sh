#!/usr/bin/env bash
# Tollgate load test: the same chat load first straight at the mock provider, then through the
# gateway (client -> tollgate -> mock), for non-streamed (json) and streamed (stream) requests.
# Prints requests/s, p50/p99 latency, the latency the gateway adds, the throughput ratio and the
# gateway's CPU time per request, then a markdown table. See loadtest/README.md.
#
#   bash loadtest/run.sh                       # 32 connections, 15 s per run, json + stream
#   CONNECTIONS=64 DURATION=30 ROUNDS=3 bash loadtest/run.sh
#   GUARD='{ pii: redact, secrets: redact }' BODY=loadtest/body-pii.json MODES=json bash loadtest/run.sh
#       # every request through a guardrail policy (compare with the same BODY and no GUARD)
#
# Loopback only; every process it starts is stopped on exit (also on error or Ctrl-C).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

CONNECTIONS=${CONNECTIONS:-32}    # concurrent connections (k6: VUs)
DURATION=${DURATION:-15}          # seconds per measured run
WARMUP=${WARMUP:-2}               # seconds of unmeasured load before each measured run (0: none)
ROUNDS=${ROUNDS:-1}               # repeat the whole set; with >1 a table of medians is added
MODES=${MODES:-json stream}       # which request kinds to run
TOOL=${TOOL:-auto}                # auto | k6 | oha | wrk
CHUNKS=${CHUNKS:-16}              # content chunks per mock answer (SSE events in stream mode)
WRK_THREADS=${WRK_THREADS:-1}     # wrk threads (it shares a core with the mock when pinned)
PIN=${PIN:-auto}                  # auto: pin with taskset when there are >= 2 CPUs; off: never
GATEWAY_CPU=${GATEWAY_CPU:-0}     # CPU list for the gateway
LOAD_CPU=${LOAD_CPU:-1}           # CPU list for the mock provider and the load tool
BUILD=${BUILD:-1}                 # 1: `cargo build --release` first (no-op when fresh); 0: don't
KEEP=${KEEP:-0}                   # 1: keep the work dir (logs, config, raw tool output)
CACHE=${CACHE:-0}                 # 1: the gateway caches answers: every request after the first is a hit
GUARD=${GUARD:-}                  # a guardrail policy for every request, e.g. '{ pii: redact, secrets: redact }'
BODY=${BODY:-}                    # the json mode's request body (default loadtest/body-json.json)

die() {
    echo "run.sh: $*" >&2
    exit 1
}
. "$HERE/lib.sh"

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_pos() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
if [[ -n $BODY ]]; then
    [[ -f $BODY ]] || die "BODY: no such file: $BODY"
    BODY=$(realpath "$BODY") # k6 opens files relative to its script
fi
is_pos "$CONNECTIONS" || die "CONNECTIONS must be a positive integer"
is_pos "$DURATION" || die "DURATION must be a positive number of seconds"
is_uint "$WARMUP" || die "WARMUP must be a number of seconds"
is_pos "$ROUNDS" || die "ROUNDS must be a positive integer"
is_pos "$CHUNKS" || die "CHUNKS must be a positive integer"
is_pos "$WRK_THREADS" || die "WRK_THREADS must be a positive integer"
for m in $MODES; do
    [[ $m == json || $m == stream ]] || die "MODES may hold only json and stream, not '$m'"
done

# ---------------------------------------------------------------- tool, binary, work dir

if [[ $TOOL == auto ]]; then
    if command -v k6 >/dev/null; then
        TOOL=k6
    elif command -v oha >/dev/null; then
        TOOL=oha
    elif command -v wrk >/dev/null; then
        TOOL=wrk
    else
        die "no load tool found: install k6, oha or wrk (Debian: apt-get install wrk)"
    fi
fi
case $TOOL in
    k6 | oha | wrk) command -v "$TOOL" >/dev/null || die "TOOL=$TOOL is not on PATH" ;;
    *) die "TOOL must be auto, k6, oha or wrk, not '$TOOL'" ;;
esac
if [[ $TOOL == k6 || $TOOL == oha ]]; then
    command -v jq >/dev/null || die "TOOL=$TOOL needs jq to read its JSON summary"
fi
command -v curl >/dev/null || die "curl is needed for the health checks"

tollgate_binary "$BUILD"

CLK_TCK=$(getconf CLK_TCK)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-loadtest.XXXXXX")
MOCK_PID=
GW_PID=
FAILED=0


cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$GW_PID"
    stop_pid "$MOCK_PID"
    finish_work "$rc"
}
on_exit cleanup

# ---------------------------------------------------------------- helpers

# A loopback TCP port nothing listens on (and not handed out before); sets REPLY.

# utime + stime of a process (all its threads), in clock ticks. Fields 14 and 15 of
# /proc/PID/stat, counted after the ")" that closes the command name.
cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}


# kv LINE KEY: the value of KEY=value in a WRK_RESULT line.
kv() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

# per_req TICKS: CPU ticks spent over the last run, in µs per completed request.
per_req() {
    awk -v t="$1" -v hz="$CLK_TCK" -v n="$R_REQS" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "-" }'
}

alive_or_die() {
    local pid=$1 name=$2 log=$3
    if ! kill -0 "$pid" 2>/dev/null; then
        FAILED=1
        echo "--- $name log ($log), last 100 lines ---" >&2
        tail -n 100 "$log" >&2 || true
        die "$name (pid $pid) died during the load run"
    fi
}

# body_of MODE: the request body file of a mode (BODY replaces the json mode's).
body_of() {
    if [[ $1 == json && -n $BODY ]]; then
        echo "$BODY"
    else
        echo "$HERE/body-$1.json"
    fi
}

# Run the load tool once. Sets R_REQS (completed responses), R_RPS, R_P50/R_P99 (µs), R_BAD
# (non-200 + incomplete bodies + socket errors) and R_DETAIL (status counts and errors).
run_tool() {
    local base=$1 mode=$2 secs=$3 out=$4
    local url=$base/v1/chat/completions body rc=0
    body=$(body_of "$mode")
    case $TOOL in
        wrk)
            BODY_FILE=$body MODE=$mode "${LOAD_PIN[@]}" wrk -t "$WRK_THREADS" -c "$CONNECTIONS" \
                -d "${secs}s" --timeout 30s -s "$HERE/post.lua" "$url" >"$out" 2>&1 || rc=$?
            ((rc == 0)) || { cat "$out" >&2; die "wrk exited with $rc"; }
            local line
            line=$(grep '^WRK_RESULT ' "$out") || { cat "$out" >&2; die "no WRK_RESULT line from post.lua"; }
            R_REQS=$(kv "$line" requests)
            R_RPS=$(awk -v n="$R_REQS" -v d="$(kv "$line" duration_us)" 'BEGIN { printf "%.1f", n / (d / 1e6) }')
            R_P50=$(kv "$line" p50_us)
            R_P99=$(kv "$line" p99_us)
            R_BAD=$(($(kv "$line" bad_status) + $(kv "$line" bad_body) + $(kv "$line" connect_errors) + $(kv "$line" read_errors) + $(kv "$line" write_errors) + $(kv "$line" timeouts)))
            R_DETAIL="statuses=$(kv "$line" statuses) bad_body=$(kv "$line" bad_body) connect=$(kv "$line" connect_errors) read=$(kv "$line" read_errors) write=$(kv "$line" write_errors) timeout=$(kv "$line" timeouts)"
            ;;
        oha)
            local fmt=(--output-format json)
            oha --help 2>&1 | grep -q -- '--output-format' || fmt=(-j)
            "${LOAD_PIN[@]}" oha --no-tui "${fmt[@]}" -z "${secs}s" -c "$CONNECTIONS" -t 30s -m POST \
                -H 'Content-Type: application/json' -H 'Authorization: Bearer test' -D "$body" \
                "$url" >"$out" 2>"$out.err" || rc=$?
            ((rc == 0)) || { cat "$out.err" >&2; die "oha exited with $rc"; }
            R_REQS=$(jq '[.statusCodeDistribution[]] | add // 0' "$out")
            R_RPS=$(jq '.summary.requestsPerSec * 10 | round / 10' "$out")
            R_P50=$(jq '.latencyPercentiles.p50 * 1e6 | round' "$out")
            R_P99=$(jq '.latencyPercentiles.p99 * 1e6 | round' "$out")
            # Requests cut off by the end of the run are not errors.
            local errs ok
            ok=$(jq '.statusCodeDistribution["200"] // 0' "$out")
            errs=$(jq '[.errorDistribution | to_entries[] | select(.key | test("deadline") | not) | .value] | add // 0' "$out")
            R_BAD=$((R_REQS - ok + errs))
            R_DETAIL="statuses=$(jq -c '.statusCodeDistribution' "$out") errors=$(jq -c '.errorDistribution' "$out")"
            ;;
        k6)
            "${LOAD_PIN[@]}" k6 run --quiet --no-color --no-usage-report -e MODE="$mode" -e TARGET="$base" \
                -e BODY_FILE="$(body_of json)" \
                -e VUS="$CONNECTIONS" -e DURATION="${secs}s" -e SUMMARY_FILE="$out.json" \
                "$HERE/chat.js" >"$out" 2>&1 || rc=$?
            # 99: a threshold failed (a check failed); counted below, not fatal here.
            ((rc == 0 || rc == 99)) || { cat "$out" >&2; die "k6 exited with $rc"; }
            R_REQS=$(jq '.requests' "$out.json")
            R_RPS=$(jq '.rps * 10 | round / 10' "$out.json")
            R_P50=$(jq '.p50_ms * 1000 | round' "$out.json")
            R_P99=$(jq '.p99_ms * 1000 | round' "$out.json")
            R_BAD=$(jq '.bad_status + .bad_body | round' "$out.json")
            R_DETAIL="bad_status=$(jq .bad_status "$out.json") bad_body=$(jq .bad_body "$out.json") (per-status counts: $out)"
            ;;
    esac
}

# ---------------------------------------------------------------- start mock and gateway

LOAD_PIN=()
GW_PIN=()
NCPU=$(nproc)
if [[ $PIN != off ]] && command -v taskset >/dev/null && ((NCPU >= 2)); then
    # Gateway alone on GATEWAY_CPU; the mock and the load tool share LOAD_CPU. The gateway is what
    # is measured, so it gets a core nobody else of ours uses; the mock is cheap and the load tool
    # has to run somewhere. A direct run therefore has one core for mock + load tool, a gateway
    # run has that core plus the gateway's.
    LOAD_PIN=(taskset -c "$LOAD_CPU")
    GW_PIN=(taskset -c "$GATEWAY_CPU")
    PINNING="gateway on CPU $GATEWAY_CPU; mock provider + $TOOL on CPU $LOAD_CPU (taskset)"
else
    PINNING="none (PIN=$PIN, $NCPU CPUs, taskset $(command -v taskset >/dev/null && echo found || echo missing))"
fi

free_port
MOCK_PORT=$REPLY
free_port
GW_PORT=$REPLY
free_port
ADMIN_PORT=$REPLY

NO_COLOR=1 "${LOAD_PIN[@]}" "$BIN" mock-provider --listen "127.0.0.1:$MOCK_PORT" --threads 1 \
    --record-limit 1 --chunks "$CHUNKS" >"$WORK/mock.log" 2>&1 &
MOCK_PID=$!

cat >"$WORK/tollgate.yaml" <<EOF
# Written by loadtest/run.sh: one worker thread, one provider (the mock), no reload polling.
server:
  listen: "127.0.0.1:$GW_PORT"
  admin_listen: "127.0.0.1:$ADMIN_PORT"
  threads: 1
  shutdown_grace: 1s
  reload_poll: 0s
auth:
  anonymous_keys: [test]   # the load tools' placeholder key (served anonymously)
providers:
  mock:
    kind: openai_compatible
    base_url: "http://127.0.0.1:$MOCK_PORT/v1"
    api_keys: ["mock-key"]
models:
  demo:
    targets:
      - { provider: mock, model: mock-gpt }
EOF
if [[ $CACHE == 1 || -n $GUARD ]]; then
    printf 'routes:\n  - name: all\n' >>"$WORK/tollgate.yaml"
    # The bodies sample at temperature 0.2: let the route cache them.
    if [[ $CACHE == 1 ]]; then
        printf '    cache: { mode: exact, max_temperature: 1 }\n' >>"$WORK/tollgate.yaml"
    fi
    if [[ -n $GUARD ]]; then
        printf '    guardrails: %s\n' "$GUARD" >>"$WORK/tollgate.yaml"
    fi
fi

# Calls the gateway made to the mock so far (its requests served by provider "mock").
upstream_calls() {
    curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null |
        awk '/^tollgate_requests_total\{/ && /provider="mock"/ { n += $NF } END { printf "%d", n }'
}

# A histogram's totals so far, as "SUM COUNT": the difference of two readings is a run's mean
# per observation. `tollgate_overhead_seconds` is the gateway's own time per request (total minus
# provider waits); `tollgate_guardrail_check_seconds` the guardrail check's (with GUARD).
hist_totals() {
    curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null |
        awk -v n="$1" '$1 == n "_sum" { s = $2 } $1 == n "_count" { c = $2 } END { printf "%s %s", s + 0, c + 0 }'
}

# The mean in µs between the reading "SUM0 COUNT0" and now, of histogram NAME ("-" if none).
hist_mean() {
    local s c
    read -r s c <<<"$(hist_totals "$1")"
    awk -v s="$s" -v c="$c" -v s0="${2% *}" -v c0="${2#* }" \
        'BEGIN { if (c > c0) printf "%.1f", (s - s0) / (c - c0) * 1e6; else printf "-" }'
}

NO_COLOR=1 "${GW_PIN[@]}" "$BIN" run --config "$WORK/tollgate.yaml" --runtime-dir "$WORK" >"$WORK/gateway.log" 2>&1 &
GW_PID=$!

wait_ready "http://127.0.0.1:$MOCK_PORT/_mock/health" "$MOCK_PID" "mock provider" "$WORK/mock.log"
wait_ready "http://127.0.0.1:$ADMIN_PORT/ready" "$GW_PID" "gateway" "$WORK/gateway.log"

# One request of each kind through each path before any load: a broken setup fails here, loudly.
for m in $MODES; do
    for base in "http://127.0.0.1:$MOCK_PORT" "http://127.0.0.1:$GW_PORT"; do
        code=$(curl -sS -o "$WORK/smoke.out" -w '%{http_code}' --max-time 10 \
            -H 'Content-Type: application/json' -H 'Authorization: Bearer test' \
            --data-binary "@$(body_of "$m")" "$base/v1/chat/completions") || code=000
        if [[ $code != 200 ]]; then
            FAILED=1
            echo "--- response body ---" >&2
            cat "$WORK/smoke.out" >&2 || true
            echo "--- gateway log ---" >&2
            tail -n 50 "$WORK/gateway.log" >&2 || true
            die "smoke request ($m) to $base answered $code"
        fi
    done
done

cpu_model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
echo "# Tollgate load test"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- machine: ${NCPU} CPUs, ${cpu_model:-unknown CPU}, kernel $(uname -r)"
echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- tollgate: $BIN ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo no-git)$(cd "$ROOT" && git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ', dirty tree'))"
echo "- tool: $TOOL ($("$TOOL" --version 2>&1 | head -n 1)); $CONNECTIONS connections, ${DURATION}s per run, ${WARMUP}s warm-up, $ROUNDS round(s)"
echo "- mock: 1 thread, $CHUNKS content chunks per answer; gateway: server.threads 1"
echo "- json body: $(body_of json); guardrails: ${GUARD:-none}; cache: $([[ $CACHE == 1 ]] && echo on || echo off)"
echo "- pinning: $PINNING"
echo

# ---------------------------------------------------------------- the runs

ROWS=$WORK/rows.tsv
: >"$ROWS"

for ((round = 1; round <= ROUNDS; round++)); do
    for mode in $MODES; do
        direct_rps=
        direct_p50=
        for path in direct gateway; do
            if [[ $path == direct ]]; then
                base="http://127.0.0.1:$MOCK_PORT"
            else
                base="http://127.0.0.1:$GW_PORT"
            fi
            if ((WARMUP > 0)); then
                run_tool "$base" "$mode" "$WARMUP" "$WORK/warmup-$round-$mode-$path.out"
            fi
            calls0=$(upstream_calls)
            overhead0=$(hist_totals tollgate_overhead_seconds)
            check0=$(hist_totals tollgate_guardrail_check_seconds)
            gw0=$(cpu_ticks "$GW_PID")
            mock0=$(cpu_ticks "$MOCK_PID")
            run_tool "$base" "$mode" "$DURATION" "$WORK/run-$round-$mode-$path.out"
            gw1=$(cpu_ticks "$GW_PID")
            mock1=$(cpu_ticks "$MOCK_PID")
            alive_or_die "$MOCK_PID" "mock provider" "$WORK/mock.log"
            alive_or_die "$GW_PID" "gateway" "$WORK/gateway.log"

            mock_cpu=$(per_req $((mock1 - mock0)))
            if [[ $path == direct ]]; then
                direct_rps=$R_RPS
                direct_p50=$R_P50
                gw_cpu=-
                added=-
                ratio=-
                echo "round $round, $mode, direct:  $R_REQS requests, $R_RPS req/s, p50 ${R_P50} µs, p99 ${R_P99} µs, errors $R_BAD; mock CPU ${mock_cpu} µs/req"
            else
                gw_cpu=$(per_req $((gw1 - gw0)))
                added=$((R_P50 - direct_p50))
                ratio=$(awk -v g="$R_RPS" -v d="$direct_rps" 'BEGIN { printf "%.2f", g / d }')
                echo "round $round, $mode, gateway: $R_REQS requests, $R_RPS req/s, p50 ${R_P50} µs, p99 ${R_P99} µs, errors $R_BAD; added p50 ${added} µs, throughput ratio ${ratio}, gateway CPU ${gw_cpu} µs/req, mock CPU ${mock_cpu} µs/req; upstream calls $(($(upstream_calls) - calls0)); gateway time $(hist_mean tollgate_overhead_seconds "$overhead0") µs/req (mean)$([[ -n $GUARD ]] && echo "; guardrail check $(hist_mean tollgate_guardrail_check_seconds "$check0") µs/req (mean)")"
            fi
            if ((R_BAD > 0)); then
                FAILED=1
                echo "  !! $R_BAD failed requests on the $path path ($mode): $R_DETAIL" >&2
                if [[ $path == gateway ]]; then
                    echo "  --- gateway log, last 40 lines ($WORK/gateway.log) ---" >&2
                    tail -n 40 "$WORK/gateway.log" >&2 || true
                fi
            fi
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "$path" \
                "$R_REQS" "$R_RPS" "$R_P50" "$R_P99" "$R_BAD" "$added" "$ratio" "$gw_cpu" "$mock_cpu" >>"$ROWS"
        done
    done
done

curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" >"$WORK/metrics.txt" 2>/dev/null || true
echo
echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- gateway /metrics (all runs incl. warm-up and smoke requests):"
grep -E '^tollgate_(requests_total|upstream_errors_total|fallbacks_total|cache_requests_total)' "$WORK/metrics.txt" | sed 's/^/    /' || echo "    (none)"
if grep -qE '\b(ERROR|WARN)\b' "$WORK/gateway.log"; then
    echo "- gateway log has $(grep -cE '\b(ERROR|WARN)\b' "$WORK/gateway.log") WARN/ERROR lines; first 5:"
    grep -E '\b(ERROR|WARN)\b' "$WORK/gateway.log" | head -n 5 | sed 's/^/    /'
fi

# ---------------------------------------------------------------- tables

HEADER='| round | mode | path | requests | req/s | p50 µs | p99 µs | errors | added p50 µs | throughput ratio | gateway CPU µs/req | mock CPU µs/req |'
RULE='|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|'
echo
echo "$HEADER"
echo "$RULE"
awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 }' "$ROWS"

median_col() { # median of column $3 over rows with mode $1 and path $2 ("-" if none numeric)
    awk -F'\t' -v m="$1" -v p="$2" -v c="$3" '$2 == m && $3 == p && $c != "-" { print $c }' "$ROWS" |
        sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
if ((ROUNDS > 1)); then
    echo
    echo "Medians over $ROUNDS rounds (each column separately):"
    echo
    echo "${HEADER/| round /| rounds }"
    echo "$RULE"
    for mode in $MODES; do
        for path in direct gateway; do
            row="| $ROUNDS | $mode | $path |"
            for c in 4 5 6 7 8 9 10 11 12; do
                row+=" $(median_col "$mode" "$path" "$c") |"
            done
            echo "$row"
        done
    done
fi

if ((FAILED)); then
    echo >&2
    die "some requests failed (see above); logs in $WORK"
fi
