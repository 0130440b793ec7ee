#!/usr/bin/env bash
# WMT14 newstest2014 German->English with a released Mask-Predict model (maskPredict_de_en) or any
# checkpoint of that direction, decoded by fairseq-mh-generate.  A thin wrapper: the work is
# done by scripts/wmt_eval.py (see its --help); options after -- go to fairseq-mh-generate.
#   bash scripts/eval_wmt14_de_en.sh --model maskPredict_de_en [--bpe-codes CODES] --out runs/de-en [--cpu] -- --sampler mh --mh-epochs 4
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$PY" ] || PY=python3
exec "$PY" "$here/wmt_eval.py" --pair de-en "$@"
