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

__all__ = ["MaskedConditional", "RowEvaluator", "width_groups"]

PADDING_SLACK = 0.3  # shared calls: padded positions at most 30% of a call's real tokens (measured best of 0.1-0.5)
# ... but a group of fewer real tokens than this is never cut: a call's fixed cost (some 30
# operators per layer) then outweighs the padding saved (on the Xeon with AMX, mask-predict's
# 25-row batches cut into 2-3 calls ran at 0.81x one call in bf16 and 0.97x in fp32; MH's
# shared calls, hundreds of rows, are cut as before)
MIN_GROUP_TOKENS = 512

MaskedConditional = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class RowEvaluator:
    """Calls a masked conditional in chunks bounded by a row and a token budget, and counts.

    Every model row the engine evaluates goes through here, so ``rows`` is the exact number of
    masked sequences the model has run (``tokens`` counts their non-pad positions).

    With ``group_by_context`` (the default) each call holds the rows of one context only, in
    the engine's order, cut by the budget.  A row's logits then depend on its own sentence's
    rows alone, never on which other sentences share the batch: float rounding in a model's
    matrix products varies with their shapes, so this is what makes results bit-identical
    whatever the batch size, sentence order or sharding.  Without it, rows of all contexts
    share calls, grouped by width (``width_groups``) so that few positions are padding; a group
    is not cut below ``min_group_tokens`` real tokens (default ``MIN_GROUP_TOKENS``).
    """

    def __init__(
        self,
        fn: MaskedConditional,
        pad: int,
        max_rows: Optional[int] = None,
        max_tokens: Optional[int] = None,
        group_by_context: bool = True,
        min_group_tokens: Optional[int] = None,
    ):
        if max_rows is not None and max_rows < 1:
            raise ValueError(f"max_rows must be >= 1 (got {max_rows})")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1 (got {max_tokens})")
        self.fn = fn
        self.pad = pad
        self.max_rows = max_rows
        self.max_tokens = max_tokens
        self.group_by_context = group_by_context
        self.min_group_tokens = MIN_GROUP_TOKENS if min_group_tokens is None else min_group_tokens
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

    def _call_rows(self, tokens, context, select, lengths):
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
        return outs[0] if len(outs) == 1 else torch.cat(outs, 0)

    @torch.no_grad()
    def __call__(self, tokens: torch.Tensor, context: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
        """Logits [select.sum(), V] at the selected positions, in row-major order."""
        if tokens.size(0) == 0:
            raise ValueError("RowEvaluator called with no rows")
        # a row's width runs to its last non-pad symbol: a decoder may predict <pad> inside a row
        nonpad = tokens.ne(self.pad)
        lengths = torch.where(nonpad.any(1), tokens.size(1) - nonpad.flip(1).int().argmax(1), 0)
        self.rows += tokens.size(0)
        self.tokens += int(nonpad.sum())
        if self.group_by_context:
            groups = [(context == g).nonzero().squeeze(1) for g in torch.unique(context).tolist()]
        else:
            groups = width_groups(lengths, PADDING_SLACK, self.min_group_tokens)
        if len(groups) == 1:  # every row in one call: in the caller's order, nothing to reassemble
            return self._call_rows(tokens, context, select, lengths)
        counts = select.sum(1)
        offsets = torch.cumsum(counts, 0) - counts
        out = None
        for rows in groups:
            logits = self._call_rows(tokens[rows], context[rows], select[rows], lengths[rows])
            if out is None:
                out = logits.new_empty(int(counts.sum()), logits.size(-1))
            c = counts[rows]
            dest = torch.repeat_interleave(offsets[rows], c) + (
                torch.arange(int(c.sum()), device=c.device) - torch.repeat_interleave(torch.cumsum(c, 0) - c, c)
            )
            out[dest] = logits
        return out


def width_groups(lengths: torch.Tensor, slack: float, min_tokens: int = 0):
    """Rows (indices) in groups of similar width: sorted by length, a group that holds at least
    ``min_tokens`` real tokens is cut before the row that would make its padded size exceed
    (1 + slack) times its real tokens.  Rows of many sentences then share calls without padding
    the short ones to the longest row, and no call is too small to pay for itself."""
    order = torch.sort(lengths, stable=True).indices
    lens = lengths[order].tolist()
    cuts, n, real = [], 0, 0
    for i, length in enumerate(lens):
        if n and real >= min_tokens and (n + 1) * length > (1 + slack) * (real + length):
            cuts.append(i)
            n, real = 0, 0
        n, real = n + 1, real + length
    bounds = [0] + cuts + [len(lens)]
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
