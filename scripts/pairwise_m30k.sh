#!/usr/bin/env bash
# Pairwise joints (Torroba Hennigen & Kim 2023) of the Multi30k CMLM on test_2016_flickr:
# adjacent and random pairs, all four methods, K = 50.  Writes docs/results/pairwise_m30k_*.{txt,jsonl}.
#   bash scripts/pairwise_m30k.sh [NUM_PAIRS]     (SHARED=../shared by default)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${SHARED:-$REPO/../shared}"
N="${1:-300}"
PY="$REPO/.venv/bin/python"
M="$SHARED/models/m30k-cmlm"
WORK="$REPO/work/pairwise_m30k"
mkdir -p "$WORK" "$REPO/docs/results"
if [ ! -f "$WORK/bin/test.de-en.en.bin" ]; then  # SentencePiece + fairseq-preprocess with the model's dictionaries
  "$PY" - "$SHARED/data/multi30k" "$M/spm.model" "$WORK" <<'PYEOF'
import gzip, sys
import sentencepiece as spm
data, model, work = sys.argv[1:]
sp = spm.SentencePieceProcessor(model_file=model)
for lang in ("de", "en"):
    lines = gzip.open(f"{data}/test_2016_flickr.{lang}.gz", "rt", encoding="utf-8").read().splitlines()
    open(f"{work}/test.{lang}", "w", encoding="utf-8").write("".join(" ".join(sp.encode(l, out_type=str)) + "\n" for l in lines))
PYEOF
  "$REPO/.venv/bin/fairseq-preprocess" --source-lang de --target-lang en --testpref "$WORK/test" --destdir "$WORK/bin" \
    --srcdict "$M/dict.de.txt" --tgtdict "$M/dict.en.txt" --workers 1 >/dev/null 2>&1
fi
for MODE in adjacent random; do
  PYTHONPATH="$REPO" "$PY" -m fairseq_mh.pairwise "$WORK/bin" --path "$M/checkpoint.pt" --task translation_mh \
    --pairs "$MODE" --num-pairs "$N" --seed 1 --topk 50 \
    --jsonl "$REPO/docs/results/pairwise_m30k_$MODE.jsonl" | tee "$REPO/docs/results/pairwise_m30k_$MODE.txt"
done
