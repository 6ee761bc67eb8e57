#!/usr/bin/env bash
# Runs Tollgate's whole test suite on a fresh machine: installs missing system packages, then
# every unit, integration and doc test (`--all-targets` also compiles the benches), then the
# SDK-compatibility suite (a Python venv with the official openai and anthropic packages).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/deps.sh
. scripts/deps.sh
tollgate_install_deps

# Every gateway the integration tests start leaves its output here for the secret scan below.
rm -rf target/test-logs
TOLLGATE_LOG_ARCHIVE="$PWD/target/test-logs" cargo test --all-targets "$@"
TOLLGATE_LOG_ARCHIVE=target/test-logs scripts/scan-secrets.sh
cargo test --doc "$@"
# The official OpenAI and Anthropic Python SDKs against the real gateway and mock.
TOLLGATE_BIN=target/debug/tollgate scripts/sdk-test.sh
# deploy/: the Kubernetes manifests against the Kubernetes schemas, the ConfigMap's config.
TOLLGATE_BIN=target/debug/tollgate scripts/validate-deploy.sh
