#!/usr/bin/env bash
# Trains the small CMLM that the newcomer demo ships (demo/model/), from Multi30k de->en in
# ../shared/data/multi30k (or $MULTI30K).  Not run by the demo itself: its output is committed.
#   bash scripts/train_demo_model.sh [WORKDIR]
# Steps: a joint SentencePiece unigram model (4000 pieces) on train.de + train.en; encoded text;
# fairseq-preprocess (joined dictionary); fairseq-train cmlm_transformer (2+2 layers, d 192) on
# the CPU until $DEMO_TRAIN_HOURS of training in all; the last checkpoint is stripped of optimizer
# state and stored in fp16.  Re-running resumes: finished steps are skipped and fairseq-train
# continues from WORKDIR/ckpt/checkpoint_last.pt (raise DEMO_TRAIN_HOURS to train longer).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
M30K=${MULTI30K:-../shared/data/multi30k}
WORK=${1:-work/demo_model}
HOURS=${DEMO_TRAIN_HOURS:-1.5}
[ -f "$M30K/train.de.gz" ] || { echo "error: Multi30k not found at $M30K (set MULTI30K)" >&2; exit 2; }
mkdir -p "$WORK/raw" "$WORK/spm"
if [ ! -f "$WORK/raw/val.spm.en" ]; then
for split in train val; do
  for l in de en; do zcat "$M30K/$split.$l.gz" > "$WORK/raw/$split.$l"; done
done
$PY - "$WORK" <<'PYEOF'
import sys, sentencepiece as spm
w = sys.argv[1]
spm.SentencePieceTrainer.train(input=[f"{w}/raw/train.de", f"{w}/raw/train.en"], model_prefix=f"{w}/spm/spm",
                               vocab_size=4000, model_type="unigram", character_coverage=1.0,
                               input_sentence_size=60000, shuffle_input_sentence=True, seed_sentencepiece_size=200000)
sp = spm.SentencePieceProcessor(model_file=f"{w}/spm/spm.model")
for split in ("train", "val"):
    for l in ("de", "en"):
        lines = open(f"{w}/raw/{split}.{l}", encoding="utf-8").read().splitlines()
        with open(f"{w}/raw/{split}.spm.{l}", "w", encoding="utf-8") as f:
            for line in lines:
                f.write(" ".join(sp.encode(line, out_type=str)) + "\n")
PYEOF
fi
[ -f "$WORK/bin/dict.en.txt" ] || .venv/bin/fairseq-preprocess --source-lang de --target-lang en --trainpref "$WORK/raw/train.spm" \
  --validpref "$WORK/raw/val.spm" --destdir "$WORK/bin" --joined-dictionary --workers 2
.venv/bin/fairseq-train "$WORK/bin" --user-dir fairseq_mh --task translation_lev --arch cmlm_transformer --noise random_mask \
  --criterion nat_loss --share-all-embeddings --encoder-layers 2 --decoder-layers 2 \
  --encoder-embed-dim 192 --decoder-embed-dim 192 --encoder-ffn-embed-dim 768 --decoder-ffn-embed-dim 768 \
  --encoder-attention-heads 4 --decoder-attention-heads 4 --optimizer adam --adam-betas '(0.9,0.98)' \
  --lr 0.001 --lr-scheduler inverse_sqrt --warmup-updates 400 --warmup-init-lr 1e-07 --weight-decay 0.01 \
  --max-tokens 6000 --length-loss-factor 0.1 --apply-bert-init --decoder-learned-pos --encoder-learned-pos \
  --dropout 0.2 --label-smoothing 0.1 --cpu --seed 1 --save-dir "$WORK/ckpt" --no-epoch-checkpoints \
  --disable-validation --stop-time-hours "$HOURS" --max-epoch 60 --log-interval 200 --num-workers 0
mkdir -p demo/model
$PY - "$WORK" <<'PYEOF'
import sys, torch, shutil, argparse
import fairseq_mh  # allow-lists what fairseq checkpoints pickle
w = sys.argv[1]
state = torch.load(f"{w}/ckpt/checkpoint_last.pt", weights_only=True)
keep = {"cfg": state["cfg"], "args": state.get("args"),
        "model": {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()},
        "optimizer_history": state["optimizer_history"],
        "extra_state": {"train_iterator": {"epoch": state["extra_state"]["train_iterator"]["epoch"]}},
        "last_optimizer_state": None}
torch.save(keep, "demo/model/checkpoint.pt.tmp")
shutil.move("demo/model/checkpoint.pt.tmp", "demo/model/checkpoint.pt")
shutil.copy(f"{w}/spm/spm.model", "demo/model/spm.model")
shutil.copy(f"{w}/bin/dict.de.txt", "demo/model/dict.de.txt")
shutil.copy(f"{w}/bin/dict.en.txt", "demo/model/dict.en.txt")
print("epoch", state["extra_state"]["train_iterator"]["epoch"], "updates", state["optimizer_history"][-1]["num_updates"])
PYEOF
ls -la demo/model
