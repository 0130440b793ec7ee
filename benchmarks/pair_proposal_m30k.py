"""Block MH with pairwise joint proposals (--block-proposal ag|hcb) against independent block
proposals on the Multi30k CMLM (epoch 33), at an equal number of model rows.

    .venv/bin/python benchmarks/pair_proposal_m30k.py [--shared ../shared] [--n 30] [--k 4]
        [--pair-epochs 4] [--independent-epochs 6] [--energy raw] [--out docs/results/pair_proposal_m30k.md]

Every run: block MH, blocks of two (no annealing), random order, tau 1, one chain per sentence
on its most probable length, greedy warm start.  A pair move costs 1 + 2K + T rows and an
independent one 1 + T, so the independent chains get more epochs; the table gives acceptance,
novel rate, BLEU of the best state, and the mean target energy of the chains' current states
interpolated at a row budget every run reached (per-epoch trace, rows per chain).
"""

import argparse
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from m30k_setup import DEFAULT_SHARED, REPO, load_m30k, write_result


def curve(trace, energy):
    """[(mean rows per chain so far, mean energy of the current states)]: the warm start, then
    after each epoch."""
    from fairseq_mh.trace import read_trace

    recs = read_trace(trace)
    pick = (lambda r: r.energy_raw) if energy == "raw" else (lambda r: r.energy_local)
    starts = [pick(r) for r in recs if r.record == "start"]
    by_epoch, cum = defaultdict(list), {}
    for r in sorted((r for r in recs if r.record == "epoch"), key=lambda r: r.epoch):
        key = (r.id, r.length_rank, r.chain)
        cum[key] = cum.get(key, 0) + r.rows
        by_epoch[r.epoch].append((cum[key], pick(r)))
    pts = [(0.0, sum(starts) / len(starts))]  # the warm start, before any move
    for e in sorted(by_epoch):
        g = by_epoch[e]
        pts.append((sum(x for x, _ in g) / len(g), sum(y for _, y in g) / len(g)))
    return pts


def at_rows(pts, budget):
    """Linear interpolation of the energy curve at ``budget`` rows (within the curve)."""
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= budget <= x1:
            return y0 + (y1 - y0) * (budget - x0) / (x1 - x0)
    return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", default=DEFAULT_SHARED)
    p.add_argument("--n", type=int, default=30)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--pair-epochs", type=int, default=4)
    p.add_argument("--independent-epochs", type=int, default=6)
    p.add_argument("--energy", default="raw", choices=("raw", "local"))
    p.add_argument("--out", default=str(REPO / "docs" / "results" / "pair_proposal_m30k.md"))
    a = p.parse_args(argv)
    from fairseq_mh.core.config import SamplerConfig

    dec, src, ref = load_m30k(a.shared, a.n)
    runs = [("independent", a.independent_epochs), ("ag", a.pair_epochs), ("hcb", a.pair_epochs)]
    results = []
    for proposal, epochs in runs:
        cfg = SamplerConfig(sampler="block-mh", energy=a.energy, mh_epochs=epochs, block_size=2, no_block_anneal=True,
                            block_proposal=proposal, block_proposal_k=a.k, seed=1)
        with tempfile.TemporaryDirectory() as tmp:
            trace = Path(tmp) / "trace.jsonl"
            run = dec.run(proposal, cfg, src, ref, batch_size=20, length_beam=1, trace=trace)
            results.append((proposal, epochs, run, curve(trace, a.energy)))
        print(f"{proposal}: BLEU {run.bleu:.2f}, acceptance {run.acceptance:.3f}, rows {run.rows}, "
              f"{run.seconds:.0f} s", flush=True)
    budget = min(c[-1][0] for *_, c in results)
    lines = [f"| proposal | epochs | acceptance | novel | rows per chain | E_{a.energy} at {budget:.0f} rows | "
             f"final E_{a.energy} | BLEU (best state) | seconds |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for proposal, epochs, run, c in results:
        name = proposal if proposal == "independent" else f"{proposal}, K = {a.k}"
        lines.append(f"| {name} | {epochs} | {run.acceptance:.3f} | {run.novel:.3f} | {c[-1][0]:.0f} | "
                     f"{at_rows(c, budget):.2f} | {c[-1][1]:.2f} | {run.bleu:.2f} | {run.seconds:.1f} |")
    curves = "\n".join(f"* {name}: " + ", ".join(f"({x:.0f}, {y:.2f})" for x, y in c) for name, _, _, c in results)
    write_result(a.out, "pair_proposal_m30k.py", argv, "Pairwise block proposals for block MH on the Multi30k CMLM",
                 f"First {a.n} sentences of test_2016_flickr (de->en), model ../shared/models/m30k-cmlm-e33; block MH "
                 f"on E_{a.energy}, blocks of two positions, random order, tau 1, one chain per sentence on its most "
                 f"probable length, greedy warm start",
                 "\n".join(lines) + f"\n\nEnergy curves (mean rows per chain, mean E_{a.energy} of the current "
                 f"states) from the warm start (0 rows), then after each epoch:\n\n{curves}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
