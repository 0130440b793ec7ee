"""The engine runs on the model's device, rows of many sentences share a model call, the
cross-attention keys and values are computed once per sentence, and --bf16 runs the model in
bfloat16 with float64 energies.  No GPU here: the device contract is checked on CPU by making
every tensor created without an explicit device land on the ``meta`` device, where it cannot
mix with the CPU inputs, and by refusing any copy to the host."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._device import _device_constructors
from torch.utils._pytree import tree_leaves

from cli_helpers import forced_half, parse_generate, run
from fairseq_mh.core import RowEvaluator, SamplerConfig, build_decoder, rng
from toy_models import MASK, PAD, TinyNet, allowed_vector
from test_engine_contract import L, VOCAB, make_starts

M64 = (1 << 64) - 1


# ---------------------------------------------------------------- the counter-based RNG
def _mix(z: int) -> int:
    """SplitMix64's finaliser in plain Python integers (an independent reference)."""
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def _uniform(seed, sid, stream, epoch, step, slot, purpose) -> float:
    k = _mix(_mix(seed & M64) ^ _mix(sid & M64))
    k = _mix(k ^ _mix(stream))
    for v in (purpose, epoch, step, slot):
        k = _mix(k ^ _mix(v))
    return (_mix(k) >> 11) * 2.0**-53


def test_rng_gives_fixed_values_that_no_device_can_change():
    """The draws are integer arithmetic (wrapping int64, then 53 bits to a float64): exact on
    every device.  They equal a pure-Python SplitMix64 and fixed values."""
    keys = rng.chain_keys(7, torch.tensor([0, 3, 2**40]), torch.tensor([0, 1, 2]))
    u = rng.uniform(keys, 5, torch.tensor([0, 9, 1]), 2, rng.PURPOSE_ACCEPT)
    ref = [_uniform(7, s, c, 5, st, 2, rng.PURPOSE_ACCEPT) for s, c, st in ((0, 0, 0), (3, 1, 9), (2**40, 2, 1))]
    assert u.dtype == torch.float64 and u.tolist() == ref
    assert [round(x, 12) for x in ref] == [0.620544323097, 0.248459548767, 0.849361928526]
    assert keys.tolist() == [-9038822347226056787, 5177503777434677474, -4762883677849681400]
    assert [k & M64 for k in keys.tolist()] == [_mix(_mix(_mix(7) ^ _mix(s)) ^ _mix(c))
                                               for s, c in ((0, 0), (3, 1), (2**40, 2))]


# ---------------------------------------------------------------- device tracking
class _Tracker:
    """While ``active``: tensors made without a device go to ``meta`` (the inputs are CPU
    tensors, so such a tensor cannot silently follow them), every op whose result is off the
    CPU is recorded, and so is every explicit copy to the host (``.cpu()``, ``.numpy()``,
    ``.to('cpu')``; ``.to(x.device)`` follows an input and is allowed).  ``paused`` lifts it
    inside the model's own forward code (fairseq's, which is not the engine's to check)."""

    def __init__(self):
        self.off_device, self.copies, self.paused = [], [], 0

    @contextlib.contextmanager
    def pause(self):
        self.paused += 1
        try:
            yield
        finally:
            self.paused -= 1


class _FunctionMode(TorchFunctionMode):
    def __init__(self, tracker):
        super().__init__()
        self.t = tracker

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if not self.t.paused:
            made_from_tensor = bool(args) and isinstance(args[0], torch.Tensor)  # as_tensor(x) stays with x
            if func in _device_constructors() and kwargs.get("device") is None and not made_from_tensor:
                kwargs["device"] = "meta"
            name = getattr(func, "__name__", "")
            if name in ("cpu", "numpy") or (name == "to" and any(a == "cpu" for a in [*args[1:], *kwargs.values()])):
                self.t.copies.append(name)
        return func(*args, **kwargs)


