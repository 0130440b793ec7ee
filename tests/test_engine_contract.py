"""The engine's compute contract, reproducibility and refusal of bad settings."""

import dataclasses
import math

import pytest
import torch

from fairseq_mh.core import ConfigError, build_decoder, RowEvaluator, SamplerConfig, Starts, mask_predict, rng
from toy_models import BOS, EOS, MASK, PAD, TinyNet, allowed_vector

VOCAB = 9
L = 7


class CountingNet(TinyNet):
    """TinyNet that records the number of rows of every call; batch-invariant to the bit, as
    the batching tests below need."""

    def __init__(self, **kw):
        super().__init__(batch_invariant=True, **kw)
        self.row_log = []
        self.token_log = []

    def __call__(self, tokens, context, select):
        self.row_log.append(tokens.size(0))
        self.token_log.append(tokens.numel())
        return super().__call__(tokens, context, select)


def make_starts(lengths, sentence_ids, seed=1):
    """One start per sentence: BOS, (n-2) masks, EOS, right-padded to L."""
    S = len(lengths)
    tokens = torch.full((S, L), PAD)
    free = torch.zeros(S, L, dtype=torch.bool)
    for i, n in enumerate(lengths):
        tokens[i, 0], tokens[i, 1 : n - 1], tokens[i, n - 1] = BOS, MASK, EOS
        free[i, 1 : n - 1] = True
    ctx = torch.tensor(sentence_ids) % 2
    return Starts(tokens, free, ctx, rng.chain_keys(seed, torch.tensor(sentence_ids)))


def run(cfg, starts, net=None, **ev_kw):
    net = net or CountingNet(vocab=VOCAB, length=L, seed=4)
    ev = RowEvaluator(net, pad=PAD, **ev_kw)
    res = build_decoder(cfg, ev, MASK, allowed_vector(VOCAB)).run(starts)
    return res, ev, net


def test_single_site_mh_costs_t_minus_1_rows_per_move_and_nothing_for_a_redraw():
    starts = make_starts([7, 5, 6], [0, 1, 2])
    cfg = SamplerConfig(sampler="mh", mh_epochs=4, num_chains=5, proposal_temperature=0.6)
    res, ev, net = run(cfg, starts)
    st = res.stats
    T = res.n_free  # free positions per chain
    moves = st.proposals - st.accepted + st.novel  # proposals that differ from the state
    redraws = st.proposals - moves
    assert int(redraws.sum()) > 0 and int(moves.sum()) > 0  # both cases occur
    assert torch.equal(st.rows, moves * (T - 1))
    assert int(st.report_rows.sum()) == 0  # MH always knows its energies
    # each proposal is one position: T proposals per epoch
    assert torch.equal(st.proposals, T.expand_as(st.proposals))
    # every row is accounted for: the network saw exactly what the evaluator counted
    assert sum(net.row_log) == ev.rows == res.init_rows + int(st.rows.sum())
    # warm start (1 row) and first energies (T rows) are computed once per start, not per chain
    assert res.init_rows == sum(1 + (n - 2) for n in [7, 5, 6])


def test_block_mh_costs_one_proposal_row_plus_t_rows_for_energy():
    starts = make_starts([7, 7], [3, 4])
    T = 5
    # one block of all T positions per epoch; forced acceptance makes every proposal the next state
    cfg = SamplerConfig(sampler="block-mh", mh_epochs=1, num_chains=200, block_size=T, no_block_anneal=True,
                        force_accept_epochs=1, proposal_temperature=0.5)
    res, ev, _ = run(cfg, starts)
    # the start each chain began from is the greedy warm start of its sentence
    net2 = CountingNet(vocab=VOCAB, length=L, seed=4)
    mp = mask_predict(RowEvaluator(net2, pad=PAD), starts.tokens, starts.free, starts.context, MASK, 1,
                      allowed=allowed_vector(VOCAB))
    x0 = mp.tokens.repeat_interleave(200, 0)
    d = (res.samples[-1] != x0).sum(1)
    expected = 1 + torch.where(d == 0, 0, torch.where(d == 1, T - 1, T))
    assert set(d.tolist()) >= {0, 1} and int(d.max()) >= 2  # all three cases occur
    assert torch.equal(res.stats.rows[0], expected)


def test_degenerate_gibbs_costs_at_most_one_row_per_step():
    starts = make_starts([7], [9])
    cfg = SamplerConfig(sampler="gibbs", mh_epochs=3, num_chains=4)
    res, _, _ = run(cfg, starts)
    sampling_rows = res.stats.rows - res.stats.report_rows
    assert torch.all(sampling_rows <= res.stats.proposals)
    assert torch.all(res.stats.report_rows <= res.n_free)


