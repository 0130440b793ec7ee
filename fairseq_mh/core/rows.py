"""Masked rows: the one way the engine turns states into model inputs.

Every model row is a copy of a state with some positions replaced by the mask symbol; the
positions masked are also the positions whose conditionals the row is asked for (``select``).
"""

from __future__ import annotations

from typing import Tuple

import torch

__all__ = ["masked_rows", "single_masked_rows", "selected_slot"]


def masked_rows(tokens: torch.Tensor, masked: torch.Tensor, mask: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rows ``tokens`` ([R, L]) with the positions where ``masked`` ([R, L] bool) is True
    replaced by ``mask``; returns (rows, select), select being ``masked`` itself."""
    return tokens.masked_fill(masked, mask), masked


def single_masked_rows(tokens: torch.Tensor, pos: torch.Tensor, mask: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """One masked position per row: row r is ``tokens[r]`` with ``pos[r]`` masked."""
    select = torch.zeros(tokens.shape, dtype=torch.bool, device=tokens.device)
    select[torch.arange(tokens.size(0), device=tokens.device), pos] = True
    return masked_rows(tokens, select, mask)


def selected_slot(select: torch.Tensor, row: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Index, in a masked conditional's row-major output, of the logits of (row, pos)."""
    counts = select.sum(1)
    first = torch.cumsum(counts, 0) - counts
    rank = select.long().cumsum(1)[row, pos] - 1
    return first[row] + rank
