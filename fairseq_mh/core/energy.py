"""The two energies a masked LM defines over whole sequences (paper, section 2).

For a sequence X with scored positions t (the free positions; fixed symbols are context),
let l_t = logits of the masked conditional at t given X with t masked:

* raw:   E_raw(X)   = - sum_t l_t[x_t]                         (section 2.1)
* local: E_local(X) = - sum_t log_softmax(l_t)[x_t]             (section 2.2, minus the PLL)

The target is p(X) proportional to exp(-E(X) / tau).  Both energies come from the same T
masked rows, so both are always reported whichever one a chain targets.
"""

from __future__ import annotations

import torch

__all__ = ["ENERGIES", "energy_terms", "RAW", "LOCAL"]

RAW = 0
LOCAL = 1
ENERGIES = {"raw": RAW, "local": LOCAL}


def energy_terms(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Per-position energy terms, shape [..., 2] (raw, local), in float64.

    ``logits``: [..., V] masked-conditional logits in any dtype (a bf16 or fp16 model's own);
    they are upcast first, so the terms never carry the compute dtype's rounding twice.
    ``tokens``: [...] the token at each position.
    """
    logits = logits.to(torch.float64)
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    lse = torch.logsumexp(logits, dim=-1)
    return torch.stack([-picked, lse - picked], dim=-1)
