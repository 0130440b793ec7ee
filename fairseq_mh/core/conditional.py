"""The one thing the engine needs from a model: masked conditionals for a batch of rows.

A *masked conditional* is any callable

    fn(tokens: LongTensor[R, L], context: LongTensor[R], select: BoolTensor[R, L]) -> Tensor[N, V]

Rows hold token ids, some of them the mask symbol, right-padded with the pad symbol;
``context[r]`` says which conditioning input (source sentence) row r belongs to; the result
holds the logits at the positions where ``select`` is True, in row-major order (N =
select.sum()).  Only selected positions need a vocabulary projection, which is what makes
energy rows (one selected position each) cheap.  A table of logits, a tiny network or a
fairseq model adapter can all be one.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

__all__ = ["MaskedConditional", "RowEvaluator"]

MaskedConditional = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class RowEvaluator:
    """Calls a masked conditional in chunks bounded by a row and a token budget, and counts.

    Every model row the engine evaluates goes through here, so ``rows`` is the exact number of
    masked sequences the model has run (``tokens`` counts their non-pad positions).
    """

    def __init__(
        self,
        fn: MaskedConditional,
        pad: int,
        max_rows: Optional[int] = None,
        max_tokens: Optional[int] = None,
    ):
        if max_rows is not None and max_rows < 1:
            raise ValueError(f"max_rows must be >= 1 (got {max_rows})")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1 (got {max_tokens})")
        self.fn = fn
        self.pad = pad
        self.max_rows = max_rows
        self.max_tokens = max_tokens
        self.rows = 0
        self.tokens = 0
        self.calls = 0

    def _chunks(self, lengths: torch.Tensor):
        n = lengths.numel()
        if self.max_rows is None and self.max_tokens is None:
            yield 0, n
            return
        start = 0
        lens = lengths.tolist()
        while start < n:
            end, width = start, 0
            while end < n:
                w = max(width, lens[end])
                rows = end - start + 1
                if self.max_rows is not None and rows > self.max_rows:
                    break
                if self.max_tokens is not None and rows * w > self.max_tokens and end > start:
                    break
                width = w
                end += 1
            yield start, end
            start = end

    @torch.no_grad()
    def __call__(self, tokens: torch.Tensor, context: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
        if tokens.size(0) == 0:
            raise ValueError("RowEvaluator called with no rows")
        lengths = tokens.ne(self.pad).sum(1)
        outs = []
        for s, e in self._chunks(lengths):
            width = int(lengths[s:e].max())
            out = self.fn(tokens[s:e, :width], context[s:e], select[s:e, :width])
            expected = int(select[s:e].sum())
            if out.dim() != 2 or out.size(0) != expected:
                raise RuntimeError(
                    f"masked conditional returned shape {tuple(out.shape)}, expected ({expected}, V)"
                )
            outs.append(out)
            self.calls += 1
        self.rows += tokens.size(0)
        self.tokens += int(lengths.sum())
        return outs[0] if len(outs) == 1 else torch.cat(outs, 0)
