"""Why attention scores are padded to 16 wide on a CPU: torch's softmax by width, and model
calls with and without the padding, in one run.

    .venv/bin/python benchmarks/softmax_width.py [--shared ../shared] [--out docs/results/softmax_width_cpu.md]

1. ``torch.softmax(scores, -1, dtype=float32)`` on bf16 and fp32 scores [4, 1024, S] for S
   from 4 to 40: below 16 torch's CPU kernel runs a scalar loop (``short_attention.softmax_f32``).
2. The Multi30k CMLM's model calls (``throughput.model_rows``: R rows of T positions, one
   selected each, the engine's fast paths) with ``SOFTMAX_MIN_WIDTH`` at 16 (padded) and at 0
   (torch's softmax as it is), timed in turn in 4 rounds; the medians.  The source is the first
   of test_2016_flickr shorter than 16 tokens, so the encoder attention is narrower than 16
   too; the report counts how many sources are.
A benchmark, not a test (about 2 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import copy
import os
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def softmax_us(S, dtype, reps=100):
    """Microseconds of one float32 softmax over bf16/fp32 scores [4, 1024, S] (best of 3)."""
    import torch

    x = torch.randn(4, 1024, S).to(dtype)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.softmax(x, -1, dtype=torch.float32)
        best = min(best, (time.perf_counter() - t0) / reps * 1e6)
    return best


def softmax_table():
    """Markdown rows: the softmax's microseconds by width, bf16 and fp32 scores."""
    import torch

    L = ["## torch.softmax over scores [4, 1024, S] (float32 result), µs", "",
         "| S | bf16 scores | fp32 scores |", "|---:|---:|---:|"]
    for S in (4, 8, 12, 14, 15, 16, 17, 24, 30, 32, 40):
        L.append(f"| {S} | {softmax_us(S, torch.bfloat16):.0f} | {softmax_us(S, torch.float32):.0f} |")
    return L


def call_table(dec, src_tokens):
    """Markdown rows: Multi30k model calls with and without the padding, per dtype, rows, T."""
    import torch

    import throughput as tp
    from fairseq_mh.models import short_attention
    from fairseq_mh.models.adapters import adapter_for

    L = ["| dtype | rows | T | padded (16) | not padded | ratio |", "|---|---:|---:|---:|---:|---:|"]
    for dtype in (torch.float32, torch.bfloat16):
        model = copy.deepcopy(dec.models[0]).to(dtype=dtype).eval()
        adapter = adapter_for(model, dec.task.target_dictionary)
        with torch.no_grad():
            encs = adapter.encode({"src_tokens": src_tokens, "src_lengths": torch.tensor([src_tokens.size(1)])})
            for T in (12, 16):
                for R in (64, 256):
                    runs = {16: [], 0: []}
                    try:
                        for _ in range(4):
                            for width in runs:
                                short_attention.SOFTMAX_MIN_WIDTH = width
                                runs[width].append(tp.model_rows(adapter, encs, T, R, torch.device("cpu")))
                    finally:
                        short_attention.SOFTMAX_MIN_WIDTH = 16
                    on, off = (sorted(runs[w])[2] for w in (16, 0))
                    L.append(f"| {str(dtype).replace('torch.', '')} | {R} | {T} | {on:.0f} | {off:.0f} | {on / off:.2f} |")
                    print(L[-1], flush=True)
    return L


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", default=os.environ.get("FAIRSEQ_MH_SHARED", str(REPO.parent / "shared")))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(REPO / "docs" / "results" / "softmax_width_cpu.md"))
    a = p.parse_args(argv)
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import torch

    import throughput as tp
    from fairseq_mh.errors import exit_on_user_error
    from fairseq_mh.evaluation import load_multi30k
    from fairseq_mh.textio import atomic_write

    torch.set_num_threads(a.threads)
    with exit_on_user_error("softmax_width"):
        dec, src, _ = load_multi30k(Path(a.shared), "m30k-cmlm-e33")
    lengths = [len(t) for t in dec.encode(src)]
    short = next(i for i, n in enumerate(lengths) if n < 16)
    src_tokens = torch.tensor(dec.encode([src[short]])[0])[None]
    cmd = shlex.join(["python", "benchmarks/softmax_width.py", *(argv if argv is not None else sys.argv[1:])])
    L = ["# Attention softmax on a CPU: padded to 16 wide or not", "", f"Command: `{cmd}`", "",
         f"{tp.cpu_name()}; torch {torch.__version__}; {a.threads} threads.", "", *softmax_table(), "",
         f"{sum(n < 16 for n in lengths)} of the {len(lengths)} sources of test_2016_flickr are shorter "
         "than 16 tokens (with `</s>`).", "",
         f"## Model calls of the Multi30k CMLM, rows/s (source: sentence {short}, {src_tokens.size(1)} tokens)", "",
         "Medians of 4 rounds, the two settings timed in turn in each round.", "", *call_table(dec, src_tokens)]
    text = "\n".join(L) + "\n"
    atomic_write(Path(a.out), text)
    print(text)
    return 0

if __name__ == "__main__":
    sys.exit(main())
