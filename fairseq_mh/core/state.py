"""The chains' inputs and their current state: starts, and states with cached conditionals.

A ``ChainState`` is what kernels read and advance.  It holds, for every chain, its tokens and
the masked conditional at every free position given them (the *cache*), from which a
single-site proposal and the state's energy are read without a model call.  Every tensor is
created on the device of the starts' tokens (the model's device).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from . import rng
from .energy import energy_terms

__all__ = ["Starts", "ChainState"]


@dataclass
class Starts:
    """The chains' starting points, one per (sentence, length candidate).

    ``tokens`` [S, L]: fixed symbols in place, pad beyond the length; free positions hold the
    mask symbol (warm starts fill them) or, for ``warm_start='given'``, the starting tokens.
    ``free`` [S, L]: positions the sampler may change; only they enter the energy.
    ``context`` [S]: the conditioning input of each start, passed through to the model.
    ``keys`` [S]: RNG keys (see rng.chain_keys); chain r of start s uses key (keys[s], r).
    ``decode`` [S, L]: positions mask-predict decodes (defaults to ``free``).
    """

    tokens: torch.Tensor
    free: torch.Tensor
    context: torch.Tensor
    keys: torch.Tensor
    decode: Optional[torch.Tensor] = None


class ChainState:
    """Current states of C chains with their cached conditionals and row counters.

    ``cache[c, t]`` holds the logits of the masked conditional at t given the chain's state
    with t masked, and ``terms[c, t]`` the energy terms (raw, local) it gives, wherever
    ``valid[c, t]``; the cache is allocated at the first model call (vocabulary and dtype).
    ``rows[c]`` counts the model rows chain c has cost, ``report_rows[c]`` those spent only
    to report energies.  ``tau_scale[c]`` multiplies the target temperature of chain c (1;
    a replica's rung of the ladder under parallel tempering).
    """

    def __init__(self, tokens, free, context, keys):
        C, L = tokens.shape
        dev = tokens.device
        self.tokens = tokens
        self.free = free
        self.context = context
        self.keys = keys
        self.cache: Optional[torch.Tensor] = None
        self.terms = torch.zeros(C, L, 2, dtype=torch.float64, device=dev)
        self.valid = torch.zeros(C, L, dtype=torch.bool, device=dev)
        self.rows = torch.zeros(C, dtype=torch.long, device=dev)
        self.report_rows = torch.zeros(C, dtype=torch.long, device=dev)
        self.tau_scale = torch.ones(C, dtype=torch.float64, device=dev)

    @property
    def num_chains(self) -> int:
        return self.tokens.size(0)

    def store(self, chain, pos, logits):
        """Caches the conditionals ``logits`` of (chain, pos) given the current tokens."""
        if self.cache is None:
            C, L = self.tokens.shape
            self.cache = torch.zeros(C, L, logits.size(-1), dtype=logits.dtype, device=self.tokens.device)
        self.cache[chain, pos] = logits.to(self.cache.dtype)
        self.terms[chain, pos] = energy_terms(logits, self.tokens[chain, pos])
        self.valid[chain, pos] = True

    def count(self, chain: torch.Tensor, report: bool = False) -> None:
        """Charges one model row to each entry of ``chain``."""
        counts = torch.bincount(chain, minlength=self.num_chains)
        self.rows += counts
        if report:
            self.report_rows += counts

    def energy(self) -> torch.Tensor:
        """[C, 2] energies (raw, local) of the current states."""
        return (self.terms * self.free.unsqueeze(-1)).sum(1)

    def free_terms(self) -> torch.Tensor:
        """[C, L, 2] energy terms, zero off the free positions."""
        return self.terms * self.free.unsqueeze(-1)

    def expand(self, n: int) -> "ChainState":
        """n chains per state, each with its own key; caches are copied, not recomputed."""
        S = self.tokens.size(0)
        new = ChainState.__new__(ChainState)
        for name in ("tokens", "free", "context", "terms", "valid", "tau_scale"):
            setattr(new, name, getattr(self, name).repeat_interleave(n, dim=0))
        new.cache = None if self.cache is None else self.cache.repeat_interleave(n, dim=0)
        chain = torch.arange(n, device=self.keys.device).repeat(S)
        new.keys = rng.derive(self.keys.repeat_interleave(n), chain)
        new.rows = torch.zeros(S * n, dtype=torch.long, device=self.tokens.device)
        new.report_rows = torch.zeros_like(new.rows)
        return new
