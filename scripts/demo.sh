#!/usr/bin/env bash
# Sets up (first run only, see scripts/setup.sh) and runs the newcomer demo: a small CMLM that
# ships with the repository decodes a dozen sentences with mask-predict, degenerate Gibbs,
# MH (raw and local energies) and annealed block MH; prints the comparison table and writes
# demo_output/energy_acceptance.png.  No network, no ../shared.  Extra arguments go to the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m fairseq_mh.demo "$@"