class _DispatchMode(TorchDispatchMode):
    def __init__(self, tracker):
        super().__init__()
        self.t = tracker

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not self.t.paused and any(isinstance(x, torch.Tensor) and x.device.type != "cpu" for x in tree_leaves(out)):
            self.t.off_device.append(str(func))
        return out


@contextlib.contextmanager
def tracked():
    t = _Tracker()
    with _FunctionMode(t), _DispatchMode(t):
        yield t


@contextlib.contextmanager
def paused_inside(tracker, obj, names):
    """Methods of ``obj`` during which the tracker pauses; restored afterwards (a copy of the
    model made later must not call back into this one)."""
    for name in names:
        fn = getattr(obj, name)

        def wrapped(*a, _fn=fn, **k):
            with tracker.pause():
                return _fn(*a, **k)

        setattr(obj, name, wrapped)
    try:
        yield
    finally:
        for name in names:
            delattr(obj, name)  # the instance attribute: the class's method shows again


def test_the_tracker_catches_a_tensor_made_off_the_input_device_and_a_host_copy():
    x = torch.zeros(3)
    with tracked() as t:
        torch.zeros(2)  # no device given: the default
        x.cpu()
        torch.ones(2, device=x.device)
        x.to(x.device)
        with t.pause():
            torch.zeros(2).cpu()
    assert t.off_device == ["aten.zeros.default"] and t.copies == ["cpu"]


SETTINGS = [
    dict(sampler="mh", mh_epochs=2, num_chains=2, position_order="random"),
    dict(sampler="block-mh", mh_epochs=2, num_chains=2, block_size=3, warm_start="mask-predict"),
    dict(sampler="gibbs", mh_epochs=2, num_chains=2, proposal_top_p=0.9),
    dict(sampler="mask-predict", decoding_iterations=3, report_energy=True),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: s["sampler"])
def test_every_tensor_the_engine_makes_follows_the_input_device(settings):
    starts = make_starts([7, 5, 6], [0, 1, 2])
    net = TinyNet(vocab=VOCAB, length=L, seed=4)
    allowed = allowed_vector(VOCAB)
    with tracked() as t:
        ev = RowEvaluator(net, pad=PAD, max_tokens=12, group_by_context=settings["sampler"] != "mh")
        res = build_decoder(SamplerConfig(**settings), ev, MASK, allowed).run(starts)
    assert t.off_device == [] and t.copies == []
    tensors = [v for v in vars(res).values() if isinstance(v, torch.Tensor)]
    assert tensors and all(t.device.type == "cpu" for t in tensors)


