#!/usr/bin/env bash
# SDK-compatibility tests: the official `openai` and `anthropic` Python SDKs against a real
# Tollgate gateway in front of the mock provider (tests/sdk/).
#
#   scripts/sdk-test.sh                       # every test, dialects "gpt claude gemini bedrock azure"
#   SDK_DIALECTS="gpt claude gemini" scripts/sdk-test.sh -k stream    # extra args go to pytest
#   TOLLGATE_BIN=target/release/tollgate scripts/sdk-test.sh          # skip `cargo build`
#
# It creates (or reuses) a venv at target/sdk-venv with tests/sdk/requirements.txt, builds the
# binary unless TOLLGATE_BIN is set, starts one mock provider and one gateway on free loopback
# ports with a generated config, and runs pytest with TOLLGATE_URL, TOLLGATE_ADMIN, MOCK_URL and
# SDK_DIALECTS in the environment. Everything it started is stopped on exit; the temp dir (config
# and logs) is kept when something failed, or always with SDK_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."

# The model aliases the tests are parametrized over, one per provider dialect, all served by the
# same mock. Switch a dialect on by adding its alias to SDK_DIALECTS (tests/sdk/conftest.py reads
# the same variable). Fields: alias|provider|kind|base_url path on the mock|upstream model|extra
# provider keys ("key: value" pairs separated by ';').
DIALECT_TABLE=(
  'gpt|oai|openai_compatible|/v1|mock-gpt|api_keys: ["k-oai"]'
  'claude|claude|anthropic|/v1|claude-mock|api_keys: ["k-claude"]'
  'gemini|gemini|gemini|/v1beta|gemini-mock|api_keys: ["k-gemini"]'
  'bedrock|bedrock|bedrock||anthropic.claude-mock-v1|aws_region: us-east-1; aws_access_key_id: AKIDMOCK; aws_secret_access_key: mock-secret'
  'azure|azure|azure||up-azure|api_version: "2024-10-21"; api_keys: ["k-azure"]'
)
SDK_DIALECTS="${SDK_DIALECTS:-gpt claude gemini bedrock azure}"
export SDK_DIALECTS

VENV="target/sdk-venv"
REQS="tests/sdk/requirements.txt"

log() { printf 'sdk-test: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# ---- Python venv with the SDKs -------------------------------------------------------------
make_venv() {
  rm -rf "$VENV"
  if python3 -m venv "$VENV" >/dev/null 2>&1; then return 0; fi
  rm -rf "$VENV"
  [ "$(id -u)" -eq 0 ] || die "python3 -m venv failed; install python3-venv (apt-get install python3-venv)"
  log "python3 -m venv failed: installing python3-venv"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  python3 -m venv "$VENV"
}

if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then make_venv; fi
PY="$VENV/bin/python"
want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)" != "$want" ]; then
  log "installing $(grep -Ev '^(#|$)' "$REQS" | tr '\n' ' ')into $VENV"
  "$PY" -m pip install -q --disable-pip-version-check -r "$REQS"
  echo "$want" >"$VENV/.requirements.sha256"
fi
"$PY" - <<'EOF' >&2
import anthropic, openai, pytest
print(f"sdk-test: openai {openai.__version__}, anthropic {anthropic.__version__}, pytest {pytest.__version__}")
EOF

# ---- The binary ------------------------------------------------------------------------------
if [ -n "${TOLLGATE_BIN:-}" ]; then
  BIN="$TOLLGATE_BIN"
else
  # shellcheck source=scripts/deps.sh disable=SC1091
  . scripts/deps.sh
  tollgate_install_deps
  cargo build --quiet --bin tollgate
  BIN="${CARGO_TARGET_DIR:-target}/debug/tollgate"
fi
[ -x "$BIN" ] || die "no executable tollgate binary at $BIN"

# ---- Processes, cleaned up on exit -----------------------------------------------------------
TMP="$(mktemp -d "${TMPDIR:-/tmp}/tollgate-sdk.XXXXXX")"
PIDS=()
STATUS=1
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$STATUS" -ne 0 ]; then
    for f in "$TMP"/mock.log "$TMP"/gateway.log; do
      [ -f "$f" ] || continue
      printf -- '---- %s (last 40 lines) ----\n' "$f" >&2
      tail -n 40 "$f" >&2
    done
  fi
  if [ "${SDK_KEEP:-0}" = 1 ] || [ "$STATUS" -ne 0 ]; then
    log "config and logs kept in $TMP"
  else
    rm -rf "$TMP"
  fi
  [ "$STATUS" -eq 0 ] || log "FAILED (exit $STATUS)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Three distinct free loopback ports (all bound at once, so they differ).
