#!/usr/bin/env bash
# Tollgate spend-ledger check under load: mixed chat traffic (5 teams x 8 features, two priced
# models, JSON and streamed answers) through the gateway into a PostgreSQL ledger, with the
# database stopped hard for the middle third of the run. Afterwards, once the ledger has caught
# up, it checks that
#   - the ledger holds one record per request the gateway answered (and at least as many as wrk
#     completed),
#   - its token totals equal what the mock provider reported (GET /_mock/usage),
#   - its cost equals the mock's tokens priced by the configured table,
#   - /metrics shows the same totals,
#   - the spend API grouped by team,feature has every pair the load used, summing to the totals,
#   - records really were spilled during the outage and none was dropped,
# prints a report and exits non-zero on any mismatch. See loadtest/README.md.
#
#   bash loadtest/ledger.sh                   # 40 s of load, PostgreSQL down from ~13 s to ~26 s
#   DURATION=30 CONNECTIONS=32 bash loadtest/ledger.sh
#
# Loopback only; every process it starts, and the PostgreSQL instance, is stopped on exit (also
# on error or Ctrl-C).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

DURATION=${DURATION:-40}          # seconds of load (wrk -d)
CONNECTIONS=${CONNECTIONS:-16}    # concurrent connections
WRK_THREADS=${WRK_THREADS:-2}     # wrk threads
DRAIN=${DRAIN:-3}                 # last seconds of the run: only GET /v1/models (see ledger.lua)
CATCHUP=${CATCHUP:-90}            # longest wait, in seconds, for the ledger to catch up afterwards
CHUNKS=${CHUNKS:-32}              # mock content chunks per answer (requests cap it with max_tokens)
BARE_STREAMS=${BARE_STREAMS:-0}   # percent of streams without include_usage (> 0: see README)
PIN=${PIN:-auto}                  # auto: pin with taskset when there are >= 2 CPUs; off: never
GATEWAY_CPU=${GATEWAY_CPU:-0}     # CPU list for the gateway
LOAD_CPU=${LOAD_CPU:-1}           # CPU list for the mock, wrk and PostgreSQL
BUILD=${BUILD:-1}                 # 1: `cargo build --release` first (no-op when fresh); 0: don't
KEEP=${KEEP:-0}                   # 1: keep the work dir (logs, config, raw answers)

die() {
    echo "ledger.sh: $*" >&2
    exit 1
}
. "$HERE/lib.sh"

is_pos() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
is_pos "$DURATION" || die "DURATION must be a positive number of seconds"
is_pos "$CONNECTIONS" || die "CONNECTIONS must be a positive integer"
is_pos "$WRK_THREADS" || die "WRK_THREADS must be a positive integer"
is_pos "$DRAIN" || die "DRAIN must be a positive number of seconds"
is_pos "$CATCHUP" || die "CATCHUP must be a positive number of seconds"
is_pos "$CHUNKS" || die "CHUNKS must be a positive integer"
if ! [[ $BARE_STREAMS =~ ^[0-9]+$ ]] || ((BARE_STREAMS > 100)); then
    die "BARE_STREAMS must be a percentage"
fi
((DURATION >= 12)) || die "DURATION must be at least 12 s (a third of it is the outage, the last $DRAIN s drain)"
((DRAIN * 4 <= DURATION)) || die "DRAIN must be at most a quarter of DURATION"

# ---------------------------------------------------------------- packages, binary, work dir

need=()
command -v jq >/dev/null || need+=(jq)
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null || need+=(postgresql)
install_missing "${need[@]}"

tollgate_binary "$BUILD"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-ledger.XXXXXX")
chmod 0755 "$WORK" # as root, PostgreSQL runs as `postgres` and must reach $WORK/pg
PG_DIR=$WORK/pg
PG_STARTED=0
MOCK_PID=
GW_PID=
WRK_PID=
SAMPLER_PID=
FAILED=0


cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    term_pid "$SAMPLER_PID"
    term_pid "$WRK_PID"
    stop_pid "$GW_PID"
    stop_pid "$MOCK_PID"
    if ((PG_STARTED)); then
        bash "$ROOT/scripts/pg.sh" stop "$PG_DIR" immediate >/dev/null 2>&1 || true
    fi
    finish_work "$rc"
}
on_exit cleanup

# ---------------------------------------------------------------- helpers

