"""A batch's encoder outputs and cross-attention keys/values, gathered for rows of any sentences.

Every decoder row of a sentence attends to the same encoder output, so its cross-attention
keys and values (one pair per decoder layer) are the same for all its rows and chains: the
bank computes them once per sentence, when it is made, and each model call gathers them.
Sentences are encoded alone (no padding), so a sentence's tables never depend on its batch.

A call whose rows all belong to one sentence gets that sentence's tables as they are (no
padding: what makes ``--mh-batching sentence`` bit-identical whatever the batch size), copied
once per row, or with ``shared`` once for all of them ([S, 1, d], no mask) for attention that
broadcasts them (``short_attention.attend``); a call
mixing sentences gets them zero-padded to the longest source among them, with a padding mask
that hides the padding from attention, so its rows match the one-sentence path up to float
rounding.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = ["Gathered", "EncoderBank", "fixed_projections"]

KV = List[Tuple[torch.Tensor, torch.Tensor]]  # per decoder layer: keys, values [S, R, d]


@dataclass
class Gathered:
    """What one model call's R rows attend to: time-major encoder states [S, R, d], the key
    padding mask [R, S] (True at padding) and, when cached, each layer's keys and values;
    for one sentence's rows with ``shared``, [S, 1, d] tables and no mask."""

    enc: torch.Tensor
    mask: Optional[torch.Tensor]
    kv: Optional[KV]


def _pad_stack(tables: Sequence[torch.Tensor], width: int) -> torch.Tensor:
    """[S_b, d] tables of the sentences -> [width, B, d], zero beyond each length."""
    out = tables[0].new_zeros(width, len(tables), tables[0].size(-1))
    for b, t in enumerate(tables):
        out[: t.size(0), b] = t
    return out


class EncoderBank:
    """Encoder states ``outs[b]`` [S_b, d] of the sentences of a batch and, with ``kv_fn``
    (states [S, 1, d] -> per-layer keys and values), their cross-attention tables."""

    def __init__(self, outs: Sequence[torch.Tensor], kv_fn: Optional[Callable[[torch.Tensor], KV]] = None):
        self.outs = list(outs)
        self.kv = None if kv_fn is None else [[(k[:, 0], v[:, 0]) for k, v in kv_fn(o[:, None])] for o in self.outs]
        dev = self.outs[0].device
        self.lengths = torch.tensor([o.size(0) for o in self.outs], device=dev)
        self._padded = None

    def _padded_tables(self):
        """Every table zero-padded to the batch's longest source, built at the first mixed call."""
        if self._padded is None:
            width = int(self.lengths.max())
            enc = _pad_stack(self.outs, width)
            kv = None
            if self.kv is not None:
                kv = [(_pad_stack([s[i][0] for s in self.kv], width), _pad_stack([s[i][1] for s in self.kv], width))
                      for i in range(len(self.kv[0]))]
            pos = torch.arange(width, device=self.lengths.device)
            self._padded = (enc, pos[None, :] >= self.lengths[:, None], kv)
        return self._padded

    def gather(self, context: torch.Tensor, shared: bool = False) -> Gathered:
        """The tables of the sentences ``context`` [R] names, one column per row (with
        ``shared``, one column for all when they are one sentence's)."""
        R = context.numel()
        c0 = int(context[0])
        if bool((context == c0).all()):
            if shared:
                return Gathered(self.outs[c0][:, None], None,
                                None if self.kv is None else [(k[:, None], v[:, None]) for k, v in self.kv[c0]])
            # one copy per row, as a reorder of the encoder output makes (attention reshapes them anyway)
            rep = lambda t: t[:, None].expand(-1, R, -1).contiguous()  # noqa: E731
            enc = rep(self.outs[c0])
            mask = torch.zeros(R, enc.size(0), dtype=torch.bool, device=enc.device)
            kv = None if self.kv is None else [(rep(k), rep(v)) for k, v in self.kv[c0]]
            return Gathered(enc, mask, kv)
        enc, mask, kv = self._padded_tables()
        width = int(self.lengths.index_select(0, context).max())  # trim padding no row of this call needs
        pick = lambda t: t[:width].index_select(1, context)  # noqa: E731
        return Gathered(pick(enc), mask[:, :width].index_select(0, context),
                        None if kv is None else [(pick(k), pick(v)) for k, v in kv])


class _Fixed(nn.Module):
    """A projection whose output was computed beforehand (the gathered keys or values)."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.value = value

    def forward(self, x):  # the input (the encoder states) is what ``value`` was made from
        return self.value


@contextmanager
def fixed_projections(attentions: Sequence[nn.Module], kv: KV):
    """For the duration of one call, fairseq MultiheadAttention modules return the given keys
    and values from ``k_proj``/``v_proj`` instead of projecting the encoder states again
    (encoder-decoder attention always projects ``key`` with them: static_kv skips the fused
    path).  The modules are restored afterwards, also on error."""
    saved = [(a, a.k_proj, a.v_proj) for a in attentions]
    try:
        for a, (k, v) in zip(attentions, kv):
            a.k_proj, a.v_proj = _Fixed(k), _Fixed(v)
        yield
    finally:
        for a, k_proj, v_proj in saved:
            a.k_proj, a.v_proj = k_proj, v_proj
