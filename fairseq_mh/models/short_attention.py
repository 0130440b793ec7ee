"""fairseq's decoder attention, computed with two batched matmuls for rows of a few dozen positions.

fairseq's ``MultiheadAttention`` hands self-attention to torch's fused
``scaled_dot_product_attention``, which on CPU runs a flash-attention kernel built for long
sequences.  At the lengths of a translation row (a few dozen queries and keys) it is 2-3x
slower than the two ``bmm`` calls and the softmax it replaces (on the 2-core AMD EPYC, 183
rows of 16 positions, 4 heads: 3.3 ms against 1.5 ms in fp32, 2.4 ms against 0.9 ms in bf16;
3.4x in bf16 with one query per row, the last layer's case).  Its encoder attention, with the
keys and values given, takes fairseq's unfused path, which also averages the weights over the
heads for a caller that discards them.

``attend`` is that computation.  Given keys and values shared by every row of a call (the
encoder attention of a call whose rows are one sentence's, ``EncoderBank.gather(shared=True)``)
it runs one matmul per head over all the rows' queries instead of one tiny matmul per row and
head, and the tables are never copied out per row (37 rows of 16 positions: 0.3 ms against
1.3 ms per layer in fp32).  The Mask-Predict port's attention uses it for such tables too.

``short_attention`` wraps every decoder layer's self- and encoder attention, for one call,
in ``ShortAttention``: the same module's projections (looked up on the wrapper, so that
``encoder_bank.fixed_projections`` applied to it take effect), q scaled after its projection,
masked keys at -inf, the softmax in float32 as fairseq computes it (``softmax_f32``: on a CPU
scores narrower than 16 are padded with -inf first, which torch computes 3-10x faster), the
weighted sum in the compute dtype.  Exact up to float rounding (tested against fairseq's
path); anything else (incremental state, an attention mask, extra key biases, asked-for
weights per head) goes to the wrapped module unchanged.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

from .query_select import Delegating

__all__ = ["attend", "softmax_f32", "ShortAttention", "short_attention"]

# torch's CPU softmax vectorises over the last dimension only from 16 elements: below that a
# scalar loop runs, 3-10x slower than at 16 (bf16 scores [4, 1024, S], 2-core AMD EPYC: 501 µs
# at S = 14, 51 µs at S = 16, 82 µs at S = 30; benchmarks/softmax_width.py).  Rows of a short
# sentence attend over fewer.
SOFTMAX_MIN_WIDTH = 16


def softmax_f32(scores: torch.Tensor) -> torch.Tensor:
    """``softmax(scores, -1)`` in float32, as fairseq's attention computes it.  On a CPU, scores
    narrower than ``SOFTMAX_MIN_WIDTH`` are padded to it with -inf first (exp(-inf) = 0: the
    same probabilities, computed by the vectorised kernel); the result is a view of the
    padded one."""
    width = scores.size(-1)
    if not scores.is_cpu or width >= SOFTMAX_MIN_WIDTH or width == 0:
        return torch.softmax(scores, dim=-1, dtype=torch.float32)
    padded = F.pad(scores, (0, SOFTMAX_MIN_WIDTH - width), value=float("-inf"))
    return torch.softmax(padded, dim=-1, dtype=torch.float32)[..., :width]


def attend(q, k, v, key_padding_mask, num_heads: int):
    """softmax(q k^T) v, head by head, for time-major queries q [T, B, d] (already scaled)
    and keys and values [S, B, d], or [S, 1, d] when every row shares them.
    ``key_padding_mask`` [B, S] (or [1, S] for shared keys), True at keys to ignore, or None.
    The softmax is computed in float32; the result [T, B, d] comes in q's dtype."""
    T, B, d = q.shape
    S, hd = k.size(0), d // num_heads
    if k.size(1) == 1 and B > 1:  # shared keys: [H, T*B, hd] @ [H, hd, S]
        qh = q.reshape(T * B, num_heads, hd).transpose(0, 1)
        scores = torch.bmm(qh, k.reshape(S, num_heads, hd).permute(1, 2, 0))
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask[:1].to(torch.bool)[None], float("-inf"))
        probs = softmax_f32(scores).to(q.dtype)
        return torch.bmm(probs, v.reshape(S, num_heads, hd).transpose(0, 1)).transpose(0, 1).reshape(T, B, d)
    BH = B * num_heads
    scores = torch.bmm(q.reshape(T, BH, hd).transpose(0, 1), k.reshape(S, BH, hd).permute(1, 2, 0))
    if key_padding_mask is not None:
        scores = scores.view(B, num_heads, T, S).masked_fill(
            key_padding_mask[:, None, None, :].to(torch.bool), float("-inf")).view(BH, T, S)
    probs = softmax_f32(scores).to(q.dtype)
    return torch.bmm(probs, v.reshape(S, BH, hd).transpose(0, 1)).transpose(0, 1).reshape(T, B, d)


class ShortAttention(Delegating):
    """A fairseq ``MultiheadAttention`` computed as q k^T, softmax, times v (see module docstring)."""

    inner = "attn"

    def __init__(self, attn: nn.Module):
        super().__init__()
        self.attn = attn

    def forward(self, query, key, value, key_padding_mask=None, incremental_state=None, need_weights=True,
                static_kv=False, attn_mask=None, before_softmax=False, need_head_weights=False):
        a = self.attn
        if (incremental_state is not None or attn_mask is not None or before_softmax or need_head_weights
                or a.bias_k is not None or a.add_zero_attn):
            return a(query, key, value, key_padding_mask=key_padding_mask, incremental_state=incremental_state,
                     need_weights=need_weights, static_kv=static_kv, attn_mask=attn_mask,
                     before_softmax=before_softmax, need_head_weights=need_head_weights)
        if not query.is_contiguous():  # the first layer's input is a transposed view: copy it
            contiguous = query.contiguous()  # once, not once per projection
            key, value = (contiguous if t is query else t for t in (key, value))
            query = contiguous
        q = self.q_proj(query) * a.scaling
        out = attend(q, self.k_proj(key), self.v_proj(value), key_padding_mask, a.num_heads)
        return self.out_proj(out), None


@contextmanager
def short_attention(layers: nn.ModuleList):
    """For one decoder call, every layer's ``self_attn`` and ``encoder_attn`` (fairseq
    ``MultiheadAttention``) run as ``ShortAttention``; restored afterwards, also on error."""
    saved = [(layer, layer.self_attn, layer.encoder_attn) for layer in layers]
    try:
        for layer, self_attn, encoder_attn in saved:
            layer.self_attn, layer.encoder_attn = ShortAttention(self_attn), ShortAttention(encoder_attn)
        yield
    finally:
        for layer, self_attn, encoder_attn in saved:
            layer.self_attn, layer.encoder_attn = self_attn, encoder_attn
