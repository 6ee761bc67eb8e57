#!/usr/bin/env bash
# A throwaway PostgreSQL for tests and local experiments: its own data directory, loopback only,
# trust auth (user `postgres`, database `postgres`), its socket in DIR/sock. Used by
# tests/ledger.rs; humans can use it too:
#
#   scripts/pg.sh start DIR PORT      # initdb on first use, then start; waits until it accepts
#                                     # (TLS only, when DIR/tls/server.crt and server.key exist)
#   scripts/pg.sh stop DIR [MODE]     # MODE: fast (default), immediate (a crash), smart
#   psql -h 127.0.0.1 -p PORT -U postgres
#
# The server binaries come from the Debian `postgresql` package (/usr/lib/postgresql/<ver>/bin;
# scripts/deps.sh installs it). As root, initdb and postgres refuse to run, so they run as the
# `postgres` system user and DIR is handed to it.
set -euo pipefail

die() { echo "pg.sh: $*" >&2; exit 1; }

bindir() {
  local d
  d=$(printf '%s\n' /usr/lib/postgresql/*/bin | grep -v '\*' | sort -V | tail -n 1 || true)
  if [ -z "$d" ] || [ ! -x "$d/initdb" ]; then
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
      dirname "$(command -v initdb)"
      return
    fi
    die "PostgreSQL server binaries (initdb, pg_ctl) not found: run scripts/deps.sh (installs the postgresql package)"
  fi
  echo "$d"
}

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' system user (created by the postgresql package: run scripts/deps.sh)"
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  die "usage: pg.sh start DIR PORT | pg.sh stop DIR [fast|immediate|smart]"
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
bin=$(bindir)

case "$cmd" in
  start)
    port=${3:-}
    [ -n "$port" ] || die "usage: pg.sh start DIR PORT"
    mkdir -p "$dir/sock"
    if [ "$(id -u)" -eq 0 ]; then
      chown -R postgres: "$dir"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    fi
    # With DIR/tls/server.crt and server.key (0600), the server takes TLS connections only.
    tls=""
    if [ -f "$dir/tls/server.crt" ]; then
      tls="-c ssl=on -c ssl_cert_file=$dir/tls/server.crt -c ssl_key_file=$dir/tls/server.key"
      printf 'local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n' \
        | as_pg tee "$dir/data/pg_hba.conf" >/dev/null
    fi
    # fsync=off: a throwaway instance; an immediate stop still keeps what was committed (the OS
    # has it), only a machine crash would not.
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir/sock -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off $tls" start >/dev/null \
      || { tail -n 30 "$dir/server.log" >&2 || true; die "pg_ctl start failed"; }
    ;;
  stop)
    mode=${3:-fast}
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_pg "$bin/pg_ctl" -D "$dir/data" -m "$mode" -w -t 60 stop >/dev/null
    fi
    ;;
  *)
    die "unknown command $cmd (use start or stop)"
    ;;
esac
