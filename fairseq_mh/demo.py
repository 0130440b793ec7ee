"""The newcomer demo: one small real CMLM, a dozen sentences, every decoder, one table.

Decodes the German sentences of ``demo/sentences.de`` (written by this project's authors, with
their English references in ``demo/sentences.en``) with the CMLM in ``demo/model`` (trained by
``scripts/train_demo_model.sh`` on Multi30k), using mask-predict, degenerate Gibbs, MH with the
raw and the locally normalised energy, and annealed block MH.  Prints a comparison table and
writes a plot of the energy and acceptance per epoch.  Needs no network and no ../shared.

    python -m fairseq_mh.demo [--model DIR] [--sentences PREFIX] [--out DIR] [--epochs N] ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]

# name -> decoding options (the same names as the command line's, see fairseq_mh/options.py)
SETTINGS: Dict[str, dict] = {
    "mask-predict": dict(sampler="mask-predict", decoding_iterations=10),
    "degenerate Gibbs": dict(sampler="gibbs", energy="local"),
    "MH raw": dict(sampler="mh", energy="raw"),
    "MH local": dict(sampler="mh", energy="local"),
    "annealed block MH raw": dict(sampler="block-mh", energy="raw", block_size=4, anneal_rate=0.1,
                                  min_target_temperature=0.2, force_accept_epochs=1),
}


def _parse(argv=None):
    p = argparse.ArgumentParser(prog="fairseq_mh.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(REPO / "demo" / "model"), help="folder with checkpoint.pt, dict.*.txt, spm.model")
    p.add_argument("--sentences", default=str(REPO / "demo" / "sentences"), help="PREFIX of PREFIX.de / PREFIX.en")
    p.add_argument("--out", default="demo_output", help="folder for the table, traces and plot")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--length-beam", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


def _fail(msg: str) -> None:
    print(f"fairseq_mh.demo: error: {msg}", file=sys.stderr)
    sys.exit(2)


def main(argv=None) -> int:
    args = _parse(argv)
    model_dir, prefix, out = Path(args.model), Path(args.sentences), Path(args.out)
    for f in (model_dir / "checkpoint.pt", model_dir / "spm.model", model_dir / "dict.de.txt", model_dir / "dict.en.txt"):
        if not f.is_file():
            _fail(f"{f} is missing: run from a complete clone, or train one with scripts/train_demo_model.sh")
    for f in (Path(f"{prefix}.de"), Path(f"{prefix}.en")):
        if not f.is_file():
            _fail(f"{f} is missing: --sentences takes a PREFIX with PREFIX.de and PREFIX.en")
    src = Path(f"{prefix}.de").read_text(encoding="utf-8").splitlines()
    ref = Path(f"{prefix}.en").read_text(encoding="utf-8").splitlines()
    if len(src) != len(ref) or not src:
        _fail(f"{prefix}.de has {len(src)} lines but {prefix}.en has {len(ref)}: give one reference per sentence")
    if args.epochs < 1 or args.chains < 1 or args.length_beam < 1:
        _fail("--epochs, --chains and --length-beam must be >= 1")

    import sacrebleu
    import sentencepiece as spm
    import torch
    from fairseq import checkpoint_utils, tasks

    import fairseq_mh  # noqa: F401  (registers the plug-in)
    from fairseq_mh.core.config import SamplerConfig
    from fairseq_mh.generator import MHGenerator
    from fairseq_mh.tasks.translation_mh import TranslationMHConfig

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    sp = spm.SentencePieceProcessor(model_file=str(model_dir / "spm.model"))
    cfg = TranslationMHConfig(data=str(model_dir), source_lang="de", target_lang="en")
    task = tasks.setup_task(cfg)
    models, _ = checkpoint_utils.load_model_ensemble([str(model_dir / "checkpoint.pt")], task=task)
    model = models[0].eval().float()

    src_dict = task.source_dictionary
    toks = [src_dict.encode_line(" ".join(sp.encode(s, out_type=str)), add_if_not_exist=False).long() for s in src]
    ds = task.build_dataset_for_inference(toks, [len(t) for t in toks])
    sample = ds.collater([ds[i] for i in range(len(ds))])

    out.mkdir(parents=True, exist_ok=True)
    rows: List[dict] = []
    curves: Dict[str, dict] = {}
    print(f"decoding {len(src)} sentences with {len(SETTINGS)} decoders "
          f"({args.epochs} epochs, {args.chains} chains, length beam {args.length_beam}) ...", flush=True)
    for name, opts in SETTINGS.items():
        sc = SamplerConfig(mh_epochs=args.epochs, num_chains=args.chains, seed=args.seed, **opts)
        trace = out / f"trace_{name.replace(' ', '_')}.jsonl"
        gen = MHGenerator(task.target_dictionary, sc, length_beam=args.length_beam, trace_path=str(trace))
        t0 = time.time()
        hypos = gen.generate(models, sample)
        seconds = time.time() - t0
        gen.close()
        by_id = {int(i): h[0] for i, h in zip(sample["id"], hypos)}
        text = [sp.decode(task.target_dictionary.string(by_id[i]["tokens"], extra_symbols_to_ignore={2}).split())
                for i in range(len(src))]
        (out / f"hyp_{name.replace(' ', '_')}.en").write_text("\n".join(text) + "\n", encoding="utf-8")
        recs = [json.loads(l) for l in trace.read_text().splitlines()]
        chain = [r for r in recs if r["proposals"]]
        prop = sum(r["proposals"] for r in chain)
        energy = [h[0]["energy"] for h in hypos]
        rows.append({
            "decoder": name,
            "BLEU": sacrebleu.corpus_bleu(text, [ref]).score,
            "E_raw": sum(e[0] for e in energy) / len(energy),
            "E_local": sum(e[1] for e in energy) / len(energy),
            "acceptance": (sum(r["acceptance"] * r["proposals"] for r in chain) / prop) if prop else None,
            "novel": (sum(r["novel"] * r["proposals"] for r in chain) / prop) if prop else None,
            "rows": gen.totals["rows"],
            "seconds": seconds,
        })
        if prop:
            E = max(r["epoch"] for r in recs) + 1
            curves[name] = {
                "E_local": [sum(r["energy_local"] for r in recs if r["epoch"] == e) / max(1, sum(r["epoch"] == e for r in recs)) for e in range(E)],
                "acceptance": [sum(r["acceptance"] for r in recs if r["epoch"] == e) / max(1, sum(r["epoch"] == e for r in recs)) for e in range(E)],
            }
        print(f"  {name:<24} BLEU {rows[-1]['BLEU']:5.1f}  {seconds:6.1f} s", flush=True)

    table = _markdown(rows)
    print()
    print(table)
    _write(out / "results.md", table + "\n")
    _plot(curves, out / "energy_acceptance.png")
    print(f"\nexample (sentence 1): {src[0]}\n  reference: {ref[0]}")
    for name in SETTINGS:
        hyp = (out / f"hyp_{name.replace(' ', '_')}.en").read_text(encoding="utf-8").splitlines()[0]
        print(f"  {name:<24} {hyp}")
    print(f"\nwrote {out / 'results.md'}, {out / 'energy_acceptance.png'} and per-decoder traces in {out}/")
    return 0


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def _markdown(rows: List[dict]) -> str:
    head = "| decoder | BLEU | E_raw | E_local | acceptance | novel | model rows | seconds |"
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|"
    lines = [head, sep]
    for r in rows:
        lines.append(
            f"| {r['decoder']} | {r['BLEU']:.1f} | {r['E_raw']:.1f} | {r['E_local']:.1f} | "
            f"{_fmt(r['acceptance'], '.2f')} | {_fmt(r['novel'], '.2f')} | {r['rows']} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _plot(curves: Dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for name, c in curves.items():
        x = range(1, len(c["E_local"]) + 1)
        a.plot(x, [-v for v in c["E_local"]], marker="o", label=name)
        b.plot(x, c["acceptance"], marker="o", label=name)
    a.set_xlabel("epoch")
    a.set_ylabel("-E_local (mean over sentences and chains)")
    b.set_xlabel("epoch")
    b.set_ylabel("acceptance rate")
    a.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
