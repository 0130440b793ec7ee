"""A WMT-size stand-in: an original-format Mask-Predict checkpoint with random weights.

    .venv/bin/python benchmarks/standin_checkpoint.py OUT_DIR [--vocab 40000] [--seed 0]

Writes OUT_DIR/checkpoint_best.pt, dict.de.txt and dict.en.txt in the layout the released
``maskPredict_de_en`` models have: ``bert_transformer_seq2seq`` at the released base size (6+6
layers, d 512, FFN 2048, 8 heads, shared embeddings), a joined vocabulary of about 40k entries
(the dictionaries hold no ``<mask>`` line: the task adds it), the original state-dict names and
an ``argparse.Namespace`` of the original arguments.  The weights are random (BERT
initialisation), so it measures throughput and memory at the real size on any machine and is
never used for BLEU.  Generated on demand (about 265 MB, 70M parameters): never committed.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

BASE = dict(
    arch="bert_transformer_seq2seq", task="translation_self", criterion="label_smoothed_length_cross_entropy",
    label_smoothing=0.1, optimizer="adam", lr=[0.0005], lr_scheduler="inverse_sqrt", warmup_updates=10000,
    encoder_layers=6, decoder_layers=6, encoder_embed_dim=512, decoder_embed_dim=512, encoder_ffn_embed_dim=2048,
    decoder_ffn_embed_dim=2048, encoder_attention_heads=8, decoder_attention_heads=8, dropout=0.3,
    attention_dropout=0.0, relu_dropout=0.0, share_all_embeddings=True, share_decoder_input_output_embed=True,
    max_source_positions=1024, max_target_positions=1024, left_pad_source=True, left_pad_target=False,
    source_lang="de", target_lang="en", seed=1, max_tokens=8192, data=["data-bin/wmt14.en-de"],
)


def write_dictionary(path: Path, vocab: int) -> None:
    """``vocab`` entries ``w<i>@@``/``w<i>`` with decreasing counts, as the original preprocess
    writes them (the four specials and ``<mask>`` are not lines of the file)."""
    words = [f"w{i}@@" if i % 3 else f"w{i}" for i in range(vocab)]
    path.write_text("".join(f"{w} {vocab - i}\n" for i, w in enumerate(words)), encoding="utf-8")


def build(out: Path, vocab: int = 40000, seed: int = 0) -> Path:
    """Writes the stand-in to ``out`` and returns its checkpoint path."""
    import torch

    import fairseq_mh  # noqa: F401  (registers the architecture)
    from fairseq_mh.models.mask_predict_transformer import MaskPredictTransformerModel
    from fairseq_mh.tasks.translation_self import load_mask_predict_dictionary

    out.mkdir(parents=True, exist_ok=True)
    for lang in ("de", "en"):
        write_dictionary(out / f"dict.{lang}.txt", vocab)
    d = load_mask_predict_dictionary(str(out / "dict.de.txt"))
    args = argparse.Namespace(**BASE)
    torch.manual_seed(seed)
    model = MaskPredictTransformerModel.build_model(args, argparse.Namespace(source_dictionary=d,
                                                                            target_dictionary=d))
    state = {
        "args": args,
        "model": collections.OrderedDict(model.state_dict()),
        "optimizer_history": [{"criterion_name": "LabelSmoothedLengthCrossEntropyCriterion",
                               "optimizer_name": "FairseqAdam", "lr_scheduler_state": {"best": None},
                               "num_updates": 0}],
        "extra_state": {"epoch": 1, "batch_offset": 0, "val_loss": None},
        "last_optimizer_state": {},
    }
    path = out / "checkpoint_best.pt"
    torch.save(state, path)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--vocab", type=int, default=40000, help="dictionary entries (the released de-en has ~39.8k)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.vocab < 10:
        print("standin_checkpoint.py: error: --vocab must be at least 10", file=sys.stderr)
        return 2
    print(build(a.out, a.vocab, a.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
