"""Parallel tempering is exact, proved on enumerable spaces as the other kernels are.

1. The exchange step satisfies detailed balance with respect to the product of the replicas'
   targets, and the replica chain's joint transition (every replica's epoch kernel, then the
   epoch's exchanges) leaves that product invariant, to 1e-9.
2. The implemented sampler: the replica-0 samples of many independent tempered chains (one
   vectorised run) are within the sampling bound of the exact law of replica 0 (the marginal
   of the joint chain's law, computed from the matrices of 1.), and within mixing plus
   sampling of the target.
3. On the paper's two-mode example, tempering reaches the target where plain MH, given at
   least as many model rows, is still far from it.
"""

import pytest
import torch

from fairseq_mh.core import MHKernel, ProposalShape, SamplerConfig
from fairseq_mh.core.config import ConfigError, block_size
from fairseq_mh.core.energy import ENERGIES
from fairseq_mh.core.exact import (
    product_kernel, product_target, swap_kernel, target_distribution, total_variation,
)
from fairseq_mh.core.tempering import swap_pairs
from test_engine_exact import net, paper_space, space  # noqa: F401  (fixtures)
from test_engine_exact import A, B, FREE, TEMPLATE, VOCAB, _run_chains, _sampling_bound
from toy_models import BOS, EOS, MASK, allowed_vector

SHAPE = ProposalShape(1.0, 1.0, allowed_vector(VOCAB))


def joint_epoch(sp, ladder, tau, epoch, energy="raw", block=1, kernels=None):
    """The replica chain's transition in ``epoch``: every replica's epoch kernel, then the
    exchanges of that epoch's pairs (the driver's order)."""
    temps = [tau * t for t in ladder]
    kernels = kernels if kernels is not None else {}
    ks = []
    for t in temps:
        if t not in kernels:
            kernels[t] = sp.epoch_kernel(block, "random", SHAPE, ENERGIES[energy], t, MHKernel)
        ks.append(kernels[t])
    return product_kernel(ks) @ swap_kernel(sp.energy[:, ENERGIES[energy]], temps, swap_pairs(len(ladder), epoch))


@pytest.mark.parametrize("energy", ["raw", "local"])
@pytest.mark.parametrize("ladder", [(1.0, 0.6), (1.0, 2.5)])
def test_exchange_is_reversible_and_the_joint_transition_keeps_the_product_target(space, energy, ladder):
    e = space.energy[:, ENERGIES[energy]]
    pi = product_target(e, ladder)
    S = swap_kernel(e, ladder, [0])
    flow = pi[:, None] * S
    assert torch.allclose(flow, flow.T, rtol=0, atol=1e-9)
    assert float(S.diagonal().min()) < 1.0  # exchanges happen
    for block in (1, 2):
        for epoch in (0, 1):
            K = joint_epoch(space, ladder, 1.0, epoch, energy, block)
            assert torch.allclose(K.sum(1), torch.ones_like(pi))
            assert torch.allclose(pi @ K, pi, rtol=0, atol=1e-9)


def test_three_replicas_alternate_even_and_odd_pairs_and_keep_the_product_target(paper_space):
    _, sp = paper_space
    ladder = (1.0, 2.0, 4.0)
    e = sp.energy[:, 0]
    pi = product_target(e, ladder)
    assert swap_pairs(3, 0) == [0] and swap_pairs(3, 1) == [1] and swap_pairs(4, 0) == [0, 2]
    for pairs in ([0], [1]):
        flow = pi[:, None] * swap_kernel(e, ladder, pairs)
        assert torch.allclose(flow, flow.T, rtol=0, atol=1e-9)
    for epoch in (0, 1):
        assert torch.allclose(pi @ joint_epoch(sp, ladder, 1.0, epoch), pi, rtol=0, atol=1e-9)


