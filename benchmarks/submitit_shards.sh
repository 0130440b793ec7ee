#!/usr/bin/env bash
# Wall time of a WMT-script evaluation as 2 submitit shard jobs (local executor) against one
# process, on the genuine Mask-Predict toy checkpoint of ../shared and its 100 validation
# sentences; writes docs/results/submitit_local.md.  Both runs start from the same prepared
# and binarized data (copied), so the times compare decoding (+ the jobs' start-up) only.
#   bash benchmarks/submitit_shards.sh            (about 3 minutes on 2 cores)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
M="${FAIRSEQ_MH_SHARED:-$REPO/../shared}/models/maskpredict-toy"
GEN=(--sampler mh --mh-epochs 12 --burn-in 2 --num-chains 4 --length-beam 2)
ARGS=(--pair de-en --model "$M" --src "$M/raw/valid.de" --ref "$M/raw/valid.en" --cpu --batch-size 10)
export OMP_NUM_THREADS=1 PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's plug-in, also in the tools
PY="${PYTHON:-$REPO/.venv/bin/python}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# prep/ and bin/ once (the script's first two steps; its quick one-iteration shard is dropped)
"$PY" "$REPO/scripts/wmt_eval.py" "${ARGS[@]}" --out "$WORK/prep" --num-shards 2 --shard-id 0 \
  -- --sampler mask-predict --decoding-iterations 1 >/dev/null 2>&1
rm -rf "$WORK/prep/shards" "$WORK/prep/logs"
for run in one two; do cp -r "$WORK/prep" "$WORK/$run"; done
t0=$(date +%s.%N)
"$PY" "$REPO/scripts/wmt_eval.py" "${ARGS[@]}" --out "$WORK/one" -- "${GEN[@]}" > "$WORK/one.txt" 2> "$WORK/one.err"
t1=$(date +%s.%N)
"$PY" "$REPO/scripts/wmt_eval.py" "${ARGS[@]}" --out "$WORK/two" --launcher submitit --num-shards 2 -- "${GEN[@]}" > "$WORK/two.txt" 2> "$WORK/two.err"
t2=$(date +%s.%N)
cmp "$WORK/one/hyp.tok.en" "$WORK/two/hyp.tok.en"  # the sharded output is the unsharded one
balance=$(grep -o "shards by expected cost.*" "$WORK/two.err" | head -1)
one=$(echo "$t1 - $t0" | bc); two=$(echo "$t2 - $t1" | bc)
{
  echo "# 2 submitit shard jobs (local executor) against one process"
  echo
  echo "\`bash benchmarks/submitit_shards.sh\` on $(nproc --all) CPU cores (load average $(cut -d" " -f1-3 /proc/loadavg) at the end, shared with other work) ($(date -u +%Y-%m-%d)): \`scripts/wmt_eval.py\` on"
  echo "the Mask-Predict toy checkpoint of ../shared, its 100 validation sentences, \`${GEN[*]}\`,"
  echo "\`--cpu --batch-size 10\`, OMP_NUM_THREADS=1, both from the same prepared and binarized data."
  echo
  echo "| run | wall time (s) |"
  echo "|---|---:|"
  printf '| one process (`--num-shards 1`) | %.1f |\n' "$one"
  printf '| 2 shard jobs (`--launcher submitit --num-shards 2`, local executor) + merge | %.1f |\n' "$two"
  echo
  printf 'Speed-up %.2fx.  %s.  Hypotheses and both BLEU scores identical (checked by the script).\n' \
    "$(echo "$one / $two" | bc -l)" "$balance"
  echo
  echo "Scores: $(head -1 "$WORK/two.txt")"
} > "$REPO/docs/results/submitit_local.md"
cat "$REPO/docs/results/submitit_local.md"
