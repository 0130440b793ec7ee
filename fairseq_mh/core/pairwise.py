"""Explicit joints over two masked positions, derived from a masked LM (Torroba Hennigen & Kim 2023).

Why: a masked LM gives conditionals, never a joint; for two positions A and B of a row, a joint
q(a, b | rest) can be built from the conditionals p(A | B=b, rest) and p(B | A=a, rest) and then
studied exactly (likelihoods, how far its conditionals are from the MLM's), or proposed from.

The candidate grid.  The row with A and B both masked (the *doubly masked* conditional) ranks
the tokens at each position; the top K allowed tokens (best first, ties by token id) form
``cand_a`` and ``cand_b`` (``k=None``: every allowed token).  Then one row per candidate b
(A masked, B=b) gives the logits at A, and one per candidate a (B masked, A=a) those at B:
``1 + 2K`` rows per pair, in two evaluator calls for any number of pairs (the doubly masked
rows first, since they choose the candidates).  ``force_a``/``force_b`` put a given token
into the grid (in place of the last candidate when it is missing): the evaluation forces the
gold tokens in, as the authors do, so that their likelihood is defined.

The four joints, all on the K x K grid and normalised there (``log_q[p, i, j]`` is
log q(cand_a[p, i], cand_b[p, j])):

* ``mrf``:       q ∝ exp(l_A(a | b) + l_B(b | a)), raw logits: the raw energy's two terms;
* ``mrf-local``: the same with log-softmax over the whole vocabulary: the local energy's two
  terms (the authors' code normalises over the candidates instead: the two differ by the
  mass outside the grid, special symbols included);
* ``hcb``:       q ∝ p(a | b) p(b | a*) / p(a* | b), Hammersley-Clifford-Besag with the
  pivot a* = the best candidate of the doubly masked conditional at A (the authors' "both");
* ``ag``:        Arnold-Gokhale: the joint whose conditionals are closest to the MLM's,
  minimising sum_b KL(p(.|b) || q(.|b)) + sum_a KL(p(.|a) || q(.|a)) over the grid, by the
  published fixed-point iteration q <- (p(a|b) + p(b|a)) / (1/q_A(a) + 1/q_B(b)), normalised,
  from the uniform joint, run to convergence (its stationarity condition is exactly
  q(a|b) + q(b|a) = p(a|b) + p(b|a)).  Its conditionals p are the MLM's renormalised over the
  candidates.

HCB and AG return the joint exactly when the conditionals come from one (restricted to the
grid); the MRFs do not in general (q_mrf-local ∝ p(a|b) p(b|a)).

For a block proposal (the lead's block MH): ``pair_joint(evaluator, tokens, context, pos_a,
pos_b, mask, method, k, allowed)`` returns a ``PairJoint``: ``log_q`` [P, K, K], the candidate
ids ``cand_a``/``cand_b`` [P, K] and ``rows`` [P], the model rows each pair cost.  The grid
never reads the row's current tokens at A and B (both are overwritten), so the forward and
the reverse move of an MH step share it; a current pair outside the grid has reverse
probability zero unless it is forced in (which makes the grid depend on the current pair, so
the reverse move then needs its own grid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch

from .conditional import RowEvaluator

__all__ = [
    "PairConditionals",
    "PairJoint",
    "pair_conditionals",
    "mrf_joint",
    "mrf_local_joint",
    "hcb_joint",
    "ag_joint",
    "JOINTS",
    "derive_joint",
    "pair_joint",
    "candidate_ids",
]


@dataclass
class PairConditionals:
    """The MLM's conditionals of P pairs on their candidate grids (float64).

    ``logit_a[p, i, j]`` = logit at A of cand_a[p, i] given B = cand_b[p, j];
    ``logit_b[p, i, j]`` = logit at B of cand_b[p, j] given A = cand_a[p, i];
    ``lse_a[p, j]``, ``lse_b[p, i]``: the log-normalisers of those rows over the whole vocabulary;
    ``pivot[p]``: index into cand_a of the best candidate of the doubly masked conditional;
    ``forced_a/forced_b[p]``: a forced token had to be put into the grid.
    """

    cand_a: torch.Tensor
    cand_b: torch.Tensor
    logit_a: torch.Tensor
    logit_b: torch.Tensor
    lse_a: torch.Tensor
    lse_b: torch.Tensor
    pivot: torch.Tensor
    forced_a: torch.Tensor
    forced_b: torch.Tensor
    rows: torch.Tensor

    def log_p_a(self) -> torch.Tensor:
        """log p(a | b), full-vocabulary normalisation, [P, K, K]."""
        return self.logit_a - self.lse_a[:, None, :]

    def log_p_b(self) -> torch.Tensor:
        """log p(b | a), full-vocabulary normalisation, [P, K, K]."""
        return self.logit_b - self.lse_b[:, :, None]

    def grid_conditionals(self):
        """The MLM's conditionals renormalised over the candidates: (log p(a|b) over i, log p(b|a) over j)."""
        return torch.log_softmax(self.logit_a, dim=1), torch.log_softmax(self.logit_b, dim=2)