# A loopback TCP port nothing listens on (and not handed out before); sets REPLY. Taken below the
# kernel's ephemeral range when there is room, so an outgoing connection (to PostgreSQL, say)
# cannot grab it between this check and the bind.


alive_or_die() {
    local pid=$1 name=$2 log=$3
    if ! kill -0 "$pid" 2>/dev/null; then
        FAILED=1
        echo "--- $name log ($log), last 100 lines ---" >&2
        tail -n 100 "$log" >&2 || true
        die "$name (pid $pid) died during the run"
    fi
}

# kv LINE KEY: the value of KEY=value in a LEDGER_WRK line.
kv() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# Every 0.5 s until killed: seconds since T0, store_up, spilled, spill_pending, queue depth.
sampler() {
    local f=$WORK/sample.txt
    while :; do
        if curl -fsS --max-time 1 "http://127.0.0.1:$ADMIN_PORT/metrics" >"$f" 2>/dev/null; then
            printf '%s\t%s\t%s\t%s\t%s\n' "$(elapsed "$T0")" "$(msum "$f" tollgate_ledger_store_up)" \
                "$(msum "$f" tollgate_ledger_spilled_total)" "$(msum "$f" tollgate_ledger_spill_pending)" \
                "$(msum "$f" tollgate_ledger_queue_depth)" >>"$WORK/timeline.tsv"
        fi
        sleep 0.5
    done
}

# ---------------------------------------------------------------- start PostgreSQL, mock, gateway

LOAD_PIN=()
GW_PIN=()
NCPU=$(nproc)
if [[ $PIN != off ]] && command -v taskset >/dev/null && ((NCPU >= 2)); then
    LOAD_PIN=(taskset -c "$LOAD_CPU")
    GW_PIN=(taskset -c "$GATEWAY_CPU")
    PINNING="gateway on CPU $GATEWAY_CPU; mock, wrk and PostgreSQL on CPU $LOAD_CPU (taskset)"
else
    PINNING="none (PIN=$PIN, $NCPU CPUs)"
fi

free_port
PG_PORT=$REPLY
free_port
MOCK_PORT=$REPLY
free_port
GW_PORT=$REPLY
free_port
ADMIN_PORT=$REPLY
TOKEN="ledger-check-$RANDOM$RANDOM"

pg() { "${LOAD_PIN[@]}" bash "$ROOT/scripts/pg.sh" "$@"; }
PG_STARTED=1
pg start "$PG_DIR" "$PG_PORT" || die "PostgreSQL did not start (log: $PG_DIR/server.log)"

NO_COLOR=1 "${LOAD_PIN[@]}" "$BIN" mock-provider --listen "127.0.0.1:$MOCK_PORT" --threads 1 \
    --record-limit 0 --chunks "$CHUNKS" >"$WORK/mock.log" 2>&1 &
MOCK_PID=$!

# Prices in USD per 1M tokens. mock-gpt-mini's come to fractions of a nano-USD per token, so the
# gateway's per-request rounding shows up in the cost check.
A_MODEL=mock-gpt A_IN=2.5 A_OUT=10
B_MODEL=mock-gpt-mini B_IN=0.0375 B_OUT=0.15
cat >"$WORK/tollgate.yaml" <<EOF
# Written by loadtest/ledger.sh.
server:
  listen: "127.0.0.1:$GW_PORT"
  admin_listen: "127.0.0.1:$ADMIN_PORT"
  threads: 1
  shutdown_grace: 1s
  reload_poll: 0s
auth:
  anonymous_keys: [test]   # the load scripts' placeholder key (served anonymously)
providers:
  mock:
    kind: openai_compatible
    base_url: "http://127.0.0.1:$MOCK_PORT/v1"
    api_keys: ["mock-key"]
models:
  chat-a:
    targets:
      - { provider: mock, model: $A_MODEL }
  chat-b:
    targets:
      - { provider: mock, model: $B_MODEL }
usage:
  ledger: "postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  spill_dir: "$WORK/spill"
  access_log: "off"
pricing:
  models:
    - { provider: mock, model: $A_MODEL, input: $A_IN, output: $A_OUT }
    - { provider: mock, model: $B_MODEL, input: $B_IN, output: $B_OUT }
admin:
  token: "$TOKEN"
EOF

NO_COLOR=1 "${GW_PIN[@]}" "$BIN" run --config "$WORK/tollgate.yaml" --runtime-dir "$WORK" >"$WORK/gateway.log" 2>&1 &
GW_PID=$!

