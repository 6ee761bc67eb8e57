#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser that reads outside bytes (fuzz/README.md): builds all
# targets once with the nightly toolchain (cargo-fuzz, no sanitizer: Rust is memory safe, we look
# for panics, hangs and runaway memory), seeds each corpus and writes its dictionary from the
# fixtures (fuzz/seed.py), runs each target for FUZZ_SECONDS, and fails if any crashed, naming
# the input and how to reproduce it.
#
# Usage: scripts/fuzz.sh [TARGET...]   (default: every target; `cargo +nightly fuzz list`)
#   FUZZ_SECONDS   seconds per target (default 20)
#   FUZZ_ARGS      extra libFuzzer flags for every run (e.g. "-jobs=2 -workers=2")
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

CARGO_FUZZ_VERSION=0.13.2
SECONDS_EACH=${FUZZ_SECONDS:-20}
# The same flags for `build` and `run`, or `run` would build again. 16 codegen units: a cold build
# of the gateway's dependency tree at cargo-fuzz's default of 1 takes several times as long,
# for fuzzing a little faster.
FLAGS=(-s none --codegen-units 16)

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: cargo-fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "fuzz.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION (once)" >&2
    cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

# Largest input per target (libFuzzer's -max_len): above the biggest seed, small enough to keep
# runs fast. The config seeds include the 15 KB demo config.
max_len() {
    case "$1" in
        config) echo 32768 ;;
        sse | pii_restore) echo 8192 ;;
        *) echo 16384 ;;
    esac
}

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

start=$(date +%s)
cargo +nightly fuzz build "${FLAGS[@]}"
built=$(date +%s)
python3 fuzz/seed.py

failed=()
for t in "${targets[@]}"; do
    echo "fuzz.sh: $t for ${SECONDS_EACH}s" >&2
    mkdir -p "fuzz/artifacts/$t"
    before=$(find "fuzz/artifacts/$t" -type f | sort)
    # -timeout: one input taking 10 s is a hang. -rss_limit_mb: also the largest single
    # allocation (libFuzzer's malloc limit defaults to it), so a length taken on trust shows.
    # shellcheck disable=SC2086
    if ! cargo +nightly fuzz run "${FLAGS[@]}" "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
        -dict="fuzz/dict/$t.dict" -print_final_stats=1 ${FUZZ_ARGS:-}; then
        new=$(comm -13 <(echo "$before") <(find "fuzz/artifacts/$t" -type f | sort) | tail -n 1)
        echo "fuzz.sh: $t FAILED; input: ${new:-(none written)}" >&2
        [ -n "$new" ] && echo "fuzz.sh: reproduce: cargo +nightly fuzz run ${FLAGS[*]} $t $new" >&2
        failed+=("$t")
    fi
done
end=$(date +%s)
echo "fuzz.sh: build $((built - start))s, runs $((end - built))s (${#targets[@]} targets x ${SECONDS_EACH}s)" >&2
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]}" >&2
    exit 1
fi
