"""Exactness of the MH engine, proved on spaces small enough to enumerate.

Two kinds of evidence:
1. The kernel itself: transition matrices built from the engine's own proposal, energy and
   acceptance code satisfy detailed balance with respect to the exact target, to 1e-9.
2. The implemented sampler: tens of thousands of independent chains (one vectorised run)
   are compared with (a) the exact law of the chain after E epochs, computed from those
   matrices, and (b) the exact target.  The allowed total-variation distance is derived
   from the sample count (expected TV of an N-sample empirical law plus a McDiarmid
   deviation at probability 1e-4) plus the exact remaining mixing error, and must be at
   most 0.03.  Degenerate Gibbs on the paper's inconsistent example misses the target by
   far more than that bound.
"""

import math

import pytest
import torch

from fairseq_mh.core import GibbsKernel, MHKernel, ProposalShape, build_decoder, RowEvaluator, SamplerConfig, Starts, rng
from fairseq_mh.core.config import block_size, target_temperature
from fairseq_mh.core.energy import ENERGIES
from fairseq_mh.core.exact import SmallSpace, closed_class, target_distribution, total_variation
from toy_models import BOS, EOS, MASK, PAD, TableConditional, TinyNet, allowed_vector

VOCAB = 8
ALPHABET = (5, 6, 7)
TEMPLATE = [BOS, MASK, MASK, MASK, EOS]
FREE = [False, True, True, True, False]
DELTA = 1e-4  # probability that the sampling bound fails for a correct sampler


@pytest.fixture(scope="module")
def net():
    return TinyNet(vocab=VOCAB, length=len(TEMPLATE), seed=3, scale=1.0)


@pytest.fixture(scope="module")
def space(net):
    return SmallSpace(net, TEMPLATE, FREE, ALPHABET, MASK)


def shape_of(cfg):
    return ProposalShape(cfg.proposal_temperature, cfg.proposal_top_p, allowed_vector(VOCAB))


SHAPES = [(1.0, 1.0), (0.7, 1.0), (1.0, 0.8), (1.5, 0.9)]


@pytest.mark.parametrize("energy", ["raw", "local"])
@pytest.mark.parametrize("tau", [1.0, 0.5])
@pytest.mark.parametrize("temp,top_p", SHAPES)
def test_detailed_balance_of_single_site_and_block_kernels(space, energy, tau, temp, top_p):
    shape = ProposalShape(temp, top_p, allowed_vector(VOCAB))
    pi = target_distribution(space.energy[:, ENERGIES[energy]], tau)
    for block in ([1], [2], [3], [1, 2], [1, 3], [2, 3], [1, 2, 3]):
        K = space.block_kernel(block, shape, ENERGIES[energy], tau, MHKernel)
        assert torch.all(K >= -1e-12) and torch.allclose(K.sum(1), torch.ones(space.size, dtype=torch.float64))
        flow = pi[:, None] * K
        assert torch.allclose(flow, flow.T, rtol=0, atol=1e-9), f"detailed balance fails for block {block}"
        assert torch.allclose(pi @ K, pi, rtol=0, atol=1e-9)
        # moves really happen: the kernel is not the identity
        assert float(K.diagonal().min()) < 1.0


def test_gibbs_kernel_is_not_reversible_for_the_target(space):
    shape = ProposalShape(1.0, 1.0, allowed_vector(VOCAB))
    pi = target_distribution(space.energy[:, 0], 1.0)
    K = space.block_kernel([2], shape, 0, 1.0, GibbsKernel)
    flow = pi[:, None] * K
    assert (flow - flow.T).abs().max() > 1e-3


def _exact_law(space, cfg, start_index):
    """Law of the chain state after cfg.mh_epochs epochs, from the implemented schedules."""
    shape = shape_of(cfg)
    law = torch.zeros(space.size, dtype=torch.float64)
    law[start_index] = 1.0
    kernels = {}
    reach_kernel = None
    for e in range(cfg.mh_epochs):
        key = (target_temperature(cfg, e), block_size(cfg, e))
        if key not in kernels:
            kernels[key] = space.epoch_kernel(
                key[1], cfg.position_order, shape, ENERGIES[cfg.energy], key[0], cfg.kind.kernel
            )
        law = law @ kernels[key]
        reach_kernel = kernels[key]
    return law, reach_kernel


def _sampling_bound(law, n):
    expected = 0.5 * float(torch.sqrt(law * (1 - law)).sum()) / math.sqrt(n)
    return expected + math.sqrt(math.log(1 / DELTA) / (2 * n))


def _run_chains(conditional, template, free, cfg, start_tokens):
    starts = Starts(
        tokens=torch.tensor([start_tokens]),
        free=torch.tensor([free]),
        context=torch.tensor([0]),
        keys=rng.chain_keys(cfg.seed, torch.tensor([0])),
    )
    ev = RowEvaluator(conditional, pad=PAD)
    res = build_decoder(cfg, ev, MASK, allowed_vector(VOCAB)).run(starts)
    return res


