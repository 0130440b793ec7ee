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


class TinyNet:
    """A random two-layer network over whole rows: logits[t] depends on every other token
    (and on the mask pattern), so its conditionals are inconsistent, like a real MLM's.
    Special symbols get large logits on purpose: a sampler that proposed them would show."""

    def __init__(self, vocab: int = 8, length: int = 5, n_context: int = 2, dim: int = 6, hidden: int = 16,
                 seed: int = 0, scale: float = 1.5, dtype=torch.float64):
        g = torch.Generator().manual_seed(seed)
        r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
        self.vocab, self.length = vocab, length
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
        h = torch.tanh(x.reshape(R, -1) @ self.w1 + self.ctx[context])
        return (h @ self.w2).reshape(R, self.length, self.vocab)[:, :L] + self.bias

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
