"""What padding every model call's row count to a bucket size does to bf16 MH on a CPU.

    .venv/bin/python benchmarks/row_buckets.py [--shared ../shared] [--groups 5] [--dtype bfloat16]
        [--out docs/results/row_buckets_cpu.md]

oneDNN builds a primitive per matmul shape (about 0.3 ms for a new one against 0.18 ms for the
product itself at 480 x 256 x 256 in bf16), so the engine already pads the last layer's
selected positions and the projected rows to ``cpu_runtime.bucket`` sizes, and the rows of a
call that mixes sentences too (``cpu_runtime.rows_in_buckets``: copies of the first row that
select nothing), so that every layer's products have recurring row counts.  This measures that
last step (``conditional(bucket_rows=True)`` against ``False``).  One sentence's calls (sentence
mode) are not padded, so there the two settings run the same code and their ratio shows the
noise.  (Before that exception, padded one-sentence calls ran 0.98-1.05x as long: no gain.)

MH (one epoch, 4 chains, one length) decodes successive groups of 16 Multi30k test sentences,
each group once with and once without row padding (the order alternating from group to group),
in both batching modes: new sentences bring new shapes, as a real test set does.  The first
group warms up and is reported apart.  The tokens of the two settings must agree (the padding
rows select nothing).  A benchmark, not a test (about 2 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import copy
import os
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = ("sentence", "shared")
sys.path.insert(0, str(REPO / "benchmarks"))


def measure(dec, src, dtype, groups, n):
    """({(mode, padded): [seconds per group]}, whether every decode's tokens agree across the two
    settings): each group of ``n`` sentences decoded with and without row padding, in turn."""
    import torch

    import throughput as tp
    from fairseq_mh.core import SamplerConfig
    from fairseq_mh.models.adapters import adapter_for

    cpu = torch.device("cpu")
    model = copy.deepcopy(dec.models[0]).to(dtype=dtype).eval()
    adapter = adapter_for(model, dec.task.target_dictionary)
    cfg = SamplerConfig(sampler="mh", mh_epochs=1, num_chains=4, seed=1)
    seconds, same = {}, True
    with torch.no_grad():
        for g in range(groups):
            sample = dec.batch(src[g * n:(g + 1) * n])
            tokens = {}
            for pad in ((True, False) if g % 2 else (False, True)):
                for mode in MODES:
                    r = tp.decode(adapter, sample, cfg, mode, dict(tp.FAST, bucket_rows=pad), cpu)
                    seconds.setdefault((mode, pad), []).append(r["seconds"])
                    tokens[(mode, pad)] = r["tokens"]
                    print(f"group {g} {mode:8s} rows padded: {pad!s:5s} {r['seconds']:.2f} s", flush=True)
            same &= all(bool((tokens[(m, True)] == tokens[(m, False)]).all()) for m in MODES)
    return seconds, same


def report(a, argv, seconds, same, n) -> str:
    """The measurement as Markdown: per mode, the warm-up group and the rest, and the ratio."""
    import torch

    import throughput as tp

    cmd = shlex.join(["python", "benchmarks/row_buckets.py", *(argv if argv is not None else sys.argv[1:])])
    L = ["# Padding every call's rows to a bucket size (MH, Multi30k CMLM)", "", f"Command: `{cmd}`", "",
         f"{tp.cpu_name()}; torch {torch.__version__}; {a.threads} threads; {a.dtype}; "
         f"oneDNN primitive cache capacity {os.environ.get('ONEDNN_PRIMITIVE_CACHE_CAPACITY', 'default')}; "
         f"{a.groups} groups of {n} test sentences, MH, 1 epoch, 4 chains, one length.", "",
         "| mode | rows padded | first group (warm-up), s | the other groups, s | ratio (padded / not) |",
         "|---|---|---:|---:|---:|"]
    for mode in MODES:
        first = {pad: seconds[(mode, pad)][0] for pad in (False, True)}
        rest = {pad: sum(seconds[(mode, pad)][1:]) for pad in (False, True)}
        L.append(f"| {mode} | no | {first[False]:.2f} | {rest[False]:.2f} | |")
        L.append(f"| {mode} | yes | {first[True]:.2f} | {rest[True]:.2f} | {rest[True] / rest[False]:.2f} |")
    L += ["", "Only calls that mix sentences are padded (`ModelAdapter.conditional`): in sentence mode the "
          "two settings run the same code, so that row's ratio is the noise of the measurement.", "",
          f"Tokens identical with and without padded rows, every group and mode: {'yes' if same else 'NO'}."]
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", default=os.environ.get("FAIRSEQ_MH_SHARED", str(REPO.parent / "shared")))
    p.add_argument("--groups", type=int, default=5)
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(REPO / "docs" / "results" / "row_buckets_cpu.md"))
    a = p.parse_args(argv)
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import torch

    from fairseq_mh.errors import exit_on_user_error
    from fairseq_mh.evaluation import load_multi30k
    from fairseq_mh.textio import atomic_write

    n = 16
    with exit_on_user_error("row_buckets"):
        dec, src, _ = load_multi30k(Path(a.shared), "m30k-cmlm-e33", n * a.groups)
    torch.set_num_threads(a.threads)
    seconds, same = measure(dec, src, getattr(torch, a.dtype), a.groups, n)
    text = report(a, argv, seconds, same, n)
    atomic_write(Path(a.out), text)
    print(text)
    return 0 if same else 1

if __name__ == "__main__":
    sys.exit(main())