wait_ready "http://127.0.0.1:$MOCK_PORT/_mock/health" "$MOCK_PID" "mock provider" "$WORK/mock.log"
wait_ready "http://127.0.0.1:$ADMIN_PORT/ready" "$GW_PID" "gateway" "$WORK/gateway.log"
# The admin listener can be up before the data plane's (Pingora retries a busy port).
wait_listener "$GW_PORT" || true
for ((i = 0; i < 100; i++)); do
    scrape "$WORK/metrics-start.txt" || true
    [[ $(msum "$WORK/metrics-start.txt" tollgate_ledger_store_up) == 1 ]] && break
    sleep 0.1
done
[[ $(msum "$WORK/metrics-start.txt" tollgate_ledger_store_up) == 1 ]] ||
    { tail -n 30 "$WORK/gateway.log" >&2; die "the gateway's ledger store is not up"; }

# The spend queries ask for the run's window explicitly (Unix seconds, with a minute of slack).
RUN_FROM=$(($(date +%s) - 60))

# One request of each kind before the load: a broken setup fails here, loudly.
for body in '{"model":"chat-a","messages":[{"role":"user","content":"smoke"}]}' \
    '{"model":"chat-b","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"smoke"}]}'; do
    code=$(curl -sS -o "$WORK/smoke.out" -w '%{http_code}' --max-time 10 -H 'Content-Type: application/json' \
        -H 'x-tollgate-team: team-1' -H 'x-tollgate-feature: feature-1' \
        --data-binary "$body" "http://127.0.0.1:$GW_PORT/v1/chat/completions") || code=000
    if [[ $code != 200 ]]; then
        FAILED=1
        cat "$WORK/smoke.out" >&2 || true
        tail -n 30 "$WORK/gateway.log" >&2 || true
        die "smoke request answered $code"
    fi
done

# ---------------------------------------------------------------- the run, with the outage

OUT_AT=$((DURATION / 3))
OUT_FOR=$((DURATION / 3))
cpu_model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
echo "# Tollgate spend-ledger check"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- machine: ${NCPU} CPUs, ${cpu_model:-unknown CPU}, kernel $(uname -r)"
echo "- tollgate: $BIN ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo no-git)$(cd "$ROOT" && git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ', dirty tree'))"
echo "- load: wrk ($(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2)), $WRK_THREADS threads, $CONNECTIONS connections, ${DURATION}s (last ${DRAIN}s: GET /v1/models only); streams without include_usage: ${BARE_STREAMS}%"
echo "- ledger: PostgreSQL $(compgen -G '/usr/lib/postgresql/*' | sort -V | tail -n 1 | xargs -r basename) on 127.0.0.1:$PG_PORT; stopped (immediate) at ~${OUT_AT}s for ~${OUT_FOR}s"
echo "- prices (USD/1M in/out): $A_MODEL (alias chat-a) $A_IN/$A_OUT, $B_MODEL (alias chat-b) $B_IN/$B_OUT"
echo "- pinning: $PINNING"
echo

T0=$(date +%s.%N)
ACTIVE_SECONDS=$((DURATION - DRAIN)) MODELS=chat-a,chat-b TEAMS=5 FEATURES=8 BARE_STREAMS=$BARE_STREAMS \
    "${LOAD_PIN[@]}" wrk -t "$WRK_THREADS" -c "$CONNECTIONS" -d "${DURATION}s" --timeout 30s \
    -s "$HERE/ledger.lua" "http://127.0.0.1:$GW_PORT" >"$WORK/wrk.out" 2>&1 &
WRK_PID=$!
sampler &
SAMPLER_PID=$!

sleep "$OUT_AT"
alive_or_die "$GW_PID" "gateway" "$WORK/gateway.log"
pg stop "$PG_DIR" immediate || die "could not stop PostgreSQL"
PG_DOWN_AT=$(elapsed "$T0")
echo "- $PG_DOWN_AT s: PostgreSQL stopped (immediate)"
sleep 2
scrape "$WORK/metrics-outage.txt" || true
echo "- $(elapsed "$T0") s: during the outage: store_up=$(msum "$WORK/metrics-outage.txt" tollgate_ledger_store_up)" \
    "spilled=$(msum "$WORK/metrics-outage.txt" tollgate_ledger_spilled_total)" \
    "spill_pending=$(msum "$WORK/metrics-outage.txt" tollgate_ledger_spill_pending)" \
    "queue=$(msum "$WORK/metrics-outage.txt" tollgate_ledger_queue_depth)" \
    "requests=$(msum "$WORK/metrics-outage.txt" tollgate_requests_total)"
