"""Rows of a vocabulary-wide float64 computation, a few at a time, off CUDA.

An upcast of hundreds of rows of logits to float64 is tens of MB: above glibc's mmap threshold,
so every call maps fresh memory that the kernel zero-fills page by page (on the 2-core Xeon a
logsumexp over 900 rows of 8008 took 38 ms, 7.5 ms in pieces).  A piece of ``PIECE_ELEMENTS``
logits (8 MB) is freed and reused warm.  Only row-wise operations run in pieces, so the numbers
are the same to the bit.  CUDA's caching allocator keeps freed blocks: there one piece is all.
"""

from __future__ import annotations

import torch

__all__ = ["PIECE_ELEMENTS", "row_pieces"]

PIECE_ELEMENTS = 1 << 20


def row_pieces(logits: torch.Tensor):
    """Slices of the rows of ``logits`` [N, V], each of at most ``PIECE_ELEMENTS`` values (at
    least one row); one slice of all the rows on CUDA."""
    n, V = logits.shape
    step = max(n, 1) if logits.is_cuda else max(1, PIECE_ELEMENTS // max(V, 1))
    return [slice(a, a + step) for a in range(0, n, step)]