def _check_reaches_target(space, conditional, cfg, start_tokens, n_chains):
    start_index = int(space.index_of(torch.tensor(start_tokens)))
    law, K = _exact_law(space, cfg, start_index)
    pi = target_distribution(space.energy[:, ENERGIES[cfg.energy]], cfg.target_temperature)
    reach = closed_class(K, start_index)
    pi = torch.where(reach, pi, torch.zeros_like(pi))
    pi = pi / pi.sum()
    mixing = total_variation(law, pi)
    sampling = _sampling_bound(law, n_chains)
    bound = mixing + sampling
    assert bound <= 0.03, f"test too weak: mixing {mixing:.4f} + sampling {sampling:.4f} > 0.03"
    res = _run_chains(conditional, space.template.tolist(), space.free.tolist(), cfg, start_tokens)
    final = res.samples[-1]
    # fixed symbols never change, specials are never proposed
    assert torch.equal(final[:, ~space.free], space.template[~space.free].expand(final.size(0), -1))
    assert not torch.isin(final[:, space.free], torch.tensor([BOS, PAD, EOS, 3, MASK])).any()
    emp = torch.bincount(space.index_of(final), minlength=space.size).double() / final.size(0)
    tv_law = total_variation(emp, law)
    tv_target = total_variation(emp, pi)
    assert tv_law <= sampling, f"sampler differs from its exact law: TV {tv_law:.4f} > {sampling:.4f}"
    assert tv_target <= bound, f"TV to target {tv_target:.4f} > bound {bound:.4f}"
    return tv_target, bound, res


N_CHAINS = 40000


@pytest.mark.parametrize("energy", ["raw", "local"])
@pytest.mark.parametrize("sampler,tau,temp,top_p", [
    ("mh", 1.0, 1.0, 1.0),
    ("mh", 0.5, 1.0, 1.0),
    ("mh", 1.0, 0.7, 0.9),
    ("block-mh", 1.0, 1.0, 1.0),
    ("block-mh", 0.5, 1.5, 0.9),
])
def test_mh_chains_reach_the_exact_target(space, net, energy, sampler, tau, temp, top_p):
    cfg = SamplerConfig(
        sampler=sampler, energy=energy, mh_epochs=14, burn_in=13, num_chains=N_CHAINS,  # worst bound 0.029
        proposal_temperature=temp, proposal_top_p=top_p, target_temperature=tau,
        block_size=2, no_block_anneal=True, position_order="random", warm_start="given", seed=11,
    )
    start = [BOS, 5, 5, 5, EOS]
    _check_reaches_target(space, net, cfg, start, N_CHAINS)


def test_left_to_right_order_and_annealed_block_size_follow_their_exact_law(space, net):
    cfg = SamplerConfig(
        sampler="block-mh", energy="local", mh_epochs=10, burn_in=9, num_chains=N_CHAINS,  # bound 0.022
        block_size=3, no_block_anneal=False, position_order="left-to-right", warm_start="given", seed=5,
    )
    _check_reaches_target(space, net, cfg, [BOS, 7, 6, 5, EOS], N_CHAINS)


# --- the paper's inconsistent two-token example (section 2.1, appendix C) -----------------
A, B = 5, 6


def paper_table(t, row):
    other = row[1 - t]
    if t == 0:  # p(X1 | X2): X2 strongly predicts X1
        if other == A:
            return {A: 0.99, B: 0.01}
        if other == B:
            return {A: 0.01, B: 0.99}
        return {A: 0.5, B: 0.5}  # X2 masked too (block proposals)
    return {A: 0.5, B: 0.5}  # p(X2 | X1): uninformative


@pytest.fixture(scope="module")
def paper_space():
    table = TableConditional(VOCAB, paper_table)
    return table, SmallSpace(table, [MASK, MASK], [True, True], (A, B), MASK)


def test_paper_example_target_is_the_product_of_conditionals(paper_space):
    _, sp = paper_space
    pi = target_distribution(sp.energy[:, 0], 1.0)
    assert torch.allclose(pi, torch.tensor([0.495, 0.005, 0.005, 0.495], dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("sampler", ["mh", "block-mh"])
def test_mh_samples_the_paper_example_exactly_and_degenerate_gibbs_does_not(paper_space, sampler):
    table, sp = paper_space
    n = 20000
    epochs = 250 if sampler == "mh" else 30  # the two modes are far apart for single-site moves
    cfg = SamplerConfig(sampler=sampler, energy="raw", mh_epochs=epochs, burn_in=epochs - 1, num_chains=n,
                        block_size=2, no_block_anneal=True, warm_start="given", seed=3)
    tv_mh, bound, _ = _check_reaches_target(sp, table, cfg, [A, B], n)
    gcfg = SamplerConfig(sampler="gibbs" if sampler == "mh" else "block-gibbs", energy="raw", mh_epochs=30,
                         burn_in=29, num_chains=n, block_size=2, no_block_anneal=True, warm_start="given", seed=3)
    res = _run_chains(table, [MASK, MASK], [True, True], gcfg, [A, B])
    emp = torch.bincount(sp.index_of(res.samples[-1]), minlength=sp.size).double() / n
    pi = target_distribution(sp.energy[:, 0], 1.0)
    tv_gibbs = total_variation(emp, pi)
    assert tv_gibbs > 3 * bound and tv_gibbs > 0.1, (tv_gibbs, bound)
    assert tv_mh <= bound