sleep $((OUT_FOR - 2))
echo "- $(elapsed "$T0") s: starting PostgreSQL again (crash recovery first)"
pg start "$PG_DIR" "$PG_PORT" || die "PostgreSQL did not restart (log: $PG_DIR/server.log)"
PG_UP_AT=$(elapsed "$T0")
echo "- $PG_UP_AT s: PostgreSQL accepts connections again"

rc=0
wait "$WRK_PID" || rc=$?
WRK_PID=
((rc == 0)) || { cat "$WORK/wrk.out" >&2; die "wrk exited with $rc"; }
echo "- $(elapsed "$T0") s: load finished"
alive_or_die "$GW_PID" "gateway" "$WORK/gateway.log"
alive_or_die "$MOCK_PID" "mock provider" "$WORK/mock.log"
WRK_LINE=$(grep '^LEDGER_WRK ' "$WORK/wrk.out") || { cat "$WORK/wrk.out" >&2; die "no LEDGER_WRK line from ledger.lua"; }
PAIRS_LINE=$(grep '^LEDGER_PAIRS ' "$WORK/wrk.out") || die "no LEDGER_PAIRS line from ledger.lua"

# ---------------------------------------------------------------- wait for the ledger to catch up

# Caught up: nothing queued, nothing in spill files, the store up, and every record the gateway
# made (one per request it answered) written, spilled (and since replayed) or dropped.
caught_up=0
for ((i = 0; i < CATCHUP * 2; i++)); do
    if scrape "$WORK/metrics.txt"; then
        M_REQ=$(msum "$WORK/metrics.txt" tollgate_requests_total)
        resolved=$(($(msum "$WORK/metrics.txt" tollgate_ledger_written_total) + $(msum "$WORK/metrics.txt" tollgate_ledger_spilled_total) + $(msum "$WORK/metrics.txt" tollgate_ledger_dropped_total)))
        if [[ $(msum "$WORK/metrics.txt" tollgate_ledger_queue_depth) == 0 &&
            $(msum "$WORK/metrics.txt" tollgate_ledger_spill_pending) == 0 &&
            $(msum "$WORK/metrics.txt" tollgate_ledger_store_up) == 1 &&
            $resolved == "$M_REQ" ]]; then
            caught_up=1
            break
        fi
    fi
    sleep 0.5
done
CAUGHT_AT=$(elapsed "$T0")
echo "- $CAUGHT_AT s: ledger $( ((caught_up)) && echo caught up || echo "NOT caught up after ${CATCHUP}s")"
term_pid "$SAMPLER_PID"
SAMPLER_PID=
# From the samples: when the gateway saw the store go and come back, and when the spill was empty.
awk -F'\t' -v up="$PG_UP_AT" -v caught="$CAUGHT_AT" '
    $2 == 0 && d == "" { d = $1 }
    d != "" && $2 == 1 && u == "" { u = $1 }
    u != "" && $4 == 0 && r == "" { r = $1 }
    { if ($4 > peak) peak = $4 }
    END {
        if (r == "") r = caught
        printf "- gateway view (0.5 s samples): store down from %s s, up again at %s s (%.1f s after PostgreSQL accepted connections);", d, u, u - up
        printf " spill files peaked at %d records and were replayed by %s s\n", peak, r
    }' "$WORK/timeline.tsv"
echo

RUN_TO=$(($(date +%s) + 60))
spend_api() { # spend_api QUERY OUT
    curl -fsS --max-time 10 -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ADMIN_PORT/admin/spend?$1" >"$2" ||
        die "GET /admin/spend?$1 failed"
}
spend_api "from=$RUN_FROM&to=$RUN_TO&group_by=team,feature" "$WORK/spend.json"
spend_api "from=$RUN_FROM&to=$RUN_TO&group_by=model" "$WORK/spend-model.json"
spend_api "group_by=team" "$WORK/spend-default.json" # the default window, for the note below
curl -fsS --max-time 5 "http://127.0.0.1:$MOCK_PORT/_mock/usage" >"$WORK/mock-usage.json" ||
    die "GET /_mock/usage failed"
