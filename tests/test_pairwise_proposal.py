"""The two-position block proposal from a derived joint (``--block-proposal ag|hcb``) is exact.

Evidence, as for the other kernels (tests/test_engine_exact.py):
1. the kernel's reverse rule (forward grid, a forced side keeps its grid only if its token
   stays) equals the reverse probability read from the grid genuinely built for X', on every
   state and move of an enumerable space, including states whose pair lies outside the top K;
2. the transition matrix built from that rule satisfies detailed balance to 1e-9;
3. 40,000 sampled chains of the implemented sampler match the exact law after E epochs and
   the target within the TV bound;
plus its row counts and the settings it refuses.
"""

import math

import pytest
import torch

from fairseq_mh.core import ConfigError, RowEvaluator, SamplerConfig, StepKey, rng
from fairseq_mh.core.config import block_size, target_temperature
from fairseq_mh.core.energy import ENERGIES
from fairseq_mh.core.exact import closed_class, target_distribution, total_variation
from fairseq_mh.core.kinds import build_kernel
from fairseq_mh.core.moves import Block, fill_cache
from fairseq_mh.core.pair_proposal import pair_table
from fairseq_mh.core.pairwise import pair_conditionals
from fairseq_mh.core.proposals import ProposalShape
from fairseq_mh.core.state import ChainState
from test_engine_exact import ALPHABET, FREE, TEMPLATE, VOCAB, _run_chains, _sampling_bound
from test_engine_exact import net, space  # noqa: F401  (the same enumerable space and network: fixtures)
from toy_models import BOS, EOS, MASK, PAD, allowed_vector

BLOCKS = ([1, 2], [1, 3], [2, 3])


def ev_of(net):
    return RowEvaluator(net, pad=PAD)


def _table(net, states, a, b, method, k, temperature=1.0):
    n = states.size(0)
    full = lambda v: torch.full((n,), v, dtype=torch.long)  # noqa: E731
    return pair_table(ev_of(net), MASK, states, full(0), full(a), full(b), method, k, allowed_vector(VOCAB),
                      temperature)


@pytest.mark.parametrize("method", ["ag", "hcb"])
@pytest.mark.parametrize("k", [1, 2])  # K=1: the grid is the current pair, nothing moves
def test_the_reverse_rule_is_the_reverse_grid_built_from_the_proposed_state(space, net, method, k):
    out_of_grid_moves = kept_forced_moves = 0
    for a, b in BLOCKS:
        tab = _table(net, space.states, a, b, method, k)
        cand_a, cand_b = tab.joint.cand_a, tab.joint.cand_b
        n = space.size
        pc = pair_conditionals(ev_of(net), space.states, torch.zeros(n, dtype=torch.long), torch.full((n,), a),
                               torch.full((n,), b), MASK, k, allowed_vector(VOCAB), space.states[:, a],
                               space.states[:, b])
        forced = pc.forced_a | pc.forced_b
        for i in range(k):
            for j in range(k):
                dest = space.states.clone()
                dest[:, a], dest[:, b] = cand_a[:, i], cand_b[:, j]
                back = _table(net, dest, a, b, method, k)  # the grid of X', built from X'
                ia = back.joint.cand_a == space.states[:, a, None]
                jb = back.joint.cand_b == space.states[:, b, None]
                inside = ia.any(1) & jb.any(1)
                ar = torch.arange(space.size)
                genuine = torch.where(inside, back.joint.log_q[ar, ia.float().argmax(1), jb.float().argmax(1)],
                                      torch.full((space.size,), -math.inf, dtype=torch.float64))
                rule = tab.log_q_rev[:, i, j]
                assert torch.equal(torch.isinf(rule), torch.isinf(genuine))
                fin = torch.isfinite(genuine)
                assert torch.allclose(rule[fin], genuine[fin], rtol=0, atol=1e-12)
                moved = (dest != space.states).any(1)
                out_of_grid_moves += int((moved & ~inside).sum())
                kept_forced_moves += int((moved & inside & forced).sum())
    # the out-of-grid case really occurs both ways: reverse moves of probability zero, and
    # moves out of an out-of-grid state that keep its forced token and are reversible
    if k > 1:
        assert out_of_grid_moves > 0 and kept_forced_moves > 0


