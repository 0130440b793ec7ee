"""Proposal distributions built from masked conditionals.

A proposal at a position is the MLM's masked conditional there, shaped: special symbols are
removed, a temperature divides the logits and a nucleus (top-p) keeps the smallest set of most
probable tokens whose mass reaches p.  Both the forward and the reverse probability of a move
come from the same shaped distribution, so shaping never breaks the Metropolis-Hastings
correction: a reverse move outside the nucleus has probability zero and is rejected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from .pieces import row_pieces

__all__ = ["ProposalShape", "draw", "shaped_log_probs", "sample_from_log_probs"]


@dataclass(frozen=True)
class ProposalShape:
    """How masked conditionals are turned into proposals.

    ``allowed`` is a boolean vector over the vocabulary of tokens that may be proposed (special
    symbols are False); ``None`` allows every token.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    allowed: Optional[torch.Tensor] = None


def shaped_log_probs(logits: torch.Tensor, shape: ProposalShape) -> torch.Tensor:
    """Log-probabilities of the shaped proposal for each row of ``logits`` ([..., V]).

    Order of operations: remove disallowed tokens, divide by the temperature, renormalise,
    keep the nucleus (ties broken by token id, so the result is deterministic), renormalise.
    Tokens outside the support get -inf.  Computed in float64 from the upcast logits, whatever
    the model's dtype, so that reduced-precision models shape the same way.
    """
    x = logits.to(torch.float64)
    if shape.allowed is not None:
        x = x.masked_fill(~shape.allowed.to(x.device), -math.inf)
    if shape.temperature != 1.0:
        x = x / shape.temperature
    lp = torch.log_softmax(x, dim=-1)
    if shape.top_p < 1.0:
        sorted_lp, order = torch.sort(lp, dim=-1, descending=True, stable=True)
        p = sorted_lp.exp()
        mass_before = torch.cumsum(p, dim=-1) - p
        drop_sorted = mass_before >= shape.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        lp = torch.log_softmax(lp.masked_fill(drop, -math.inf), dim=-1)
    return lp


def sample_from_log_probs(log_probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw, one per row of ``log_probs`` ([N, V]), with uniforms ``u`` ([N]).

    A token of probability zero is never returned: the search takes the first index whose
    cumulative mass strictly exceeds u * total.
    """
    p = log_probs.to(torch.float64).exp()
    cdf = torch.cumsum(p, dim=-1)
    target = (u.to(torch.float64) * cdf[:, -1]).unsqueeze(-1)
    idx = torch.searchsorted(cdf, target, right=True).squeeze(-1)
    # u * total can round up to total; fall back to the last token of positive mass.
    last = p.size(-1) - 1 - torch.argmax((p > 0).flip(-1).to(torch.int8), dim=-1)
    return torch.minimum(idx, last)


def draw(logits: torch.Tensor, shape: ProposalShape, u: torch.Tensor, current: torch.Tensor):
    """What a move needs from the shaped proposals of the rows of ``logits`` [N, V]: a draw per
    row with uniforms ``u`` [N], and the log-probabilities of the draw and of ``current`` [N]
    (the forward and reverse terms).  Row by row the numbers of ``shaped_log_probs`` and
    ``sample_from_log_probs``, computed in pieces (``core.pieces``)."""
    n = logits.size(0)
    w = torch.empty(n, dtype=torch.long, device=logits.device)
    fwd = torch.empty(n, dtype=torch.float64, device=logits.device)
    rev = torch.empty_like(fwd)
    for rows in row_pieces(logits):
        lq = shaped_log_probs(logits[rows], shape)
        if not torch.isfinite(lq).any(-1).all():
            raise RuntimeError("a proposal distribution has no token left to propose")
        w[rows] = sample_from_log_probs(lq, u[rows])
        fwd[rows] = lq.gather(1, w[rows, None]).squeeze(1)
        rev[rows] = lq.gather(1, current[rows, None]).squeeze(1)
    return w, fwd, rev