"$BIN" spend --config "$WORK/tollgate.yaml" --from "$RUN_FROM" --to "$RUN_TO" -g team,feature --json \
    >"$WORK/spend-cli.json" 2>"$WORK/spend-cli.err" || { cat "$WORK/spend-cli.err" >&2; die "tollgate spend failed"; }
scrape "$WORK/metrics.txt" || die "GET /metrics failed"

# ---------------------------------------------------------------- the checks

CHECKS=0
check() { # check NAME OK(0/1) DETAIL
    CHECKS=$((CHECKS + 1))
    if [[ $2 == 1 ]]; then
        printf '| ok | %s | %s |\n' "$1" "$3"
    else
        FAILED=1
        printf '| **MISMATCH** | %s | %s |\n' "$1" "$3"
    fi
}
eq() { [[ $1 == "$2" ]] && echo 1 || echo 0; }
j() { jq -r "$1" "$2"; }

W_REQ=$(kv "$WRK_LINE" requests)
W_BAD=$(($(kv "$WRK_LINE" bad_status) + $(kv "$WRK_LINE" bad_body)))
W_ERRS="connect=$(kv "$WRK_LINE" connect_errors) read=$(kv "$WRK_LINE" read_errors) write=$(kv "$WRK_LINE" write_errors) timeout=$(kv "$WRK_LINE" timeouts)"
M_REQ=$(msum "$WORK/metrics.txt" tollgate_requests_total)
M_PROMPT=$(msum "$WORK/metrics.txt" tollgate_tokens_total 'type="prompt"')
M_COMPLETION=$(msum "$WORK/metrics.txt" tollgate_tokens_total 'type="completion"')
M_COST=$(msum "$WORK/metrics.txt" tollgate_cost_usd_total)
M_SPILLED=$(msum "$WORK/metrics.txt" tollgate_ledger_spilled_total)
M_REPLAYED=$(msum "$WORK/metrics.txt" tollgate_ledger_replayed_total)
M_WRITTEN=$(msum "$WORK/metrics.txt" tollgate_ledger_written_total)
M_DROPPED=$(msum "$WORK/metrics.txt" tollgate_ledger_dropped_total)
M_WERR=$(msum "$WORK/metrics.txt" tollgate_ledger_write_errors_total)
L_REQ=$(j .totals.requests "$WORK/spend.json")
L_ERR=$(j .totals.errors "$WORK/spend.json")
L_PROMPT=$(j .totals.prompt_tokens "$WORK/spend.json")
L_COMPLETION=$(j .totals.completion_tokens "$WORK/spend.json")
L_CACHED=$(j .totals.cached_tokens "$WORK/spend.json")
L_COST=$(j .totals.cost_nanos "$WORK/spend.json")
L_EST=$(j .totals.estimated_requests "$WORK/spend.json")
L_UNPRICED=$(j .totals.unpriced_requests "$WORK/spend.json")
K_REQ=$(j .totals.requests "$WORK/mock-usage.json")
K_PROMPT=$(j .totals.prompt_tokens "$WORK/mock-usage.json")
K_COMPLETION=$(j .totals.completion_tokens "$WORK/mock-usage.json")
K_CACHED=$(j .totals.cached_tokens "$WORK/mock-usage.json")
K_UNREP=$(j .totals.unreported.requests "$WORK/mock-usage.json")
# Σ over models of the mock's tokens × the table's prices (USD per 1M tokens = nano-USD per 1000).
EXPECTED=$(jq -r --argjson p "{\"$A_MODEL\": [$A_IN, $A_OUT], \"$B_MODEL\": [$B_IN, $B_OUT]}" \
    '[.models | to_entries[] | (.value.prompt_tokens * $p[.key][0] + .value.completion_tokens * $p[.key][1]) * 1000] | add // 0' \
    "$WORK/mock-usage.json")

echo "Load: wrk completed $W_REQ responses ($(kv "$WRK_LINE" ok) ok, $W_BAD bad; statuses $(kv "$WRK_LINE" statuses);" \
    "socket errors $W_ERRS); sent json=$(kv "$WRK_LINE" json) stream=$(kv "$WRK_LINE" stream)" \
    "stream_bare=$(kv "$WRK_LINE" stream_bare) models=$(kv "$WRK_LINE" models); plus 2 smoke requests."
