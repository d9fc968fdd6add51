#!/usr/bin/env bash
# Set up the machine, then run the whole test suite (unit and integration).
#
# Extra arguments go to pytest, for example: bash scripts/test.sh tests/unit -x
# The whole run is stopped after TEST_TIMEOUT seconds (default 1500), well
# inside CI's 90 minutes. pytest-timeout also stops any single test after 300 s.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

status=0
timeout --signal=INT --kill-after=60 "${TEST_TIMEOUT:-1500}" \
    .venv/bin/pytest -q -p no:cacheprovider "$@" || status=$?

case $status in
    0) ;;
    5) echo "test.sh: pytest collected no tests, which counts as a failure" >&2; exit 1 ;;
    124 | 137) echo "test.sh: the test run exceeded ${TEST_TIMEOUT:-1500} s and was stopped" >&2 ;;
esac
exit "$status"
