"""The Metropolis-Hastings correction, written once for every proposal.

A move X -> X' proposed by re-drawing a block I of positions from the shaped masked
conditionals q_I(. | X without I) is accepted with probability

    min(1, exp(-(E(X') - E(X)) / tau) * q_I(X_I | X'_{-I}) / q_I(X'_I | X_{-I}))

and since X'_{-I} = X_{-I} both proposal terms come from the same conditionals (paper,
sections 3-4).  A NaN log-ratio counts as a rejection, and so does a reverse move of
probability zero (log-ratio -inf).
"""

from __future__ import annotations

import torch

from .proposals import ProposalShape, shaped_log_probs

__all__ = ["block_log_q", "log_acceptance", "accept_moves", "acceptance_probability"]


def block_log_q(cond_logits: torch.Tensor, tokens: torch.Tensor, shape: ProposalShape) -> torch.Tensor:
    """log q_I(tokens | rest) for one block: sum over its positions of the shaped log-probs.

    ``cond_logits``: [K, V] masked conditionals of the block's positions given the rest;
    ``tokens``: [K] the block's tokens.
    """
    lq = shaped_log_probs(cond_logits, shape)
    return lq.gather(-1, tokens.unsqueeze(-1)).sum().to(torch.float64)


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