def replica0_law(sp, ladder, cfg, start_index):
    """Exact law of replica 0 after cfg.mh_epochs epochs, every replica starting at start_index."""
    N, M = sp.size, len(ladder)
    law = torch.zeros(N**M, dtype=torch.float64)
    law[sum(start_index * N ** (M - 1 - m) for m in range(M))] = 1.0
    kernels = {}
    for epoch in range(cfg.mh_epochs):
        k = block_size(cfg, epoch)
        law = law @ joint_epoch(sp, ladder, cfg.target_temperature, epoch, cfg.energy, k, kernels.setdefault(k, {}))
    return law.view(N, -1).sum(1)


@pytest.mark.parametrize("sampler,energy,ladder", [
    ("pt-mh", "raw", "1,0.6"),
    ("pt-block-mh", "local", "1,2"),
])
def test_tau1_replica_follows_its_exact_law_and_reaches_the_target(space, net, sampler, energy, ladder):
    n = 20000
    cfg = SamplerConfig(sampler=sampler, energy=energy, mh_epochs=15, burn_in=14, num_chains=n, block_size=2,
                        no_block_anneal=True, warm_start="given", pt_temperatures=ladder, seed=7)
    start = [BOS, 5, 5, 5, EOS]
    law = replica0_law(space, cfg.ladder, cfg, int(space.index_of(torch.tensor(start))))
    pi = target_distribution(space.energy[:, ENERGIES[energy]], 1.0)
    sampling = _sampling_bound(law, n)
    bound = total_variation(law, pi) + sampling
    assert bound <= 0.04, bound  # else the test would be too weak
    res = _run_chains(net, TEMPLATE, FREE, cfg, start)
    emp = torch.bincount(space.index_of(res.samples[-1]), minlength=space.size).double() / n
    assert res.samples.size(1) == n  # the output is replica 0 alone
    assert total_variation(emp, law) <= sampling
    assert total_variation(emp, pi) <= bound


def test_tempering_beats_plain_mh_on_a_two_mode_target_at_equal_rows(paper_space):
    """The paper's example: modes (A, A) and (B, B) of mass 0.495 each, joined through states
    of mass 0.005.  From (A, B), 20 epochs of two replicas (1, 2) are closer to the target
    than 60 epochs of MH, which spend more rows (a hot replica moves, hence pays, more)."""
    table, sp = paper_space
    n = 10000
    pi = target_distribution(sp.energy[:, 0], 1.0)
    common = dict(energy="raw", num_chains=n, warm_start="given", seed=3)
    pt = SamplerConfig(sampler="pt-mh", mh_epochs=20, burn_in=19, pt_temperatures="1,2", **common)
    mh = SamplerConfig(sampler="mh", mh_epochs=60, burn_in=59, **common)
    law_pt = replica0_law(sp, pt.ladder, pt, 1)
    law_mh = torch.zeros(sp.size, dtype=torch.float64)
    law_mh[1] = 1.0
    law_mh = law_mh @ torch.linalg.matrix_power(sp.epoch_kernel(1, "random", SHAPE, 0, 1.0, MHKernel), 60)
    tvs, rows = {}, {}
    for name, cfg, law in (("pt", pt, law_pt), ("mh", mh, law_mh)):
        res = _run_chains(table, [MASK, MASK], [True, True], cfg, [A, B])
        emp = torch.bincount(sp.index_of(res.samples[-1]), minlength=sp.size).double() / n
        assert total_variation(emp, law) <= _sampling_bound(law, n)
        tvs[name] = total_variation(emp, pi)
        rows[name] = res.init_rows + int(res.stats.rows.sum())
    assert rows["pt"] <= rows["mh"], rows
    assert total_variation(law_pt, pi) < 0.01 and total_variation(law_mh, pi) > 0.08
    assert tvs["mh"] > tvs["pt"] + 0.05, tvs


@pytest.mark.parametrize("bad", ["1", "1,0", "1,-2", "1,x", "1,nan", ""])
def test_a_bad_ladder_is_refused_naming_the_option(bad):
    with pytest.raises(ConfigError, match="--pt-temperatures"):
        SamplerConfig(sampler="pt-mh", pt_temperatures=bad)