def test_mask_predict_costs_one_row_per_iteration_and_t_more_only_to_report_energies():
    starts = make_starts([7, 5, 6], [0, 1, 2])
    T = starts.free.sum(1)
    cfg = SamplerConfig(sampler="mask-predict", decoding_iterations=3)
    quiet, ev_q, net_q = run(dataclasses.replace(cfg, report_energy=False), starts)
    loud, ev_l, _ = run(cfg, starts)
    assert torch.equal(quiet.tokens, loud.tokens)
    assert sum(net_q.row_log) == ev_q.rows == 3 * len(T)  # fairseq's cost: one row per pass
    assert ev_l.rows == ev_q.rows + int(T.sum())  # + one row per free position for the energies
    assert torch.isnan(quiet.energy).all() and torch.isfinite(loud.energy).all()


def test_row_budget_bounds_every_model_call_and_changes_nothing():
    starts = make_starts([7, 6, 5, 7], [0, 1, 2, 3])
    cfg = SamplerConfig(sampler="block-mh", mh_epochs=3, num_chains=3, block_size=3)
    a, _, net_a = run(cfg, starts)
    b, _, net_b = run(cfg, starts, max_rows=7)
    c, _, net_c = run(cfg, starts, max_tokens=20)
    assert max(net_b.row_log) <= 7 and len(net_b.row_log) > len(net_a.row_log)
    assert max(net_c.token_log) <= 20
    for other in (b, c):
        assert torch.equal(a.tokens, other.tokens)
        assert torch.equal(a.stats.energy, other.stats.energy)


@pytest.mark.parametrize("sampler", ["mh", "block-mh", "gibbs", "block-gibbs"])
def test_same_seed_same_output_and_batching_or_order_change_nothing(sampler):
    lengths, ids = [7, 5, 6, 7], [10, 11, 12, 13]
    cfg = SamplerConfig(sampler=sampler, mh_epochs=3, num_chains=3, block_size=3, seed=5)
    full, _, _ = run(cfg, make_starts(lengths, ids, seed=5))
    again, _, _ = run(cfg, make_starts(lengths, ids, seed=5))
    assert torch.equal(full.tokens, again.tokens) and torch.equal(full.stats.energy, again.stats.energy)
    # one sentence at a time, in reverse order
    for i in reversed(range(4)):
        one, _, _ = run(cfg, make_starts([lengths[i]], [ids[i]], seed=5))
        rows = slice(3 * i, 3 * i + 3)
        assert torch.equal(one.tokens, full.tokens[rows])
        assert torch.equal(one.stats.energy, full.stats.energy[:, rows])
        assert torch.equal(one.stats.accepted, full.stats.accepted[:, rows])
    # shuffled order within one batch
    perm = [2, 0, 3, 1]
    shuf, _, _ = run(cfg, make_starts([lengths[p] for p in perm], [ids[p] for p in perm], seed=5))
    for j, p in enumerate(perm):
        assert torch.equal(shuf.tokens[3 * j : 3 * j + 3], full.tokens[3 * p : 3 * p + 3])
    # another seed gives other chains
    other, _, _ = run(SamplerConfig(**{**cfg.__dict__, "seed": 6}), make_starts(lengths, ids, seed=6))
    assert not torch.equal(other.samples, full.samples)


def test_chains_of_a_sentence_are_distinct():
    cfg = SamplerConfig(sampler="mh", mh_epochs=3, num_chains=6, seed=2)
    res, _, _ = run(cfg, make_starts([7], [0], seed=2))
    assert len({tuple(r) for r in res.samples.permute(1, 0, 2).reshape(6, -1).tolist()}) > 1


BAD = [
    ("proposal_temperature", 0.0),
    ("proposal_temperature", -1.0),
    ("proposal_temperature", math.inf),
    ("target_temperature", math.nan),
    ("min_target_temperature", 0.0),
    ("proposal_top_p", 0.0),
    ("proposal_top_p", 1.5),
    ("mh_epochs", 0),
    ("burn_in", 5),
    ("burn_in", -1),
    ("block_size", 0),
    ("num_chains", 0),
    ("sampler", "hmc"),
    ("energy", "pll"),
]


