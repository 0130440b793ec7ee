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

from .pieces import row_pieces

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
    V = logits.size(-1)
    flat, tok = logits.reshape(-1, V), tokens.reshape(-1, 1)
    out = torch.empty(flat.size(0), 2, dtype=torch.float64, device=logits.device)
    for rows in row_pieces(flat):  # the same numbers, without a fresh mapping per call
        piece = flat[rows].to(torch.float64)
        picked = piece.gather(-1, tok[rows]).squeeze(-1)
        out[rows, 0] = -picked
        out[rows, 1] = torch.logsumexp(piece, dim=-1) - picked
    return out.view(*tokens.shape, 2)
