"""MBR selection against mask-predict on the Multi30k CMLM (../shared/models/m30k-cmlm-e33).

    .venv/bin/python benchmarks/m30k_mbr.py [--n 1000] [--epochs 10] [--burn-in 2] [--chains 4]
        [--length-beam 5] [--lb-chains 1] [--utility bleu] [--batch-size 25] [--batching shared]
        [--only NAME] [--no-baseline] [--split test_2016_flickr] [--dump DIR] [--out docs/results/m30k_mbr.md]

Decodes the first --n sentences of test_2016_flickr (de->en) with mask-predict (10
iterations, length beam 5) and with each chain setting, and reports for the chain settings
three selections of the same samples: MBR (``--mh-select mbr``, --utility on detokenized
text, visit-count weights), MBR under the other utility (chrF or BLEU), and the lowest mean
target energy over all chains and lengths (``--mh-select best``).  Columns: sacreBLEU of
each, the best-energy choices' mean raw energy, samples per sentence, distinct samples per
sentence, model rows, sampling seconds and the MBR's extra seconds; then the resident memory
after each batch (a soak record).  ``--split val`` decodes the validation set instead (to
tune on); ``--dump DIR`` keeps each chain setting's trace and samples there
(``trace_<k>.jsonl``, ``samples_<k>.jsonl``, k its row) for ``benchmarks/mbr_offline.py``.
A benchmark, not a test.
"""

import argparse
import logging
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

from soak_m30k import resident_bytes

REPO = Path(__file__).resolve().parents[1]