echo "Ledger: written $M_WRITTEN directly, spilled $M_SPILLED during the outage and replayed $M_REPLAYED," \
    "dropped $M_DROPPED, $M_WERR failed writes."
echo "Mock: $K_REQ answers with usage (unreported: $K_UNREP), per model:" \
    "$(jq -c '.models | map_values({requests, prompt_tokens, completion_tokens})' "$WORK/mock-usage.json")."
echo
echo "| result | check | detail |"
echo "|---|---|---|"

check "load answered" "$(((W_BAD == 0) ? 1 : 0))" "wrk saw $W_BAD non-200 or incomplete answers while the database was down and up"
check "ledger requests = gateway requests" "$(eq "$L_REQ" "$M_REQ")" \
    "spend API $L_REQ, Σ tollgate_requests_total $M_REQ"
check "ledger requests ≥ wrk completed" "$(((L_REQ >= W_REQ) ? 1 : 0))" "$L_REQ ≥ $W_REQ (wrk does not count the smoke requests or what it cut at the end)"
check "ledger prompt tokens = mock" "$(eq "$L_PROMPT" "$K_PROMPT")" "$L_PROMPT vs $K_PROMPT"
check "ledger completion tokens = mock" "$(eq "$L_COMPLETION" "$K_COMPLETION")" "$L_COMPLETION vs $K_COMPLETION"
check "ledger cached tokens = mock" "$(eq "$L_CACHED" "$K_CACHED")" "$L_CACHED vs $K_CACHED"
check "all usage provider-reported" "$((L_EST == 0 && K_UNREP == 0 ? 1 : 0))" \
    "ledger estimated_requests $L_EST, mock unreported $K_UNREP (both 0: every token in the ledger came from a provider's usage object)"
check "ledger requests with usage = mock answers" \
    "$(eq "$(jq '[.groups[] | select(.model != null) | .requests] | add // 0' "$WORK/spend-model.json")" "$K_REQ")" \
    "$(jq -r '[.groups[] | select(.model != null) | .requests] | add // 0' "$WORK/spend-model.json") chat records vs $K_REQ mock answers; $L_ERR errors, $L_UNPRICED unpriced"
cost_ok=$(awk -v l="$L_COST" -v e="$EXPECTED" -v n="$L_REQ" 'BEGIN { d = l - e; if (d < 0) d = -d; print (d <= n) ? 1 : 0 }')
check "ledger cost = mock tokens × prices" "$cost_ok" \
    "$L_COST vs $(awk -v e="$EXPECTED" 'BEGIN { printf "%.1f", e }') nano-USD, |Δ| $(awk -v l="$L_COST" -v e="$EXPECTED" 'BEGIN { d = l - e; printf "%.1f", (d < 0 ? -d : d) }') ≤ $L_REQ (1 nano-USD per request: the gateway rounds each request's cost to a nano-USD, so totals can differ by that much)"
# Per model: the ledger's alias groups against the mock's model.
for pair in "chat-a:$A_MODEL:$A_IN:$A_OUT" "chat-b:$B_MODEL:$B_IN:$B_OUT"; do
    IFS=: read -r alias model pin pout <<<"$pair"
    lp=$(jq --arg m "$alias" '[.groups[] | select(.model == $m) | .prompt_tokens] | add // 0' "$WORK/spend-model.json")
    lc=$(jq --arg m "$alias" '[.groups[] | select(.model == $m) | .completion_tokens] | add // 0' "$WORK/spend-model.json")
    ln=$(jq --arg m "$alias" '[.groups[] | select(.model == $m) | .requests] | add // 0' "$WORK/spend-model.json")
    lcost=$(jq --arg m "$alias" '[.groups[] | select(.model == $m) | .cost_nanos] | add // 0' "$WORK/spend-model.json")
    kp=$(jq --arg m "$model" '.models[$m].prompt_tokens // 0' "$WORK/mock-usage.json")
    kc=$(jq --arg m "$model" '.models[$m].completion_tokens // 0' "$WORK/mock-usage.json")
    kn=$(jq --arg m "$model" '.models[$m].requests // 0' "$WORK/mock-usage.json")
    ecost=$(awk -v p="$kp" -v c="$kc" -v i="$pin" -v o="$pout" 'BEGIN { printf "%.1f", (p * i + c * o) * 1000 }')
    ok=$(awk -v a="$lp" -v b="$kp" -v c="$lc" -v d="$kc" -v n="$ln" -v m="$kn" -v l="$lcost" -v e="$ecost" \
        'BEGIN { x = l - e; if (x < 0) x = -x; print (a == b && c == d && n == m && x <= n) ? 1 : 0 }')
    check "$alias ($model): requests, tokens, cost" "$ok" \
        "ledger $ln req, $lp + $lc tokens, $lcost nano-USD; mock $kn req, $kp + $kc tokens, priced $ecost"
