#!/usr/bin/env bash
# Hostile clients under load (issue 18): do 2,000 idle connections and a slowloris client slow the
# other clients down, and does the admin listener stay reachable when the data plane is at its
# connection cap?
#
#   1. baseline: wrk (CONNECTIONS, non-streamed chat) against a fresh gateway for DURATION s;
#   2. hostile: the same, while IDLE connections sit open without a byte and SLOW connections
#      send their request header one byte a second (slowloris); the gateway's header deadline
#      (server.header_timeout) closes both kinds, and they are reopened as they close;
#   3. cap: a gateway with max_connections CAP, filled with idle connections: one more gets 503
#      `too_many_connections`, and the admin listener's /health still answers (timed).
#
# Prints p50/p99 and req/s of the normal clients in 1 and 2, what the gateway closed and why,
# and the admin's latency in 3. Exits non-zero when a normal request failed, when the hostile run's
# p99 is more than MAX_P99_RATIO times the baseline's, or when the admin listener did not answer.
#
#   bash loadtest/hostile.sh
#   IDLE=2000 SLOW=200 DURATION=15 bash loadtest/hostile.sh
#
# Loopback only; everything it starts is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
IDLE=${IDLE:-2000}
SLOW=${SLOW:-200}
CAP=${CAP:-200}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-16}
HEADER_TIMEOUT=${HEADER_TIMEOUT:-5s}
MAX_P99_RATIO=${MAX_P99_RATIO:-2.0}
BUILD=${BUILD:-1}
KEEP=${KEEP:-0}

die() {
    echo "hostile.sh: $*" >&2
    exit 1
}
. "$HERE/lib.sh"

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
install_missing "${need[@]}"
tollgate_binary "$BUILD"
(($(ulimit -n) > IDLE + SLOW + 1000)) || ulimit -n $((IDLE + SLOW + 4096)) 2>/dev/null ||
    die "the open-files limit ($(ulimit -n)) is too low for $IDLE + $SLOW connections"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-hostile.XXXXXX")
MOCK_PID=
GW_PID=
HOLD_PID=
LOAD_PIN=()
FAILED=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM ERR
    stop_pid "$HOLD_PID"
    stop_pid "$GW_PID"
    stop_pid "$MOCK_PID"
    finish_work "$rc"
}
on_exit cleanup

start_mock 16
LOAD_KEY="tg-hostile-load-$RANDOM$RANDOM"

# gateway NAME MAX_CONNECTIONS: starts a gateway (GW_PID, GW_PORT, ADMIN_PORT).
gateway() {
    free_port
    GW_PORT=$REPLY
    free_port
    ADMIN_PORT=$REPLY
    cat >"$WORK/$1.yaml" <<EOF
server:
  listen: "127.0.0.1:$GW_PORT"
  admin_listen: "127.0.0.1:$ADMIN_PORT"
  threads: 1
  shutdown_grace: 1s
  reload_poll: 0s
  max_connections: $2
  header_timeout: $HEADER_TIMEOUT
usage:
  ledger: "off"
  access_log: "off"
providers:
  mock:
    kind: openai_compatible
    base_url: "http://127.0.0.1:$MOCK_PORT/v1"
    api_keys: ["mock-key"]
models:
  demo:
    targets:
      - { provider: mock, model: mock-gpt }
auth:
  required: true
keys:
  - { id: load, key: "\${LOAD_KEY}" }
EOF
    LOAD_KEY=$LOAD_KEY NO_COLOR=1 "$BIN" run --config "$WORK/$1.yaml" --runtime-dir "$WORK/rt-$1" >"$WORK/gateway-$1.log" 2>&1 &
    GW_PID=$!
    wait_ready "http://127.0.0.1:$ADMIN_PORT/ready" "$GW_PID" "gateway ($1)" "$WORK/gateway-$1.log"
    wait_listener "$GW_PORT" || true
}

# hold IDLE SLOW SECONDS: keeps IDLE silent connections and SLOW slowloris ones open on the
# gateway for SECONDS, reopening each as the gateway closes it; prints how many it (re)opened.
hold() {
    python3 - "$GW_PORT" "$1" "$2" "$3" <<'PY' &
import selectors, socket, sys, time
port, idle, slow, seconds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
sel = selectors.DefaultSelector()
opened = {"idle": 0, "slow": 0}
header = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-slow: " + b"a" * 4000
conns = {}
def open_one(kind):
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, kind)
    conns[s] = [kind, 0]
    opened[kind] += 1
for _ in range(idle):
    open_one("idle")
for _ in range(slow):
    open_one("slow")
