"""Dispersed starts (``--warm-start random`` and ``mixed``): their exact laws, their costs,
the mixed cycle, and independence from batching.

A random start is uniform over the proposable tokens, a proposal start is the product of the
shaped conditionals of the all-mask sequence: both laws are computed exactly on an
enumerable space and the starts of many chains (one vectorised run) are compared with them
within the sampling bound.  Chains leaving random starts follow the exact law of the chain
started from the uniform law, and reach the target.
"""

import pytest
import torch

from fairseq_mh.core import MHKernel, ProposalShape, RowEvaluator, SamplerConfig, Starts, build_decoder, rng
from fairseq_mh.core.exact import target_distribution, total_variation
from fairseq_mh.core.proposals import shaped_log_probs
from fairseq_mh.core.starts import MIXED_CYCLE
from test_engine_exact import net, space  # noqa: F401  (fixtures)
from test_engine_exact import FREE, TEMPLATE, VOCAB, _sampling_bound
from toy_models import MASK, PAD, allowed_vector


def run(net, cfg, sentences=(0,), contexts=None):
    S = len(sentences)
    starts = Starts(tokens=torch.tensor([TEMPLATE] * S), free=torch.tensor([FREE] * S),
                    context=torch.tensor(contexts if contexts is not None else [0] * S),
                    keys=rng.chain_keys(cfg.seed, torch.tensor(sentences)))
    ev = RowEvaluator(net, pad=PAD)
    return build_decoder(cfg, ev, MASK, allowed_vector(VOCAB)).run(starts), ev


def empirical(space, tokens):
    return torch.bincount(space.index_of(tokens), minlength=space.size).double() / tokens.size(0)


def test_random_starts_are_uniform_and_their_chains_follow_the_exact_law(space, net):
    n = 30000
    cfg = SamplerConfig(sampler="mh", mh_epochs=8, burn_in=7, num_chains=n, warm_start="random", seed=4)
    res, ev = run(net, cfg)
    uniform = torch.full((space.size,), 1.0 / space.size, dtype=torch.float64)
    assert res.start_per_chain and res.start_tokens.shape == (n, len(TEMPLATE))
    assert total_variation(empirical(space, res.start_tokens), uniform) <= _sampling_bound(uniform, n)
    K = space.epoch_kernel(1, "random", ProposalShape(1.0, 1.0, allowed_vector(VOCAB)), 0, 1.0, MHKernel)
    law = uniform @ torch.linalg.matrix_power(K, cfg.mh_epochs)
    sampling = _sampling_bound(law, n)
    assert total_variation(empirical(space, res.samples[-1]), law) <= sampling
    pi = target_distribution(space.energy[:, 0], 1.0)
    assert total_variation(empirical(space, res.samples[-1]), pi) <= total_variation(law, pi) + sampling
    # a random start costs no row; each chain's conditionals cost T rows, all counted
    assert res.start_rows.tolist() == [3] * n
    assert res.init_rows + int(res.stats.rows.sum()) == ev.rows


def test_mixed_starts_cycle_through_greedy_mask_predict_random_and_proposal(space, net):
    n = 4 * 8000
    cfg = SamplerConfig(sampler="mh", mh_epochs=1, num_chains=n, warm_start="mixed", seed=2)
    res, ev = run(net, cfg)
    greedy, _ = run(net, SamplerConfig(sampler="mh", mh_epochs=1, warm_start="greedy"))
    mp, _ = run(net, SamplerConfig(sampler="mh", mh_epochs=1, warm_start="mask-predict"))
    starts = res.start_tokens.view(n // 4, 4, -1)
    assert MIXED_CYCLE == ("greedy", "mask-predict", "random", "proposal")
    assert torch.equal(starts[:, 0], greedy.start_tokens.expand(n // 4, -1))
    assert torch.equal(starts[:, 1], mp.start_tokens.expand(n // 4, -1))
    m = n // 4
    uniform = torch.full((space.size,), 1.0 / space.size, dtype=torch.float64)
    assert total_variation(empirical(space, starts[:, 2]), uniform) <= _sampling_bound(uniform, m)
    # the proposal start: independent draws from the shaped all-mask conditionals
    sel = torch.tensor([FREE])
    lq = shaped_log_probs(net(torch.tensor([TEMPLATE]), torch.tensor([0]), sel), ProposalShape(
        1.0, 1.0, allowed_vector(VOCAB)))
    codes = space.states[:, space.free_pos]
    law = lq[torch.arange(3), codes].sum(-1).exp()
    assert abs(float(law.sum()) - 1.0) < 1e-9
    assert total_variation(empirical(space, starts[:, 3]), law) <= _sampling_bound(law, m)
    assert res.init_rows + int(res.stats.rows.sum()) == ev.rows
    # each chain's conditionals cost T = 3 rows; the shared rows (greedy, mask-predict, the
    # all-mask row) are charged once per start, to its first chain of that kind
    rows = res.start_rows.view(m, 4)
    assert rows[0].tolist() == [int(greedy.start_rows[0]), int(mp.start_rows[0]), 3, 4]
    assert int(greedy.start_rows[0]) > 3 and int(mp.start_rows[0]) > int(greedy.start_rows[0])
    assert (rows[1:] == 3).all()


def test_dispersed_starts_do_not_depend_on_batching(net):
    cfg = SamplerConfig(sampler="block-mh", mh_epochs=4, burn_in=1, num_chains=6, warm_start="mixed", seed=9)
    together, _ = run(net, cfg, sentences=(3, 8), contexts=[0, 1])
    alone, _ = run(net, cfg, sentences=(8,), contexts=[1])
    assert torch.equal(together.start_tokens[6:], alone.start_tokens)
    assert torch.equal(together.samples[:, 6:], alone.samples)


def test_unknown_warm_start_is_refused():
    from fairseq_mh.core.config import ConfigError

    with pytest.raises(ConfigError, match="--warm-start must be one of greedy, mask-predict, random, mixed"):
        SamplerConfig(warm_start="uniform")
