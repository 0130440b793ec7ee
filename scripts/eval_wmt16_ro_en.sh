#!/usr/bin/env bash
# WMT16 newstest2016 Romanian->English with a released Mask-Predict model (maskPredict_ro_en) or any
# checkpoint of that direction, decoded by fairseq-mh-generate.  A thin wrapper: the work is
# done by scripts/wmt_eval.py (see its --help); options after -- go to fairseq-mh-generate.
#   bash scripts/eval_wmt16_ro_en.sh --model maskPredict_ro_en [--bpe-codes CODES] --out runs/ro-en [--cpu] -- --sampler mh --mh-epochs 4
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$PY" ] || PY=python3
exec "$PY" "$here/wmt_eval.py" --pair ro-en "$@"