@dataclass
class PairJoint:
    """A derived joint on the candidate grid: log_q [P, K, K] (sums to one per pair)."""

    log_q: torch.Tensor
    cand_a: torch.Tensor
    cand_b: torch.Tensor
    rows: torch.Tensor


def candidate_ids(logits: torch.Tensor, k: Optional[int], allowed: Optional[torch.Tensor] = None,
                  force: Optional[torch.Tensor] = None):
    """The top-k allowed tokens of each row of ``logits`` [P, V], best first (ties by id), and
    whether ``force`` [P] had to replace the last one.  Returns (ids [P, K], forced [P])."""
    x = logits.double()
    if allowed is not None:
        x = x.masked_fill(~allowed.to(x.device), -math.inf)
    n_allowed = int(allowed.sum()) if allowed is not None else x.size(1)
    k = n_allowed if k is None else k
    if not 1 <= k <= n_allowed:
        raise ValueError(f"K must be in [1, {n_allowed}] (the allowed tokens), got {k}")
    ids = torch.sort(x, dim=1, descending=True, stable=True)[1][:, :k].clone()
    forced = torch.zeros(ids.size(0), dtype=torch.bool, device=ids.device)
    if force is not None:
        if allowed is not None and not bool(allowed.to(force.device)[force].all()):
            raise ValueError("a forced candidate is not an allowed token")
        forced = ~(ids == force[:, None]).any(1)
        ids[forced, -1] = force[forced]
    return ids, forced


def _check_positions(tokens, pos_a, pos_b, pad):
    P, L = tokens.shape
    if pos_a.shape != (P,) or pos_b.shape != (P,):
        raise ValueError("pos_a and pos_b need one position per row")
    if bool((pos_a == pos_b).any()):
        raise ValueError("the two positions of a pair must differ")
    for pos in (pos_a, pos_b):
        if bool(((pos < 0) | (pos >= L)).any()) or bool((tokens.gather(1, pos[:, None]) == pad).any()):
            raise ValueError("a pair position lies outside its row (beyond the last token)")


def pair_conditionals(evaluator: RowEvaluator, tokens: torch.Tensor, context: torch.Tensor, pos_a: torch.Tensor,
                      pos_b: torch.Tensor, mask: int, k: Optional[int], allowed: Optional[torch.Tensor] = None,
                      force_a: Optional[torch.Tensor] = None, force_b: Optional[torch.Tensor] = None) -> PairConditionals:
    """The MLM's conditionals on the K x K grid of each pair (rows [P, L], one pair per row)."""
    _check_positions(tokens, pos_a, pos_b, evaluator.pad)
    P, L = tokens.shape
    ar = torch.arange(P)
    both = tokens.clone()
    both[ar, pos_a] = mask
    both[ar, pos_b] = mask
    sel = torch.zeros(P, L, dtype=torch.bool)
    sel[ar, pos_a] = True
    sel[ar, pos_b] = True
    out = evaluator(both, context, sel).double().view(P, 2, -1)  # row-major: the earlier position first
    a_first = (pos_a < pos_b).long()
    dm_a, dm_b = out[ar, 1 - a_first], out[ar, a_first]
    cand_a, forced_a = candidate_ids(dm_a, k, allowed, force_a)
    cand_b, forced_b = candidate_ids(dm_b, k, allowed, force_b)
    K = cand_a.size(1)
    # K rows per side and pair: A masked with B = each candidate, then B masked with A = each
    rows = both.repeat_interleave(2 * K, 0).view(P, 2, K, L)
    rows[ar, 0, :, pos_b] = cand_b
    rows[ar, 1, :, pos_a] = cand_a
    rsel = torch.zeros(P, 2, K, L, dtype=torch.bool)
    rsel[ar, 0, :, pos_a] = True
    rsel[ar, 1, :, pos_b] = True
    lg = evaluator(rows.view(-1, L), context.repeat_interleave(2 * K), rsel.view(-1, L)).double().view(P, 2, K, -1)
    la, lb = lg[:, 0], lg[:, 1]  # [P, K(b or a), V]
    logit_a = la.gather(2, cand_a[:, None, :].expand(P, K, K)).transpose(1, 2)  # [p, i, j]
    logit_b = lb.gather(2, cand_b[:, None, :].expand(P, K, K))  # [p, i, j]
    pivot = dm_a.gather(1, cand_a).argmax(1)
    return PairConditionals(cand_a, cand_b, logit_a, logit_b, torch.logsumexp(la, 2), torch.logsumexp(lb, 2),
                            pivot, forced_a, forced_b, torch.full((P,), 1 + 2 * K, dtype=torch.long))


