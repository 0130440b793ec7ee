"""The cost estimate against measured runs, and what progress reporting costs.

    .venv/bin/python benchmarks/estimate_accuracy.py [--shared ../shared] [--n 40] [--epochs 4]
        [--chains 2] [--out docs/results/estimate_accuracy.md]

On the first --n sentences of Multi30k test_2016_flickr with ../shared/models/m30k-cmlm-e33,
for MH, block MH, degenerate Gibbs and mask-predict: the estimate ``--mh-estimate`` prints
(rows from the length predictor's candidates and the engine's estimator; time at rows/s from
the calibration on this machine) against the rows counted and the seconds measured while
decoding; then the same MH decode with progress updates at every step (interval 0, the
most frequent) against none.  A benchmark, not a test (a few minutes on 2 CPU cores).
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


def _settings(a):
    chain = dict(mh_epochs=a.epochs, burn_in=1, num_chains=a.chains)
    return {"mh": dict(sampler="mh", **chain), "block-mh": dict(sampler="block-mh", block_size=4, **chain),
            "gibbs": dict(sampler="gibbs", **chain), "mask-predict": dict(sampler="mask-predict")}


def _estimate(dec, cfg, src, lb):
    from fairseq_mh.run_estimate import estimate_run

    toks = dec.encode(src)
    ds = dec.task.build_dataset_for_inference(toks, [len(t) for t in toks])
    return estimate_run(dec.models[0], dec.task.target_dictionary, ds, cfg, lb, "top", 32768)


def _measure(a, dec, src, ref):
    from fairseq_mh.core.config import SamplerConfig

    rows = []
    for name, opts in _settings(a).items():
        cfg = SamplerConfig(**opts, report_energy=True)  # the decode writes a trace, as the CLI with --mh-trace
        est = _estimate(dec, cfg, src, a.length_beam)
        run = dec.run(name, cfg, src, ref, batch_size=len(src), length_beam=a.length_beam)
        rows.append({"sampler": name, "est_rows": est.rows, "rows": run.rows, "est_s": est.seconds,
                     "s": run.seconds, "rate": est.rows_per_second})
        print(f"{name}: estimated {est.rows:.0f} rows / {est.seconds:.1f} s, measured {run.rows} / "
              f"{run.seconds:.1f} s", flush=True)
    return rows


def _progress_cost(a, dec, src, ref):
    from fairseq_mh.core.config import SamplerConfig
    from fairseq_mh.progress import DecodeProgress

    cfg = SamplerConfig(**_settings(a)["mh"])
    logging.getLogger("fairseq_mh.progress").setLevel(logging.WARNING)  # build every line, print none
    times = {}
    for mode in ("off", "log", "off", "log"):  # interleaved, best of two each
        p = DecodeProgress(mode, interval=0.0)
        t0 = time.perf_counter()
        dec.run("mh", cfg, src, ref, batch_size=len(src), length_beam=a.length_beam, decode_progress=p)
        times[mode] = min(times.get(mode, float("inf")), time.perf_counter() - t0)
    return times


def _table(rows, times, a, cmd, torch):
    lines = ["| sampler | estimated rows | counted rows | rows error | estimated s | measured s | time error |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['sampler']} | {r['est_rows']:.0f} | {r['rows']} | {r['est_rows'] / r['rows'] - 1:+.1%} | "
                     f"{r['est_s']:.1f} | {r['s']:.1f} | {r['est_s'] / r['s'] - 1:+.1%} |")
    progress = "Progress-update timing: not measured in this run (--skip-progress-cost).\n"
    if times:
        over = times["log"] / times["off"] - 1
        progress = (f"Progress updates at every step (interval 0, lines built but not printed): MH decode "
                    f"{times['log']:.2f} s against {times['off']:.2f} s without ({over:+.1%}; best of two each).\n")
    return (f"# Cost estimate against measured runs\n\nFirst {a.n} sentences of Multi30k test_2016_flickr, "
            f"../shared/models/m30k-cmlm-e33, length beam {a.length_beam}; chain samplers {a.epochs} epochs, "
            f"{a.chains} chains; one batch per run; 2 CPU cores, torch {torch.__version__}.\n\n"
            f"Command: `{cmd}`\n\n" + "\n".join(lines) + "\n\n" + progress)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", default=os.environ.get("FAIRSEQ_MH_SHARED", str(REPO.parent / "shared")))
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--length-beam", type=int, default=1)
    p.add_argument("--skip-progress-cost", action="store_true", help="leave out the progress-update timing")
    p.add_argument("--out", default=str(REPO / "docs" / "results" / "estimate_accuracy.md"))
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    import torch

    from fairseq_mh.errors import exit_on_user_error
    from fairseq_mh.evaluation import load_multi30k
    from fairseq_mh.textio import atomic_write

    with exit_on_user_error("estimate_accuracy"):
        dec, src, ref = load_multi30k(Path(a.shared), "m30k-cmlm-e33", a.n)
    rows = _measure(a, dec, src, ref)
    times = None if a.skip_progress_cost else _progress_cost(a, dec, src, ref)
    cmd = shlex.join(["python", "benchmarks/estimate_accuracy.py", *(argv if argv is not None else sys.argv[1:])])
    text = _table(rows, times, a, cmd, torch)
    atomic_write(Path(a.out), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