@pytest.mark.parametrize("method", ["ag", "hcb"])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("energy,tau,temp", [("raw", 1.0, 1.0), ("local", 1.0, 1.0), ("raw", 0.5, 0.7),
                                             ("local", 0.5, 1.5)])
def test_detailed_balance_of_the_pair_proposal_kernel(space, net, method, k, energy, tau, temp):
    shape = ProposalShape(temp, 1.0, allowed_vector(VOCAB))
    pi = target_distribution(space.energy[:, ENERGIES[energy]], tau)
    for block in BLOCKS:
        K = space.pair_block_kernel(block, ev_of(net), method, k, shape, ENERGIES[energy], tau)
        assert torch.all(K >= -1e-12) and torch.allclose(K.sum(1), torch.ones(space.size, dtype=torch.float64))
        flow = pi[:, None] * K
        assert torch.allclose(flow, flow.T, rtol=0, atol=1e-9), f"detailed balance fails for block {block}"
        assert torch.allclose(pi @ K, pi, rtol=0, atol=1e-9)
        assert float(K.diagonal().min()) < 1.0


def test_without_the_mh_correction_the_pair_proposal_is_not_reversible(space, net):
    """The check above can fail: accepting every pair proposal breaks detailed balance."""
    tab = _table(net, space.states, 1, 2, "ag", 3)
    pi = target_distribution(space.energy[:, 0], 1.0)
    K = torch.zeros(space.size, space.size, dtype=torch.float64)
    for i in range(3):
        for j in range(3):
            dest = space.states.clone()
            dest[:, 1], dest[:, 2] = tab.joint.cand_a[:, i], tab.joint.cand_b[:, j]
            K[torch.arange(space.size), space.index_of(dest)] += tab.joint.log_q[:, i, j].exp()
    flow = pi[:, None] * K
    assert (flow - flow.T).abs().max() > 1e-3


N_CHAINS = 40000


@pytest.mark.parametrize("method,energy,order", [("ag", "raw", "random"), ("hcb", "local", "left-to-right")])
def test_pair_proposal_chains_reach_the_exact_target(space, net, method, energy, order):
    k = 2  # out-of-grid states exist (three tokens per position)
    cfg = SamplerConfig(sampler="block-mh", energy=energy, mh_epochs=12, burn_in=11, num_chains=N_CHAINS,
                        block_size=2, no_block_anneal=True, position_order=order, warm_start="given", seed=7,
                        block_proposal=method, block_proposal_k=k)
    start = [BOS, 5, 6, 7, EOS]
    shape = ProposalShape(1.0, 1.0, allowed_vector(VOCAB))
    s0 = int(space.index_of(torch.tensor(start)))
    law = torch.zeros(space.size, dtype=torch.float64)
    law[s0] = 1.0
    M = space.epoch_kernel(2, order, shape, ENERGIES[energy], 1.0, cfg.kind.kernel, pair=(ev_of(net), method, k))
    for _ in range(cfg.mh_epochs):
        law = law @ M
    pi = target_distribution(space.energy[:, ENERGIES[energy]], 1.0)
    # top-2 grids can leave states unreachable (left to right, blocks are always {1, 2}, {3}):
    # the chain then samples the target restricted to the closed class of its start
    reach = closed_class(M, s0)
    pi = torch.where(reach, pi, torch.zeros_like(pi))
    pi = pi / pi.sum()
    sampling = _sampling_bound(law, N_CHAINS)
    bound = total_variation(law, pi) + sampling
    assert bound <= 0.03, f"test too weak: bound {bound:.4f}"
    res = _run_chains(net, TEMPLATE, FREE, cfg, start)
    emp = torch.bincount(space.index_of(res.samples[-1]), minlength=space.size).double() / N_CHAINS
    assert total_variation(emp, law) <= sampling
    assert total_variation(emp, pi) <= bound


def _state(net, tokens, free):
    ev = ev_of(net)
    st = ChainState(torch.tensor(tokens), torch.tensor(free), torch.zeros(len(tokens), dtype=torch.long),
                    rng.chain_keys(1, torch.arange(len(tokens))))
    fill_cache(ev, MASK, st)
    return ev, st