def settings(a):
    """name -> (sampler options, length beam).  The PT setting runs chains // replicas chains,
    so that its rows match the annealed setting's; its output replica is the coldest.  The
    last setting samples the target itself (tau = 1) from the same starts and lengths as the
    annealed mask-predict-start one: MBR evidence for it (``mbr_offline.py --evidence-k 4``).
    New settings go at the end, so that a dump's k keeps naming the same setting."""
    chain = dict(mh_epochs=a.epochs, burn_in=a.burn_in, mh_select="mbr", mbr_utility=a.utility)
    annealed = dict(proposal_temperature=0.8, anneal_rate=0.05, min_target_temperature=0.2)
    ladder = "0.2,0.4,0.7,1"
    pt_chains = max(1, a.chains // len(ladder.split(",")))
    return {
        "annealed MH raw (T=0.8, -0.05/epoch)": (
            dict(sampler="mh", energy="raw", **annealed, force_accept_epochs=2, num_chains=a.chains, **chain), 1),
        "annealed MH raw, mask-predict starts": (
            dict(sampler="mh", energy="raw", warm_start="mask-predict", **annealed, num_chains=a.lb_chains, **chain),
            a.length_beam),
        "MH raw, tau=1": (dict(sampler="mh", energy="raw", proposal_temperature=0.8, num_chains=a.chains, **chain), 1),
        f"PT MH raw ({ladder}), coldest replica output": (
            dict(sampler="pt-mh", energy="raw", proposal_temperature=0.8, pt_temperatures=ladder,
                 num_chains=pt_chains, **chain), 1),
        "MH raw, tau=1, mask-predict starts": (
            dict(sampler="mh", energy="raw", warm_start="mask-predict", proposal_temperature=0.8,
                 num_chains=a.lb_chains, **chain), a.length_beam),
    }


def both_selections():
    """A generator factory whose generators also keep, for each sentence, the best-energy
    choice and the MBR choice under the other utility (chrF for BLEU and back) of the same
    samples; the run's MBR time is the primary utility's only."""
    from fairseq_mh.generator import MHGenerator
    from fairseq_mh.mbr_output import MBRSelector

    made = []

    class Both(MHGenerator):
        def generate(self, models, sample, **kwargs):
            self.batch_ids = sample["id"].tolist()  # batches come sorted by length, not by id
            return super().generate(models, sample, **kwargs)

        def _hypotheses(self, res, b, l):
            mbr, i = self.mbr, self.batch_ids[b]
            self.mbr = None
            self.best_energy[i] = super()._hypotheses(res, b, l)[0]
            if self.other is None:
                self.other = MBRSelector("chrf" if self.cfg.mbr_utility == "bleu" else "bleu", mbr.text)
            self.mbr = self.other
            self.other_mbr[i] = super()._hypotheses(res, b, l)[0]
            self.mbr = mbr
            return super()._hypotheses(res, b, l)

    def factory(*args, **kwargs):
        made.append(Both(*args, **kwargs))
        made[-1].best_energy, made[-1].other_mbr, made[-1].other = {}, {}, None
        return made[-1]

    return factory, made


def _energy(hyps, n):
    return sum(hyps[i]["energy"][0] for i in range(n)) / n


def _chain_row(dec, name, opts, lb, src, ref, common, files=None):
    """One chain setting's table row (its three selections) and its soak line."""
    import sacrebleu

    from fairseq_mh.core.config import SamplerConfig

    factory, made = both_selections()
    rss = []
    run = dec.run(name, SamplerConfig(**opts), src, ref, length_beam=lb, generator_cls=factory,
                  progress=lambda done, total: rss.append(resident_bytes()), **(files or {}), **common)
    gen, n = made[-1], len(src)

    def bleu(choices):
        return sacrebleu.corpus_bleu([dec.decode_tokens(choices[i]["tokens"]) for i in range(n)], [ref]).score

    row = (f"| {name} | {opts['num_chains']} x {lb} | {run.bleu:.2f} | {bleu(gen.other_mbr):.2f} "
           f"| {bleu(gen.best_energy):.2f} | {_energy(gen.best_energy, n):.2f} | {gen.mbr.samples / n:.0f} "
           f"| {gen.mbr.distinct / n:.1f} | {run.rows} | {run.seconds - gen.mbr.seconds - gen.other.seconds:.1f} "
           f"| {gen.mbr.seconds:.1f} |")
    return row, _soak_line(name, opts["num_chains"] * lb, rss)


def parse_args(argv):
    """The benchmark's options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", default=os.environ.get("FAIRSEQ_MH_SHARED", str(REPO.parent / "shared")))
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--burn-in", type=int, default=2)
    p.add_argument("--chains", type=int, default=4, help="chains per sentence at one length")
    p.add_argument("--length-beam", type=int, default=5, help="lengths of the mask-predict-start setting")
    p.add_argument("--lb-chains", type=int, default=1, help="chains per length of the mask-predict-start setting")
    p.add_argument("--utility", default="bleu", choices=["bleu", "chrf"])
    p.add_argument("--batch-size", type=int, default=25, help="sentences per batch (the soak's unit)")
    p.add_argument("--batching", default="shared", choices=["shared", "sentence"])
    p.add_argument("--only", action="append", default=None, metavar="NAME")
    p.add_argument("--no-baseline", action="store_true", help="skip mask-predict")
    p.add_argument("--split", default="test_2016_flickr", choices=["test_2016_flickr", "val"])
    p.add_argument("--dump", type=Path, default=None, metavar="DIR", help="keep traces and samples here")
    p.add_argument("--out", default=str(REPO / "docs" / "results" / "m30k_mbr.md"))
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    import torch

    from fairseq_mh.core.config import SamplerConfig
    from fairseq_mh.errors import exit_on_user_error
    from fairseq_mh.evaluation import load_multi30k

    with exit_on_user_error("m30k_mbr"):
        dec, src, ref = load_multi30k(Path(a.shared), "m30k-cmlm-e33", a.n, a.split)
        if a.dump is not None:
            a.dump.mkdir(parents=True, exist_ok=True)
    n = len(src)
    other = "chrf" if a.utility == "bleu" else "bleu"
    lines = [f"| decoder | chains x lengths | BLEU (MBR, {a.utility}) | BLEU (MBR, {other}) | BLEU (best energy) "
             "| E_raw (best energy) | samples / sentence | distinct / sentence | model rows | sampling s "
             f"| MBR ({a.utility}) extra s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    soak = []
    common = dict(batch_size=a.batch_size, batching=a.batching)
    if not a.no_baseline:
        run = dec.run("mask-predict", SamplerConfig(sampler="mask-predict", decoding_iterations=10), src, ref,
                      length_beam=5, **common)
        lines.append(f"| mask-predict (10 it.) | 1 x 5 | - | - | {run.bleu:.2f} | {run.energy_raw:.2f} | - | - "
                     f"| {run.rows} | {run.seconds:.1f} | - |")
        print(lines[-1], flush=True)
    for k, (name, (opts, lb)) in enumerate(settings(a).items()):
        if a.only and name not in a.only:
            continue
        t0 = time.time()
        files = None if a.dump is None else dict(trace=a.dump / f"trace_{k}.jsonl", dump=a.dump / f"samples_{k}.jsonl")
        row, soak_line = _chain_row(dec, name, opts, lb, src, ref, common, files)
        lines.append(row)
        print(lines[-1], f"({time.time() - t0:.0f} s)", flush=True)
        soak.append(soak_line)
        print(soak[-1], flush=True)
    cmd = shlex.join(["python", "benchmarks/m30k_mbr.py", *(argv if argv is not None else sys.argv[1:])])
    text = (f"# MBR selection on the Multi30k CMLM (epoch 33)\n\nFirst {n} sentences of {a.split} "
            f"(de->en), model ../shared/models/m30k-cmlm-e33; chain settings: {a.epochs} epochs, burn-in "
            f"{a.burn_in}, proposal temperature 0.8, MBR utility sentence {a.utility} on detokenized text; "
            f"best energy = lowest target energy per position over the same samples' chains; "
            f"{a.batch_size} sentences per batch, {a.batching} batching; 2 CPU cores, torch {torch.__version__}."
            f"\n\nCommand: `{cmd.strip()}`\n\n" + "\n".join(lines)
            + "\n\nResident memory after each batch (the soak record):\n\n" + "\n".join(soak) + "\n")
    from fairseq_mh.textio import atomic_write

    atomic_write(Path(a.out), text)
    print(text)
    return 0


def _soak_line(name, chains, rss):
    """How far the resident set strays, batch after batch, from its value after the first."""
    if len(rss) < 2:
        return f"* {name}: {len(rss)} batch(es), too few for a soak record"
    first, rest = rss[0], rss[1:]
    worst = max(abs(r - first) for r in rest) / first
    return (f"* {name} ({chains} chains per sentence): {len(rss)} batches; resident {first / 2**20:.0f} MiB after "
            f"the first, {min(rest) / 2**20:.0f}-{max(rest) / 2**20:.0f} MiB after the others (at most "
            f"{worst:.1%} from the first; last {rest[-1] / first - 1:+.1%})")


if __name__ == "__main__":
    sys.exit(main())
