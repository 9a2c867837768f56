#!/usr/bin/env bash
# The test command (`make test`): generated code and notebooks are clean, then notebook tests, then pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
fingerprint() { find lcal nbs README.md -type f -not -path '*/__pycache__/*' -not -name '.last_checked' | sort | xargs sha1sum | sha1sum; }
fail() { echo "CHECK FAILED: $*" >&2; exit 1; }

before=$(fingerprint)
nbdev-export || fail "nbdev-export errored"
[ "$(fingerprint)" = "$before" ] || fail "nbdev-export changed lcal/: export the notebooks and commit the result"

nbdev-clean || fail "nbdev-clean errored"
[ "$(fingerprint)" = "$before" ] || fail "nbdev-clean changed nbs/: run nbdev-clean and commit the cleaned notebooks"

python tools/readme.py --check || fail "README.md is stale"

echo "== nbdev-test"
nbdev-test --n-workers 2 --timing || fail "notebook tests failed"

echo "== pytest"
python -m pytest tests -q --durations=15
rc=$?
[ $rc -eq 5 ] && { echo "pytest collected no tests"; rc=0; }
[ $rc -eq 0 ] || fail "pytest failed (exit $rc)"
echo "ALL CHECKS PASSED"