read -r MOCK_PORT GW_PORT ADMIN_PORT < <("$PY" -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))
')

# wait_http NAME URL PID: until URL answers 200, failing early if PID died.
wait_http() {
  local name="$1" url="$2" pid="$3" i
  for i in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || die "$name exited before becoming healthy"
    if "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$url" 2>/dev/null; then
      return 0
    fi
    [ "$i" -lt 300 ] && sleep 0.05
  done
  die "$name not healthy at $url after 15s"
}

# ---- Config ----------------------------------------------------------------------------------
mock_base="http://127.0.0.1:$MOCK_PORT"
providers=""
models=""
have_oai=0
for alias in $SDK_DIALECTS; do
  row=""
  for r in "${DIALECT_TABLE[@]}"; do
    [ "${r%%|*}" = "$alias" ] && row="$r"
  done
  [ -n "$row" ] || die "unknown dialect alias '$alias' in SDK_DIALECTS (known: gpt claude gemini bedrock azure)"
  IFS='|' read -r _ prov kind path model extra <<<"$row"
  [ "$prov" = oai ] && have_oai=1
  providers+="  $prov:"$'\n'"    kind: $kind"$'\n'"    base_url: \"$mock_base$path\""$'\n'
  IFS=';' read -ra kvs <<<"$extra"
  for kv in "${kvs[@]}"; do
    kv="${kv#"${kv%%[![:space:]]*}"}"
    [ -n "$kv" ] && providers+="    $kv"$'\n'
  done
  models+="  $alias:"$'\n'"    targets: [ { provider: $prov, model: $model } ]"$'\n'
done
if [ "$have_oai" = 0 ]; then # `embed` is always served by the OpenAI-dialect provider
  providers+="  oai:"$'\n'"    kind: openai_compatible"$'\n'"    base_url: \"$mock_base/v1\""$'\n'"    api_keys: [\"k-oai\"]"$'\n'
fi
models+="  embed:"$'\n'"    targets: [ { provider: oai, model: mock-embed } ]"$'\n'

CONFIG="$TMP/tollgate.yaml"
cat >"$CONFIG" <<EOF
# Generated by scripts/sdk-test.sh (dialects: $SDK_DIALECTS).
server:
  listen: "127.0.0.1:$GW_PORT"
  admin_listen: "127.0.0.1:$ADMIN_PORT"
  shutdown_grace: 0s
  reload_poll: 0s
timeouts:
  first_byte: 30s
  idle: 30s
auth:
  anonymous_keys: [client-key]   # the SDK tests' placeholder key (tests/sdk/conftest.py)
providers:
${providers}models:
${models}routes:
  - name: cached                 # tests/sdk/test_cache_sdk.py
    match: { task: cached }
    cache: { mode: exact }
EOF

"$BIN" check --config "$CONFIG" >"$TMP/check.log" 2>&1 || {
  cat "$TMP/check.log" >&2
  printf -- '---- generated config ----\n' >&2
  cat "$CONFIG" >&2
  die "tollgate check rejected the generated config (is every dialect in SDK_DIALECTS implemented?)"
}

# ---- Start mock and gateway ------------------------------------------------------------------
NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" "$BIN" mock-provider --listen "127.0.0.1:$MOCK_PORT" >"$TMP/mock.log" 2>&1 &
PIDS+=("$!")
wait_http mock "$mock_base/_mock/health" "${PIDS[0]}"

NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" "$BIN" run --config "$CONFIG" --runtime-dir "$TMP" >"$TMP/gateway.log" 2>&1 &
PIDS+=("$!")
wait_http gateway "http://127.0.0.1:$ADMIN_PORT/health" "${PIDS[1]}"
log "gateway 127.0.0.1:$GW_PORT (admin $ADMIN_PORT), mock $MOCK_PORT, dialects: $SDK_DIALECTS"

# ---- Tests -----------------------------------------------------------------------------------
export TOLLGATE_URL="http://127.0.0.1:$GW_PORT"
export TOLLGATE_ADMIN="http://127.0.0.1:$ADMIN_PORT"
export MOCK_URL="$mock_base"
set +e
"$PY" -m pytest -q -p no:cacheprovider tests/sdk "$@"
STATUS=$?
set -e
exit "$STATUS"
