"""Pairwise joints from masked conditionals (fairseq_mh.core.pairwise), checked against theory.

* Compatible conditionals (taken from one joint): HCB (any pivot) and AG give that joint back
  exactly, also on a top-K grid (the joint restricted to it) and whatever per-row logit shifts;
  the MRFs do not: MRF-local is p(a|b) p(b|a) normalised, MRF depends on the shifts.
* The MH paper's inconsistent two-token table: each method's closed form, HCB's dependence on
  the pivot, AG as the minimiser of its objective, and the incompatibility's closed form.
* A random network (inconsistent like a real MLM): MRF vs MRF-local differ by exactly the
  rows' log-normalisers, HCB keeps the MLM's A-conditionals, AG has the smallest KL_all.
* Costs: 1 + 2K rows per pair, two evaluator calls per sentence.
"""

import math

import pytest
import torch

from fairseq_mh.core import RowEvaluator
from fairseq_mh.core.pair_measures import (ag_objective, grid_index, incompatibility, joint_conditionals, score_joint,
                                           score_mlm)
from fairseq_mh.core.pairwise import (JOINTS, ag_joint, candidate_ids, derive_joint, hcb_joint, pair_conditionals,
                                      pair_joint)
from toy_models import BOS, EOS, MASK, PAD, PairTable, TinyNet, allowed_vector

ATOL = 1e-9
FIRST = 5


def _grid(table, vocab, k=None, pos=(1, 2), force=None):
    ev = RowEvaluator(table, pad=PAD)
    tokens = torch.tensor([[BOS, FIRST, FIRST, EOS]])
    fa = fb = None if force is None else torch.tensor([force])
    pc = pair_conditionals(ev, tokens, torch.tensor([0]), torch.tensor([pos[0]]), torch.tensor([pos[1]]), MASK, k,
                           allowed_vector(vocab), fa, fb)
    return pc, ev


def _random_joint(n, seed):
    g = torch.Generator().manual_seed(seed)
    j = torch.rand(n, n, generator=g, dtype=torch.float64) + 0.02
    return j / j.sum(), torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)


def _on_grid(joint, pc):
    """The joint over (x1, x2) restricted to the grid of position 1 x position 2, renormalised."""
    sub = joint[pc.cand_a[0] - FIRST][:, pc.cand_b[0] - FIRST]
    return sub / sub.sum()