def test_no_engine_module_names_the_host_device():
    """Nothing in the engine, the generator or the adapters moves a tensor to the CPU."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "fairseq_mh"
    files = [*(root / "core").glob("*.py"), root / "generator.py", *(root / "models").glob("*.py")]
    hits = [f"{f.name}:{i}" for f in files for i, line in enumerate(f.read_text().splitlines(), 1)
            if re.search(r"\.cpu\(\)|\.numpy\(\)|['\"]cpu['\"]", line.split("#")[0])]
    assert len(files) > 20 and hits == []


# ---------------------------------------------------------------- the fairseq families
def _load(kind, fx):
    from fairseq_mh.evaluation import load_decoder

    if kind == "cmlm":
        return load_decoder(fx["checkpoint"], fx["data"], "translation_mh", "src", "tgt")
    return load_decoder(fx["checkpoint"], fx["model_dir"], "translation_self", "src", "tgt")


@pytest.fixture(scope="module", params=["cmlm", "mask_predict"])
def family(request):
    fx = request.getfixturevalue("tiny_cmlm" if request.param == "cmlm" else "tiny_mask_predict")
    dec = _load(request.param, fx)
    lines = (fx["raw"] / "test.src").read_text().splitlines()[:6]
    toks = dec.encode(lines)
    ds = dec.task.build_dataset_for_inference(toks, [len(t) for t in toks])
    return dec, ds.collater([ds[i] for i in range(len(ds))])


def test_batched_encoding_matches_encoding_each_sentence_alone(family):
    """--mh-batching shared encodes the batch in one padded call and splits it per sentence:
    the states, the length distribution and the rows' logits match the one-sentence encoding
    up to float rounding, and the batch really had padding to strip."""
    from fairseq_mh.models.adapters import adapter_for

    dec, sample = family
    adapter = adapter_for(dec.models[0], dec.task.target_dictionary)
    src = sample["net_input"]["src_tokens"]
    assert src.eq(adapter.pad).any()  # sentences of different lengths
    with torch.no_grad():
        alone, batched = adapter.encode(sample["net_input"]), adapter.encode(sample["net_input"], batched=True)
        assert len(alone) == len(batched) == src.size(0)
        for a, b in zip(alone, batched):
            sa, sb = adapter._states(a), adapter._states(b)
            assert sa.shape == sb.shape
            torch.testing.assert_close(sb, sa, rtol=1e-5, atol=1e-5)
        for x, y in zip(adapter.length_distribution(batched, sample["net_input"]),
                        adapter.length_distribution(alone, sample["net_input"])):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)
        rows, ctx, one = _rows(adapter, alone, sample)
        torch.testing.assert_close(adapter.conditional(batched)(rows, ctx, one),
                                   adapter.conditional(alone)(rows, ctx, one), rtol=1e-5, atol=1e-5)


def _rows(adapter, encs, sample):
    """Masked rows of every sentence at its two most probable lengths, one position each."""
    from fairseq_mh.models.adapters import length_candidates

    lp, lens = adapter.length_distribution(encs, sample["net_input"])
    cand = length_candidates(lp, lens, 2, "top", max_len=adapter.max_target_length)
    tokens, free, _ = adapter.target_rows(cand.reshape(-1))
    g = torch.Generator().manual_seed(0)
    tokens = torch.where(free, torch.randint(5, adapter.vocab_size, tokens.shape, generator=g), tokens)
    pos = torch.multinomial(free.float(), 1, generator=g).squeeze(1)
    select = torch.zeros_like(free)
    select[torch.arange(len(pos)), pos] = True
    rows = tokens.masked_fill(select, adapter.mask)
    return rows, torch.arange(len(encs)).repeat_interleave(2), select


def test_shared_calls_and_cached_keys_values_match_one_sentence_uncached_calls(family):
    from fairseq_mh.models.adapters import adapter_for

    dec, sample = family
    model = dec.models[0]
    adapter = adapter_for(model, dec.task.target_dictionary)
    with torch.no_grad():
        encs = adapter.encode(sample["net_input"])
        rows, ctx, select = _rows(adapter, encs, sample)
        cached, uncached = adapter.conditional(encs), adapter.conditional(encs, cache_kv=False)
        per_sentence = [uncached(rows[ctx == b], ctx[ctx == b], select[ctx == b]) for b in range(len(encs))]
        reference = torch.cat(per_sentence)  # rows are grouped by sentence, so the order is the same
        shared = cached(rows, ctx, select)
        shared_uncached = uncached(rows, ctx, select)
        one = cached(rows[ctx == 1], ctx[ctx == 1], select[ctx == 1])
    assert shared.dtype == torch.float32 and shared.shape == reference.shape
    torch.testing.assert_close(shared, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shared_uncached, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(one, per_sentence[1], rtol=1e-5, atol=1e-5)
    assert not torch.equal(reference[:2], reference[2:4])  # the sentences do differ


@pytest.mark.parametrize("fast_path", [dict(select_queries=True), dict(short_rows=True),
                                       dict(select_queries=True, short_rows=True),
                                       dict(select_queries=True, short_rows=True, cache_kv=False),
                                       dict(select_queries=True, short_rows=True, buckets=True)],
                         ids=["last-layer-selected", "short-attention", "both", "both-uncached", "bucketed"])
def test_the_fast_paths_match_the_full_decoder(family, fast_path, monkeypatch):
    """query_select (the last layer at the selected positions only) and short_attention
    (fairseq's attention as batched matmuls), alone and together: MH rows (one position each)
    and mask-predict rows (several, a different number per row), one sentence per call and
    mixed, against the decoder run at every position with the model's own attention.
    "bucketed" forces the oneDNN shapes (CPU bf16) on this fp32 model: the selected positions
    and the projected rows are padded to ``cpu_runtime.bucket`` sizes, and the output is the
    same."""
    from fairseq_mh.cpu_runtime import bucket
    from fairseq_mh.models import adapters, short_attention
    from fairseq_mh.models.adapters import CMLMAdapter, adapter_for

    dec, sample = family
    adapter = adapter_for(dec.models[0], dec.task.target_dictionary)
    fast_path = dict(fast_path)
    projected = []
    if fast_path.pop("buckets", False):
        monkeypatch.setattr(adapters, "builds_primitives_per_shape", lambda weight: True)
        project = adapter._project
        monkeypatch.setattr(adapter, "_project", lambda f: projected.append(f.size(0)) or project(f))
    calls = []
    forward = short_attention.ShortAttention.forward
    monkeypatch.setattr(short_attention.ShortAttention, "forward",
                        lambda self, *a, **k: calls.append(1) or forward(self, *a, **k))
    with torch.no_grad():
        encs = adapter.encode(sample["net_input"])
        rows, ctx, one = _rows(adapter, encs, sample)
        free = rows.ne(adapter.pad) & rows.ne(adapter.eos) & rows.ne(adapter.bos)
        g = torch.Generator().manual_seed(1)
        several = free & (torch.rand(free.shape, generator=g) < 0.4)
        several[~several.any(1), 1] = True
        counts = several.sum(1)
        assert counts.min() < counts.max() < rows.size(1)  # ragged, and fewer than every position
        several_rows = rows.masked_fill(several, adapter.mask)
        options = dict(dict(select_queries=False, short_rows=False), **fast_path)
        fast = adapter.conditional(encs, **options)
        full = adapter.conditional(encs, select_queries=False, short_rows=False)
        for toks, select in ((rows, one), (several_rows, several)):
            for pick in (ctx >= 0, ctx == 2):
                a, b = fast(toks[pick], ctx[pick], select[pick]), full(toks[pick], ctx[pick], select[pick])
                assert a.shape == b.shape == (int(select[pick].sum()), adapter.vocab_size)
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        everything = free | rows.eq(adapter.mask)
        torch.testing.assert_close(fast(rows, ctx, everything), full(rows, ctx, everything))
    # fairseq's attention (the CMLM family) really ran as ShortAttention, and only when asked
    assert bool(calls) == (options["short_rows"] and isinstance(adapter, CMLMAdapter))
    if projected:  # every projection ran at a bucket size, and some of them were padded to it
        assert all(bucket(n) == n for n in projected), projected
        assert any(n > 16 for n in projected) and len(set(projected)) > 1, projected


def test_bucketed_rows_give_the_same_logits_at_recurring_row_counts(family, monkeypatch):
    """Where oneDNN builds a primitive per shape (CPU bf16/fp16), the rows of a call that mixes
    sentences are padded to ``cpu_runtime.bucket`` sizes with copies of its first row that
    select nothing (``rows_in_buckets``); one sentence's calls are left as they are.  Forced on
    this fp32 model: the decoder sees bucket row counts for mixed calls (some of them padded) and
    the exact count for one sentence's, and the logits are the unpadded call's, in the same
    order, for MH and mask-predict selections."""
    from fairseq_mh.cpu_runtime import bucket
    from fairseq_mh.models import adapters
    from fairseq_mh.models.adapters import adapter_for

    dec, sample = family
    adapter = adapter_for(dec.models[0], dec.task.target_dictionary)
    monkeypatch.setattr(adapters, "builds_primitives_per_shape", lambda weight: True)
    seen = []
    features = adapter._features
    monkeypatch.setattr(adapter, "_features", lambda tokens, g: seen.append(tokens.size(0)) or features(tokens, g))
    with torch.no_grad():
        encs = adapter.encode(sample["net_input"])
        rows, ctx, one = _rows(adapter, encs, sample)
        rows, ctx, one = rows.repeat(5, 1), ctx.repeat(5), one.repeat(5, 1)  # past 16 rows, where buckets pad
        alone = (ctx == 1).nonzero().squeeze(1).repeat(10)[:19]  # 19 rows of one sentence
        rows, ctx, one = torch.cat([rows, rows[alone]]), torch.cat([ctx, ctx[alone]]), torch.cat([one, one[alone]])
        several = one.clone()
        several[::3, 1] = True  # some rows with two positions
        padded, plain = adapter.conditional(encs), adapter.conditional(encs, bucket_rows=False)
        grown = 0
        mixed_rows = rows.size(0) - alone.numel()
        calls = [torch.arange(n) for n in (17, 19, mixed_rows)]  # rows of several sentences
        calls += [torch.arange(mixed_rows, rows.size(0)), (ctx == 1).nonzero().squeeze(1)]  # of one
        for k, pick in enumerate(calls):
            for select in (one[pick], several[pick]):
                toks, c = rows[pick], ctx[pick]
                seen.clear()
                a = padded(toks, c, select)
                padded_rows = list(seen)
                seen.clear()
                b = plain(toks, c, select)
                mixed = bool((c != c[0]).any())
                assert mixed == (k < 3)
                assert padded_rows == [bucket(len(toks)) if mixed else len(toks)] and seen == [len(toks)]
                grown += padded_rows[0] > len(toks)
                assert a.shape == b.shape == (int(select.sum()), adapter.vocab_size)
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # 17 and 19 mixed rows were padded (to 18 and 20); 19 and more rows of one sentence were not
    assert grown >= 2 and bucket(19) > 19 and bucket(alone.numel()) > alone.numel()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_padded_softmax_gives_the_plain_softmax(dtype):
    """short_attention.softmax_f32 pads CPU scores narrower than 16 with -inf (torch's CPU
    softmax vectorises from 16 elements on): at every width, with masked keys and with a row
    whose keys are all masked, the float32 probabilities of torch.softmax, in its shape."""
    from fairseq_mh.models.short_attention import SOFTMAX_MIN_WIDTH, softmax_f32

    g = torch.Generator().manual_seed(0)
    for width in range(1, SOFTMAX_MIN_WIDTH + 3):
        scores = (torch.randn(3, 5, width, generator=g) * 4).to(dtype)
        scores[0, 1, : max(1, width // 2)] = float("-inf")  # masked keys (all of them at width 1)
        scores[2, 3] = float("-inf")  # a row with every key masked: NaN, as torch gives
        ref = torch.softmax(scores, dim=-1, dtype=torch.float32)
        got = softmax_f32(scores)
        assert got.dtype == torch.float32 and got.shape == ref.shape
        torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-7, equal_nan=True)
        assert bool(got[2, 3].isnan().all()) and bool(got[:, :, -1].isfinite().any())


def _decode(dec, sample, batching, **overrides):
    from fairseq_mh.generator import MHGenerator

    cfg = SamplerConfig(sampler="mh", mh_epochs=3, num_chains=2, seed=3, **overrides)
    gen = MHGenerator(dec.task.target_dictionary, cfg, length_beam=2, batching=batching, max_tokens=200)
    with torch.no_grad():
        return gen.generate(dec.models, sample), gen


def test_the_generator_bounds_its_calls_by_the_devices_budget_unless_told(family, monkeypatch):
    """MHGenerator without max_tokens gives its evaluator the model device's budget
    (cpu_runtime.call_token_budget); a given budget is used as given."""
    from fairseq_mh import generator
    from fairseq_mh.cpu_runtime import call_token_budget

    dec, sample = family
    budgets, real = [], generator.RowEvaluator

    def recording(*args, **kw):
        budgets.append(kw.get("max_tokens"))
        return real(*args, **kw)

    monkeypatch.setattr(generator, "RowEvaluator", recording)
    cfg = SamplerConfig(sampler="mh", mh_epochs=1, num_chains=2, seed=3)
    for given in (None, 200):
        gen = generator.MHGenerator(dec.task.target_dictionary, cfg, length_beam=1, max_tokens=given)
        with torch.no_grad():
            gen.generate(dec.models, sample)
    device = next(dec.models[0].parameters()).device
    assert budgets == [call_token_budget(device), 200]


def test_decoding_with_and_without_cross_sentence_batching_agrees(family):
    dec, sample = family
    a, gen_a = _decode(dec, sample, "sentence")
    b, gen_b = _decode(dec, sample, "shared")
    assert gen_b.totals["calls"] < gen_a.totals["calls"]  # shared calls really mix sentences
    assert gen_b.totals["rows"] == gen_a.totals["rows"]
    for ha, hb in zip(a, b):
        assert torch.equal(ha[0]["tokens"], hb[0]["tokens"])
        assert ha[0]["energy"] == pytest.approx(hb[0]["energy"], rel=1e-5, abs=1e-4)


def test_the_generator_and_adapters_keep_every_tensor_on_the_models_device(family):
    dec, sample = family
    model = dec.models[0]
    names = [n for n in ("forward_length", "extract_features", "output_layer") if hasattr(model.decoder, n)]
    with tracked() as t, paused_inside(t, model.encoder, ["forward"]), paused_inside(t, model.decoder, names):
        hyps, _ = _decode(dec, sample, "shared", warm_start="mask-predict", decoding_iterations=2)
    assert t.off_device == [] and t.copies == []
    assert all(h[0]["tokens"].device.type == "cpu" for h in hyps)


def test_bf16_models_keep_a_bf16_cache_and_float64_energies(family):
    from fairseq_mh.core.state import ChainState

    dec, sample = family
    dec = copy.copy(dec)
    dec.models = [copy.deepcopy(dec.models[0]).to(torch.bfloat16)]  # the fixture's model stays fp32
    seen = {}
    store = ChainState.store

    def spy(self, chain, pos, logits):
        seen["logits"] = logits.dtype
        store(self, chain, pos, logits)
        seen["cache"], seen["terms"] = self.cache.dtype, self.terms.dtype

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ChainState, "store", spy)
        hyps, _ = _decode(dec, sample, "shared")
    assert seen == {"logits": torch.bfloat16, "cache": torch.bfloat16, "terms": torch.float64}
    assert all(torch.isfinite(torch.tensor(h[0]["energy"])).all() for h in hyps)


def test_generate_applies_bf16_and_both_batching_modes(tiny_cmlm):
    base = ["fairseq-mh-generate", tiny_cmlm["data"], "--task", "translation_mh", "--path", tiny_cmlm["checkpoint"],
            "--sampler", "mh", "--mh-epochs", "2", "--num-chains", "2", "--length-beam", "2", "--batch-size", "8",
            "--cpu", "--seed", "2"]
    p32 = run([*base, "--mh-batching", "sentence"])
    assert "computing in torch.float32" in p32.stdout + p32.stderr
    fp32 = parse_generate(p32.stdout)["H"]
    shared = parse_generate(run([*base, "--mh-batching", "shared"]).stdout)["H"]
    # on a CPU without bf16 kernels --bf16 is refused (test_cpu_precision.py): forced here, to check the numerics
    p = run([*base, "--bf16"], env=forced_half(torch.bfloat16))
    assert "computing in torch.bfloat16" in p.stdout + p.stderr  # the plug-in says what it computes in
    bf16 = parse_generate(p.stdout)["H"]
    assert set(fp32) == set(shared) == set(bf16) and len(fp32) > 0
    same = sum(fp32[i][0][1] == shared[i][0][1] for i in fp32)
    assert same == len(fp32)  # float rounding flips no decision on this model


def test_a_batch_frees_its_state_and_hands_the_heap_back(family, monkeypatch):
    # nothing of a finished batch stays referenced (its evaluator holds the encoder states and
    # keys/values), and the freed heap is returned after each batch: a long run stays flat
    import gc
    import weakref

    from fairseq_mh import generator as generator_module

    made, trims = [], []

    class Tracked(generator_module.RowEvaluator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(weakref.ref(self))

    monkeypatch.setattr(generator_module, "RowEvaluator", Tracked)
    monkeypatch.setattr(generator_module, "release_freed_memory", lambda: trims.append(len(made)) or True)
    dec, sample = family
    _, gen = _decode(dec, sample, "shared")
    _decode(dec, sample, "sentence")
    gc.collect()
    assert len(made) == 2 and all(r() is None for r in made)
    assert trims == [1, 2]  # once per batch, after the batch's evaluator was made
    assert gen.progress.ev is None


def test_shared_calls_group_rows_of_similar_width_and_return_logits_in_row_order():
    """Without grouping by sentence, rows are sorted into calls of similar width (padding at most
    the slack), and the logits still come back in the caller's row-major order."""
    from fairseq_mh.core.conditional import width_groups

    lengths = torch.tensor([9, 3, 3, 10, 4, 9, 3, 10])
    groups = width_groups(lengths, 0.3)
    assert sorted(torch.cat(groups).tolist()) == list(range(8))
    for g in groups:
        w = lengths[g]
        assert int(w.max()) * w.numel() <= 1.3 * int(w.sum())
    assert [sorted(lengths[g].tolist()) for g in groups] == [[3, 3, 3, 4], [9, 9, 10, 10]]

    calls = []

    def fn(tokens, context, select):
        calls.append(tokens.size(1))
        ids = tokens.masked_fill(tokens == PAD, 0).sum(1, keepdim=True).double()  # a row's own tag
        return (ids.expand_as(tokens)[select])[:, None] * torch.ones(1, 3, dtype=torch.float64)

    tokens = torch.full((8, 10), PAD)
    for r, n in enumerate(lengths.tolist()):
        tokens[r, :n] = 100 + r
    select = tokens.ne(PAD) & (torch.arange(10) < 2)
    out = RowEvaluator(fn, pad=PAD, group_by_context=False, min_group_tokens=0)(tokens, torch.arange(8) % 3, select)
    expected = torch.cat([torch.full((int(select[r].sum()),), float((100 + r) * n), dtype=torch.float64)
                          for r, n in enumerate(lengths.tolist())])
    assert calls == [4, 10]  # two calls, each no wider than its own longest row
    torch.testing.assert_close(out[:, 0], expected)

    # with the default floor, 51 real tokens are too few to cut: one call, in the caller's order
    calls.clear()
    out = RowEvaluator(fn, pad=PAD, group_by_context=False)(tokens, torch.arange(8) % 3, select)
    assert calls == [10]
    torch.testing.assert_close(out[:, 0], expected)


def test_width_groups_are_not_cut_below_the_token_floor():
    """A group is cut for width only once it holds ``min_tokens`` real tokens (a smaller call
    costs more in fixed per-call work than its padding), and every row lands in one group."""
    from fairseq_mh.core.conditional import MIN_GROUP_TOKENS, width_groups

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 40, (300,), generator=g)
    for floor in (0, 64, MIN_GROUP_TOKENS, 10**6):
        groups = width_groups(lengths, 0.3, floor)
        assert sorted(torch.cat(groups).tolist()) == list(range(300))
        for a, b in zip(groups[:-1], groups[1:]):
            assert int(lengths[a].sum()) >= floor  # only a group that reached the floor was cut
            # ... and it was cut because the next row would have padded it past the slack
            w = int(lengths[b[0]])
            assert (a.numel() + 1) * w > 1.3 * (int(lengths[a].sum()) + w)
        if floor == 10**6:
            assert len(groups) == 1
    assert len(width_groups(lengths, 0.3, 0)) > len(width_groups(lengths, 0.3, MIN_GROUP_TOKENS)) > 1
