"""Expected model rows of a decode: the one cost estimator, used before work by
``--mh-estimate``, the first line of every run, the progress ETA and the experiment
runner's ``dry_run``.

It counts rows as the engine spends them (``driver``, "Compute contract") for a start whose
free length T is known:

* mask-predict: one row per iteration, plus T rows when its energies are reported;
* a chain sampler's start (shared by its chains): the warm start (1 row for greedy, one per
  iteration for mask-predict, none for given starts) plus T rows for its conditionals;
* single-site MH epoch: T-1 rows for each proposal that changes a token, a fraction
  ``moved`` of the T proposals;
* block-MH epoch at block size k >= 2: one row per block of two or more positions, plus T
  rows for the energy of each such block that changes (probability 1 - (1 - moved)^k); a
  last block of one position moves as a single site;
* degenerate Gibbs epoch: a row for each step that follows a move in its epoch, and one
  for each position whose conditional a later move invalidated (the epoch's energies);
* degenerate block Gibbs epoch at k >= 2: one row per block plus T rows for the energies.

MH's count is exact given the number of proposals that moved; mask-predict's is exact.
"""

from __future__ import annotations

import math
from typing import Iterable

from .config import SamplerConfig, block_size

__all__ = ["DEFAULT_MOVED", "start_rows", "epoch_rows", "expected_rows"]

DEFAULT_MOVED = 0.56  # share of single-site proposals that change a token (m30k, temperature 1)


def start_rows(cfg: SamplerConfig, T: int) -> int:
    """Rows a start costs before its chains run (or, for mask-predict, in all)."""
    if not cfg.kind.is_chain:
        return cfg.decoding_iterations + (T if cfg.report_energy else 0)
    warm = {"greedy": 1, "mask-predict": cfg.decoding_iterations}.get(cfg.warm_start, 0)
    return (warm if T else 0) + T


def epoch_rows(cfg: SamplerConfig, T: int, k: int, moved: float) -> float:
    """Expected rows of one chain's epoch at block size k."""
    if not cfg.kind.exact:  # degenerate Gibbs
        return _gibbs_site_rows(T, moved) if k == 1 else math.ceil(T / k) + T
    if k == 1:
        return moved * T * max(T - 1, 0)
    blocks = math.ceil(T / k)
    lone = 1 if T - (blocks - 1) * k == 1 else 0  # a last block of one position
    changes = 1.0 - (1.0 - moved) ** k
    return (blocks - lone) * (1 + changes * T) + lone * moved * max(T - 1, 0)


def _gibbs_site_rows(T: int, moved: float) -> float:
    """Single-site Gibbs: the step at the s-th position of an epoch needs a row when a move
    happened earlier in the epoch (probability 1 - (1 - moved)^(s-1)), and the epoch's
    energies need one for each position a later step moved away from (1 - (1 - moved)^(T-s)):
    2 * sum_j (1 - (1 - moved)^j) over j < T, moves taken as independent."""
    if moved <= 0.0:
        return 0.0
    stay = 1.0 - moved
    return 2.0 * (T - (1.0 - stay ** T) / moved)


def expected_rows(cfg: SamplerConfig, free_lengths: Iterable[int], moved: float = DEFAULT_MOVED) -> float:
    """Expected rows of decoding starts of the given free lengths (one per sentence and
    length candidate) with ``cfg``."""
    lengths = [int(T) for T in free_lengths]
    total = float(sum(start_rows(cfg, T) for T in lengths))
    if cfg.kind.is_chain:
        ks = [block_size(cfg, e) for e in range(cfg.mh_epochs)]
        total += cfg.num_chains * sum(epoch_rows(cfg, T, k, moved) for T in lengths for k in ks)
    return total
