# Helpers shared by the load-test scripts (run.sh, ledger.sh, limits.sh, soak.sh, ...); sourced, not run.
# The sourcing script defines `die MESSAGE` (its own name in the message) and `ROOT`.

# install_missing PACKAGE...: installs the Debian packages given (those the caller found missing).
install_missing() {
    (($# > 0)) || return 0
    echo "installing missing packages: $*" >&2
    local sudo_cmd=()
    [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "$@" >/dev/null
}

# tollgate_binary BUILD: sets BIN to $TOLLGATE_BIN, or to the release binary, built first when
# BUILD is 1 (`cargo build` is a no-op when it is fresh).
tollgate_binary() {
    if [[ -n ${TOLLGATE_BIN:-} ]]; then
        BIN=$TOLLGATE_BIN
    else
        BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/tollgate
        if [[ $1 == 1 ]]; then
            echo "building: cargo build --release --bin tollgate" >&2
            (cd "$ROOT" && cargo build --release --bin tollgate) || die "the release build failed"
        fi
    fi
    [[ -x $BIN ]] || die "no tollgate binary at $BIN (build it, or set TOLLGATE_BIN)"
}

# stop_pid PID: SIGINT (pingora's fast shutdown), then SIGKILL after 5 s.
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

# term_pid PID: SIGTERM and wait, for a script's own background jobs (a sampler, a load loop):
# background jobs of a script ignore SIGINT, and these have no handler of their own.
term_pid() {
    if [[ -n $1 ]] && kill -TERM "$1" 2>/dev/null; then
        wait "$1" 2>/dev/null || true
    fi
}

# free_port: a loopback TCP port nothing listens on (and not handed out before); sets REPLY.
# Taken below the kernel's ephemeral range when there is room, so an outgoing connection (to the
# mock, PostgreSQL or Redis) cannot grab it between this check and the bind.
PORTS_TAKEN=" "
EPHEMERAL_LOW=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
if ((EPHEMERAL_LOW > 12000)); then
    PORT_BASE=10000 PORT_SPAN=$((EPHEMERAL_LOW - 10000))
else
    PORT_BASE=20000 PORT_SPAN=40000
fi
free_port() {
    local p i
    for ((i = 0; i < 500; i++)); do
        p=$((PORT_BASE + RANDOM % PORT_SPAN))
        [[ $PORTS_TAKEN == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            PORTS_TAKEN+="$p "
            REPLY=$p
            return 0
        fi
    done
    die "found no free loopback port"
}

# wait_ready URL PID NAME LOG: poll URL until it answers 2xx; die with the log if PID exits.
wait_ready() {
    local url=$1 pid=$2 name=$3 log=$4 i
    # READY_WAIT: tenths of a second (a gateway under valgrind on a busy machine needs longer).
    for ((i = 0; i < ${READY_WAIT:-150}; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "--- $name log ($log) ---" >&2
            cat "$log" >&2 || true
            die "$name exited during start-up"
        fi
        curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "--- $name log ($log) ---" >&2
    tail -n 50 "$log" >&2 || true
    die "$name did not answer $url within 15 s"
}

# finish_work RC: the end of every script's EXIT trap: keeps $WORK when KEEP=1, on failure
# (RC != 0 or FAILED != 0) and says so, else removes it; exits with RC.
# wait_listener PORT: until a TCP connect to 127.0.0.1:PORT succeeds (up to 10 s). The gateway's
# admin listener (what wait_ready asks) can be up before its data plane.
wait_listener() {
    local i
    for ((i = 0; i < 100; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

finish_work() {
    local rc=$1
    if [[ ${KEEP:-0} == 1 || $rc != 0 || ${FAILED:-0} != 0 ]]; then
        echo "work dir kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}

# on_exit FUNCTION: runs FUNCTION on exit, also after Ctrl-C or a TERM (exit 130, 143).
on_exit() {
    trap "$1" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# stop_redis DIR: stops the private Redis that scripts/redis.sh started in DIR (killed if need be).
stop_redis() {
    bash "$ROOT/scripts/redis.sh" stop "$1" >/dev/null 2>&1 ||
        bash "$ROOT/scripts/redis.sh" stop "$1" kill >/dev/null 2>&1 || true
}

# start_mock CHUNKS: starts `tollgate mock-provider` ($BIN, pinned with LOAD_PIN when set) on a
# free loopback port with one thread and CHUNKS content chunks per answer; sets MOCK_PORT and
# MOCK_PID and waits until it answers. Its log is $WORK/mock.log.
start_mock() {
    free_port
    MOCK_PORT=$REPLY
    NO_COLOR=1 "${LOAD_PIN[@]}" "$BIN" mock-provider --listen "127.0.0.1:$MOCK_PORT" --threads 1 \
        --record-limit 1 --chunks "$1" >"$WORK/mock.log" 2>&1 &
    MOCK_PID=$!
    wait_ready "http://127.0.0.1:$MOCK_PORT/_mock/health" "$MOCK_PID" "mock provider" "$WORK/mock.log"
}

# The limiter A/B's keys (limits-ab.sh, instructions.sh): A `plain` (team `plain`) without limits
# anywhere, B `limited` with AB_LIMITS on the key and on its team, all far above any load here.
AB_LIMITS='{ rpm: 100000000, tpm: 10000000000, tpd: 10000000000, concurrency: 100000, budgets: [ { usd: 1000000, period: 1d } ] }'

# ab_config WRITER [LIMITS_EXTRA]: prints the A/B's gateway config on $GW_PORT / $ADMIN_PORT in
# front of the mock on $MOCK_PORT (one worker thread, no ledger, no access log); the keys' secrets
# come from $KEY_A and $KEY_B in the gateway's environment. LIMITS_EXTRA: more `limits:` lines.
# With AB_GUARD set (a guardrail policy, e.g. `{ pii: redact, secrets: redact }`), B differs from
# A by that policy instead of by limits: neither key has limits (no `limits:` at all: even an
# empty one runs the admission gate), and each team has a route of its own, B's with the policy
# and A's without, so both answers carry the same headers.
ab_config() {
    local limits=", limits: $AB_LIMITS" team_limits="{ limits: $AB_LIMITS }" routes=""
    if [[ -n ${AB_GUARD:-} ]]; then
        limits=""
        team_limits="{}"
        routes=$'routes:\n  - name: guarded\n    match: { team: limited }\n    guardrails: '"$AB_GUARD"
        routes+=$'\n  - name: plain\n    match: { team: plain }'
    fi
    cat <<EOF
# Written by loadtest/$1.
server:
  listen: "127.0.0.1:$GW_PORT"
  admin_listen: "127.0.0.1:$ADMIN_PORT"
  threads: 1
  shutdown_grace: 1s
  reload_poll: 0s
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
pricing:
  models:
    - { provider: mock, model: mock-gpt, input: 1, output: 2 }
auth:
  required: true
keys:
  - { id: plain, key: "\${KEY_A}", team: plain }
  - { id: limited, key: "\${KEY_B}", team: limited$limits }
teams:
  plain: {}
  limited: $team_limits
limits:
  default_completion_tokens: 64
${2:-}
$routes
EOF
}

# msum FILE NAME [REGEX]: the sum of metric NAME's samples over all its labels (optionally only
# those whose `name{labels}` matches REGEX) in a Prometheus text file; an integer when it is one,
# 0 when absent.
msum() {
    awk -v n="$2" -v f="${3:-}" '
        $1 !~ /^#/ && ($1 == n || index($1, n "{") == 1) && (f == "" || $1 ~ f) { s += $2 }
        END { if (s == int(s)) printf "%.0f\n", s; else printf "%.12g\n", s }' "$1"
}

# scrape FILE: the gateway's /metrics (admin listener on $ADMIN_PORT) into FILE.
scrape() { curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" >"$1"; }
