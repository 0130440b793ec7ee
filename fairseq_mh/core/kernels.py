"""Transition kernels: one ``step(key, state, block) -> (state, StepInfo)`` per move.

The Metropolis-Hastings correction is written once for every proposal.  A move X -> X'
proposed by re-drawing a block I of positions from the shaped masked conditionals
q_I(. | X without I) is accepted with probability

    min(1, exp(-(E(X') - E(X)) / tau) * q_I(X_I | X'_{-I}) / q_I(X'_I | X_{-I}))

and since X'_{-I} = X_{-I} both proposal terms come from the same conditionals (paper,
sections 3-4).  A NaN log-ratio counts as a rejection, and so does a reverse move of
probability zero (log-ratio -inf).

Adding a sampler.  Write a class with the ``Kernel`` interface below: ``step`` advances the
chains of a block and returns what it did; ``transition_weight`` states, in closed form,
the probability of moving to a given proposal, which ``exact.SmallSpace`` turns into the
kernel's transition matrix.  Register it in ``kinds.SAMPLER_KINDS`` and copy the
exactness tests of ``tests/test_engine_exact.py`` (stationarity of the exact matrix and
sampled chains within the TV bound).  The state is advanced in place (its cache is
[C, L, V]: copying it per step would cost more than the model) and returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch

from . import rng
from .conditional import RowEvaluator
from .energy import energy_terms
from .moves import Block, Proposal, StepKey, block_conditionals, propose
from .proposals import ProposalShape
from .rows import single_masked_rows
from .state import ChainState

__all__ = [
    "log_acceptance",
    "accept_moves",
    "acceptance_probability",
    "StepInfo",
    "Kernel",
    "GibbsKernel",
    "MHKernel",
]


def log_acceptance(e_old, e_new, tau, log_q_fwd, log_q_rev):
    """log of the MH ratio for target exp(-E / tau)."""
    return -(e_new - e_old) / tau + (log_q_rev - log_q_fwd)


def acceptance_probability(log_alpha: torch.Tensor) -> torch.Tensor:
    """min(1, exp(log_alpha)), with NaN treated as 0."""
    a = torch.exp(torch.clamp(log_alpha, max=0.0))
    return torch.nan_to_num(a, nan=0.0)


def accept_moves(log_alpha: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Accept where u < min(1, exp(log_alpha)); u uniform in [0, 1)."""
    return u < acceptance_probability(log_alpha)


@dataclass
class StepInfo:
    """What one step did, per chain that took it."""

    chains: torch.Tensor  # [n] chains that proposed a move
    accepted: torch.Tensor  # [n] bool: the chain's state is now the proposal
    novel: torch.Tensor  # [n] bool: accepted and different from the previous state


class Kernel:
    """A block move: shared proposal stages, and an update rule per subclass."""

    def __init__(self, evaluator: RowEvaluator, mask: int, shape: ProposalShape, target: int):
        self.ev = evaluator
        self.mask = mask
        self.shape = shape
        self.target = target

    def step(self, key: StepKey, state: ChainState, block: Block) -> Tuple[ChainState, StepInfo]:
        logits = block_conditionals(self.ev, self.mask, state, block)
        proposal = propose(self.shape, state, block, logits, key)
        return state, self.update(key, state, block, proposal)

    def update(self, key: StepKey, state: ChainState, block: Block, proposal: Proposal) -> StepInfo:
        raise NotImplementedError

    @staticmethod
    def transition_weight(log_q_fwd, log_q_rev, e_old, e_new, tau) -> torch.Tensor:
        """Probability of proposing and taking a move X -> X' != X (for exact kernels)."""
        raise NotImplementedError


