"""A two-position block proposal from a derived pairwise joint (AG or HCB), kept exact by MH.

Why: the independent block proposal draws the two tokens of a block from the doubly masked
conditional, position by position, ignoring how they depend on each other; a joint derived
from the MLM's conditionals (``pairwise``: Arnold-Gokhale or Hammersley-Clifford-Besag)
proposes them together.  MH corrects either proposal, so the chain samples the same target.

The proposal for a block I = {A, B} of state X is q(a, b) on the top-K x top-K grid of the
doubly masked conditional, with the current pair (X_A, X_B) forced into the grid (in place of
a side's last candidate when it is not among its top K).  The grid's rows read X_-I only,
so the grid G(X) is "top K of X_-I, plus X_A at A and X_B at B".  The reverse move needs the
grid of X' (same X_-I, X'_I forced in), and per side it is either the same as the forward
one or lacks the current token:
* the side was not forced (X_A in the top K): X'_A comes from the top K, so G(X')_A = top K
  = G(X)_A;
* the side was forced: if X'_A = X_A, G(X')_A = G(X)_A; otherwise X'_A is a top-K token,
  G(X')_A = top K, which lacks X_A.
Hence q_rev = q_G(X)(X_A, X_B) when every forced side keeps its token, and 0 otherwise (the
move is rejected): the reverse grid never has to be evaluated.  ``tests/test_pairwise_proposal.py``
builds it all the same, from X', and checks this rule on every state and move of an
enumerable space, then detailed balance of the resulting kernel.

The joint is a deterministic function of its grid alone: AG runs a fixed number of fixed-point
steps (a convergence test over a batch would make one chain's proposal depend on the others).
A proposal temperature divides log q.  Cost: 1 + 2K rows per two-position block (the doubly
masked row, and one row per candidate on each side), then the T rows of E(X'); blocks of one
position use the cached single-site proposal, as the independent kernel does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import rng
from .kernels import MHKernel
from .moves import Block, Proposal, StepKey, block_conditionals, propose
from .pairwise import PairJoint, derive_joint, pair_conditionals
from .proposals import sample_from_log_probs

__all__ = ["AG_ITERATIONS", "PairTable", "pair_table", "PairMHKernel"]

AG_ITERATIONS = 100  # fixed: the joint of a pair must depend on its grid alone


@dataclass
class PairTable:
    """The proposal of P pairs: the joint on each grid and, per cell, the reverse probability."""

    joint: PairJoint  # log_q [P, K, K], cand_a/cand_b [P, K], rows [P]
    log_q_rev: torch.Tensor  # [P, K, K] log q of the reverse move for a proposal at each cell


def pair_table(ev, mask: int, tokens: torch.Tensor, context: torch.Tensor, pos_a: torch.Tensor,
               pos_b: torch.Tensor, method: str, k: int, allowed: torch.Tensor, temperature: float = 1.0) -> PairTable:
    """The forward joint of each row's pair (current tokens forced into its grid) and the
    reverse log-probability of every proposed cell (the module docstring's rule)."""
    ar = torch.arange(tokens.size(0), device=tokens.device)
    cur_a, cur_b = tokens[ar, pos_a], tokens[ar, pos_b]
    k = min(k, int(allowed.sum()))
    pc = pair_conditionals(ev, tokens, context, pos_a, pos_b, mask, k, allowed, cur_a, cur_b)
    kw = {"iterations": AG_ITERATIONS, "tol": 0.0} if method == "ag" else {}
    log_q = derive_joint(pc, method, **kw)
    if temperature != 1.0:
        P = log_q.size(0)
        log_q = torch.log_softmax(log_q.reshape(P, -1) / temperature, 1).view_as(log_q)
    at_a, at_b = pc.cand_a == cur_a[:, None], pc.cand_b == cur_b[:, None]  # [P, K] each
    # a forced side keeps its grid in the reverse move only if its token stays
    keeps_a = at_a | ~pc.forced_a[:, None]
    keeps_b = at_b | ~pc.forced_b[:, None]
    rev = log_q[ar, at_a.float().argmax(1), at_b.float().argmax(1)]  # the current pair is in the grid
    ok = keeps_a[:, :, None] & keeps_b[:, None, :]
    log_q_rev = torch.where(ok, rev[:, None, None].expand_as(log_q), torch.full_like(log_q, -math.inf))
    return PairTable(PairJoint(log_q, pc.cand_a, pc.cand_b, pc.rows), log_q_rev)


class PairMHKernel(MHKernel):
    """Block MH whose two-position blocks are proposed from a derived joint (``method``:
    ``ag`` or ``hcb``) on a top-``k`` grid; other blocks move as ``MHKernel``'s."""

    def __init__(self, evaluator, mask, shape, target, method: str, k: int):
        super().__init__(evaluator, mask, shape, target)
        if shape.top_p < 1.0:
            raise ValueError("a pairwise block proposal has no nucleus (top-p) shaping")
        self.method = method
        self.k = k

    def step(self, key: StepKey, state, block: Block):
        pair = block.used.sum(1) == 2
        if not bool(pair.any()):
            return super().step(key, state, block)
        parts = [(pair, self._pair_proposal(key, state, _sub(block, pair)))]
        if not bool(pair.all()):
            rest = _sub(block, ~pair)
            logits = block_conditionals(self.ev, self.mask, state, rest)
            parts.append((~pair, propose(self.shape, state, rest, logits, key)))
        return state, self.update(key, state, block, _merge(parts, block.size))

    def _pair_proposal(self, key: StepKey, state, block: Block) -> Proposal:
        """A draw from the joint of each two-position block, with its reverse probability."""
        chains = block.chains
        pa, pb = block.pos.masked_select(block.used).view(-1, 2).unbind(1)
        cur = state.tokens[chains]
        tab = pair_table(self.ev, self.mask, cur, state.context[chains], pa, pb, self.method, self.k,
                         self.shape.allowed, self.shape.temperature)
        state.count(chains.repeat_interleave(tab.joint.rows.to(chains.device)))
        n, K = tab.joint.cand_a.shape
        u = rng.uniform(state.keys[chains], key.epoch, key.step, 0, rng.PURPOSE_PROPOSAL)
        cell = sample_from_log_probs(tab.joint.log_q.reshape(n, -1), u)
        i, j = cell // K, cell % K
        ar = torch.arange(n, device=cur.device)
        new = cur.clone()
        new[ar, pa] = tab.joint.cand_a[ar, i]
        new[ar, pb] = tab.joint.cand_b[ar, j]
        ch_a, ch_b = new[ar, pa] != cur[ar, pa], new[ar, pb] != cur[ar, pb]
        n_changed = ch_a.long() + ch_b.long()
        lone = torch.where(n_changed == 1, torch.where(ch_a, pa, pb), torch.full_like(pa, -1))
        return Proposal(new, tab.joint.log_q[ar, i, j].double(), tab.log_q_rev[ar, i, j].double(), n_changed, lone)


def _sub(block: Block, rows: torch.Tensor) -> Block:
    return Block(block.chains[rows], block.pos[rows], block.used[rows])


def _merge(parts, n: int) -> Proposal:
    """One Proposal over a block's chains from proposals of disjoint subsets (``rows`` masks)."""
    first = parts[0][1]
    out = Proposal(
        tokens=first.tokens.new_empty(n, first.tokens.size(1)),
        log_q_fwd=first.log_q_fwd.new_empty(n), log_q_rev=first.log_q_rev.new_empty(n),
        n_changed=first.n_changed.new_empty(n), lone=first.lone.new_empty(n),
    )
    for rows, p in parts:
        for name in ("tokens", "log_q_fwd", "log_q_rev", "n_changed", "lone"):
            getattr(out, name)[rows] = getattr(p, name)
    return out
