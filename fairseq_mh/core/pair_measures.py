"""The measures of Torroba Hennigen & Kim (2023) for joints over two positions, on the candidate grid.

Why separate from ``pairwise``: that module builds joints (also for proposals); this one only
scores them against gold tokens and against the MLM's own conditionals.  Every conditional
here lives on the grid: the MLM's are renormalised over the candidates, as the authors do.

Per pair, with gold tokens at grid indices (ia, ib):
* ``nll_pair``  = -log q(a_g, b_g) / 2             (per token, so that exp gives a perplexity);
* ``nll_unary`` = -(log q(a_g | b_g) + log q(b_g | a_g)) / 2;
* ``kl_all``    = mean over the 2K conditioning values (each b for A, each a for B) of
  KL(p_mlm(. | v) || q(. | v)): exactly the objective AG minimises (divided by 2K);
  ``kl_gold`` the same at the gold conditioning values only; ``jsd_*`` likewise with the
  Jensen-Shannon divergence;
* ``incompatibility`` of the MLM's two conditionals (Arnold & Press, as the authors'
  code): with C_ij = p(a_i | b_j) / p(b_j | a_i), the mean over the grid of
  (log C_ij + log C.. - log C_i. - log C_.j)^2, where dots are sums.  Two conditionals are
  compatible (some joint has them both) iff C factorises as u_i v_j, iff this is 0; it does
  not depend on how either conditional is normalised.
"""

from __future__ import annotations

from typing import Dict

import torch

__all__ = ["joint_conditionals", "kl", "jsd", "incompatibility", "ag_objective", "score_joint", "score_mlm", "grid_index"]


def joint_conditionals(log_q: torch.Tensor):
    """(log q(a | b) normalised over i, log q(b | a) normalised over j) of a grid joint [P, K, K]."""
    return log_q - torch.logsumexp(log_q, 1, keepdim=True), log_q - torch.logsumexp(log_q, 2, keepdim=True)


def kl(log_p: torch.Tensor, log_q: torch.Tensor, dim: int) -> torch.Tensor:
    """KL(p || q) along ``dim``; terms where p = 0 count 0."""
    p = log_p.exp()
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(dim)


def jsd(log_p: torch.Tensor, log_q: torch.Tensor, dim: int) -> torch.Tensor:
    log_m = torch.logaddexp(log_p, log_q) - torch.log(torch.tensor(2.0, dtype=log_p.dtype))
    return 0.5 * (kl(log_p, log_m, dim) + kl(log_q, log_m, dim))


def incompatibility(log_pa: torch.Tensor, log_pb: torch.Tensor) -> torch.Tensor:
    """Arnold-Press incompatibility [P] of p(a | b) (``log_pa[p, i, j]``) and p(b | a) (``log_pb``)."""
    P, K1, K2 = log_pa.shape
    c = log_pa - log_pb
    dd = torch.logsumexp(c.reshape(P, -1), 1)[:, None, None]
    r = c + dd - torch.logsumexp(c, 2, keepdim=True) - torch.logsumexp(c, 1, keepdim=True)
    return (r ** 2).reshape(P, -1).sum(1) / (K1 * K2)


def _divergences(fn, ca, cb, log_q, ia, ib):
    qa, qb = joint_conditionals(log_q)
    da, db = fn(ca, qa, 1), fn(cb, qb, 2)  # [P, K] over the conditioning b_j, resp. a_i
    ar = torch.arange(da.size(0))
    return torch.cat([da, db], 1).mean(1), (da[ar, ib] + db[ar, ia]) / 2


def ag_objective(ca: torch.Tensor, cb: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """sum_b KL(p(.|b) || q(.|b)) + sum_a KL(p(.|a) || q(.|a)) [P], what AG minimises."""
    qa, qb = joint_conditionals(log_q)
    return kl(ca, qa, 1).sum(1) + kl(cb, qb, 2).sum(1)


def grid_index(cand: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """Index of ``gold`` [P] in each row of ``cand`` [P, K]; every gold must be present."""
    hit = cand == gold[:, None]
    if not bool(hit.any(1).all()):
        raise ValueError("a gold token is not among the candidates: force it into the grid")
    return hit.long().argmax(1)


def score_joint(log_q, ca, cb, ia, ib) -> Dict[str, torch.Tensor]:
    """The per-pair measures [P] of a grid joint against the gold indices and the MLM's conditionals."""
    ar = torch.arange(log_q.size(0))
    qa, qb = joint_conditionals(log_q)
    kl_all, kl_gold = _divergences(kl, ca, cb, log_q, ia, ib)
    jsd_all, jsd_gold = _divergences(jsd, ca, cb, log_q, ia, ib)
    return {
        "nll_pair": -log_q[ar, ia, ib] / 2,
        "nll_unary": -(qa[ar, ia, ib] + qb[ar, ia, ib]) / 2,
        "kl_all": kl_all, "kl_gold": kl_gold, "jsd_all": jsd_all, "jsd_gold": jsd_gold,
    }


def score_mlm(ca, cb, ia, ib) -> Dict[str, torch.Tensor]:
    """The MLM's own unary NLL of the gold tokens and the incompatibility of its conditionals."""
    ar = torch.arange(ca.size(0))
    return {"nll_unary": -(ca[ar, ia, ib] + cb[ar, ia, ib]) / 2, "incompatibility": incompatibility(ca, cb)}
