"""How fast MH decoding runs, against the hardware's own matmul peak: one run, JSON + Markdown.

    .venv/bin/python benchmarks/throughput.py [--shared ../shared] [--device cpu|cuda]
        [--dtypes float32 bfloat16] [--standin DIR] [--out docs/results/throughput_cpu]

For each model (the Multi30k CMLM of ../shared and the WMT-size stand-in of
``benchmarks/standin_checkpoint.py``, built on demand into --standin) and dtype it measures:
* matmul GFLOP/s at the model's shapes (rows x d by d x FFN, and back), the peak to compare with;
* model rows/s in calls of 16 to 256 rows, with the analytic FLOPs of a row and the share of
  that peak they reach;
* MH and block-MH decoding: rows/s and sentences/s with today's path (one sentence per call,
  every row projecting the encoder states again, the last layer at every position),
  ``--mh-batching sentence`` (with the per-sentence key/value cache and the last layer at the
  selected positions only) and ``shared`` (rows of many sentences per call);
* mask-predict sentences/s against fairseq's IterativeRefinementGenerator on the same sentences
  (CMLM only), with the number of identical hypotheses;
* peak memory (CUDA: allocated; CPU: the process's maximum RSS) per model and dtype, and per
  decode mode (the resident high-water mark reset before each; on CUDA also the allocated
  peak), with the conditional cache's size;
* from the stand-in's rows/s, the wall time of a paper-scale WMT14 De-En MH run.
A benchmark, not a test: about 10 minutes on 2 CPU cores.  Ratios are within one run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}
WMT = dict(sentences=3003, length=30, epochs=33, chains=5, rows_per_epoch_factor=0.56)  # README's MH cost


def sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, min_seconds=1.0, max_reps=50):
    """Seconds per call of ``fn`` (one warm-up call, then repeated for at least ``min_seconds``)."""
    fn()
    sync(device)
    reps, t0 = 0, time.perf_counter()
    while reps < max_reps and (reps == 0 or time.perf_counter() - t0 < min_seconds):
        fn()
        reps += 1
    sync(device)
    return (time.perf_counter() - t0) / reps


def best_of(n, fn, device, min_seconds=0.5):
    """The fastest of ``n`` timed windows: a peak is a maximum, and on a shared machine one
    window can fall into a neighbour's burst (a 1 s mean read 78 GFLOP/s where 173 was usual)."""
    return min(timed(fn, device, min_seconds) for _ in range(n))


def matmul_gflops(d, ffn, rows, dtype, device):
    """GFLOP/s of [rows, d] @ [d, ffn] and [rows, ffn] @ [ffn, d] (a decoder FFN's two products),
    the best of five windows."""
    import torch

    a = torch.randn(rows, d, dtype=dtype, device=device)
    w1 = torch.randn(d, ffn, dtype=dtype, device=device)
    w2 = torch.randn(ffn, d, dtype=dtype, device=device)
    s = best_of(5, lambda: (a @ w1) @ w2, device)
    return 4 * rows * d * ffn / s / 1e9


def dims(model):
    """(layers, d, ffn, vocab) of a loaded model of either family."""
    dec = model.decoder
    layer = dec.layers[0]
    return len(dec.layers), layer.fc1.in_features, layer.fc1.out_features, dec.embed_tokens.weight.size(0)


def row_flops(model, T, S, selected=1, cached=True, select_queries=True):
    """Analytic FLOPs of one decoder row of T positions over S source states (matmuls only);
    with ``select_queries`` the last layer computes only the ``selected`` positions' queries,
    encoder attention and FFN (its self-attention keys and values still at all T)."""
    n, d, f, v = dims(model)

    def layer(Q):  # a layer whose outputs are wanted at Q of the T positions
        return (2 * T * d * d * 2 + 2 * Q * d * d * 2  # self-attention k, v (all T); q, out (Q)
                + 2 * 2 * Q * T * d  # its scores and weighted sum
                + 2 * Q * d * d * 2  # cross-attention q, out
                + (0 if cached else 2 * S * d * d * 2)  # cross-attention k, v (cached: once per sentence)
                + 2 * 2 * Q * S * d  # its scores and weighted sum
                + 2 * 2 * Q * d * f)  # FFN
    return (n - 1) * layer(T) + layer(selected if select_queries else T) + 2 * selected * d * v