@pytest.mark.parametrize("k", [None, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_hcb_and_ag_give_back_a_compatible_joint_exactly(k, seed):
    n = 5
    joint, s1, s2 = _random_joint(n, seed)
    table = PairTable.from_joint(FIRST + n, joint, shift1=3 * s1, shift2=3 * s2)
    pc, _ = _grid(table, FIRST + n, k)
    truth = _on_grid(joint, pc)
    assert pc.cand_a.size(1) == (n if k is None else k)
    for piv in range(pc.cand_a.size(1)):
        q = hcb_joint(pc, torch.tensor([piv]))[0].exp()
        assert torch.allclose(q, truth, rtol=0, atol=ATOL), f"HCB with pivot {piv}"
    q = ag_joint(pc)[0].exp()
    assert torch.allclose(q, truth, rtol=0, atol=ATOL)
    # the MLM's conditionals are compatible: incompatibility 0, and AG's objective reaches 0
    ca, cb = pc.grid_conditionals()
    assert float(incompatibility(ca, cb)) < 1e-20
    assert float(ag_objective(ca, cb, ag_joint(pc))) < ATOL


def test_the_mrfs_do_not_give_back_a_compatible_joint():
    n = 5
    joint, s1, s2 = _random_joint(n, 2)
    table = PairTable.from_joint(FIRST + n, joint, shift1=s1, shift2=s2)
    pc, _ = _grid(table, FIRST + n)
    truth = _on_grid(joint, pc)
    # MRF-local is p(a|b) p(b|a) = p(a,b)^2 / (p(a) p(b)), normalised: not the joint
    m1, m2 = truth.sum(1, keepdim=True), truth.sum(0, keepdim=True)
    local = truth ** 2 / (m1 * m2)
    local /= local.sum()
    q_local = derive_joint(pc, "mrf-local")[0].exp()
    assert torch.allclose(q_local, local, rtol=0, atol=ATOL)
    assert float((q_local - truth).abs().max()) > 1e-3
    # MRF adds the raw shifts (they cancel in any softmax but not here): exp(shift2[a] + shift1[b])
    raw = local * torch.exp(s2[pc.cand_a[0] - FIRST][:, None] + s1[pc.cand_b[0] - FIRST][None, :])
    assert torch.allclose(derive_joint(pc, "mrf")[0].exp(), raw / raw.sum(), rtol=0, atol=ATOL)


def test_mrf_local_is_exact_only_for_independent_positions():
    """p(a|b) p(b|a) = p(a,b)^2 / (p(a) p(b)) is the joint iff p(a,b) = p(a) p(b)."""
    n = 4
    g = torch.Generator().manual_seed(3)
    m1, m2 = (torch.softmax(torch.randn(n, generator=g, dtype=torch.float64), 0) for _ in range(2))
    joint = m1[:, None] * m2[None, :]
    pc, _ = _grid(PairTable.from_joint(FIRST + n, joint), FIRST + n)
    assert torch.allclose(derive_joint(pc, "mrf-local")[0].exp(), _on_grid(joint, pc), rtol=0, atol=ATOL)


# --- the MH paper's inconsistent table: p(X1|X2) = [[.99, .01], [.01, .99]], p(X2|X1) uniform ----

@pytest.fixture(scope="module")
def paper():
    c1 = torch.tensor([[0.99, 0.01], [0.01, 0.99]], dtype=torch.float64)  # [x1, x2]
    c2 = torch.full((2, 2), 0.5, dtype=torch.float64)
    m = torch.full((2,), 0.5, dtype=torch.float64)
    pc, _ = _grid(PairTable(FIRST + 2, c1, c2, m, m), FIRST + 2)
    assert pc.cand_a.tolist() == [[5, 6]] and pc.cand_b.tolist() == [[5, 6]]  # ties by token id
    return pc, c1, c2


def _norm(x):
    x = torch.tensor(x, dtype=torch.float64)
    return x / x.sum()


def test_paper_table_mrf_and_mrf_local_agree_and_follow_x2(paper):
    pc, c1, _ = paper
    # every row has the same log-normaliser, so the two MRFs coincide: q ∝ p(x1|x2) * 1/2
    for m in ("mrf", "mrf-local"):
        assert torch.allclose(derive_joint(pc, m)[0].exp(), _norm(c1.tolist()), rtol=0, atol=ATOL)


def test_paper_table_hcb_depends_on_the_pivot(paper):
    pc, c1, c2 = paper
    q0 = hcb_joint(pc, torch.tensor([0]))[0].exp()
    q1 = hcb_joint(pc, torch.tensor([1]))[0].exp()
    assert torch.allclose(q0, _norm([[1, 1], [1 / 99, 99]]), rtol=0, atol=ATOL)
    assert torch.allclose(q1, _norm([[99, 1 / 99], [1, 1]]), rtol=0, atol=ATOL)
    assert int(pc.pivot) == 0 and torch.equal(hcb_joint(pc)[0].exp(), q0)  # default: best candidate, by id on ties
    for piv, q in ((0, q0), (1, q1)):
        qa, qb = joint_conditionals(q.log()[None])
        # HCB keeps p(x1 | x2) everywhere, and p(x2 | x1) at the pivot only
        assert torch.allclose(qa[0].exp(), c1, rtol=0, atol=ATOL)
        assert torch.allclose(qb[0, piv].exp(), c2[piv], rtol=0, atol=ATOL)
        assert float((qb[0, 1 - piv].exp() - c2[1 - piv]).abs().max()) > 0.4


def test_paper_table_ag_is_the_fixed_point_and_minimises_its_objective(paper):
    pc, c1, c2 = paper
    ca, cb = pc.grid_conditionals()
    log_q = ag_joint(pc)
    q = log_q[0].exp()
    qa, qb = joint_conditionals(log_q)
    # stationarity of sum KL(p || q): q(a|b) + q(b|a) = p(a|b) + p(b|a) on every cell
    assert torch.allclose(qa[0].exp() + qb[0].exp(), c1 + c2, rtol=0, atol=1e-9)
    assert torch.allclose(q, q.flip(0, 1), rtol=0, atol=ATOL)  # the table's symmetry (swap both values)
    obj = float(ag_objective(ca, cb, log_q))
    others = {m: float(ag_objective(ca, cb, derive_joint(pc, m))) for m in ("mrf", "mrf-local", "hcb")}
    assert all(v > obj + 1e-3 for v in others.values()), (obj, others)
    g = torch.Generator().manual_seed(0)
    for _ in range(50):  # a local (here global: convex in log q) minimum
        moved = log_q + 0.05 * torch.randn(log_q.shape, generator=g, dtype=torch.float64)
        assert float(ag_objective(ca, cb, moved)) > obj


def test_paper_table_incompatibility_closed_form(paper):
    pc, _, _ = paper
    ca, cb = pc.grid_conditionals()
    # C_ij = p(x1|x2) / (1/2): C.. = 4, C_i. = C_.j = 2, so terms log(2 p(x1|x2))^2
    expected = (math.log(1.98) ** 2 + math.log(0.02) ** 2) / 2
    assert abs(float(incompatibility(ca, cb)) - expected) < 1e-12
    assert abs(float(score_mlm(ca, cb, torch.tensor([0]), torch.tensor([0]))["incompatibility"]) - expected) < 1e-12


# --- a random network: inconsistent conditionals with context ----------------------------

@pytest.fixture(scope="module")
def net():
    return TinyNet(vocab=12, length=6, seed=4, scale=2.0)


def _net_pairs(net, k):
    tokens = torch.tensor([[BOS, 5, 7, 9, 6, EOS], [BOS, 8, 8, 10, EOS, PAD], [BOS, 11, 5, 6, 7, EOS]])
    pos_a, pos_b = torch.tensor([1, 3, 4]), torch.tensor([2, 1, 2])
    ev = RowEvaluator(net, pad=PAD)
    pc = pair_conditionals(ev, tokens, torch.tensor([0, 1, 0]), pos_a, pos_b, MASK, k, allowed_vector(12))
    return pc, ev, tokens, pos_a, pos_b


@pytest.mark.parametrize("k", [None, 4])
def test_random_network_relations_between_methods(net, k):
    pc, _, _, _, _ = _net_pairs(net, k)
    ca, cb = pc.grid_conditionals()
    joints = {m: derive_joint(pc, m) for m in JOINTS}
    # MRF-local = MRF minus the rows' full-vocabulary log-normalisers (then renormalised)
    d = joints["mrf-local"] - joints["mrf"] + pc.lse_a[:, None, :] + pc.lse_b[:, :, None]
    assert float((d - d.mean((1, 2), keepdim=True)).abs().max()) < ATOL
    assert float((joints["mrf-local"] - joints["mrf"]).std()) > 0.01  # the normalisers do vary here
    # HCB keeps the MLM's A-conditionals exactly (renormalised over the grid)
    qa, _ = joint_conditionals(joints["hcb"])
    assert torch.allclose(qa, ca, rtol=0, atol=ATOL)
    # AG has the smallest mean KL(MLM || derived) of all methods, on every pair
    ia = ib = torch.zeros(3, dtype=torch.long)
    kls = {m: score_joint(j, ca, cb, ia, ib)["kl_all"] for m, j in joints.items()}
    for m in ("mrf", "mrf-local", "hcb"):
        assert bool((kls["ag"] < kls[m]).all()), (m, kls)
    assert float(incompatibility(ca, cb).min()) > 1e-3  # the network is inconsistent


def test_grid_matches_direct_model_calls(net):
    """The grid's logits are the network's own, row by row, for pairs in either order."""
    pc, _, tokens, pos_a, pos_b = _net_pairs(net, 4)
    for p in range(3):
        a, b = int(pos_a[p]), int(pos_b[p])
        for j, tok_b in enumerate(pc.cand_b[p].tolist()):
            row = tokens[p:p + 1].clone()
            row[0, a], row[0, b] = MASK, tok_b
            full = net.all_logits(row, torch.tensor([[0, 1, 0][p]]))[0, a].double()
            assert torch.allclose(pc.logit_a[p, :, j], full[pc.cand_a[p]], atol=1e-12)
            assert abs(float(pc.lse_a[p, j] - torch.logsumexp(full, 0))) < 1e-12
        both = tokens[p:p + 1].clone()
        both[0, a] = both[0, b] = MASK
        dm = net.all_logits(both, torch.tensor([[0, 1, 0][p]]))[0]
        top = dm[a].masked_fill(~allowed_vector(12), -math.inf).topk(4).indices
        assert sorted(pc.cand_a[p].tolist()) == sorted(top.tolist())


def test_rows_are_counted_exactly(net):
    for k in (1, 3, None):
        pc, ev, tokens, _, _ = _net_pairs(net, k)
        K = pc.cand_a.size(1)
        assert pc.rows.tolist() == [1 + 2 * K] * 3
        assert ev.rows == 3 * (1 + 2 * K) == int(pc.rows.sum())
        assert ev.calls == 4  # two phases, each split into its two sentences (contexts)


def test_pair_joint_for_proposals_and_a_table_conditional():
    joint, s1, s2 = _random_joint(4, 5)
    table = PairTable.from_joint(9, joint, shift1=s1, shift2=s2)
    ev = RowEvaluator(table, pad=PAD)
    tokens = torch.tensor([[BOS, 7, 8, EOS], [BOS, 5, 5, EOS]])
    pj = pair_joint(ev, tokens, torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([2, 1]), MASK, "ag", 3,
                    allowed_vector(9))
    assert pj.log_q.shape == (2, 3, 3) and pj.cand_a.shape == (2, 3) and pj.rows.tolist() == [7, 7]
    assert torch.allclose(torch.logsumexp(pj.log_q.reshape(2, -1), 1), torch.zeros(2, dtype=torch.float64))
    assert table.rows == ev.rows == 14
    # the second pair has A = x2, B = x1: its joint is the transposed restriction
    sub = joint[pj.cand_b[1] - FIRST][:, pj.cand_a[1] - FIRST]
    assert torch.allclose(pj.log_q[1].exp(), (sub / sub.sum()).T, rtol=0, atol=ATOL)
    # the grid ignores the tokens at A and B (so forward and reverse moves share it)
    other = tokens.clone()
    other[:, 1:3] = torch.tensor([[6, 5], [8, 7]])
    pj2 = pair_joint(RowEvaluator(table, pad=PAD), other, torch.tensor([0, 1]), torch.tensor([1, 2]),
                     torch.tensor([2, 1]), MASK, "ag", 3, allowed_vector(9))
    assert torch.equal(pj2.log_q, pj.log_q) and torch.equal(pj2.cand_a, pj.cand_a)


def test_forcing_gold_into_the_grid():
    joint, _, _ = _random_joint(5, 6)
    table = PairTable.from_joint(10, joint)
    dm_order = torch.sort(joint.sum(1), descending=True, stable=True)[1] + FIRST
    worst = int(dm_order[-1])
    pc, _ = _grid(table, 10, k=2, force=worst)
    assert bool(pc.forced_a) and pc.cand_a[0].tolist() == [int(dm_order[0]), worst]
    assert int(grid_index(pc.cand_a, torch.tensor([worst]))) == 1
    with pytest.raises(ValueError, match="not among the candidates"):
        grid_index(pc.cand_a, torch.tensor([int(dm_order[1])]))
    pc, _ = _grid(table, 10, k=2, force=int(dm_order[1]))
    assert not bool(pc.forced_a) and pc.cand_a[0].tolist() == dm_order[:2].tolist()


def test_bad_input_is_refused():
    logits = torch.randn(2, 9)
    for k in (0, 5):
        with pytest.raises(ValueError, match=r"K must be in \[1, 4\]"):
            candidate_ids(logits, k, allowed_vector(9))
    with pytest.raises(ValueError, match="not an allowed token"):
        candidate_ids(logits, 2, allowed_vector(9), force=torch.tensor([MASK, 5]))
    table = PairTable.from_joint(9, _random_joint(4, 0)[0])
    ev = RowEvaluator(table, pad=PAD)
    tok = torch.tensor([[BOS, 5, 6, EOS, PAD]])
    for a, b, msg in ((1, 1, "must differ"), (1, 4, "outside its row"), (1, 7, "outside its row")):
        with pytest.raises(ValueError, match=msg):
            pair_conditionals(ev, tok, torch.tensor([0]), torch.tensor([a]), torch.tensor([b]), MASK, 2, allowed_vector(9))
    with pytest.raises(ValueError, match="unknown pairwise method"):
        derive_joint(_grid(table, 9)[0], "gibbs")
    assert ev.rows == 0
