#!/usr/bin/env bash
# Sets up (first run only, see scripts/setup.sh) and runs the whole test suite.
# Tests that need ../shared (real data and checkpoints) find it beside the repository, or at
# $FAIRSEQ_MH_SHARED, and skip with a reason when it is absent.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Two workers (one per core of the CI machine), each single-threaded; tests are spread by file.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile tests "$@"
