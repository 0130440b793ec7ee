"""``--mh-select mbr``: a sentence's hypotheses are its samples ranked by expected utility.

All post-burn-in samples of a sentence (every chain, every length candidate) are pooled;
distinct token rows are post-processed once each into the text the user will see
(``output_text``), and ``core.mbr.mbr_select`` scores each against the others weighted by
visit counts.  The hypothesis score is the expected utility / 100 (sentence BLEU or chrF as
a fraction), plus, with ``--mbr-score-weight`` w > 0, w / 100 times minus the sample's target
energy per position (hybrid MBR: the model's own ranking breaks near-ties of consensus).
Ties within ``core.mbr.TIE_TOLERANCE`` go to the winner MBR chose.  The time spent and the
samples seen are counted for the run's report.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from .core.energy import ENERGIES
from .core.mbr import TIE_TOLERANCE, mbr_select
from .core.utility import make_utility

__all__ = ["MBRSelector"]


class MBRSelector:
    """Ranks a sentence's samples by expected utility (the generator's candidates format)."""

    def __init__(self, utility: str, text: Callable[[torch.Tensor], str], score_weight: float = 0.0,
                 energy: str = "raw"):
        self.utility = make_utility(utility)
        self.text = text
        self.score_weight = score_weight  # > 0: hybrid MBR, + weight x minus the target energy per position
        self.energy = ENERGIES[energy]
        self.seconds = 0.0  # spent selecting, over the run
        self.samples = 0  # post-burn-in samples selected from
        self.distinct = 0  # distinct strings scored

    def candidates(self, res, chains):
        """(tokens, score, energy, positional scores) of the distinct samples of ``chains``."""
        t0 = time.perf_counter()
        L = res.samples.size(-1)
        tok = res.samples[:, chains].reshape(-1, L)
        uniq, inverse, counts = torch.unique(tok, dim=0, return_inverse=True, return_counts=True)
        order = torch.sort(-counts, stable=True)[1]  # most visited first: equal strings go to it
        uniq, counts = uniq[order], counts[order]
        rank = torch.empty_like(order)
        rank[order] = torch.arange(order.numel())
        inverse = rank[inverse]
        first = torch.full((uniq.size(0),), tok.size(0), dtype=torch.long).scatter_reduce(
            0, inverse, torch.arange(tok.size(0)), reduce="amin")
        strings = [self.text(row) for row in uniq]
        energy = res.sample_energy[:, chains].reshape(-1, 2)[first]
        scores = None
        if self.score_weight:  # minus the target energy per position, as --mh-select best ranks
            n_free = res.n_free[chains.repeat(res.samples.size(0))][first].clamp(min=1).double()
            scores = (-energy[:, self.energy].double() / n_free).tolist()
        pick = mbr_select(strings, counts.tolist(), self.utility, scores, self.score_weight)
        eu = dict(zip(pick.candidates, pick.objective.tolist()))
        score = torch.tensor([eu[s] for s in strings], dtype=torch.float64)
        best = score.max()
        score = torch.where(score >= best - TIE_TOLERANCE, best, score)
        lead = strings.index(pick.best)  # first, so that a stable sort keeps it ahead of the tied
        perm = torch.tensor([lead] + [i for i in range(len(strings)) if i != lead])
        energy = energy[perm]
        first = first[perm]
        terms = res.sample_terms[:, chains].reshape(-1, L, 2)[first]
        self.seconds += time.perf_counter() - t0
        self.samples += tok.size(0)
        self.distinct += len(pick.candidates)
        return uniq[perm], score[perm] / 100.0, energy, -terms[..., 1]