def model_rows(adapter, encs, T, R, device):
    """Rows/s of calls of R masked rows of length T (one selected position each) of sentence 0,
    the best of three windows (measured as the peak is)."""
    import torch

    tokens, free, _ = adapter.target_rows(torch.full((R,), T, device=device))
    g = torch.Generator(device="cpu").manual_seed(0)
    fill = torch.randint(5, adapter.vocab_size, tokens.shape, generator=g).to(device)
    tokens = torch.where(free, fill, tokens)
    select = torch.zeros_like(free)
    select[torch.arange(R, device=device), free.long().argmax(1)] = True
    fn = adapter.conditional(encs)
    ctx = torch.zeros(R, dtype=torch.long, device=device)
    return R / best_of(3, lambda: fn(tokens.masked_fill(select, adapter.mask), ctx, select), device)


FAST = dict(cache_kv=True, select_queries=True, short_rows=True)  # the engine's default paths
TODAY = dict(cache_kv=False, select_queries=False, short_rows=False)  # the baseline


def calls_against_peak(adapter, encs, T, call_rows, d, ffn, dtype, device, rounds=3):
    """(peak, {R: (rows/s, the peak beside it)}): rounds of the matmul peak then the model calls,
    each call size's share taken from the round with its median share.  A shared machine's speed
    drifts by a third within minutes, so a call is compared with the peak measured beside it."""
    measured = []
    for _ in range(rounds):
        peak = matmul_gflops(d, ffn, 64 * T, dtype, device)
        measured.append((peak, {R: model_rows(adapter, encs, T, R, device) for R in call_rows}))
    out = {}
    for R in call_rows:
        ordered = sorted((r[R] / p, r[R], p) for p, r in measured)
        _, rows, peak = ordered[len(ordered) // 2]
        out[R] = (rows, peak)
    return max(p for p, _ in measured), out


def decode(adapter, sample, cfg, batching, paths, device, length=None, max_tokens=None):
    """One decode of a batch with the engine (one chain start per sentence: the model's most
    probable length, or ``length`` for all), the conditional built with ``paths`` (``FAST``,
    ``TODAY`` or a mix), calls of at most ``max_tokens`` (default: the device's, as
    fairseq-mh-generate); rows, calls, seconds and the cache's size."""
    import torch

    from fairseq_mh.core import RowEvaluator, Starts, build_decoder, rng
    from fairseq_mh.cpu_runtime import call_token_budget
    from fairseq_mh.models.adapters import length_candidates

    t0 = time.perf_counter()
    net_input = sample["net_input"]
    B = net_input["src_tokens"].size(0)
    encs = adapter.encode(net_input, batched=batching == "shared")  # as the generator does
    if length is None:
        lp, lens = adapter.length_distribution(encs, net_input)
        cand = length_candidates(lp, lens, 1, "top", max_len=adapter.max_target_length)
    else:
        cand = torch.full((B, 1), length, device=device)
    tokens, free, dec = adapter.target_rows(cand.reshape(-1))
    ids = sample["id"].to(device)
    starts = Starts(tokens, free, torch.arange(B, device=device), rng.chain_keys(cfg.seed, ids), dec)
    budget = max_tokens or call_token_budget(device)
    ev = RowEvaluator(adapter.conditional(encs, **paths), pad=adapter.pad, max_tokens=budget,
                      group_by_context=batching == "sentence")
    res = build_decoder(cfg, ev, adapter.mask, adapter.allowed()).run(starts)
    sync(device)
    s = time.perf_counter() - t0
    elem = next(adapter.model.parameters()).element_size()
    cache_mb = res.tokens.size(0) * tokens.size(1) * adapter.vocab_size * elem / 2**20
    return dict(rows=ev.rows, calls=ev.calls, seconds=s, rows_per_s=ev.rows / s, sentences_per_s=B / s,
                rows_per_call=ev.rows / max(ev.calls, 1), cache_mb=cache_mb, tokens=res.tokens)


def median(ordered):
    """The middle of a sorted list (the upper middle of an even one): the reported timing."""
    return ordered[len(ordered) // 2]


MODES = {"today (one sentence per call, no K/V cache, full last layer, fused attention)": ("sentence", TODAY),
         "sentence (K/V cache, last layer at the selected positions, bmm attention)": ("sentence", FAST),
         "shared (K/V cache, last layer at the selected positions, bmm attention)": ("shared", FAST)}


def decode_table(adapter, sample, device, epochs, chains, length=None, repeats=3):
    """MH and block-MH in every batching mode after one untimed warm-up decode (the first calls
    in a dtype set up its kernels): ``repeats`` rounds that time each mode once, in turn (this
    machine's speed drifts within minutes, so every mode sees the same phases), keeping each
    mode's median; the shared mode's tokens are compared with the sentence mode's (equal up to
    float rounding)."""
    from fairseq_mh.core import SamplerConfig

    out = []
    for sampler in ("mh", "block-mh"):
        cfg = SamplerConfig(sampler=sampler, mh_epochs=epochs, num_chains=chains, block_size=4, seed=1)
        decode(adapter, sample, cfg, "sentence", FAST, device, length)  # warm-up, untimed
        runs = {mode: [] for mode in MODES}
        for _ in range(repeats):
            for mode, (batching, paths) in MODES.items():
                reset_peak(device)
                r = decode(adapter, sample, cfg, batching, paths, device, length)
                r["resident_peak_mb"], r["allocated_peak_mb"] = mode_peaks_mb(device)
                runs[mode].append(r)
        tokens = {}
        for mode, rs in runs.items():
            rs.sort(key=lambda r: r["rows_per_s"])
            r = dict(median(rs))
            r["rows_per_s_range"] = [rs[0]["rows_per_s"], rs[-1]["rows_per_s"]]
            r["resident_peak_mb"] = max(x["resident_peak_mb"] for x in rs)
            if r["allocated_peak_mb"] is not None:
                r["allocated_peak_mb"] = max(x["allocated_peak_mb"] for x in rs)
            tokens[mode] = r.pop("tokens")
            out.append(dict(sampler=sampler, mode=mode, **r))
            print(f"  {sampler:8s} {mode:45s} {r['rows_per_s']:8.0f} rows/s  {r['rows_per_call']:6.0f} rows/call",
                  flush=True)
        sentence_mode, shared_mode = list(MODES)[1:]
        same = (tokens[shared_mode] == tokens[sentence_mode]).all(1).float().mean().item()
        out[-1]["chains_identical_to_sentence_mode"] = same
    return out


def mask_predict_vs_irg(dec, batches, device, repeats=3):
    """Sentences/s of mask-predict (fairseq's settings, one length, shared calls) and of
    fairseq's IterativeRefinementGenerator on the same batches; identical hypotheses.  Each
    decoder decodes the batches once untimed (its call shapes' kernels are set up then), then
    ``repeats`` rounds time each decoder once, in turn (a pass takes seconds and this machine's
    speed drifts within minutes, so the decoders see the same phases), keeping the medians."""
    from fairseq.iterative_refinement_generator import IterativeRefinementGenerator

    from fairseq_mh.core import SamplerConfig
    from fairseq_mh.generator import MHGenerator

    d = dec.task.target_dictionary
    text = lambda t: d.string(t, extra_symbols_to_ignore={d.bos(), d.eos()})  # noqa: E731
    # report_energy=False: as fairseq-mh-generate without --mh-trace or --mh-dump-samples
    # (IRG computes no energies either)
    cfg = SamplerConfig(sampler="mask-predict", decoding_iterations=10, mask_predict_min_remask=0, report_energy=False)
    gens = {"fairseq IterativeRefinementGenerator":
            IterativeRefinementGenerator(d, models=dec.models, max_iter=9, beam_size=1, adaptive=False)}
    for batching in ("sentence", "shared"):
        gens[f"fairseq_mh {batching}"] = MHGenerator(d, cfg, length_beam=1, length_style="around-argmax",
                                                     batching=batching)
    times, hyps = {name: [] for name in gens}, {}
    for k in range(repeats + 1):
        for name, gen in gens.items():
            t0, out = time.perf_counter(), []
            for sample in batches:
                out += [text(h[0]["tokens"]) for h in gen.generate(dec.models, sample)]
            sync(device)
            if k:  # the first round is the warm-up
                times[name].append(time.perf_counter() - t0)
            hyps[name] = out
    res = {name: dict(seconds=median(sorted(times[name])), hyps=hyps[name]) for name in gens}
    ref = res["fairseq IterativeRefinementGenerator"]["hyps"]
    n = len(ref)
    return [dict(decoder=k, sentences=n, sentences_per_s=n / v["seconds"], seconds=v["seconds"],
                 identical_to_irg=sum(a == b for a, b in zip(v["hyps"], ref))) for k, v in res.items()]


def peak_memory_mb(device):
    import resource

    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak(device):
    """Starts a new peak: CUDA's allocated peak, and on Linux the resident high-water mark
    (``/proc/self/clear_refs``), so each decode mode gets its own peaks."""
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def mode_peaks_mb(device):
    """(resident peak since ``reset_peak``, CUDA allocated peak or None), in MB."""
    import torch

    resident = peak_memory_mb(torch.device("cpu"))
    try:
        with open("/proc/self/status") as f:
            resident = next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        pass
    return resident, (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None)


def load_models(a, device):
    """(name, Decoder, MH sample, fixed target length or None, mask-predict batches) per model."""
    import torch

    from fairseq_mh.evaluation import load_decoder

    out = []
    m30k = Path(a.shared) / "models" / "m30k-cmlm-e33"
    data = Path(a.shared) / "data" / "multi30k" / "test_2016_flickr.de.gz"
    if (m30k / "checkpoint.pt").is_file() and data.is_file():
        dec = load_decoder(m30k / "checkpoint.pt", m30k, "translation_mh", "de", "en", m30k / "spm.model")
        src = gzip.open(data, "rt", encoding="utf-8").read().splitlines()[: max(a.mp_sentences, a.m30k_sentences)]
        toks = dec.encode(src)
        ds = dec.task.build_dataset_for_inference(toks, [len(t) for t in toks])
        batch = lambda lo, hi: ds.collater([ds[i] for i in range(lo, min(hi, len(ds)))])  # noqa: E731
        mp = [batch(i, i + 25) for i in range(0, a.mp_sentences, 25)]
        out.append(("Multi30k CMLM (m30k-cmlm-e33)", dec, batch(0, a.m30k_sentences), None, mp))
    else:
        print(f"note: {m30k} or {data} is missing: the Multi30k CMLM is skipped", flush=True)
    from standin_checkpoint import build

    ckpt = Path(a.standin) / "checkpoint_best.pt"
    if not ckpt.is_file():
        build(Path(a.standin))
    dec = load_decoder(ckpt, Path(a.standin), "translation_self", "de", "en")
    g = torch.Generator().manual_seed(0)
    src = torch.randint(5, len(dec.task.source_dictionary), (a.standin_sentences, WMT["length"]), generator=g)
    src[:, -1] = dec.task.source_dictionary.eos()
    sample = {"id": torch.arange(a.standin_sentences),
              "net_input": {"src_tokens": src, "src_lengths": torch.full((a.standin_sentences,), WMT["length"])}}
    out.append(("WMT-size stand-in (Mask-Predict base, random weights)", dec, sample, WMT["length"], None))
    return out


def cpu_name():
    """The CPU's model name, core count and matrix extensions (AMX changes the bf16 peak)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        name = next(l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name"))
        flags = set(next(l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags")))
    except (OSError, StopIteration):
        pass
    ext = [x for x in ("avx512_bf16", "amx_bf16") if x in flags]
    if flags and "avx512f" not in flags:  # no oneDNN bf16 kernels (cpu_runtime.native_half)
        ext.append("AVX2, no AVX-512" if "avx2" in flags else "no AVX-512")
    return f"{name}, {os.cpu_count()} CPUs" + (f" ({', '.join(ext)})" if ext else "")


def to_device(sample, device):
    from fairseq import utils

    return utils.apply_to_sample(lambda t: t.to(device), sample)


def measure_model(a, name, dec, sample, length, mp_batches, dtype, device):
    """Every measurement of one model in one dtype."""
    import copy

    import torch

    from fairseq_mh.evaluation import Decoder
    from fairseq_mh.models.adapters import adapter_for

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model = copy.deepcopy(dec.models[0]).to(device=device, dtype=dtype).eval()
    d = Decoder(dec.task, [model], dec.spm)
    adapter = adapter_for(model, dec.task.target_dictionary)
    sample = to_device(sample, device)
    n, dm, f, v = dims(model)
    with torch.no_grad():
        encs = adapter.encode({"src_tokens": sample["net_input"]["src_tokens"][:1],
                               "src_lengths": sample["net_input"]["src_lengths"][:1]})
        S = int(encs and adapter._states(encs[0]).size(0))
        T = length or 16
        flops = row_flops(model, T, S)
        peak, rows = calls_against_peak(adapter, encs, T, a.call_rows, dm, f, dtype, device)
        print(f"{name} {dtype}: matmul {peak:.0f} GFLOP/s; rows/s {rows}", flush=True)
        skip = a.skip_standin_decode and length is not None
        mh = [] if skip else decode_table(adapter, sample, device, a.epochs, a.chains, length, a.repeats)
        mp = (mask_predict_vs_irg(d, [to_device(b, device) for b in mp_batches], device, a.repeats)
              if mp_batches else [])
    return dict(model=name, dtype=str(dtype).replace("torch.", ""), layers=n, d=dm, ffn=f, vocab=v, T=T, S=S,
                matmul_gflops=peak, row_flops=flops,
                model_rows={str(R): dict(rows_per_s=r, share_of_peak=r * flops / (p * 1e9), matmul_gflops=p)
                            for R, (r, p) in rows.items()},
                decode=mh, mask_predict=mp, peak_memory_mb=peak_memory_mb(device))


def paper_estimate(results):
    """Hours of a paper-scale WMT14 De-En MH run at the stand-in's best MH rows/s, per dtype
    (without its decodes: its model rows/s in the largest calls measured, which is what MH
    reaches when 97% of its time is in model calls)."""
    T = WMT["length"]
    rows = WMT["sentences"] * WMT["epochs"] * WMT["chains"] * WMT["rows_per_epoch_factor"] * T * (T - 1)
    out = []
    for r in results:
        if r["model"].startswith("WMT"):
            mh = [x["rows_per_s"] for x in r["decode"] if x["sampler"] == "mh"]
            best, source = ((max(mh), "MH decode") if mh else
                            (max(x["rows_per_s"] for x in r["model_rows"].values()), "model calls"))
            out.append(dict(dtype=r["dtype"], rows=rows, rows_per_s=best, source=source, hours=rows / best / 3600))
    return out


def markdown(report) -> str:
    """The report as Markdown tables (the JSON beside it holds every number)."""
    L = [f"# Throughput: MH decoding against the machine's matmul peak ({report['device']})", "",
         f"Command: `{report['command']}`", "", f"{report['machine']}; torch {report['torch']}; "
         f"{report['threads']} threads; MH runs: {report['epochs']} epoch(s), {report['chains']} chains, one length; "
         f"oneDNN primitive cache capacity {report.get('onednn_primitive_cache_capacity') or 'default (1024)'}.",
         *([f"Not measured: {', '.join(report['skipped_dtypes'])}, for which this CPU has no oneDNN kernels "
            "(torch's fallback matmuls: a decode about 4x slower than fp32, `docs/results/cpu_half_precision_avx2.md`; "
            "`--dtypes` measures it anyway)."]
           if report.get("skipped_dtypes") else []),
         "", "## Model calls", "",
         "Each call size is measured in 3 rounds, each just after a measurement of the matmul peak; the table "
         "gives, per call size, the round with the median share of the peak measured beside it.", "",
         "| model | dtype | matmul GFLOP/s (beside) | FLOPs/row (cached K/V, last layer at one position) | rows/call | rows/s | share of peak |",
         "|---|---|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        for R, x in r["model_rows"].items():
            L.append(f"| {r['model']} | {r['dtype']} | {x.get('matmul_gflops', r['matmul_gflops']):.0f} | "
                     f"{r['row_flops'] / 1e6:.1f} M | {R} | "
                     f"{x['rows_per_s']:.0f} | {100 * x['share_of_peak']:.0f}% |")
    L += ["", f"Load average when the run ended: {report['load']}.", ""]
    L += ["", "## MH decoding", "", f"rows/s: the median of {report.get('repeats', 1)} timed decodes after "
          "an untimed warm-up, the modes timed in turn in each round; the range: their slowest and fastest.", "",
          "| model | dtype | sampler | mode | rows/s | range | sentences/s | rows/call | "
          "x today | cache MB | resident peak MB | allocated peak MB |",
          "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        for x in r["decode"]:
            today = next(y for y in r["decode"] if y["sampler"] == x["sampler"] and y["mode"].startswith("today"))
            lo, hi = x.get("rows_per_s_range", [x["rows_per_s"]] * 2)
            L.append(f"| {r['model']} | {r['dtype']} | {x['sampler']} | {x['mode']} | {x['rows_per_s']:.0f} | "
                     f"{lo:.0f}-{hi:.0f} | {x['sentences_per_s']:.3f} | {x['rows_per_call']:.0f} | "
                     f"{x['rows_per_s'] / today['rows_per_s']:.2f} | {x['cache_mb']:.1f} | "
                     f"{x.get('resident_peak_mb', float('nan')):.0f} | "
                     f"{'-' if x.get('allocated_peak_mb') is None else format(x['allocated_peak_mb'], '.0f')} |")
    L += ["", "## Mask-predict against fairseq's IterativeRefinementGenerator", "",
          f"sentences/s: the median of {report.get('repeats', 1)} timed passes over the sentences after an "
          "untimed one, for each decoder, the decoders timed in turn in each round.", "",
          "| model | dtype | decoder | sentences | sentences/s | identical to IRG |", "|---|---|---|---:|---:|---:|"]
    for r in report["results"]:
        for x in r["mask_predict"]:
            L.append(f"| {r['model']} | {r['dtype']} | {x['decoder']} | {x['sentences']} | "
                     f"{x['sentences_per_s']:.1f} | {x['identical_to_irg']} |")
    L += ["", "## Peak memory", "", "| model | dtype | MB |", "|---|---|---:|"]
    L += [f"| {r['model']} | {r['dtype']} | {r['peak_memory_mb']:.0f} |" for r in report["results"]]
    L += ["", "## A paper-scale WMT14 De-En MH run, estimated", "",
          f"{WMT['sentences']} sentences, T = {WMT['length']}, {WMT['epochs']} epochs, {WMT['chains']} chains, one "
          f"length: {WMT['rows_per_epoch_factor']}·T(T-1) rows per chain and epoch, at the stand-in's best MH rows/s.",
          "", "| dtype | rows | rows/s | from | hours |", "|---|---:|---:|---|---:|"]
    L += [f"| {e['dtype']} | {e['rows']:.3g} | {e['rows_per_s']:.0f} | {e['source']} | {e['hours']:.0f} |"
          for e in report["estimate"]]
    return "\n".join(L) + "\n"


def default_dtypes(device):
    """(dtypes measured by default, dtypes left out): float32 and bfloat16, and float16 on CUDA;
    on a CPU without oneDNN kernels for bfloat16 (an AVX2-only CPU) bfloat16 is left out: its
    matmuls take torch's fallbacks (a decode 4.4x slower than fp32 on a 2-core AVX2 EPYC,
    ``docs/results/cpu_half_precision_avx2.md``), where --bf16 is refused anyway.  ``--dtypes``
    overrides."""
    import torch

    from fairseq_mh.cpu_runtime import native_half

    want = ["float32", "bfloat16"] + (["float16"] if device.type == "cuda" else [])
    keep = [d for d in want if device.type == "cuda" or d == "float32" or native_half(getattr(torch, DTYPES[d]))]
    return keep, [d for d in want if d not in keep]


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", default=os.environ.get("FAIRSEQ_MH_SHARED", str(REPO.parent / "shared")))
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--dtypes", nargs="+", default=None, choices=sorted(DTYPES),
                   help="default: float32 bfloat16 (and float16 on CUDA; on a CPU, bfloat16 only where "
                        "oneDNN has kernels for it)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3, help="timed decodes per mode (the median is reported)")
    p.add_argument("--m30k-sentences", type=int, default=16)
    p.add_argument("--mp-sentences", type=int, default=200)
    p.add_argument("--standin-sentences", type=int, default=4)
    p.add_argument("--call-rows", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--skip-standin-decode", action="store_true",
                   help="measure the stand-in's model calls only (its decodes take minutes on a CPU)")
    p.add_argument("--standin", default=str(REPO / "work" / "standin"), help="where the stand-in is built")
    p.add_argument("--out", default=None, help="output stem (default docs/results/throughput_DEVICE)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse(argv)
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import torch

    import fairseq_mh  # noqa: F401  (first: it sizes oneDNN's primitive cache, fairseq_mh/cpu_runtime.py)

    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("throughput.py: error: --device cuda but torch sees no GPU", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    dtypes, skipped = default_dtypes(device) if a.dtypes is None else (a.dtypes, [])
    for dt in skipped:
        print(f"note: {dt} skipped: this CPU has no oneDNN kernels for it (cpu_runtime.native_half), so its "
              "matmuls would take torch's fallbacks, a decode about 4x slower than fp32", flush=True)
    results = []
    stem = Path(a.out or REPO / "docs" / "results" / f"throughput_{device.type}")
    stem.parent.mkdir(parents=True, exist_ok=True)
    for name, dec, sample, length, mp in load_models(a, device):
        for dt in dtypes:
            results.append(measure_model(a, name, dec, sample, length, mp, getattr(torch, DTYPES[dt]), device))
            write_report(stem, a, argv, device, results, skipped, complete=False)  # a run cut short keeps these
    print(write_report(stem, a, argv, device, results, skipped, complete=True))
    return 0


def write_report(stem, a, argv, device, results, skipped, complete):
    """Writes the JSON and Markdown of the results so far (after each model and dtype, so that a
    run stopped at a time limit, as on a lent GPU, still leaves what it measured); the Markdown."""
    import torch

    cmd = shlex.join(["python", "benchmarks/throughput.py", *(argv if argv is not None else sys.argv[1:])])
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    report = dict(command=cmd, device=device.type, machine=machine, torch=torch.__version__, threads=a.threads,
                  epochs=a.epochs, chains=a.chains, repeats=a.repeats,
                  onednn_primitive_cache_capacity=os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY")
                  or os.environ.get("DNNL_PRIMITIVE_CACHE_CAPACITY"),
                  load=" ".join(f"{x:.1f}" for x in os.getloadavg()), results=results, estimate=paper_estimate(results),
                  skipped_dtypes=skipped, complete=complete)
    text = markdown(report)
    if not complete:
        text += "\n**Partial:** the run had not finished when this was written; the tables hold what it measured.\n"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    stem.with_suffix(".md").write_text(text)
    return text


if __name__ == "__main__":
    sys.exit(main())
