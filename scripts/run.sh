#!/usr/bin/env bash
# Builds (release) and runs the gateway on the shipped default config, or on the config given.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/deps.sh
. scripts/deps.sh
tollgate_install_deps
exec cargo run --release --bin tollgate -- run --config "${1:-conf/tollgate.yaml}"