@pytest.mark.parametrize("name,value", BAD)
def test_bad_settings_are_refused_before_any_work(name, value):
    net = CountingNet(vocab=VOCAB, length=L)
    with pytest.raises(ConfigError) as e:  # a config is validated when it is made
        build_decoder(SamplerConfig(**{"mh_epochs": 5, name: value}), RowEvaluator(net, pad=PAD), MASK,
                      allowed_vector(VOCAB))
    assert "--" + name.replace("_", "-") in str(e.value)
    assert "\n" not in str(e.value)
    assert net.row_log == []


def test_rows_with_a_pad_inside_reach_the_model_whole():
    """A decoder may predict <pad> inside a row (mask-predict over the full vocabulary): the
    evaluator trims trailing pads only, so no token after it is cut off."""
    seen = []

    def fn(tokens, context, select):
        seen.append(tokens.clone())
        return torch.zeros(int(select.sum()), VOCAB)

    ev = RowEvaluator(fn, pad=PAD)
    rows = torch.tensor([[BOS, 5, PAD, 6, EOS, PAD, PAD], [BOS, 5, EOS, PAD, PAD, PAD, PAD]])
    select = torch.zeros_like(rows, dtype=torch.bool)
    select[0, 3] = select[1, 1] = True
    assert ev(rows, torch.tensor([0, 0]), select).shape == (2, VOCAB)
    assert torch.equal(seen[0], rows[:, :5])  # up to the first row's EOS, its inner pad kept
    assert ev.tokens == 4 + 3  # non-pad symbols


@pytest.mark.parametrize("piece", [1, 3, 1 << 20])
def test_energy_terms_in_pieces_are_the_upcast_computation_to_the_bit(monkeypatch, piece):
    """Energy terms are computed piece by piece off CUDA (freed pieces are reused warm): every
    piece size gives exactly the terms of one float64 upcast of all the rows, in any dtype and
    with infinite logits (a disallowed token)."""
    from fairseq_mh.core import energy, pieces

    monkeypatch.setattr(pieces, "PIECE_ELEMENTS", piece * 7)
    g = torch.Generator().manual_seed(3)
    for dtype in (torch.bfloat16, torch.float32, torch.float64):
        logits = torch.randn(4, 5, 7, generator=g).mul(4).to(dtype)
        logits[1, 2, 3] = -math.inf
        tokens = torch.randint(0, 7, (4, 5), generator=g)
        up = logits.to(torch.float64)
        picked = up.gather(-1, tokens[..., None]).squeeze(-1)
        expected = torch.stack([-picked, torch.logsumexp(up, -1) - picked], -1)
        got = energy.energy_terms(logits, tokens)
        assert got.dtype == torch.float64 and got.shape == (4, 5, 2)
        assert torch.equal(got, expected)
    assert energy.energy_terms(torch.zeros(0, 7), torch.zeros(0, dtype=torch.long)).shape == (0, 2)


@pytest.mark.parametrize("piece", [1, 2, 1 << 20])
def test_proposal_draws_in_pieces_are_the_whole_computation_to_the_bit(monkeypatch, piece):
    """``draw`` runs the shaping and the inverse-CDF draw piece by piece: every piece size gives
    exactly the draws and forward/reverse log-probabilities of one pass over all the rows, with
    a temperature, a nucleus and disallowed tokens; a row with nothing to propose is refused."""
    from fairseq_mh.core import pieces
    from fairseq_mh.core.proposals import ProposalShape, draw, sample_from_log_probs, shaped_log_probs

    monkeypatch.setattr(pieces, "PIECE_ELEMENTS", piece * 11)
    g = torch.Generator().manual_seed(5)
    allowed = torch.ones(11, dtype=torch.bool)
    allowed[[0, 3]] = False
    shape = ProposalShape(temperature=0.7, top_p=0.8, allowed=allowed)
    for dtype in (torch.bfloat16, torch.float32):
        logits = torch.randn(9, 11, generator=g).mul(3).to(dtype)
        u = torch.rand(9, generator=g, dtype=torch.float64)
        current = torch.randint(0, 11, (9,), generator=g)
        lq = shaped_log_probs(logits, shape)
        w0 = sample_from_log_probs(lq, u)
        w, fwd, rev = draw(logits, shape, u, current)
        assert torch.equal(w, w0) and bool(allowed[w].all())
        assert torch.equal(fwd, lq.gather(1, w0[:, None]).squeeze(1))
        assert torch.equal(rev, lq.gather(1, current[:, None]).squeeze(1))
    with pytest.raises(RuntimeError, match="no token left to propose"):
        draw(torch.zeros(3, 11), ProposalShape(allowed=torch.zeros(11, dtype=torch.bool)), torch.rand(3),
             torch.zeros(3, dtype=torch.long))
