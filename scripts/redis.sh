#!/usr/bin/env bash
# A throwaway Redis for tests and local experiments: its own directory, loopback only, no
# persistence. Used by tests/cluster.rs (cluster-mode limits) and loadtest/limits.sh:
#
#   scripts/redis.sh start DIR PORT   # start (DIR is created), wait until it answers PING
#   scripts/redis.sh stop DIR [MODE]  # MODE: fast (default: SHUTDOWN NOSAVE) or kill (a crash)
#   redis-cli -p PORT
#
# redis-server comes from the Debian `redis-server` package (scripts/deps.sh installs it).
set -euo pipefail

die() { echo "redis.sh: $*" >&2; exit 1; }

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: redis.sh start DIR PORT | stop DIR [fast|kill]"
command -v redis-server >/dev/null 2>&1 || die "redis-server not found: run scripts/deps.sh (installs the redis-server package)"

# A killed daemon is a zombie until init reaps it (some container inits take a second or more):
# it has released its port by then, so a zombie counts as stopped.
running() {
  if [ -r "/proc/$1/status" ]; then
    ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
  else
    kill -0 "$1" 2>/dev/null
  fi
}
alive() { [ -f "$dir/redis.pid" ] && running "$(cat "$dir/redis.pid")"; }

case $cmd in
start)
  port=${3:-}
  [[ $port =~ ^[0-9]+$ ]] || die "start needs a PORT"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  echo "$port" > "$dir/port"
  alive && die "a Redis already runs in $dir"
  rm -f "$dir/redis.pid"
  # With DIR/tls/server.crt, server.key and ca.pem, PORT takes TLS connections only.
  listen=(--port "$port")
  cli=(-p "$port")
  if [ -f "$dir/tls/server.crt" ]; then
    listen=(--port 0 --tls-port "$port" --tls-cert-file "$dir/tls/server.crt" --tls-key-file "$dir/tls/server.key"
      --tls-ca-cert-file "$dir/tls/ca.pem" --tls-auth-clients no)
    cli=(-p "$port" --tls --cacert "$dir/tls/ca.pem")
  fi
  redis-server --bind 127.0.0.1 "${listen[@]}" --dir "$dir" --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save '' --appendonly no >/dev/null
  # Redis writes its pidfile only once it listens: the PONG must come from our server, not from
  # another one that already holds the port (ours then exits at once: "Address already in use").
  for _ in $(seq 1 100); do
    if alive && [ "$(redis-cli "${cli[@]}" ping 2>/dev/null || true)" = PONG ]; then
      exit 0
    fi
    sleep 0.1
  done
  tail -n 20 "$dir/redis.log" >&2 || true
  die "Redis on port $port did not answer within 10 s"
  ;;
stop)
  mode=${3:-fast}
  [ -f "$dir/port" ] || exit 0
  alive || exit 0
  pid=$(cat "$dir/redis.pid")
  case $mode in
  fast) kill "$pid" 2>/dev/null || true ;;
  kill) kill -9 "$pid" 2>/dev/null || true ;;
  *) die "unknown stop mode '$mode' (fast or kill)" ;;
  esac
  for _ in $(seq 1 100); do
    running "$pid" || { rm -f "$dir/redis.pid"; exit 0; }
    sleep 0.1
  done
  die "Redis (pid $pid) did not stop"
  ;;
*) die "unknown command '$cmd' (start or stop)" ;;
esac
