"""The decoder's last layer, computed only at the positions whose logits are wanted.

An energy row of MH asks for one position's logits, a mask-predict row for its masked
positions only.  Every layer but the last must run at all positions (their outputs are the
next layer's keys and values), but the last layer's outputs are only read where they are
projected onto the vocabulary.  There its self-attention keys and values still come from all
positions; its queries, encoder attention and FFN, which are position-wise, need only the
selected ones.  For the Multi30k CMLM (3 decoder layers, T about 16) that skips about a
quarter of a row's FLOPs.

The layer's own code runs unchanged (fairseq's ``TransformerDecoderLayerBase`` or the
Mask-Predict port's ``DecoderLayer``): it is handed the selected positions as its input, and
its self-attention module, for that one call, takes keys and values from the full input.
Both layers compute ``self_attn(x, x, ...)`` and nothing else across positions, which is why
this is exact up to float rounding (tested against the full path for both families).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Optional, Tuple

import torch
from torch import nn

__all__ = ["query_index", "last_layer_at", "Delegating"]


def query_index(select: torch.Tensor, widen: Optional[Callable[[int], int]] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(index [R, Q], valid [R, Q]) for a selection [R, L]: each row's selected positions in
    ascending order, padded to the widest row's count Q (with unselected positions, up to
    ``widen(Q)`` but at most L, when ``widen`` is given); ``features[valid]`` (features at
    ``index``) is then in the row-major order of ``full_features[select]``."""
    counts = select.sum(1)
    width = int(counts.max())
    if widen is not None:
        width = min(widen(width), select.size(1))
    order = torch.argsort((~select).to(torch.int8), dim=1, stable=True)  # selected first, in order
    index = order[:, :width]
    valid = torch.arange(width, device=select.device)[None, :] < counts[:, None]
    return index, valid


class Delegating(nn.Module):
    """A wrapper that hands on whatever else is asked of the module it wraps (fairseq's layers
    ask their attention for ``_get_input_buffer``; the CMLM adapter asks a layer for
    ``encoder_attn``); ``inner`` names the attribute that holds it."""

    inner: str

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules[self.inner], name)


class _KeysFromFull(Delegating):
    """Self-attention whose keys and values are the layer's full input, whatever its query."""

    inner = "attn"

    def __init__(self, attn: nn.Module, full: torch.Tensor):
        super().__init__()
        self.attn = attn
        self.full = full

    def forward(self, query, key, *args, **kwargs):
        if "value" in kwargs:  # fairseq's MultiheadAttention is called with query=, key=, value=
            kwargs["value"] = self.full
        return self.attn(query, self.full, *args, **kwargs)


class _AtPositions(Delegating):
    """A decoder layer run at the positions ``index`` [R, Q] of its time-major input [L, R, d]."""

    inner = "layer"

    def __init__(self, layer: nn.Module, index: torch.Tensor):
        super().__init__()
        self.layer = layer
        self.index = index

    def forward(self, x, *args, **kwargs):
        rows = self.index.t()  # [Q, R]
        queries = x.gather(0, rows[:, :, None].expand(-1, -1, x.size(-1)))
        attn = self.layer.self_attn
        self.layer.self_attn = _KeysFromFull(attn, x)
        try:
            return self.layer(queries, *args, **kwargs)
        finally:
            self.layer.self_attn = attn


@contextmanager
def last_layer_at(layers: nn.ModuleList, index: torch.Tensor):
    """For one decoder call, the last of ``layers`` computes only the positions ``index``
    [R, Q]: the decoder's features come back as [R, Q, d].  Restored afterwards, also on error."""
    last = layers[-1]
    layers[-1] = _AtPositions(last, index)
    try:
        yield
    finally:
        layers[-1] = last
