"""PaDIR's refinement strategies (Li et al., 2024) as small pieces of the mask-predict loop.

Why: to compare every sampler with the strongest non-probabilistic decoder on the same model,
the baseline offers the design choices PaDIR studies.  Each is one small function or table
entry; ``Refinement()`` (every default) is the original mask-predict, token for token.

* initialisation (``INITS``): all masks, then one prediction of every position (the original),
  or random allowed tokens whose confidence is below any prediction's (< 1/V), so that they
  are re-masked first; a random start has no full prediction: it costs one row fewer;
* how many of the least confident positions are re-masked at iteration c of T
  (``REMASK_COUNTS``): the linear schedule floor(n (1 - c/T)) (the original), a constant
  number, or a constant share of the n decoded positions; always at least ``min_remask``;
* ``stutter``: also re-mask every token equal to its left neighbour ("the old city city");
* the confidence that ranks positions (``CONFIDENCES``): the probability of the current
  token when it was last predicted (the original) or its logits summed over every iteration
  that predicted the position;
* ``early_stop``: a row stops once an iteration changes none of its tokens;
* ``length_norm`` alpha: a candidate's score is its summed log-probability / n^alpha: 1 is the
  original's mean, below 1 a brevity term (short candidates gain).
Several parallel decodes per length from random starts are the decoder's (``mask_predict``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict

import torch

from . import rng

__all__ = ["Refinement", "INITS", "REMASK_COUNTS", "CONFIDENCES", "PURPOSE_INIT", "random_tokens",
           "stutter_positions"]

PURPOSE_INIT = 11  # rng purpose of the random initial tokens (apart from the chain samplers')
INITS = ("masks", "random")


def _linear(n_dec: torch.Tensor, c: int, iterations: int, amount: float) -> torch.Tensor:
    return (n_dec.float() * (1.0 - (c / iterations))).long()


def _constant(n_dec, c, iterations, amount):
    return torch.full_like(n_dec, int(amount))


def _share(n_dec, c, iterations, amount):
    return (n_dec.double() * amount).long()


REMASK_COUNTS: Dict[str, Callable[..., torch.Tensor]] = {"linear": _linear, "constant": _constant, "share": _share}
CONFIDENCES = ("probs", "summed-logits")


@dataclass(frozen=True)
class Refinement:
    """One choice per strategy; the defaults are the original mask-predict."""

    init: str = "masks"
    remask: str = "linear"
    remask_amount: float = 0.0  # constant: how many; share: which fraction (linear: unused)
    stutter: bool = False
    confidence: str = "probs"
    early_stop: bool = False
    length_norm: float = 1.0

    @classmethod
    def from_config(cls, cfg) -> "Refinement":
        """The strategies a SamplerConfig names (its ``mask_predict_*`` options)."""
        return cls(cfg.mask_predict_init, cfg.mask_predict_remask, cfg.mask_predict_remask_amount,
                   cfg.mask_predict_stutter, cfg.mask_predict_score, cfg.mask_predict_early_stop,
                   cfg.mask_predict_length_norm)

    def remask_count(self, n_dec: torch.Tensor, c: int, iterations: int, min_remask: int) -> torch.Tensor:
        """[S] how many least-confident positions each row re-masks at iteration c."""
        num = REMASK_COUNTS[self.remask](n_dec, c, iterations, self.remask_amount).clamp(min=min_remask)
        return torch.minimum(num, n_dec)

    def score(self, log_probs: torch.Tensor, n_dec: torch.Tensor) -> torch.Tensor:
        """[S] summed log-probability over n^alpha (alpha 1: the mean, as the original)."""
        return log_probs.sum(1) / n_dec.clamp(min=1).float() ** self.length_norm


def random_tokens(keys: torch.Tensor, decode: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """[S, L] uniform draws from the allowed tokens, one per position (counter-based: a
    function of each row's key and the position only)."""
    ids = allowed.nonzero().squeeze(1).to(decode.device)
    L = decode.size(1)
    u = rng.uniform(keys[:, None], 0, 0, torch.arange(L, device=decode.device)[None, :], PURPOSE_INIT)
    return ids[(u * ids.numel()).long().clamp(max=ids.numel() - 1)]


def stutter_positions(tokens: torch.Tensor, decode: torch.Tensor) -> torch.Tensor:
    """[S, L] decoded positions whose token equals its left neighbour's."""
    out = torch.zeros_like(decode)
    out[:, 1:] = tokens[:, 1:] == tokens[:, :-1]
    return out & decode
