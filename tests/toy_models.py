"""Small masked conditionals for exact tests: a random network and hand-written tables."""

from __future__ import annotations

import math
from typing import Callable, Dict, Tuple

import torch

# A Mask-Predict-like vocabulary: five specials, then ordinary tokens.
BOS, PAD, EOS, UNK, MASK = 0, 1, 2, 3, 4
SPECIALS = (BOS, PAD, EOS, UNK, MASK)


def allowed_vector(vocab: int) -> torch.Tensor:
    allowed = torch.ones(vocab, dtype=torch.bool)
    allowed[list(SPECIALS)] = False
    return allowed


def row_matmul(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """a @ w with each row's sum taken left to right, so that a row's result does not depend
    on how many rows share the call.  BLAS does not promise that (MKL's small dgemm on AMD
    EPYC differs in the last bit between 1 and 200 rows), and the engine's batching tests
    need a model that is batch-invariant to the bit, as a real model is under per-sentence
    calls.  It is 10-100x slower than ``@``, so only the nets of those tests use it."""
    return (a.unsqueeze(-1) * w).cumsum(1)[:, -1]


class TinyNet:
    """A random two-layer network over whole rows: logits[t] depends on every other token
    (and on the mask pattern), so its conditionals are inconsistent, like a real MLM's.
    Special symbols get large logits on purpose: a sampler that proposed them would show."""

    def __init__(self, vocab: int = 8, length: int = 5, n_context: int = 2, dim: int = 6, hidden: int = 16,
                 seed: int = 0, scale: float = 1.5, dtype=torch.float64, batch_invariant: bool = False):
        g = torch.Generator().manual_seed(seed)
        r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
        self.vocab, self.length = vocab, length
        self.matmul = row_matmul if batch_invariant else torch.matmul
        self.emb = r(vocab, dim)
        self.pos = r(length, dim)
        self.ctx = r(n_context, hidden)
        self.w1 = r(length * dim, hidden) / math.sqrt(length * dim)
        self.w2 = r(hidden, length * vocab) * scale / math.sqrt(hidden)
        self.bias = torch.zeros(vocab, dtype=dtype)
        self.bias[list(SPECIALS)] = 2.0
        self.calls = 0

    def all_logits(self, tokens: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        R, L = tokens.shape
        # pad positions contribute nothing, so trimming trailing pads changes no logit
        x = (self.emb[tokens] + self.pos[:L]) * tokens.ne(PAD).unsqueeze(-1)
        if L < self.length:
            x = torch.cat([x, x.new_zeros(R, self.length - L, x.size(-1))], 1)
        h = torch.tanh(self.matmul(x.reshape(R, -1), self.w1) + self.ctx[context])
        return self.matmul(h, self.w2).reshape(R, self.length, self.vocab)[:, :L] + self.bias

    def __call__(self, tokens, context, select):
        self.calls += 1
        return self.all_logits(tokens, context)[select]


class TableConditional:
    """Conditionals given by a Python function of (position, row as a tuple): for the
    paper's two-token example and other hand-made tables.  ``fn`` returns probabilities
    over the ordinary tokens; the logits are their logs (so raw and local energies agree
    up to the log-normaliser of the specials, which get logit ``special_logit``)."""

    def __init__(self, vocab: int, fn: Callable[[int, Tuple[int, ...]], Dict[int, float]], special_logit=-1.0):
        self.vocab, self.fn, self.special_logit = vocab, fn, special_logit

    def _row_logits(self, row, t):
        lg = torch.full((self.vocab,), -math.inf, dtype=torch.float64)
        lg[list(SPECIALS)] = self.special_logit
        for tok, p in self.fn(t, row).items():
            lg[tok] = math.log(p)
        return lg

    def __call__(self, tokens, context, select):
        # the table depends on the row and position only: evaluate each distinct pair once
        r, t = select.nonzero(as_tuple=True)
        keys = torch.cat([tokens[r], t[:, None]], 1)
        uniq, inverse = torch.unique(keys, dim=0, return_inverse=True)
        table = torch.stack([self._row_logits(tuple(k[:-1].tolist()), int(k[-1])) for k in uniq])
        return table[inverse]


class PairTable:
    """A masked conditional over rows [BOS, x1, x2, EOS] given by two conditional tables over
    the ordinary tokens ``first .. first+n-1``: ``c1[i, j] = p(x1=i | x2=j)`` and ``c2[i, j] =
    p(x2=j | x1=i)``, and the doubly masked marginals ``m1``, ``m2``.  ``shift1[j]`` /
    ``shift2[i]`` are added to every logit of a row (they leave its softmax unchanged, but not
    raw-logit energies); special symbols get logit ``special_logit`` (+ the shift), the other
    tokens -inf.  ``rows`` counts the rows it was called with."""

    def __init__(self, vocab, c1, c2, m1, m2, first=5, special_logit=-1.0, shift1=None, shift2=None):
        self.vocab, self.first, self.n = vocab, first, c1.size(0)
        self.log_c1, self.log_c2 = c1.double().log(), c2.double().log()
        self.log_m1, self.log_m2 = m1.double().log(), m2.double().log()
        z = torch.zeros(self.n, dtype=torch.float64)
        self.shift1 = z if shift1 is None else shift1.double()
        self.shift2 = z if shift2 is None else shift2.double()
        self.special_logit = special_logit
        self.rows = 0

    @classmethod
    def from_joint(cls, vocab, joint, **kw):
        """The conditionals of one joint over (x1, x2): a compatible table."""
        m1, m2 = joint.sum(1), joint.sum(0)
        return cls(vocab, joint / m2[None, :], joint / m1[:, None], m1, m2, **kw)

    def _row(self, row, t):
        other = row[3 - t]
        lg = torch.full((self.vocab,), -math.inf, dtype=torch.float64)
        if other == MASK:
            body, shift = (self.log_m1 if t == 1 else self.log_m2), 0.0
        else:
            o = other - self.first
            body = self.log_c1[:, o] if t == 1 else self.log_c2[o, :]
            shift = float(self.shift1[o] if t == 1 else self.shift2[o])
        lg[list(SPECIALS)] = self.special_logit + shift
        lg[self.first:self.first + self.n] = body + shift
        return lg

    def __call__(self, tokens, context, select):
        self.rows += tokens.size(0)
        r, t = select.nonzero(as_tuple=True)
        return torch.stack([self._row(tokens[i].tolist(), int(p)) for i, p in zip(r.tolist(), t.tolist())])
