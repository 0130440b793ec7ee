"""A soak run: resident memory batch after batch over the whole Multi30k test set.

    .venv/bin/python benchmarks/soak_m30k.py [--n 1000] [--chains 5] [--epochs 1]
        [--batch-size 25] [--batching shared] [--out docs/results/soak_m30k.md]

Decodes the first --n sentences of test_2016_flickr with ../shared/models/m30k-cmlm-e33 and
MH (--chains chains, one length) through the generator, batch by batch as
``fairseq-mh-generate`` does, and records the process's resident set after each batch with
the batch's longest source.  Memory is flat when every batch after the first stays within
10% of the first's.  A benchmark, not a test (about 10 minutes on 2 CPU cores).
"""

import argparse
import logging
import os
import shlex
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def resident_bytes() -> int:
    """The process's resident set now (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", default=os.environ.get("FAIRSEQ_MH_SHARED", str(REPO.parent / "shared")))
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--chains", type=int, default=5)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=25)
    p.add_argument("--batching", default="shared", choices=["shared", "sentence"])
    p.add_argument("--out", default=str(REPO / "docs" / "results" / "soak_m30k.md"))
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    import torch

    from fairseq_mh.core.config import SamplerConfig
    from fairseq_mh.errors import exit_on_user_error
    from fairseq_mh.evaluation import load_multi30k
    from fairseq_mh.textio import atomic_write

    with exit_on_user_error("soak_m30k"):
        dec, src, _ = load_multi30k(Path(a.shared), "m30k-cmlm-e33", a.n)
    cfg = SamplerConfig(sampler="mh", mh_epochs=a.epochs, num_chains=a.chains)
    gen = dec.generator(cfg, length_beam=1, batching=a.batching)
    toks = dec.encode(src)
    ds = dec.task.build_dataset_for_inference(toks, [len(t) for t in toks])
    batches = []
    for lo in range(0, len(ds), a.batch_size):
        sample = ds.collater([ds[i] for i in range(lo, min(lo + a.batch_size, len(ds)))])
        gen.generate(dec.models, sample)
        batches.append((resident_bytes() / 2**20, int(sample["net_input"]["src_lengths"].max())))
        print(f"batch {len(batches)}: {batches[-1][0]:.0f} MiB (longest source {batches[-1][1]})", flush=True)
    gen.close()
    first = batches[0][0]
    rest = [r for r, _ in batches[1:]]
    worst = max(abs(r - first) for r in rest) / first if rest else 0.0
    peak = max(range(len(batches)), key=lambda i: batches[i][0])
    cmd = shlex.join(["python", "benchmarks/soak_m30k.py", *(argv if argv is not None else sys.argv[1:])])
    lines = [f"# Soak: resident memory over {len(batches)} batches\n",
             f"First {len(src)} sentences of Multi30k test_2016_flickr, ../shared/models/m30k-cmlm-e33; MH, "
             f"{a.chains} chains, {a.epochs} epoch(s), one length; {a.batch_size} sentences per batch, {a.batching} "
             f"batching; {gen.totals['rows']} model rows; torch {torch.__version__}, 2 CPU cores.\n",
             f"Command: `{cmd}`\n",
             f"* Resident after the first batch: {first:.0f} MiB; after the others: {min(rest):.0f}-{max(rest):.0f} MiB.",
             f"* Largest distance from the first: {worst:.1%} (flat means within 10%: "
             f"{'yes' if worst <= 0.10 else 'no'}); after the last batch: {rest[-1] / first - 1:+.1%}.",
             f"* Highest after batch {peak + 1} (longest source {batches[peak][1]} tokens).\n",
             "| batch | resident MiB | longest source |", "|---:|---:|---:|"]
    lines += [f"| {i + 1} | {r:.0f} | {s} |" for i, (r, s) in enumerate(batches)]
    atomic_write(Path(a.out), "\n".join(lines) + "\n")
    print("\n".join(lines[:6]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
