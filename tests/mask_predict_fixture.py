"""A small Mask-Predict checkpoint in the ORIGINAL format, made by the tests.

The original code is not installed here, so this trains the plug-in's re-implementation of
``bert_transformer_seq2seq`` for a few hundred steps with Mask-Predict's objective (a uniform
number of target tokens masked, cross-entropy on them, plus the length loss), then saves what
the original ``train.py`` saves: the original state-dict key names, an ``argparse.Namespace``
of arguments naming the original task, architecture and criterion, training records, and
dictionaries written the way the original ``preprocess.py`` writes them (no ``<mask>`` line).
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path
from typing import Dict

import torch
import torch.nn.functional as F

from cli_helpers import run, write_toy_corpus


def write_joined_dictionary(raw: Path, out: Path) -> None:
    counts = collections.Counter()
    for split in ("train",):
        for side in ("src", "tgt"):
            counts.update((raw / f"{split}.{side}").read_text().split())
    lines = [f"{w} {c}" for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    out.write_text("\n".join(lines) + "\n")


ARGS = dict(
    arch="bert_transformer_seq2seq", task="translation_self", criterion="label_smoothed_length_cross_entropy",
    label_smoothing=0.1, optimizer="adam", lr=[0.002], lr_scheduler="inverse_sqrt", warmup_updates=50,
    encoder_layers=2, decoder_layers=2, encoder_embed_dim=48, decoder_embed_dim=48, encoder_ffn_embed_dim=96,
    decoder_ffn_embed_dim=96, encoder_attention_heads=4, decoder_attention_heads=4, dropout=0.0,
    share_all_embeddings=True, max_source_positions=64, max_target_positions=64, left_pad_source=True,
    left_pad_target=False, source_lang="src", target_lang="tgt", seed=0, max_tokens=4000, data=["data-bin"],
)


def make_mask_predict_model(workdir: Path, steps: int = 400) -> Dict[str, Path]:
    import fairseq_mh  # noqa: F401
    from fairseq_mh.models.mask_predict_transformer import MaskPredictTransformerModel
    from fairseq_mh.tasks.translation_self import load_mask_predict_dictionary

    raw = workdir / "raw"
    write_toy_corpus(raw, seed=1)
    model_dir = workdir / "model"
    model_dir.mkdir(parents=True)
    write_joined_dictionary(raw, model_dir / "dict.src.txt")
    (model_dir / "dict.tgt.txt").write_text((model_dir / "dict.src.txt").read_text())
    data = workdir / "bin"
    run(["fairseq-mh-preprocess", "--task", "translation_self", "--source-lang", "src", "--target-lang", "tgt",
         "--srcdict", model_dir / "dict.src.txt", "--tgtdict", model_dir / "dict.tgt.txt",
         "--trainpref", raw / "train", "--validpref", raw / "valid", "--testpref", raw / "test",
         "--destdir", data, "--workers", "1"])

    d = load_mask_predict_dictionary(str(model_dir / "dict.src.txt"))
    task = argparse.Namespace(source_dictionary=d, target_dictionary=d)
    args = argparse.Namespace(**ARGS)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest, and far faster on a busy machine
    model = MaskPredictTransformerModel.build_model(args, task)
    model.train()

    def encode(line):
        return [d.index(w) for w in line.split()] + [d.eos()]

    pairs = [(encode(s), encode(t)) for s, t in zip((raw / "train.src").read_text().splitlines(),
                                                   (raw / "train.tgt").read_text().splitlines())]
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.9, 0.98))
    pad, mask = d.pad(), d.index("<mask>")
    for step in range(steps):
        idx = torch.randint(len(pairs), (64,), generator=g).tolist()
        src = [pairs[i][0] for i in idx]
        tgt = [pairs[i][1] for i in idx]
        S, T = max(map(len, src)), max(map(len, tgt))
        src_t = torch.full((64, S), pad)
        tgt_t = torch.full((64, T), pad)
        for b, (s, t) in enumerate(zip(src, tgt)):
            src_t[b, S - len(s):] = torch.tensor(s)  # left-padded source, as the original
            tgt_t[b, : len(t)] = torch.tensor(t)
        lengths = tgt_t.ne(pad).sum(1)
        # Mask-Predict's training noise: mask a uniformly drawn number of target tokens
        n_mask = (torch.rand(64, generator=g) * lengths.float()).long() + 1
        scores = torch.rand(64, T, generator=g).masked_fill(tgt_t.eq(pad), 2.0)
        ranks = scores.argsort(1).argsort(1)
        masked = ranks < n_mask[:, None]
        prev = tgt_t.masked_fill(masked, mask)
        enc = model.encoder(src_t, src_t.ne(pad).sum(1))
        logits, _ = model.decoder(prev, enc)
        loss = F.cross_entropy(logits[masked], tgt_t[masked]) + 0.1 * F.nll_loss(enc["predicted_lengths"], lengths)
        opt.zero_grad()
        loss.backward()
        for group in opt.param_groups:
            group["lr"] = 2e-3 * min(1.0, (step + 1) / 50)
        opt.step()
    model.eval()
    torch.set_num_threads(threads)

    state = {
        "args": args,
        "model": collections.OrderedDict(model.state_dict()),
        "optimizer_history": [{"criterion_name": "LabelSmoothedLengthCrossEntropyCriterion",
                               "optimizer_name": "FairseqAdam", "lr_scheduler_state": {"best": None},
                               "num_updates": steps}],
        "extra_state": {"epoch": 1, "batch_offset": 0, "val_loss": None},
        "last_optimizer_state": {},
    }
    checkpoint = model_dir / "checkpoint_best.pt"
    torch.save(state, checkpoint)
    return {"raw": raw, "data": data, "model_dir": model_dir, "checkpoint": checkpoint, "final_loss": float(loss)}
