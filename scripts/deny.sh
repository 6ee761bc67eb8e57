#!/usr/bin/env bash
# The dependency policy (deny.toml): licences, bans and sources, with cargo-deny (installed from
# crates.io when missing, pinned). Advisories are not checked here: they need the RustSec
# database from GitHub, which the build machine cannot reach; run
# `cargo deny check advisories` where it can.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.20.2
if ! cargo deny --version 2>/dev/null | grep -q "$VERSION"; then
    echo "deny.sh: installing cargo-deny $VERSION (once)" >&2
    cargo install --locked --quiet cargo-deny --version "$VERSION"
fi
# cargo-deny reads the metadata of every platform's dependencies, which a Linux build never
# downloads: fetch them first (from crates.io), then check without further network.
cargo fetch --locked --quiet
cargo deny --offline check licenses bans sources
