"""PaDIR's refinement strategies (core/refinement.py) as options of the mask-predict baseline.

Each strategy does what it says, seen in the rows the model is asked for (which positions are
masked at each iteration) on a small random network; the defaults stay the original algorithm
(the parity tests of tests/test_fairseq_mask_predict.py and test_engine_contract.py, and here
against a literal transcription); bad settings are refused in one line.
"""

import dataclasses
import math

import pytest
import torch

from fairseq_mh.core import ConfigError, RowEvaluator, SamplerConfig, Starts, build_decoder, mask_predict, rng
from fairseq_mh.core.refinement import Refinement, stutter_positions
from toy_models import BOS, EOS, MASK, PAD, SPECIALS, TinyNet, allowed_vector

VOCAB, L = 12, 9
S = 4


class Recorder:
    """A conditional that records every row it is asked for (tokens and selected positions)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, tokens, context, select):
        self.calls.append((tokens.clone(), select.clone()))
        return self.fn(tokens, context, select)


@pytest.fixture
def setup():
    net = TinyNet(vocab=VOCAB, length=L, seed=4, scale=2.0)
    tokens = torch.full((S, L), MASK)
    tokens[:, 0], tokens[:, -1] = BOS, EOS
    decode = torch.zeros(S, L, dtype=torch.bool)
    decode[:, 1:-1] = True
    keys = rng.chain_keys(3, torch.arange(S))
    return net, tokens, decode, keys


def run(net, tokens, decode, keys, iterations=6, min_remask=1, **kw):
    rec = Recorder(net)
    mp = mask_predict(RowEvaluator(rec, pad=PAD), tokens, decode, torch.zeros(S, dtype=torch.long), MASK, iterations,
                      allowed=allowed_vector(VOCAB), min_remask=min_remask, refinement=Refinement(**kw), keys=keys,
                      proposable=allowed_vector(VOCAB))
    return mp, rec.calls


def original(net, tokens, decode, iterations):
    """Literal mask-predict: predict all, then re-mask floor(n (1 - c/T)) (>= 1) least probable."""
    tok, probs = tokens.clone(), torch.ones(S, L)
    for c in range(iterations):
        m = decode.clone() if c == 0 else torch.zeros_like(decode)
        if c:
            for r in range(S):
                n = max(1, int(int(decode[r].sum()) * (1 - c / iterations)))
                m[r, probs[r].topk(n, largest=False, sorted=False)[1]] = True
            m &= decode
        tok[m] = MASK
        lg = net(tok, torch.zeros(S, dtype=torch.long), m).masked_fill(~allowed_vector(VOCAB), -math.inf)
        p, w = torch.softmax(lg.float(), -1).max(-1)
        tok[m], probs[m] = w, p
    return tok


def test_the_defaults_are_the_original_algorithm(setup):
    net, tokens, decode, keys = setup
    mp, calls = run(net, tokens, decode, keys)
    assert torch.equal(mp.tokens, original(net, tokens, decode, 6))
    assert len(calls) == 6 and torch.equal(mp.rows, torch.full((S,), 6))


def test_constant_and_share_re_mask_that_many_positions_each_iteration(setup):
    net, tokens, decode, keys = setup
    n = int(decode[0].sum())  # 7
    for kw, want in (({"remask": "constant", "remask_amount": 2}, 2), ({"remask": "share", "remask_amount": 0.5}, 3),
                     ({}, None)):
        _, calls = run(net, tokens, decode, keys, **kw)
        counts = [sel.sum(1).tolist() for _, sel in calls[1:]]
        expect = [[want] * S if want else [max(1, int(n * (1 - c / 6)))] * S for c in range(1, 6)]
        assert counts == expect, (kw, counts)


def test_stutter_positions_are_the_tokens_equal_to_their_left_neighbour():
    t = torch.tensor([[BOS, 5, 5, 6, 6, 6, 7, 5, EOS]])
    d = torch.ones_like(t, dtype=torch.bool)
    d[:, [0, -1]] = False
    assert stutter_positions(t, d).nonzero()[:, 1].tolist() == [2, 4, 5]


def test_stutter_positions_are_masked_at_the_next_iteration(setup):
    net, tokens, decode, keys = setup
    # a network that predicts the same token everywhere makes a full stutter
    const = lambda tok, ctx, sel: torch.nn.functional.one_hot(torch.full((int(sel.sum()),), 6), VOCAB).double() * 5
    rec = Recorder(const)
    mask_predict(RowEvaluator(rec, pad=PAD), tokens, decode, torch.zeros(S, dtype=torch.long), MASK, 3,
                 refinement=Refinement(remask="constant", remask_amount=1, stutter=True))
    sel = rec.calls[1][1]
    assert torch.equal(sel[:, 2:-1], torch.ones(S, L - 3, dtype=torch.bool))  # every stutter (positions 2..7)
    assert int(sel[:, 1].sum()) <= S  # plus at most the one least confident


def test_random_start_has_no_masks_costs_one_row_fewer_and_follows_its_key(setup):
    net, tokens, decode, keys = setup
    mp, calls = run(net, tokens, decode, keys, init="random")
    first_tokens, first_sel = calls[0]
    unmasked = decode & ~first_sel
    assert unmasked.any() and not (first_tokens[unmasked] == MASK).any()
    assert not torch.isin(first_tokens[unmasked], torch.tensor(SPECIALS)).any()
    assert torch.equal(mp.rows, torch.full((S,), 5))
    again, _ = run(net, tokens, decode, keys, init="random")
    other, _ = run(net, tokens, decode, rng.derive(keys, 1), init="random")
    assert torch.equal(again.tokens, mp.tokens)
    assert not torch.equal(calls[0][0], run(net, tokens, decode, rng.derive(keys, 1), init="random")[1][0][0])
    assert other.tokens.shape == mp.tokens.shape


def test_summed_logits_rank_positions_by_their_summed_logits(setup):
    net, tokens, decode, keys = setup
    mp, calls = run(net, tokens, decode, keys, iterations=3, confidence="summed-logits", remask="constant",
                    remask_amount=2)
    # recompute the summed logits of the chosen tokens from the recorded calls and check the
    # second iteration re-masked the two lowest
    summed = torch.zeros(S, L, dtype=torch.float64)
    tok0, sel0 = calls[0]
    allowed = allowed_vector(VOCAB)
    lg = net(tok0, torch.zeros(S, dtype=torch.long), sel0).masked_fill(~allowed, -math.inf)
    summed[sel0] = lg.max(-1).values
    tok1, sel1 = calls[1]
    want = torch.zeros_like(sel1)
    for r in range(S):
        want[r, summed[r].masked_fill(~decode[r], math.inf).topk(2, largest=False)[1]] = True
    assert torch.equal(sel1, want)
    lg1 = net(tok1, torch.zeros(S, dtype=torch.long), sel1).masked_fill(~allowed, -math.inf)
    summed[sel1] += lg1.max(-1).values
    want2 = torch.zeros_like(sel1)
    for r in range(S):
        want2[r, summed[r].masked_fill(~decode[r], math.inf).topk(2, largest=False)[1]] = True
    assert torch.equal(calls[2][1], want2)
    probs_mp, probs_calls = run(net, tokens, decode, keys, iterations=3, remask="constant", remask_amount=2)
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(calls, probs_calls))  # the choice matters here


def test_early_stop_ends_a_row_once_an_iteration_changes_nothing(setup):
    net, tokens, decode, keys = setup
    # a conditional that ignores its input: the second iteration predicts what was there
    fixed = lambda tok, ctx, sel: net(torch.full_like(tok, MASK), ctx, sel)
    rec = Recorder(fixed)
    mp = mask_predict(RowEvaluator(rec, pad=PAD), tokens, decode, torch.zeros(S, dtype=torch.long), MASK, 10,
                      refinement=Refinement(early_stop=True))
    assert torch.equal(mp.rows, torch.full((S,), 2)) and len(rec.calls) == 2
    full = mask_predict(RowEvaluator(fixed, pad=PAD), tokens, decode, torch.zeros(S, dtype=torch.long), MASK, 10)
    assert torch.equal(full.rows, torch.full((S,), 10)) and torch.equal(full.tokens, mp.tokens)
    # on the real network rows stop at different iterations, never after more than T
    real, _ = run(net, tokens, decode, keys, iterations=10, early_stop=True)
    assert int(real.rows.max()) <= 10 and int(real.rows.min()) >= 2


def test_length_norm_is_a_brevity_term():
    ref = Refinement(length_norm=0.5)
    lp = torch.tensor([[-1.0, -1.0, 0.0, 0.0], [-1.0, -1.0, -1.0, -1.0]])
    n = torch.tensor([2, 4])
    assert torch.allclose(ref.score(lp, n), torch.tensor([-2 / math.sqrt(2), -4 / 2.0]))
    assert torch.allclose(Refinement().score(lp, n), torch.tensor([-1.0, -1.0]))
    assert torch.allclose(Refinement(length_norm=0.0).score(lp, n), torch.tensor([-2.0, -4.0]))


def _decoder_run(net, tokens, decode, **cfg):
    c = SamplerConfig(sampler="mask-predict", decoding_iterations=5, report_energy=False, seed=3, **cfg)
    starts = Starts(tokens, decode.clone(), torch.zeros(S, dtype=torch.long), rng.chain_keys(3, torch.arange(S)))
    return build_decoder(c, RowEvaluator(net, pad=PAD), MASK, allowed_vector(VOCAB)).run(starts), starts


def test_parallel_decodes_keep_the_best_scoring_and_count_all_rows(setup):
    net, tokens, decode, _ = setup
    res, starts = _decoder_run(net, tokens, decode, mask_predict_parallel=3)
    scores, toks = [], []
    for i in range(3):
        ref = Refinement() if i == 0 else Refinement(init="random")
        k = starts.keys if i == 0 else rng.derive(starts.keys, i)
        mp = mask_predict(RowEvaluator(net, pad=PAD), tokens, decode, starts.context, MASK, 5, refinement=ref, keys=k,
                          proposable=allowed_vector(VOCAB))
        scores.append(mp.score)
        toks.append(mp.tokens)
    best = torch.stack(scores).argmax(0)
    assert torch.equal(res.score, torch.stack(scores).max(0).values)
    assert torch.equal(res.tokens, torch.stack(toks)[best, torch.arange(S)])
    assert int(res.stats.rows.sum()) == S * (5 + 4 + 4)
    single, _ = _decoder_run(net, tokens, decode)
    assert bool((res.score >= single.score).all())


def test_the_decoder_passes_every_strategy_through(setup):
    net, tokens, decode, keys = setup
    res, starts = _decoder_run(net, tokens, decode, mask_predict_init="random", mask_predict_remask="share",
                               mask_predict_remask_amount=0.4, mask_predict_stutter=True,
                               mask_predict_score="summed-logits", mask_predict_early_stop=True,
                               mask_predict_length_norm=0.7)
    ref = Refinement("random", "share", 0.4, True, "summed-logits", True, 0.7)
    mp = mask_predict(RowEvaluator(net, pad=PAD), tokens, decode, starts.context, MASK, 5, refinement=ref,
                      keys=starts.keys, proposable=allowed_vector(VOCAB))
    assert torch.equal(res.tokens, mp.tokens) and torch.equal(res.score, mp.score)
    assert dataclasses.replace(ref) == Refinement.from_config(SamplerConfig(
        mask_predict_init="random", mask_predict_remask="share", mask_predict_remask_amount=0.4,
        mask_predict_stutter=True, mask_predict_score="summed-logits", mask_predict_early_stop=True,
        mask_predict_length_norm=0.7))


@pytest.mark.parametrize("kw,needle", [
    ({"mask_predict_remask": "constant"}, "--mask-predict-remask constant needs --mask-predict-remask-amount N"),
    ({"mask_predict_remask": "constant", "mask_predict_remask_amount": 1.5}, "an integer >= 1 (got 1.5)"),
    ({"mask_predict_remask": "share", "mask_predict_remask_amount": 1.5}, "in (0, 1] (got 1.5)"),
    ({"mask_predict_init": "noise"}, "--mask-predict-init must be one of masks, random"),
    ({"mask_predict_score": "x"}, "--mask-predict-score must be one of probs, summed-logits"),
    ({"mask_predict_parallel": 0}, "--mask-predict-parallel must be an integer >= 1"),
    ({"mask_predict_length_norm": -1.0}, "--mask-predict-length-norm must be a finite number >= 0"),
])
def test_bad_strategy_settings_are_refused(kw, needle):
    with pytest.raises(ConfigError) as e:
        SamplerConfig(**kw)
    assert needle in str(e.value)


def test_the_strategies_run_through_fairseq_mh_generate_and_bad_values_are_one_line(tiny_cmlm):
    from cli_helpers import parse_generate, run, user_error

    base = ["fairseq-mh-generate", tiny_cmlm["data"], "--task", "translation_mh", "--path", tiny_cmlm["checkpoint"],
            "--cpu", "--batch-size", "8", "--length-beam", "2", "--sampler", "mask-predict"]
    n = len((tiny_cmlm["raw"] / "test.src").read_text().splitlines())
    p = run([*base, "--mask-predict-init", "random", "--mask-predict-remask", "constant",
             "--mask-predict-remask-amount", "2", "--mask-predict-stutter", "--mask-predict-score", "summed-logits",
             "--mask-predict-parallel", "2", "--mask-predict-length-norm", "0.8", "--mask-predict-early-stop"])
    assert sorted(parse_generate(p.stdout)["H"]) == list(range(n))
    bad = run([*base, "--mask-predict-remask", "share", "--mask-predict-remask-amount", "2"], check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "--mask-predict-remask share needs --mask-predict-remask-amount in (0, 1] (got 2.0)" in user_error(bad)
