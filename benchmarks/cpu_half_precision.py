"""What --bf16 and --fp16 cost on this CPU: matmul GFLOP/s and MH decode rows/s per dtype.

    .venv/bin/python benchmarks/cpu_half_precision.py [--shared ../shared] [--n 4] [--out FILE]

On a CPU without oneDNN kernels for a half precision (``cpu_runtime.native_half`` False: bf16
needs AVX-512 or AMX, fp16 AVX512-FP16 or AMX-FP16) torch computes its matmuls with slower
fallbacks, and ``fairseq-mh-generate`` refuses such a run up front
(``preflight.check_precision``).  This measures, in one run, what the refusal spares: a decoder
FFN-shaped product through ``F.linear`` (what the model's layers call) and through ``@``, and
MH (raw energy, 1 epoch, 2 chains, one length, shared batching) on the first --n Multi30k test
sentences with the model (m30k-cmlm-e33) cast to each dtype.  A benchmark, not a test.
"""

import argparse
import copy
import gzip
import logging
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", type=Path, default=Path(os.environ.get("FAIRSEQ_MH_SHARED", REPO.parent / "shared")))
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import torch
    import torch.nn.functional as F

    import fairseq_mh  # noqa: F401  (sizes oneDNN's primitive cache first)
    from fairseq_mh.core.config import SamplerConfig
    from fairseq_mh.cpu_runtime import native_half
    from fairseq_mh.evaluation import Decoder, load_decoder
    from throughput import best_of, cpu_name

    torch.set_num_threads(a.threads)
    m = a.shared / "models" / "m30k-cmlm-e33"
    data = a.shared / "data" / "multi30k" / "test_2016_flickr.de.gz"
    if not (m / "checkpoint.pt").is_file() or not data.is_file():
        sys.exit(f"cpu_half_precision.py: error: {m} or {data} is missing: pass --shared")
    dec = load_decoder(m / "checkpoint.pt", m, "translation_mh", "de", "en", m / "spm.model")
    src = gzip.open(data, "rt", encoding="utf-8").read().splitlines()[: a.n]
    cfg = SamplerConfig(sampler="mh", energy="raw", mh_epochs=1, num_chains=2)
    rows, flops, cpu = [], 2 * 1024 * 256 * 1024, torch.device("cpu")
    gflops = lambda fn: flops / best_of(3, fn, cpu) / 1e9  # noqa: E731  (throughput.py's timing)
    for dt in (torch.float32, torch.bfloat16, torch.float16):
        x, w = torch.randn(1024, 256, dtype=dt), torch.randn(1024, 256, dtype=dt)
        lin = gflops(lambda: F.linear(x, w))
        wt = w.t().contiguous()
        mm = gflops(lambda: x @ wt)
        d = Decoder(dec.task, [copy.deepcopy(dec.models[0]).to(dt)], dec.spm)
        d.run("warm-up", cfg, src[:1], batching="shared")
        t0 = time.perf_counter()
        r = d.run("timed", cfg, src, batching="shared")
        s = time.perf_counter() - t0
        native = "-" if dt is torch.float32 else ("yes" if native_half(dt) else "no")
        rows.append((str(dt).replace("torch.", ""), native, lin, mm, r.rows, s, r.rows / s))
        print(rows[-1], flush=True)
    base = rows[0][6]
    cmd = shlex.join(["python", "benchmarks/cpu_half_precision.py", *(argv if argv is not None else sys.argv[1:])])
    text = (f"# --bf16 and --fp16 on this CPU\n\n{cpu_name()}; torch {torch.__version__}; {a.threads} threads.\n\n"
            f"Command: `{cmd}`\n\nA decoder FFN-shaped product [1024, 256] x [256, 1024] through `F.linear` and "
            f"`@`; MH (raw energy, 1 epoch, 2 chains, one length, shared batching) on the first {a.n} Multi30k "
            "test sentences, the model (m30k-cmlm-e33) cast to each dtype, after a one-sentence warm-up.\n\n"
            "| dtype | oneDNN kernels (`native_half`) | F.linear GFLOP/s | @ GFLOP/s | MH rows | seconds | rows/s "
            "| x fp32 |\n|---|---|---:|---:|---:|---:|---:|---:|\n"
            + "".join(f"| {n} | {k} | {lin:.1f} | {mm:.1f} | {r} | {s:.1f} | {rs:.0f} | {rs / base:.2f} |\n"
                      for n, k, lin, mm, r, s, rs in rows))
    if a.out:
        from fairseq_mh.textio import atomic_write

        atomic_write(a.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
