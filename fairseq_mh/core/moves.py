"""The two stages every block kernel shares: the block's conditionals, and the proposal.

A *block* names, for each chain that moves at a step, the positions it redraws ([n, K], -1 =
unused slot).  ``block_conditionals`` gets the masked conditionals of those positions given
the rest of the state: from the cache for a single position, otherwise one model row (the
state with the whole block masked).  ``propose`` draws the new tokens independently from
the shaped conditionals and returns what an accept/reject rule needs (``Proposal``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import rng
from .conditional import RowEvaluator
from .proposals import ProposalShape, draw
from .rows import masked_rows, selected_slot, single_masked_rows
from .state import ChainState

__all__ = ["StepKey", "Block", "Proposal", "fill_cache", "block_conditionals", "propose"]


@dataclass(frozen=True)
class StepKey:
    """Where a step stands: the counter coordinates of its random numbers (epoch, step) and
    the epoch's schedule (target temperature, forced acceptance)."""

    epoch: int
    step: int
    tau: float = 1.0
    forced: bool = False


@dataclass
class Block:
    """The positions each moving chain redraws: chain ``chains[i]`` redraws ``pos[i, used[i]]``."""

    chains: torch.Tensor  # [n] chain indices
    pos: torch.Tensor  # [n, K] positions, -1 where unused
    used: torch.Tensor  # [n, K] bool

    @classmethod
    def from_positions(cls, pos: torch.Tensor) -> "Block":
        """From [C, K] positions of every chain (-1 = unused); chains with none do not move."""
        used = pos >= 0
        chains = used.any(1).nonzero().squeeze(1)
        return cls(chains, pos[chains], used[chains])

    @property
    def size(self) -> int:
        return self.chains.numel()


@dataclass
class Proposal:
    """A proposed state per moving chain, with its forward and reverse log-probabilities."""

    tokens: torch.Tensor  # [n, L] the proposed states
    log_q_fwd: torch.Tensor  # [n] float64, log q(X'_I | X_-I)
    log_q_rev: torch.Tensor  # [n] float64, log q(X_I | X_-I)
    n_changed: torch.Tensor  # [n] positions where X' differs from X
    lone: torch.Tensor  # [n] the changed position when it is the only one, else -1

    @property
    def moved(self) -> torch.Tensor:
        return self.n_changed > 0


def fill_cache(ev: RowEvaluator, mask: int, state: ChainState, report: bool = False) -> None:
    """Computes the conditionals of every free position whose cache entry is stale (one row
    each); ``report`` counts them as rows spent only to report energies."""
    need = state.free & ~state.valid
    if not need.any():
        return
    chain, pos = need.nonzero(as_tuple=True)
    rows, select = single_masked_rows(state.tokens[chain], pos, mask)
    logits = ev(rows, state.context[chain], select)
    state.count(chain, report=report)
    state.store(chain, pos, logits)


def block_conditionals(ev: RowEvaluator, mask: int, state: ChainState, block: Block) -> torch.Tensor:
    """[n, K, V] conditionals of each block's positions given the rest of its state.

    A single position is read from the cache when valid; every other block costs one row,
    and a fresh single-position result is stored as a cache entry.
    """
    idx, P, used = block.chains, block.pos, block.used
    n, K = P.shape
    first = P.clamp(min=0)[:, 0]
    single = used.sum(1) == 1
    from_cache = single & state.valid[idx, first]
    V = state.cache.size(-1)
    logits = torch.empty(n, K, V, dtype=state.cache.dtype, device=state.cache.device)
    if from_cache.any():
        logits[from_cache, 0] = state.cache[idx[from_cache], first[from_cache]]
    need = (~from_cache).nonzero().squeeze(1)
    if need.numel() == 0:
        return logits
    Pn, un = P[need], used[need]
    r_i, k_i = un.nonzero(as_tuple=True)
    sel = torch.zeros(need.numel(), state.tokens.size(1), dtype=torch.bool, device=P.device)
    sel[r_i, Pn[r_i, k_i]] = True
    rows, sel = masked_rows(state.tokens[idx[need]], sel, mask)
    out = ev(rows, state.context[idx[need]], sel)
    state.count(idx[need])
    logits[need[r_i], k_i] = out[selected_slot(sel, r_i, Pn[r_i, k_i])].to(logits.dtype)
    fresh = single[need]
    if fresh.any():  # a fresh single-position conditional is a valid cache entry
        state.store(idx[need][fresh], Pn[fresh, 0], logits[need[fresh], 0])
    return logits


def propose(shape: ProposalShape, state: ChainState, block: Block, logits: torch.Tensor, key: StepKey) -> Proposal:
    """Independent draws from the shaped conditionals of each block's positions."""
    idx, P, used = block.chains, block.pos, block.used
    n = idx.numel()
    slot_c, slot_k = used.nonzero(as_tuple=True)
    u = rng.uniform(state.keys[idx][slot_c], key.epoch, key.step, slot_k, rng.PURPOSE_PROPOSAL)
    positions = P[slot_c, slot_k]
    cur = state.tokens[idx]
    old = cur[slot_c, positions]
    w, log_q_w, log_q_old = draw(logits[slot_c, slot_k], shape, u, old)

    def per_chain(values, dtype):
        return torch.zeros(n, dtype=dtype, device=values.device).index_add_(0, slot_c, values.to(dtype))

    changed = w != old
    new = cur.clone()
    new[slot_c, positions] = w
    lone = torch.full((n,), -1, dtype=torch.long, device=P.device)
    lone[slot_c[changed]] = positions[changed]
    n_changed = per_chain(changed, torch.long)
    lone[n_changed != 1] = -1
    return Proposal(
        tokens=new,
        log_q_fwd=per_chain(log_q_w, torch.float64),
        log_q_rev=per_chain(log_q_old, torch.float64),
        n_changed=n_changed,
        lone=lone,
    )
