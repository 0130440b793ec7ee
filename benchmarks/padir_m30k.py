"""PaDIR's refinement strategies for mask-predict on the Multi30k CMLM (epoch 33), one table.

    .venv/bin/python benchmarks/padir_m30k.py [--shared ../shared] [--n 100] [--length-beam 5]
        [--only NAME ...] [--out docs/results/padir_m30k.md]

Decodes the first --n sentences of test_2016_flickr (de->en) with mask-predict (10 iterations,
--length-beam lengths) under each strategy alone and under a combination, and writes a Markdown
table (sacreBLEU on detokenized text, decoding rows without energy reporting, seconds) with
the exact command.  A benchmark, not a test.
"""

import argparse
import gzip
import logging
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SETTINGS = {
    "original mask-predict": {},
    "random init": dict(mask_predict_init="random"),
    "constant 2 least confident": dict(mask_predict_remask="constant", mask_predict_remask_amount=2),
    "share 0.3 least confident": dict(mask_predict_remask="share", mask_predict_remask_amount=0.3),
    "stutter": dict(mask_predict_stutter=True),
    "summed logits": dict(mask_predict_score="summed-logits"),
    "3 parallel decodes": dict(mask_predict_parallel=3),
    "brevity (length norm 0.8)": dict(mask_predict_length_norm=0.8),
    "early stop": dict(mask_predict_early_stop=True),
}
COMBINATIONS = {
    "stutter + 3 parallel + early stop": dict(mask_predict_stutter=True, mask_predict_parallel=3,
                                              mask_predict_early_stop=True),
    "stutter + 3 parallel": dict(mask_predict_stutter=True, mask_predict_parallel=3),
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", default=os.environ.get("FAIRSEQ_MH_SHARED", str(REPO.parent / "shared")))
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--length-beam", type=int, default=5)
    p.add_argument("--only", action="append", default=None, metavar="NAME")
    p.add_argument("--out", default=str(REPO / "docs" / "results" / "padir_m30k.md"))
    a = p.parse_args(argv)
    model, data = Path(a.shared) / "models" / "m30k-cmlm-e33", Path(a.shared) / "data" / "multi30k"
    if not (model / "checkpoint.pt").is_file() or not (data / "test_2016_flickr.de.gz").is_file():
        print(f"error: {model} or {data} is missing: pass --shared", file=sys.stderr)
        return 2
    settings = {**SETTINGS, **COMBINATIONS}
    unknown = sorted(set(a.only or ()) - set(settings))
    if unknown:
        print(f"error: unknown --only setting(s) {unknown}: choose from {sorted(settings)}", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    import torch

    from fairseq_mh.core.config import SamplerConfig
    from fairseq_mh.evaluation import load_decoder
    from fairseq_mh.textio import atomic_write

    torch.set_num_threads(1)  # on shared cores more threads are far slower
    src = gzip.open(data / "test_2016_flickr.de.gz", "rt", encoding="utf-8").read().splitlines()[: a.n]
    ref = gzip.open(data / "test_2016_flickr.en.gz", "rt", encoding="utf-8").read().splitlines()[: a.n]
    dec = load_decoder(model / "checkpoint.pt", model, "translation_mh", "de", "en", model / "spm.model")
    lines = ["| strategy | options | BLEU | rows | seconds |", "|---|---|---:|---:|---:|"]
    for name, opts in settings.items():
        if a.only and name not in a.only:
            continue
        cfg = SamplerConfig(sampler="mask-predict", decoding_iterations=10, report_energy=False, seed=1, **opts)
        t0 = time.time()
        run = dec.run(name, cfg, src, ref, batch_size=25, length_beam=a.length_beam)
        flags = " ".join(f"--{k.replace('_', '-')} {v}" if v is not True else f"--{k.replace('_', '-')}"
                         for k, v in opts.items()) or "(defaults)"
        lines.append(f"| {name} | `{flags}` | {run.bleu:.2f} | {run.rows} | {run.seconds:.1f} |")
        print(f"{name}: BLEU {run.bleu:.2f}, rows {run.rows}, {time.time() - t0:.0f} s", flush=True)
    cmd = shlex.join(["python", "benchmarks/padir_m30k.py", *(argv if argv is not None else sys.argv[1:])])
    text = (f"# PaDIR's refinement strategies for mask-predict on the Multi30k CMLM\n\n"
            f"First {a.n} sentences of test_2016_flickr (de->en), model ../shared/models/m30k-cmlm-e33; "
            f"mask-predict, 10 iterations, length beam {a.length_beam} (most probable lengths), at least one "
            f"position re-masked; rows: decoding rows only (no energy reporting); 1 thread on 2 shared CPU cores, "
            f"torch {torch.__version__}.\n\nCommand: `{cmd.strip()}`\n\n" + "\n".join(lines) + "\n")
    atomic_write(Path(a.out), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
