"""Minimum-Bayes-risk selection among the samples of one sentence.

The chains' post-burn-in states are a Monte Carlo sample of the target: a string visited c
times out of N stands for probability c / N.  MBR outputs the sample h with the highest
expected utility against that estimate,

    EU(h) = sum_j c_j U(h, y_j) / sum_j c_j,

over the distinct samples y_j (h's own visits included: they are part of the estimate).
U is sacreBLEU's sentence BLEU or chrF (``utility`` says why sacreBLEU rather than mbrs).
Samples are deduplicated first, so the utility is scored once per ordered pair of
distinct strings (see ``utility``); a sample visited a thousand times costs what a sample
visited once does.  Ties (expected utilities within 1e-9) go to the sample visited more
often, then to the lexicographically smallest string, so the choice does not depend on the
order of the chains.

How the generator calls it, per sentence, after applying to each sample the same
post-processing as to the output (BPE removal, detokenization)::

    rows = samples[:, chains_of_sentence].reshape(-1, L)   # ChainResult.samples, all lengths
    uniq, counts = torch.unique(rows, dim=0, return_counts=True)
    strings = [postprocess(row) for row in uniq]            # distinct rows, once each
    pick = mbr_select(strings, counts.tolist(), utility)    # utility = make_utility("bleu")
    hypothesis = pick.best

Two rows that detokenize to the same string are merged here (their counts add up).

``model_scores`` with ``score_weight`` w > 0 adds the model's own judgement to the choice
(hybrid MBR): the objective is EU(h) + w * score(h), with score(h) the sample's model score
(the generator passes minus its target energy per position), so w is in utility points per
nat.  On the Multi30k CMLM's validation set it was tuned offline on kept samples
(``benchmarks/mbr_offline.py``); w = 0, the default, is plain MBR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from .utility import PairwiseUtility, make_utility

__all__ = ["MBRResult", "mbr_select", "TIE_TOLERANCE"]

TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class MBRResult:
    """The selected sample, and what it was selected from."""

    best: str
    index: int  # of ``best`` in ``candidates``
    candidates: Tuple[str, ...]  # the distinct samples, in order of first appearance
    weights: np.ndarray  # [n] visit counts of the candidates
    expected_utility: np.ndarray  # [n] EU of each candidate, in the utility's units (0-100)
    utility: str
    objective: Optional[np.ndarray] = None  # [n] EU + score_weight * model score (what was maximised)


def _distinct(samples: Sequence[str], counts: Optional[Sequence[float]], scores: Optional[Sequence[float]] = None):
    """(distinct strings, their summed counts, their best model scores or None)."""
    if counts is None:
        counts = [1] * len(samples)
    if len(counts) != len(samples):
        raise ValueError(f"{len(samples)} samples but {len(counts)} counts")
    if scores is not None and len(scores) != len(samples):
        raise ValueError(f"{len(samples)} samples but {len(scores)} model scores")
    weight: dict = {}
    best: dict = {}
    for k, (s, c) in enumerate(zip(samples, counts)):
        if not isinstance(s, str):
            raise TypeError(f"samples must be strings, got {type(s).__name__}")
        if not c > 0:
            raise ValueError(f"visit counts must be positive, got {c!r}")
        weight[s] = weight.get(s, 0) + c
        if scores is not None:
            v = float(scores[k])
            if not math.isfinite(v):
                raise ValueError(f"model scores must be finite, got {v!r}")
            best[s] = max(best.get(s, v), v)
    if not weight:
        raise ValueError("MBR needs at least one sample")
    cands = tuple(weight)
    return (cands, np.array(list(weight.values()), dtype=np.float64),
            None if scores is None else np.array([best[s] for s in cands], dtype=np.float64))


def _winner(candidates: Tuple[str, ...], weights: np.ndarray, eu: np.ndarray) -> int:
    tied = np.flatnonzero(eu >= eu.max() - TIE_TOLERANCE)
    return int(min(tied, key=lambda i: (-weights[i], candidates[i])))


def mbr_select(samples: Sequence[str], counts: Optional[Sequence[float]] = None,
               utility: Union[str, PairwiseUtility] = "bleu", model_scores: Optional[Sequence[float]] = None,
               score_weight: float = 0.0) -> MBRResult:
    """The sample with the highest expected utility under the visit-count estimate, plus
    ``score_weight`` times its model score when ``model_scores`` are given.

    ``samples``: strings (repeats allowed); ``counts``: how often each was visited (default
    1 each); ``utility``: 'bleu', 'chrf' or a ``PairwiseUtility`` (whose counters record
    the work done); ``model_scores``: one per sample, higher is better (strings that repeat
    keep their best).
    """
    if not (isinstance(score_weight, (int, float)) and math.isfinite(score_weight) and score_weight >= 0):
        raise ValueError(f"--mbr-score-weight must be a finite number >= 0 (got {score_weight!r})")
    candidates, weights, scores = _distinct(samples, counts, model_scores)
    scorer = make_utility(utility) if isinstance(utility, str) else utility
    U = scorer.matrix(candidates)  # [h, r]
    eu = U @ weights / weights.sum()
    objective = eu if scores is None or score_weight == 0 else eu + score_weight * scores
    i = _winner(candidates, weights, objective)
    return MBRResult(candidates[i], i, candidates, weights, eu, scorer.name, objective)
