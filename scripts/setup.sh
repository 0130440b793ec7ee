#!/usr/bin/env bash
# One-time, idempotent set-up: a virtual environment in .venv with torch 2.13 (CPU),
# fairseq 0.12 (the Python 3.11 build `fairseq-fixed`), the other runtime needs and
# this package in editable mode. Safe to run again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${FAIRSEQ_MH_VENV:-.venv}
stamp="$VENV/.fairseq_mh_setup"
want=$(cat requirements.txt setup.py scripts/setup.sh | cksum)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "[setup] installing into $VENV (first run: a few minutes, most of it building fairseq)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
pip install "torch==2.13.0"
pip install -r requirements.txt
# fairseq 0.12.2 from PyPI does not import on Python 3.11; fairseq-fixed is 0.12 patched for it.
# --no-deps: its declared torchaudio dependency (speech code only) would pull another torch.
# Its six C++/Cython extensions build one after another unless setuptools' build_ext is told to
# build them in parallel (DIST_EXTRA_CONFIG: setuptools' extra config file): on 2 cores the
# build took 2.7 minutes instead of 3.7 here.
if ! "$VENV/bin/python" -c "import fairseq" 2>/dev/null; then
  build_cfg=$(mktemp)
  printf '[build_ext]\nparallel = %s\n' "$(nproc 2>/dev/null || echo 2)" > "$build_cfg"
  DIST_EXTRA_CONFIG="$build_cfg" pip install --no-build-isolation --no-deps "fairseq-fixed==0.12.3.1"
  rm -f "$build_cfg"
fi
pip install --no-deps --no-build-isolation -e .
"$VENV/bin/python" -c "import fairseq_mh, fairseq" >/dev/null 2>&1
echo "$want" > "$stamp"
echo "[setup] done" >&2
