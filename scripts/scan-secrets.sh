#!/usr/bin/env bash
# The secret scan of the whole test suite: every gateway the integration tests started left its
# output (logs at info level, access-log lines, errors) in $TOLLGATE_LOG_ARCHIVE (tests/common's
# `Proc` copies it there when the variable is set; scripts/test.sh sets it). No virtual key,
# provider key, admin token or other secret the tests use may appear in any of it.
#
# The secrets are read from the tests' own sources, so a new test's keys are covered without a
# list to keep: string literals shaped like the tests' keys (`tg-…`, `key-of-…`, `sk-…`), the values
# of environment pairs whose name says KEY, TOKEN, SECRET or PASSWORD, and `const ADMIN…` tokens.
# Values shorter than 5 characters are skipped (too common to mean a leak).
#
#   TOLLGATE_LOG_ARCHIVE=target/test-logs scripts/scan-secrets.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ARCHIVE=${TOLLGATE_LOG_ARCHIVE:-target/test-logs}
[[ -d $ARCHIVE ]] || { echo "scan-secrets.sh: no log archive at $ARCHIVE" >&2; exit 1; }
python3 - "$ARCHIVE" <<'PY'
import pathlib, re, sys

archive = pathlib.Path(sys.argv[1])
sources = [p.read_text() for p in pathlib.Path("tests").rglob("*.rs")]
secrets = set()
for src in sources:
    secrets.update(re.findall(r'"((?:tg|key-of|sk)-[A-Za-z0-9_-]+)"', src))
    secrets.update(re.findall(r'\("[A-Z0-9_]*(?:KEY|TOKEN|SECRET|PASSWORD)[A-Z0-9_]*",\s*"([^"]+)"\)', src))
    secrets.update(re.findall(r'const ADMIN[A-Z_]*: &str = "([^"]+)"', src))
    # tests/common's mock_provider(NAME, …) gives each provider the key `key-of-NAME`.
    secrets.update("key-of-" + n for n in re.findall(r'mock_provider\(\s*"([a-z0-9_-]+)"', src))
secrets = sorted(s for s in secrets if len(s) >= 5)
logs = sorted(archive.glob("*.log"))
if not logs:
    sys.exit(f"scan-secrets.sh: {archive} holds no gateway output: did the tests run with TOLLGATE_LOG_ARCHIVE set?")
found = []
for log in logs:
    text = log.read_text(errors="replace")
    for s in secrets:
        if s in text:
            line = next(l for l in text.splitlines() if s in l)
            found.append(f"{log.name}: {s!r} in: {line[:300]}")
print(f"secret scan: {len(secrets)} secrets from the tests' sources, {len(logs)} gateway outputs, "
      f"{sum(l.stat().st_size for l in logs)} bytes")
if found:
    print("\n".join(found))
    sys.exit(f"scan-secrets.sh: {len(found)} secret(s) found in gateway output")
PY
