#!/usr/bin/env bash
# Sets up (first run only, see scripts/setup.sh) and runs the whole test suite.
# Tests that need ../shared (real data and checkpoints) find it beside the repository, or at
# $FAIRSEQ_MH_SHARED, and skip with a reason when it is absent.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
