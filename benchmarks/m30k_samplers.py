"""Every sampler on the real Multi30k CMLM (../shared/models/m30k-cmlm), one table.

    .venv/bin/python benchmarks/m30k_samplers.py [--shared ../shared] [--n 100] [--epochs 10]
        [--burn-in 2] [--chains 2] [--length-beam 1] [--out docs/results/m30k_samplers.md]

Decodes the first --n sentences of test_2016_flickr (de->en) with each setting and writes a
Markdown table (BLEU = sacreBLEU on detokenized text, mean energies of the outputs, acceptance,
novel-transition rate, model rows, wall-clock seconds) with the exact command that made it.
A benchmark, not a test: it takes tens of minutes on 2 CPU cores.
"""

import argparse
import logging
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def settings(a):
    chain = dict(mh_epochs=a.epochs, burn_in=a.burn_in, num_chains=a.chains)
    return {
        "mask-predict (10 it.)": dict(sampler="mask-predict", decoding_iterations=10),
        # fairseq's IterativeRefinementGenerator settings: argmax +- 2 lengths, re-mask floor 0
        "mask-predict (10 it., fairseq's length beam and re-masking)": dict(
            sampler="mask-predict", decoding_iterations=10, mask_predict_min_remask=0, length_style="around-argmax"),
        "degenerate Gibbs": dict(sampler="gibbs", energy="local", **chain),
        "degenerate Gibbs, T=0.8": dict(sampler="gibbs", energy="local", proposal_temperature=0.8, **chain),
        "MH raw": dict(sampler="mh", energy="raw", **chain),
        "MH local": dict(sampler="mh", energy="local", **chain),
        "block Gibbs (k=4 annealed)": dict(sampler="block-gibbs", energy="local", block_size=4, **chain),
        "block MH raw (k=4 annealed)": dict(sampler="block-mh", energy="raw", block_size=4, **chain),
        "block MH local (k=4 annealed)": dict(sampler="block-mh", energy="local", block_size=4, **chain),
        "annealed MH raw (T=0.8, -0.05/epoch)": dict(sampler="mh", energy="raw", proposal_temperature=0.8,
                                                     anneal_rate=0.05, min_target_temperature=0.2,
                                                     force_accept_epochs=2, **chain),
        "annealed MH local (T=0.8, -0.05/epoch)": dict(sampler="mh", energy="local", proposal_temperature=0.8,
                                                       anneal_rate=0.05, min_target_temperature=0.2,
                                                       force_accept_epochs=2, **chain),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", default=os.environ.get("FAIRSEQ_MH_SHARED", str(REPO.parent / "shared")))
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--burn-in", type=int, default=2)
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--length-beam", type=int, default=1)
    p.add_argument("--only", action="append", default=None, metavar="NAME",
                   help="run only this setting (repeat for several; names as in the table)")
    p.add_argument("--out", default=str(REPO / "docs" / "results" / "m30k_samplers.md"))
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    import torch

    from fairseq_mh.core.config import SamplerConfig
    from fairseq_mh.errors import UserError
    from fairseq_mh.evaluation import markdown_table, multi30k_test

    torch.set_num_threads(2)
    try:
        dec, src, ref = multi30k_test(a.shared, "m30k-cmlm", a.n)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = []
    wanted = set(a.only) if a.only else None
    unknown = sorted(wanted - set(settings(a))) if wanted else []
    if unknown:
        print(f"error: unknown --only setting(s) {unknown}: choose from {sorted(settings(a))}", file=sys.stderr)
        return 2
    for name, opts in settings(a).items():
        if wanted and name not in wanted:
            continue
        opts = dict(opts)
        style = opts.pop("length_style", "top")
        lb = 5 if opts["sampler"] == "mask-predict" else a.length_beam
        t0 = time.time()
        run = dec.run(name, SamplerConfig(**opts), src, ref, batch_size=25, length_beam=lb, length_style=style)
        row = run.as_row()
        row["decoder"] = f"{name}, length beam {lb}"
        rows.append(row)
        print(f"{name}: BLEU {run.bleu:.2f}, {time.time() - t0:.0f} s", flush=True)
    cmd = shlex.join(["python", "benchmarks/m30k_samplers.py", *(argv if argv is not None else sys.argv[1:])])
    text = (f"# Samplers on the Multi30k CMLM\n\nFirst {a.n} sentences of test_2016_flickr (de->en), "
            f"model ../shared/models/m30k-cmlm; chain samplers: {a.epochs} epochs, burn-in {a.burn_in}, "
            f"{a.chains} chains, best post-burn-in state; 2 CPU cores, torch {torch.__version__}.\n\n"
            f"Command: `{cmd.strip()}`\n\n{markdown_table(rows)}\n")
    from fairseq_mh.textio import atomic_write

    atomic_write(Path(a.out), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