done
met_ok=$(awk -v m="$M_COST" -v l="$L_COST" 'BEGIN { x = m - l / 1e9; if (x < 0) x = -x; t = 1e-6 * l / 1e9; print (x <= t || (l == 0 && m == 0)) ? 1 : 0 }')
check "/metrics cost = ledger cost" "$met_ok" \
    "Σ tollgate_cost_usd_total $M_COST vs $(awk -v l="$L_COST" 'BEGIN { printf "%.9f", l / 1e9 }') USD (relative tolerance 1e-6: the metric is a float sum)"
check "/metrics tokens = ledger tokens" "$((M_PROMPT == L_PROMPT && M_COMPLETION == L_COMPLETION ? 1 : 0))" \
    "tollgate_tokens_total prompt $M_PROMPT, completion $M_COMPLETION"

# Team × feature: every pair the load sent is a group, and the groups add up to the totals.
used=$(tr ',' '\n' <<<"${PAIRS_LINE#LEDGER_PAIRS }" | sort -u)
have=$(jq -r '.groups[] | select(.team != null and .feature != null) | "\(.team)/\(.feature)"' "$WORK/spend.json" | sort -u)
missing=$(comm -23 <(echo "$used") <(echo "$have") | tr '\n' ' ')
check "team×feature groups cover the load" "$([[ -z $missing ]] && echo 1 || echo 0)" \
    "$(wc -l <<<"$used") pairs sent, $(jq '.groups | length' "$WORK/spend.json") groups (incl. the unattributed drain requests)${missing:+; missing: $missing}"
sums_ok=$(jq '([.groups[] | [.requests, .prompt_tokens, .completion_tokens, .cost_nanos]] | transpose | map(add))
    == [.totals.requests, .totals.prompt_tokens, .totals.completion_tokens, .totals.cost_nanos]' "$WORK/spend.json")
check "team×feature groups sum to the totals" "$([[ $sums_ok == true ]] && echo 1 || echo 0)" \
    "requests, prompt, completion tokens, cost_nanos: $(jq -c '[.groups[] | [.requests, .prompt_tokens, .completion_tokens, .cost_nanos]] | transpose | map(add)' "$WORK/spend.json")"
cli_ok=$(jq -n --slurpfile a "$WORK/spend.json" --slurpfile c "$WORK/spend-cli.json" '$a[0].totals == $c[0].totals and ($a[0].groups | length) == ($c[0].groups | length)')
check "\`tollgate spend\` CLI = spend API" "$([[ $cli_ok == true ]] && echo 1 || echo 0)" "same totals and group count"
check "the outage spilled records" "$((M_SPILLED > 0 ? 1 : 0))" "tollgate_ledger_spilled_total $M_SPILLED (replayed $M_REPLAYED)"
check "no record dropped" "$(eq "$M_DROPPED" 0)" "tollgate_ledger_dropped_total $M_DROPPED"

echo
D_REQ=$(j .totals.requests "$WORK/spend-default.json")
if [[ $D_REQ != "$L_REQ" ]]; then
    echo "Note: the spend API's default window (no from/to, queried right after the run) counts $D_REQ requests," \
        "$((L_REQ - D_REQ)) fewer than the run's window: it ends at $(j .to "$WORK/spend-default.json"), the current" \
        "second truncated, so the newest records are not in it yet."
fi
if grep -qE '\b(ERROR|WARN)\b' "$WORK/gateway.log"; then
    echo "Gateway log: $(grep -cE '\b(ERROR|WARN)\b' "$WORK/gateway.log") WARN/ERROR lines; first 5:"
    grep -E '\b(ERROR|WARN)\b' "$WORK/gateway.log" | head -n 5 | cut -c1-240 | sed 's/^/    /'
fi
if ((FAILED)); then
    echo
    die "the ledger does not match (see above); logs, metrics and answers in $WORK"
fi
echo "All $CHECKS checks passed."
