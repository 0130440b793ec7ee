"""Where an MH decode's time goes: torch.profiler's operator table for one batching mode and dtype.

    .venv/bin/python benchmarks/profile_decode.py [--dtype float32|bfloat16] [--batching shared|sentence]
        [--sentences 16] [--chains 4] [--rows 22] [--out docs/results/profile_m30k_<dtype>_<batching>.md]

Decodes the first --sentences of Multi30k test_2016_flickr with ../shared/models/m30k-cmlm-e33
(MH, one epoch, one length, the K/V cache on) once to warm up and once under the profiler, the
way ``benchmarks/throughput.py`` decodes, and writes the operators that took the most self time,
then each class of matmul's GFLOP/s against the matmul peak measured after the decode.
This is the table to read before changing the step loop or the attention: it says whether the
time is in the matmuls (``addmm``/``mm``), in attention, or in copies and gathers, and whether
the matmuls themselves run near the peak.  A benchmark,
not a test (under a minute on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import shlex
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", default=os.environ.get("FAIRSEQ_MH_SHARED", str(REPO.parent / "shared")))
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--batching", default="shared", choices=["shared", "sentence"])
    p.add_argument("--sentences", type=int, default=16)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--rows", type=int, default=22, help="operators listed")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="rows x width per model call (--mh-max-tokens; default: its CPU default)")
    p.add_argument("--full-last-layer", action="store_true",
                   help="run the decoder's last layer at every position (the engine selects the wanted ones)")
    p.add_argument("--fused-attention", action="store_true",
                   help="the model's own attention (the engine uses short_attention's batched matmuls)")
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def operator_table(a, argv, n_sentences, r, events) -> str:
    """The profile as Markdown: the settings, the decode's rows and calls, the top operators."""
    import torch

    total = sum(e.self_cpu_time_total for e in events)
    cmd = "python benchmarks/profile_decode.py" + "".join(f" {shlex.quote(x)}" for x in (argv or sys.argv[1:]))
    lines = [f"# Profile: MH on the Multi30k CMLM, {a.dtype}, `--mh-batching {a.batching}`", "",
             f"Command: `{cmd}`", "",
             f"{n_sentences} sentences of test_2016_flickr, {a.chains} chains, 1 epoch, one length, K/V cache on, "
             f"last layer {'at every position' if a.full_last_layer else 'at the selected positions'}, "
             f"{'fused' if a.fused_attention else 'bmm'} attention, "
             f"--mh-max-tokens {a.max_tokens}; "
             f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}.", "",
             f"Under the profiler: {r['rows']} rows in {r['calls']} calls ({r['rows_per_call']:.0f} rows/call), "
             f"{r['rows_per_s']:.0f} rows/s (the profiler's own overhead included).", "",
             "| operator | self time share | self ms | calls | µs per call |", "|---|---:|---:|---:|---:|"]
    for e in events[: a.rows]:
        lines.append(f"| `{e.key}` | {100 * e.self_cpu_time_total / total:.1f}% | {e.self_cpu_time_total / 1e3:.0f} "
                     f"| {e.count} | {e.self_cpu_time_total / max(e.count, 1):.0f} |")
    return "\n".join(lines) + "\n"


def matmul_flops(e):
    """(class, FLOPs of one call) of a profiled matmul event from its input shapes: ``addmm``
    and ``mm`` by their (K, N), ``bmm`` together; None for other operators."""
    sh = e.input_shapes
    try:
        if e.key == "aten::addmm":
            (m, k), n = sh[1], sh[2][1]
        elif e.key == "aten::mm":
            (m, k), n = sh[0], sh[1][1]
        elif e.key == "aten::bmm":
            (b, m, k), n = sh[0], sh[1][2]
            return "`aten::bmm` (attention)", 2 * b * m * k * n
        else:
            return None
    except (IndexError, TypeError, ValueError):
        return None
    return f"`{e.key}` [M, {k}] x [{k}, {n}]", 2 * m * k * n


def matmul_table(by_shape, total_us, peak) -> str:
    """The matmuls' rates: per class, its calls, its share of the profiled time, its GFLOP/s
    and that as a share of the matmul peak measured after the decode (``throughput.matmul_gflops``
    at the model's FFN shape, 1024 rows): whether the time is in slow matmuls or around them."""
    classes = {}
    for e in by_shape:
        got = matmul_flops(e)
        if got:
            c = classes.setdefault(got[0], [0, 0.0, 0])
            c[0] += e.count
            c[1] += e.self_cpu_time_total
            c[2] += got[1] * e.count
    lines = ["", "## Matmuls against the peak", "",
             f"The matmul peak measured after the decode (the model's FFN shape, 1024 rows): {peak:.0f} GFLOP/s.", "",
             "| matmul | calls | self time share | GFLOP/s | share of peak |", "|---|---:|---:|---:|---:|"]
    for name, (count, us, flops) in sorted(classes.items(), key=lambda kv: -kv[1][1]):
        rate = flops / max(us, 1e-9) / 1e3
        lines.append(f"| {name} | {count} | {100 * us / total_us:.1f}% | {rate:.0f} | {100 * rate / peak:.0f}% |")
    us = sum(c[1] for c in classes.values())
    lines.append(f"| all matmuls | {sum(c[0] for c in classes.values())} | {100 * us / total_us:.1f}% | "
                 f"{sum(c[2] for c in classes.values()) / max(us, 1e-9) / 1e3:.0f} | |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    a = parse(argv)
    warnings.filterwarnings("ignore")
    import torch
    from torch.profiler import profile

    import throughput as tp
    from fairseq_mh.core import SamplerConfig
    from fairseq_mh.cpu_runtime import call_token_budget
    from fairseq_mh.errors import exit_on_user_error
    from fairseq_mh.evaluation import load_multi30k
    from fairseq_mh.models.adapters import adapter_for
    from fairseq_mh.textio import atomic_write

    with exit_on_user_error("profile_decode"):
        dec, src, _ = load_multi30k(Path(a.shared), "m30k-cmlm-e33", a.sentences)
    sample = dec.batch(src)
    model = copy.deepcopy(dec.models[0]).to(dtype=getattr(torch, a.dtype)).eval()
    adapter = adapter_for(model, dec.task.target_dictionary)
    cfg = SamplerConfig(sampler="mh", mh_epochs=1, num_chains=a.chains, seed=1)
    cpu = torch.device("cpu")
    a.max_tokens = a.max_tokens or call_token_budget(cpu)  # the report names the budget used
    with torch.no_grad():
        run = dict(batching=a.batching, paths=dict(tp.FAST, select_queries=not a.full_last_layer,
                                                   short_rows=not a.fused_attention), device=cpu, max_tokens=a.max_tokens)
        tp.decode(adapter, sample, cfg, **run)
        with profile(record_shapes=True) as prof:
            r = tp.decode(adapter, sample, cfg, **run)
        n, d, f, _ = tp.dims(model)
        peak = tp.matmul_gflops(d, f, 64 * 16, model.decoder.embed_tokens.weight.dtype, cpu)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    text = operator_table(a, argv, len(src), r, events)
    text += matmul_table(prof.key_averages(group_by_input_shape=True), sum(e.self_cpu_time_total for e in events), peak)
    out = Path(a.out or REPO / "docs" / "results" / f"profile_m30k_{a.dtype}_{a.batching}.md")
    atomic_write(out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