end = time.time() + seconds
last_drip = 0.0
while time.time() < end:
    for key, _ in sel.select(timeout=0.2):
        s = key.fileobj
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        if not data:  # the gateway closed it (a deadline): reopen one of the same kind
            kind = conns.pop(s)[0]
            sel.unregister(s)
            s.close()
            open_one(kind)
    if time.time() - last_drip >= 1.0:  # slowloris: one more header byte a second
        last_drip = time.time()
        for s, st in list(conns.items()):
            if st[0] == "slow" and st[1] < len(header):
                try:
                    s.send(header[st[1]:st[1] + 1])
                    st[1] += 1
                except OSError:
                    pass
print(f"HOLD opened_idle={opened['idle']} opened_slow={opened['slow']}", flush=True)
PY
    HOLD_PID=$!
}

# run TAG: wrk against the current gateway; prints and records req/s, p50, p99, errors.
run() {
    local out=$WORK/wrk-$1.txt rc=0
    BODY_FILE=$HERE/body-json.json MODE=json VARY=1 AUTH_TOKEN=$LOAD_KEY wrk -t 1 -c "$CONNECTIONS" -d "${DURATION}s" --timeout 30s \
        -s "$HERE/post.lua" "http://127.0.0.1:$GW_PORT/v1/chat/completions" >"$out" 2>&1 || rc=$?
    ((rc == 0)) || { cat "$out" >&2; die "wrk exited with $rc"; }
    local line
    line=$(grep '^WRK_RESULT ' "$out") || die "no WRK_RESULT from post.lua"
    kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
    local reqs errors
    reqs=$(kv requests)
    errors=$(($(kv bad_status) + $(kv bad_body) + $(kv connect_errors) + $(kv read_errors) + $(kv write_errors) + $(kv timeouts)))
    RPS=$(awk -v n="$reqs" -v d="$(kv duration_us)" 'BEGIN { printf "%.0f", n / (d / 1e6) }')
    P50=$(kv p50_us)
    P99=$(kv p99_us)
    printf '%-9s %6s req/s  p50 %5s µs  p99 %6s µs  errors %s\n' "$1" "$RPS" "$P50" "$P99" "$errors"
    ((errors == 0)) || { FAILED=1; echo "!!!!!!!!!! FAIL: $1: $errors normal requests failed ($(kv statuses))" >&2; }
}

closed() {
    curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^tollgate_connections_closed_total\{listener="data"/ { print "  " $0 }'
}

echo "# Tollgate: hostile clients under load"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $(nproc) CPUs; tollgate: $BIN"
echo "- normal load: wrk, $CONNECTIONS connections, ${DURATION}s; hostile: $IDLE idle + $SLOW slowloris connections; header_timeout $HEADER_TIMEOUT"
echo

gateway main $((IDLE + SLOW + CONNECTIONS + 100))
run baseline
BASE_P99=$P99
hold "$IDLE" "$SLOW" $((DURATION + 4))
sleep 2
open_now=$(curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^tollgate_connections_open\{listener="data"\}/ { print $2 }')
echo "held open before the hostile run: $open_now data-plane connections"
run hostile
HOSTILE_P99=$P99
wait "$HOLD_PID" || true
HOLD_PID=
echo "closed by the gateway, by reason:"
closed
ratio=$(awk -v a="$HOSTILE_P99" -v b="$BASE_P99" 'BEGIN { printf "%.2f", a / b }')
echo "p99 hostile / baseline: $ratio (allowed: $MAX_P99_RATIO)"
awk -v r="$ratio" -v m="$MAX_P99_RATIO" 'BEGIN { exit !(r <= m) }' ||
    { FAILED=1; echo "!!!!!!!!!! FAIL: the hostile clients slowed the others down (p99 x$ratio)" >&2; }
stop_pid "$GW_PID"
GW_PID=

echo
gateway cap "$CAP"
hold "$CAP" 0 8
sleep 2
extra=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H 'content-type: application/json' \
    --data-binary "@$HERE/body-json.json" "http://127.0.0.1:$GW_PORT/v1/chat/completions" || true)
admin=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 5 "http://127.0.0.1:$ADMIN_PORT/health" || true)
echo "cap $CAP filled: one more data-plane request got $extra; admin /health: $admin (status, seconds)"
[[ $extra == 503 ]] || { FAILED=1; echo "!!!!!!!!!! FAIL: over the cap the data plane answered $extra, not 503" >&2; }
[[ $admin == 200* ]] || { FAILED=1; echo "!!!!!!!!!! FAIL: the admin listener did not answer at the data plane's cap" >&2; }
wait "$HOLD_PID" || true
HOLD_PID=
((FAILED == 0)) || exit 1
echo "ok"
