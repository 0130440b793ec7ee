"""MBR selection against mask-predict on the Multi30k CMLM (../shared/models/m30k-cmlm-e33).

    .venv/bin/python benchmarks/m30k_mbr.py [--n 1000] [--epochs 10] [--burn-in 2] [--chains 4]
        [--length-beam 1] [--only NAME] [--out docs/results/m30k_mbr.md]

Decodes the first --n sentences of test_2016_flickr (de->en) with mask-predict (10
iterations, length beam 5) and with each chain setting, and reports for the chain settings
two selections of the same samples: MBR (``--mh-select mbr``, sentence BLEU on detokenized
text, visit-count weights) and the lowest mean target energy over all chains and lengths
(``--mh-select best``).  Columns: sacreBLEU of each, samples per sentence, distinct samples
per sentence, model rows, sampling seconds and MBR's extra seconds.  A benchmark, not a test.
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
    chain = dict(mh_epochs=a.epochs, burn_in=a.burn_in, num_chains=a.chains, mh_select="mbr", mbr_utility="bleu")
    annealed = dict(proposal_temperature=0.8, anneal_rate=0.05, min_target_temperature=0.2, force_accept_epochs=2)
    return {
        "annealed MH raw (T=0.8, -0.05/epoch)": dict(sampler="mh", energy="raw", **annealed, **chain),
        "MH raw, tau=1": dict(sampler="mh", energy="raw", proposal_temperature=0.8, **chain),
        "PT MH raw (1,0.8,0.6,0.4)": dict(sampler="pt-mh", energy="raw", proposal_temperature=0.8,
                                          pt_temperatures="1,0.8,0.6,0.4", **chain),
    }


def both_selections():
    """A generator factory whose generators also keep the best-energy choice of each sentence."""
    from fairseq_mh.generator import MHGenerator

    made = []

    class Both(MHGenerator):
        def generate(self, models, sample, **kwargs):
            self.batch_ids = sample["id"].tolist()  # batches come sorted by length, not by id
            return super().generate(models, sample, **kwargs)

        def _hypotheses(self, res, b, l):
            mbr, self.mbr = self.mbr, None
            self.best_energy[self.batch_ids[b]] = super()._hypotheses(res, b, l)[0]["tokens"]
            self.mbr = mbr
            return super()._hypotheses(res, b, l)

    def factory(*args, **kwargs):
        made.append(Both(*args, **kwargs))
        made[-1].best_energy = {}
        return made[-1]

    return factory, made


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", default=os.environ.get("FAIRSEQ_MH_SHARED", str(REPO.parent / "shared")))
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--burn-in", type=int, default=2)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--length-beam", type=int, default=1)
    p.add_argument("--only", action="append", default=None, metavar="NAME")
    p.add_argument("--no-baseline", action="store_true", help="skip mask-predict")
    p.add_argument("--out", default=str(REPO / "docs" / "results" / "m30k_mbr.md"))
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    import sacrebleu
    import torch

    from fairseq_mh.core.config import SamplerConfig
    from fairseq_mh.errors import exit_on_user_error
    from fairseq_mh.evaluation import load_multi30k

    with exit_on_user_error("m30k_mbr"):
        dec, src, ref = load_multi30k(Path(a.shared), "m30k-cmlm-e33", a.n)
    lines = ["| decoder | BLEU (MBR) | BLEU (best energy) | samples / sentence | distinct / sentence | model rows "
             "| sampling s | MBR extra s |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    if not a.no_baseline:
        run = dec.run("mask-predict", SamplerConfig(sampler="mask-predict", decoding_iterations=10), src, ref,
                      batch_size=25, length_beam=5)
        lines.append(f"| mask-predict (10 it.), length beam 5 | - | {run.bleu:.2f} | - | - | {run.rows} "
                     f"| {run.seconds:.1f} | - |")
        print(lines[-1], flush=True)
    for name, opts in settings(a).items():
        if a.only and name not in a.only:
            continue
        factory, made = both_selections()
        t0 = time.time()
        run = dec.run(name, SamplerConfig(**opts), src, ref, batch_size=25, length_beam=a.length_beam,
                      generator_cls=factory)
        gen = made[-1]
        best = [dec.decode_tokens(gen.best_energy[i]) for i in range(len(src))]
        bleu_best = sacrebleu.corpus_bleu(best, [ref]).score
        n = len(src)
        lines.append(f"| {name}, {a.chains} chains, length beam {a.length_beam} | {run.bleu:.2f} | {bleu_best:.2f} "
                     f"| {gen.mbr.samples / n:.0f} | {gen.mbr.distinct / n:.1f} | {run.rows} "
                     f"| {run.seconds - gen.mbr.seconds:.1f} | {gen.mbr.seconds:.1f} |")
        print(lines[-1], f"({time.time() - t0:.0f} s)", flush=True)
    cmd = shlex.join(["python", "benchmarks/m30k_mbr.py", *(argv if argv is not None else sys.argv[1:])])
    text = (f"# MBR selection on the Multi30k CMLM (epoch 33)\n\nFirst {a.n} sentences of test_2016_flickr "
            f"(de->en), model ../shared/models/m30k-cmlm-e33; chain settings: {a.epochs} epochs, burn-in "
            f"{a.burn_in}, {a.chains} chains, length beam {a.length_beam}, proposal temperature 0.8; sacreBLEU on "
            f"detokenized text; 2 shared CPU cores, torch {torch.__version__}.\n\nCommand: `{cmd.strip()}`\n\n"
            + "\n".join(lines) + "\n")
    from fairseq_mh.textio import atomic_write

    atomic_write(Path(a.out), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