@pytest.mark.parametrize("k", [1, 2, 3, 9])
def test_a_pair_move_costs_one_plus_two_k_rows_then_its_energy(net, k):
    tokens = [[BOS, 5, 6, 7, EOS]] * 6
    ev, st = _state(net, tokens, [FREE] * 6)
    cfg = SamplerConfig(sampler="block-mh", block_size=2, block_proposal="hcb", block_proposal_k=k)
    kernel = build_kernel(cfg, ev, MASK, ProposalShape(1.0, 1.0, allowed_vector(VOCAB)), 0)
    st.keys = rng.chain_keys(1, torch.arange(6))
    before, rows0 = st.tokens.clone(), st.rows.clone()
    block = Block.from_positions(torch.tensor([[1, 3]] * 6))
    kernel.step(StepKey(0, 0, forced=True), st, block)  # every proposal taken: its cost is visible
    changed = (st.tokens != before).sum(1)
    kk = min(k, len(ALPHABET))
    energy_rows = torch.where(changed == 2, 3, torch.where(changed == 1, 2, 0))
    assert torch.equal(st.rows - rows0, 1 + 2 * kk + energy_rows)


def test_chains_with_one_and_two_position_blocks_in_one_step_match_separate_runs(net):
    """Blocks of one position (odd lengths) move as the independent kernel's, in the same step."""
    cfg = SamplerConfig(sampler="block-mh", mh_epochs=4, num_chains=3, block_size=2, no_block_anneal=True,
                        warm_start="given", block_proposal="ag", block_proposal_k=2, seed=5)
    from fairseq_mh.core import Starts, build_decoder

    tok = torch.tensor([[BOS, 5, 6, 7, EOS], [BOS, 6, 6, EOS, PAD]])
    free = torch.tensor([FREE, [False, True, True, False, False]])
    keys = rng.chain_keys(cfg.seed, torch.tensor([0, 1]))

    def run(rows):
        starts = Starts(tok[rows], free[rows], torch.zeros(len(rows), dtype=torch.long), keys[rows])
        return build_decoder(cfg, ev_of(net), MASK, allowed_vector(VOCAB)).run(starts)

    both = run([0, 1])
    for s in (0, 1):
        alone = run([s])
        assert torch.equal(both.states[:, 3 * s:3 * s + 3, :alone.states.size(2)], alone.states)
        assert torch.equal(both.stats.rows[:, 3 * s:3 * s + 3], alone.stats.rows)


@pytest.mark.parametrize("kw,needle", [
    ({"sampler": "mh"}, "--block-proposal ag is a block MH proposal"),
    ({"sampler": "block-gibbs"}, "--block-proposal ag is a block MH proposal"),
    ({"block_size": 4}, "--block-size 2"),
    ({"proposal_top_p": 0.9}, "--proposal-top-p 1"),
    ({"block_proposal_k": 0}, "--block-proposal-k must be an integer >= 1"),
    ({"block_proposal": "mrf"}, "--block-proposal must be one of independent, ag, hcb"),
])
def test_settings_a_pair_proposal_cannot_take_are_refused(kw, needle):
    base = dict(sampler="block-mh", block_size=2, block_proposal="ag")
    with pytest.raises(ConfigError, match=needle.replace("-", r"\-").replace(".", r"\.")):
        SamplerConfig(**{**base, **kw})


def test_the_pair_proposal_runs_through_fairseq_mh_generate_and_bad_values_are_one_line(tiny_cmlm, tmp_path):
    import json

    from cli_helpers import parse_generate, run, user_error

    base = ["fairseq-mh-generate", tiny_cmlm["data"], "--task", "translation_mh", "--path", tiny_cmlm["checkpoint"],
            "--cpu", "--batch-size", "8", "--length-beam", "1", "--sampler", "block-mh", "--mh-epochs", "2"]
    n = len((tiny_cmlm["raw"] / "test.src").read_text().splitlines())
    trace = tmp_path / "t.jsonl"
    p = run([*base, "--block-size", "2", "--block-proposal", "ag", "--block-proposal-k", "3", "--mh-trace", trace])
    assert sorted(parse_generate(p.stdout)["H"]) == list(range(n))
    recs = [json.loads(l) for l in trace.read_text().splitlines()]
    assert any(r.get("acceptance") is not None for r in recs)
    bad = run([*base, "--block-proposal", "hcb"], check=False)  # block size 4 by default
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "--block-proposal hcb proposes two positions at once: it needs --block-size 2 (got 4)" in user_error(bad)
