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
import os
import sys
from pathlib import Path
from typing import Dict

from .errors import UserError, exit_on_user_error
from .textio import atomic_file, atomic_write, read_lines

REPO = Path(__file__).resolve().parents[1]
PROG = "fairseq_mh.demo"

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
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(REPO / "demo" / "model"), help="folder with checkpoint.pt, dict.*.txt, spm.model")
    p.add_argument("--sentences", default=str(REPO / "demo" / "sentences"), help="PREFIX of PREFIX.de / PREFIX.en")
    p.add_argument("--out", default="demo_output", help="folder for the table, traces and plot")
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--burn-in", type=int, default=4)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--length-beam", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


def _inputs(args):
    """The checked inputs (a mistake is a UserError): model folder, sentences, references."""
    model_dir, prefix = Path(args.model), Path(args.sentences)
    for f in (model_dir / "checkpoint.pt", model_dir / "spm.model", model_dir / "dict.de.txt", model_dir / "dict.en.txt"):
        if not f.is_file():
            raise UserError(f"{f} is missing: run from a complete clone, or train one with scripts/train_demo_model.sh")
    for f in (Path(f"{prefix}.de"), Path(f"{prefix}.en")):
        if not f.is_file():
            raise UserError(f"{f} is missing: --sentences takes a PREFIX with PREFIX.de and PREFIX.en")
    src, ref = read_lines(f"{prefix}.de"), read_lines(f"{prefix}.en")
    if len(src) != len(ref) or not src:
        raise UserError(f"{prefix}.de has {len(src)} lines but {prefix}.en has {len(ref)}: "
                        f"give one reference per sentence")
    if args.epochs < 1 or args.chains < 1 or args.length_beam < 1:
        raise UserError("--epochs, --chains and --length-beam must be >= 1")
    if not 0 <= args.burn_in < args.epochs:
        raise UserError(f"--burn-in must be in [0, --epochs) (got {args.burn_in} with {args.epochs} epochs)")
    return model_dir, src, ref


def main(argv=None) -> int:
    args = _parse(argv)
    with exit_on_user_error(PROG):
        model_dir, src, ref = _inputs(args)
        _decode_all(args, model_dir, src, ref)
    return 0


def _decode_all(args, model_dir: Path, src, ref) -> None:
    """Decodes with every setting, prints the table and example, writes the outputs."""
    out = Path(args.out)

    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger().setLevel(logging.WARNING)
    import torch

    from .core.config import SamplerConfig
    from .evaluation import load_decoder, markdown_table

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    dec = load_decoder(model_dir / "checkpoint.pt", model_dir, "translation_mh", "de", "en", model_dir / "spm.model")
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    print(f"decoding {len(src)} sentences with {len(SETTINGS)} decoders ({args.epochs} epochs, burn-in "
          f"{args.burn_in}, {args.chains} chains, length beam {args.length_beam}) ...", flush=True)
    for name, opts in SETTINGS.items():
        slug = name.replace(" ", "_")
        # chain settings are ignored by mask-predict (a refinement decoder)
        sc = SamplerConfig(seed=args.seed, mh_epochs=args.epochs, burn_in=args.burn_in, num_chains=args.chains, **opts)
        run = dec.run(name, sc, src, ref, length_beam=args.length_beam, trace=out / f"trace_{slug}.jsonl")
        atomic_write(out / f"hyp_{slug}.en", "\n".join(run.hypotheses) + "\n")
        runs.append(run)
        print(f"  {name:<24} BLEU {run.bleu:5.1f}  {run.seconds:6.1f} s", flush=True)

    table = markdown_table([r.as_row() for r in runs])
    print()
    print(table)
    atomic_write(out / "results.md", table + "\n")
    _plot({r.name: r.curves for r in runs if r.curves}, out / "energy_acceptance.png")
    print(f"\nexample (sentence 1): {src[0]}\n  reference: {ref[0]}")
    for r in runs:
        print(f"  {r.name:<24} {r.hypotheses[0]}")
    print(f"\nwrote {out / 'results.md'}, {out / 'energy_acceptance.png'} and per-decoder traces in {out}/")


def _plot(curves: Dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for name, c in curves.items():
        x = range(1, len(c["energy_local"]) + 1)
        a.plot(x, [-v for v in c["energy_local"]], marker="o", label=name)
        b.plot(x, c["acceptance"], marker="o", label=name)
    from matplotlib.ticker import MaxNLocator

    for ax in (a, b):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
    a.set_ylabel("-E_local (mean over sentences and chains)")
    b.set_ylabel("acceptance rate")
    a.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(path, binary=True) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