class GibbsKernel(Kernel):
    """Degenerate Gibbs: every proposal is taken.  It samples no energy model, since the
    masked conditionals are inconsistent; it is the baseline MH corrects."""

    def update(self, key, state, block, proposal):
        moved = proposal.moved
        m = moved.nonzero().squeeze(1)
        if m.numel():
            chains = block.chains[m]
            lone = proposal.lone[m]
            # only a lone changed position keeps its cache entry (X' masked there is X masked there)
            keep = torch.zeros(m.numel(), state.tokens.size(1), dtype=torch.bool, device=lone.device)
            li = (lone >= 0).nonzero().squeeze(1)
            keep[li, lone[li]] = True
            state.valid[chains] &= keep
            state.tokens[chains] = proposal.tokens[m]
            ci, pi = (state.valid[chains] & keep).nonzero(as_tuple=True)
            state.terms[chains[ci], pi] = energy_terms(state.cache[chains[ci], pi], state.tokens[chains[ci], pi])
        return StepInfo(block.chains, torch.ones_like(moved), moved)

    @staticmethod
    def transition_weight(log_q_fwd, log_q_rev, e_old, e_new, tau):
        return log_q_fwd.exp()


class MHKernel(Kernel):
    """Metropolis-Hastings with the masked conditionals as (block) proposals: exact for the
    target exp(-E/tau)."""

    def update(self, key, state, block, proposal):
        moved = proposal.moved
        accepted = ~moved  # a redraw of the current tokens is accepted and costs nothing
        novel = torch.zeros_like(moved)
        m = moved.nonzero().squeeze(1)
        if m.numel():
            ok = self._accept_moved(key, state, block.chains[m], proposal, m)
            accepted[m[ok]] = True
            novel[m[ok]] = True
        return StepInfo(block.chains, accepted, novel)

    def _accept_moved(self, key, state, chains, proposal, m) -> torch.Tensor:
        """Scores the moved proposals, tests them and commits the accepted ones."""
        X1, lone = proposal.tokens[m], proposal.lone[m]
        new_terms, rows = self._proposal_terms(state, chains, X1, lone)
        e_new = (new_terms * state.free[chains].unsqueeze(-1)).sum(1)
        e_old = state.energy()[chains]
        if key.forced:
            ok = torch.ones(m.numel(), dtype=torch.bool, device=m.device)
        else:
            la = log_acceptance(e_old[:, self.target], e_new[:, self.target], key.tau * state.tau_scale[chains],
                                proposal.log_q_fwd[m], proposal.log_q_rev[m])
            ok = accept_moves(la, rng.uniform(state.keys[chains], key.epoch, key.step, 0, rng.PURPOSE_ACCEPT))
        if ok.any():
            okc = chains[ok]
            state.tokens[okc] = X1[ok]
            state.terms[okc] = new_terms[ok]
            if rows is not None:
                r, t, logits = rows
                keep = ok[r]
                state.cache[chains[r[keep]], t[keep]] = logits[keep].to(state.cache.dtype)
            state.valid[okc] = state.free[okc]
        return ok

    def _proposal_terms(self, state, chains, X1, lone):
        """Energy terms of the proposals X1: one row per free position, except a lone changed
        position, whose conditional is the cached one (X1 masked there is X masked there)."""
        need = state.free[chains].clone()
        li = (lone >= 0).nonzero().squeeze(1)
        need[li, lone[li]] = False
        r, t = need.nonzero(as_tuple=True)
        new_terms = torch.zeros(X1.size(0), X1.size(1), 2, dtype=torch.float64, device=X1.device)
        rows = None
        if r.numel():
            masked, sel = single_masked_rows(X1[r], t, self.mask)
            logits = self.ev(masked, state.context[chains[r]], sel)
            state.count(chains[r])
            new_terms[r, t] = energy_terms(logits, X1[r, t])
            rows = (r, t, logits)
        if li.numel():
            new_terms[li, lone[li]] = energy_terms(state.cache[chains[li], lone[li]], X1[li, lone[li]])
        return new_terms, rows

    @staticmethod
    def transition_weight(log_q_fwd, log_q_rev, e_old, e_new, tau):
        return log_q_fwd.exp() * acceptance_probability(log_acceptance(e_old, e_new, tau, log_q_fwd, log_q_rev))