def _normalise(log_u: torch.Tensor) -> torch.Tensor:
    P = log_u.size(0)
    return log_u - torch.logsumexp(log_u.reshape(P, -1), 1)[:, None, None]


def mrf_joint(pc: PairConditionals) -> torch.Tensor:
    """q ∝ exp(l_A(a|b) + l_B(b|a)): the raw energy restricted to the two positions."""
    return _normalise(pc.logit_a + pc.logit_b)


def mrf_local_joint(pc: PairConditionals) -> torch.Tensor:
    """q ∝ p(a|b) p(b|a) (full-vocabulary softmax): the local energy restricted to the two positions."""
    return _normalise(pc.log_p_a() + pc.log_p_b())


def hcb_joint(pc: PairConditionals, pivot: Optional[torch.Tensor] = None) -> torch.Tensor:
    """q(a, b) ∝ p(a|b) p(b|a*) / p(a*|b); ``pivot`` [P] indexes cand_a (default: ``pc.pivot``)."""
    piv = pc.pivot if pivot is None else pivot
    la, lb = pc.log_p_a(), pc.log_p_b()
    P, K, _ = la.shape
    at_pivot = lambda x: x.gather(1, piv.view(P, 1, 1).expand(P, 1, K))  # noqa: E731  [P, 1, K]
    return _normalise(la - at_pivot(la) + at_pivot(lb))


def ag_joint(pc: PairConditionals, iterations: int = 20000, tol: float = 1e-12) -> torch.Tensor:
    """Arnold-Gokhale by the published fixed point (in probabilities, float64), from the uniform joint.

    Stops after ``iterations`` steps or once no q(a, b) moves by more than ``tol`` (``tol=0``:
    always ``iterations`` steps; the authors run 40, far from converged on a real CMLM)."""
    ca, cb = pc.grid_conditionals()
    num = ca.exp() + cb.exp()
    P, K, _ = ca.shape
    q = torch.full_like(num, 1.0 / (K * K))
    for _ in range(iterations):
        new = num / (1.0 / q.sum(2, keepdim=True) + 1.0 / q.sum(1, keepdim=True))
        new = new / new.sum((1, 2), keepdim=True)
        done = float((new - q).abs().max()) <= tol
        q = new
        if done:
            break
    return q.log()


JOINTS: Dict[str, Callable[..., torch.Tensor]] = {
    "mrf": mrf_joint,
    "mrf-local": mrf_local_joint,
    "hcb": hcb_joint,
    "ag": ag_joint,
}


def derive_joint(pc: PairConditionals, method: str, **kwargs) -> torch.Tensor:
    """log q [P, K, K] of one of ``JOINTS``."""
    if method not in JOINTS:
        raise ValueError(f"unknown pairwise method {method!r}: choose from {', '.join(JOINTS)}")
    return JOINTS[method](pc, **kwargs)


def pair_joint(evaluator: RowEvaluator, tokens: torch.Tensor, context: torch.Tensor, pos_a: torch.Tensor,
               pos_b: torch.Tensor, mask: int, method: str, k: Optional[int], allowed: Optional[torch.Tensor] = None,
               force_a: Optional[torch.Tensor] = None, force_b: Optional[torch.Tensor] = None, **kwargs) -> PairJoint:
    """The derived joint of each pair on its grid, with the candidates and the rows it cost."""
    pc = pair_conditionals(evaluator, tokens, context, pos_a, pos_b, mask, k, allowed, force_a, force_b)
    return PairJoint(derive_joint(pc, method, **kwargs), pc.cand_a, pc.cand_b, pc.rows)
