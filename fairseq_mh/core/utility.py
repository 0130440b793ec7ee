"""Sentence-level BLEU and chrF between every pair of a few distinct strings, in one batch.

Why sacreBLEU and not ``mbrs``: ``mbrs`` would pull in transformers, COMET, PyTorch
Lightning and an older numpy for two string metrics; sacreBLEU is already a dependency and
defines the scores everyone reports.  Its ``sentence_score`` costs tens of microseconds a
call (it re-reads both strings), which for n distinct samples is n^2 calls per sentence.
Here sacreBLEU's own preprocessing (the 13a tokenizer, lowercasing options) and n-gram
extraction run once per distinct string, the clipped n-gram matches of all pairs are
matrix products, and sacreBLEU's sentence formulas are applied to the whole matrix:

* BLEU: ``BLEU(effective_order=True)``, smoothing 'exp', 4-grams (sacreBLEU's
  recommended sentence-level settings);
* chrF: ``CHRF()``, character 6-grams, beta 2, whitespace ignored.

The tests check every score against sacreBLEU's ``sentence_score``.  Neither score is
symmetric (the brevity penalty and beta weigh hypothesis and reference differently), so
n strings give n^2 scored pairs, counted in ``pairs_scored``.
"""

from __future__ import annotations

from collections import Counter
from typing import List, Sequence, Tuple

import numpy as np
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.metrics.helpers import extract_all_char_ngrams, extract_all_word_ngrams

__all__ = ["UTILITIES", "PairwiseUtility", "SentenceBLEU", "SentenceChrF", "make_utility", "clipped_matches"]


def clipped_matches(counters: Sequence[Counter]) -> Tuple[np.ndarray, np.ndarray]:
    """M[h, r] = sum_g min(c_h[g], c_r[g]) over n-grams g, and totals[h] = sum_g c_h[g].

    min(a, b) = sum_{t >= 1} [a >= t][b >= t], so M is a sum of products of 0/1 matrices.
    """
    index: dict = {}
    rows, cols, vals = [], [], []
    for i, c in enumerate(counters):
        for gram, count in c.items():
            rows.append(i)
            cols.append(index.setdefault(gram, len(index)))
            vals.append(count)
    C = np.zeros((len(counters), len(index)))
    C[rows, cols] = vals
    M = np.zeros((len(counters), len(counters)))
    for t in range(1, int(C.max(initial=0)) + 1):
        B = (C >= t).astype(np.float64)
        M += B @ B.T
    return M, C.sum(1)


class PairwiseUtility:
    """Scores of every (hypothesis, reference) pair of a list of strings, in [0, 100]."""

    name = ""

    def __init__(self):
        self.strings_processed = 0  # strings whose n-grams were extracted
        self.pairs_scored = 0

    @property
    def signature(self) -> str:
        """sacreBLEU's signature of the score (one reference per score)."""
        self.metric.num_refs = 1
        return self.metric.get_signature().format()

    def matrix(self, strings: Sequence[str]) -> np.ndarray:
        """U[h, r]: the score of strings[h] as hypothesis against strings[r] as reference."""
        if not strings:
            return np.zeros((0, 0))
        grams = [self._ngrams(self.metric._preprocess_segment(s)) for s in strings]
        self.strings_processed += len(strings)
        self.pairs_scored += len(strings) ** 2
        stats = [clipped_matches([g[k] for g in grams]) for k in range(len(grams[0]))]
        return self._scores(np.stack([m for m, _ in stats]), np.stack([t for _, t in stats]))


class SentenceBLEU(PairwiseUtility):
    name = "bleu"
    ORDER = 4

    def __init__(self):
        super().__init__()
        self.metric = BLEU(effective_order=True)

    def _ngrams(self, text: str) -> List[Counter]:
        grams, _ = extract_all_word_ngrams(text, 1, self.ORDER)
        by_order = [Counter() for _ in range(self.ORDER)]
        for gram, count in grams.items():
            by_order[len(gram) - 1][gram] = count
        return by_order

    def _scores(self, match: np.ndarray, total: np.ndarray) -> np.ndarray:
        """sacreBLEU's ``compute_bleu`` (smoothing 'exp', effective order) on [order, h, r]."""
        hyp_len = total[0][:, None]  # unigrams = tokens
        ref_len = total[0][None, :]
        tot = np.broadcast_to(total[:, :, None], match.shape)
        valid = tot > 0  # the orders up to the hypothesis length
        zero = valid & (match == 0)
        smooth = 2.0 ** np.cumsum(zero, axis=0)  # 'exp': halve again at each empty order
        with np.errstate(divide="ignore", invalid="ignore"):
            prec = np.where(match > 0, 100.0 * match / tot, 100.0 / (smooth * tot))
            log_p = np.where(valid, np.log(np.where(valid, prec, 1.0)), 0.0).sum(0)
            eff = np.maximum(valid.sum(0), 1)
            bp = np.where(hyp_len >= ref_len, 1.0, np.exp(1.0 - ref_len / np.maximum(hyp_len, 1)))
        bp = np.where(hyp_len > 0, bp, 0.0)
        score = bp * np.exp(log_p / eff)
        return np.where(match.sum(0) > 0, score, 0.0)


class SentenceChrF(PairwiseUtility):
    name = "chrf"

    def __init__(self):
        super().__init__()
        self.metric = CHRF()

    def _ngrams(self, text: str) -> List[Counter]:
        return extract_all_char_ngrams(text, self.metric.char_order, self.metric.whitespace)

    def _scores(self, match: np.ndarray, total: np.ndarray) -> np.ndarray:
        """sacreBLEU's ``CHRF._compute_f_score`` (effective-order averaging) on [order, h, r]."""
        hyp = total[:, :, None]
        ref = total[:, None, :]
        valid = (hyp > 0) & (ref > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            prec = np.where(valid, match / hyp, 0.0).sum(0)
            rec = np.where(valid, match / ref, 0.0).sum(0)
        eff = valid.sum(0)
        p = np.where(eff > 0, prec / np.maximum(eff, 1), 0.0)
        r = np.where(eff > 0, rec / np.maximum(eff, 1), 0.0)
        f = self.metric.beta ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            score = 100.0 * (1 + f) * p * r / (f * p + r)
        return np.where(p + r > 0, score, 0.0)


UTILITIES = {"bleu": SentenceBLEU, "chrf": SentenceChrF}


def make_utility(name: str) -> PairwiseUtility:
    if name not in UTILITIES:
        raise ValueError(f"--mbr-utility must be one of {', '.join(UTILITIES)} (got {name!r})")
    return UTILITIES[name]()
