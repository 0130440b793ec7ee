"""What a decoder returns: per-chain outputs, per-epoch statistics, samples and costs.

Both decoders (the chain driver and mask-predict) fill the same ``ChainResult``, so the
generator and everything downstream read one type.  C = S * chains_per_start chains; chain
c belongs to start c // chains_per_start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch

__all__ = ["EpochStats", "ChainResult", "concat_results"]


@dataclass
class EpochStats:
    """Per epoch (first axis) and chain (second axis)."""

    energy: torch.Tensor  # [E, C, 2] raw, local at the epoch's end
    proposals: torch.Tensor  # [E, C]
    accepted: torch.Tensor  # [E, C]
    novel: torch.Tensor  # [E, C] accepted proposals that differ from the current state
    rows: torch.Tensor  # [E, C] model rows spent by the chain (report rows included)
    report_rows: torch.Tensor  # [E, C] rows spent only to report energies
    temperature: List[float]
    block_size: List[int]


@dataclass
class ChainResult:
    """Everything a run produces for its C chains."""

    tokens: torch.Tensor  # [C, L] the selected state of each chain (best or last)
    energy: torch.Tensor  # [C, 2] its energies (raw, local); NaN where not computed
    n_free: torch.Tensor  # [C]
    start: torch.Tensor  # [C] index of the chain's start
    stats: EpochStats
    init_rows: int  # rows shared by the chains of a start (warm start, first energies)
    steps: int  # the decoder's iterations: epochs of a chain, refinement passes of mask-predict
    chains_per_start: int = 1
    burn_in: int = 0  # epochs before ``samples`` begin
    start_tokens: Optional[torch.Tensor] = None  # [S, L] the warm-start state of each start
    start_energy: Optional[torch.Tensor] = None  # [S, 2] its energies (raw, local)
    start_rows: Optional[torch.Tensor] = None  # [S] rows each start cost before its chains ran
    # dispersed starts (core.starts): start_tokens, start_energy and start_rows are [C, ...],
    # one record per chain, instead of one per start
    start_per_chain: bool = False
    terms: Optional[torch.Tensor] = None  # [C, L, 2] energy terms of the selected states (0 off free)
    states: Optional[torch.Tensor] = None  # [E, C, L] every chain's state at each epoch's end
    samples: Optional[torch.Tensor] = None  # [E - burn_in, C, L] post-burn-in states (a view)
    sample_energy: Optional[torch.Tensor] = None  # [E - burn_in, C, 2]
    sample_terms: Optional[torch.Tensor] = None  # [E - burn_in, C, L, 2]
    # a decoder's own ranking of its outputs (mask-predict: mean token log-probability, with
    # the tokens' log-probabilities); None: outputs are ranked by their energies
    score: Optional[torch.Tensor] = None  # [C]
    positional_scores: Optional[torch.Tensor] = None  # [C, L]

    @property
    def chain_index(self) -> torch.Tensor:
        """[C] index of each chain among the chains of its start."""
        return torch.arange(self.start.numel(), device=self.start.device) % self.chains_per_start


# the axis of the chains (or starts) in each tensor field; the rest are shared by all parts
_CHAIN_AXIS = {"tokens": 0, "energy": 0, "n_free": 0, "start_tokens": 0, "start_energy": 0, "start_rows": 0,
               "terms": 0, "score": 0, "positional_scores": 0, "states": 1, "samples": 1, "sample_energy": 1,
               "sample_terms": 1}
_STATS_AXIS = {"energy": 1, "proposals": 1, "accepted": 1, "novel": 1, "rows": 1, "report_rows": 1}


def concat_results(parts: List[ChainResult], starts_per_part: List[int]) -> ChainResult:
    """One result from the results of consecutive groups of starts (``starts_per_part`` each)."""
    first = parts[0]
    offsets = [sum(starts_per_part[:i]) for i in range(len(parts))]
    cat = {}
    for name, axis in _CHAIN_AXIS.items():
        values = [getattr(p, name) for p in parts]
        cat[name] = None if values[0] is None else torch.cat(values, axis)
    cat["start"] = torch.cat([p.start + off for p, off in zip(parts, offsets)])
    stats = EpochStats(**{name: torch.cat([getattr(p.stats, name) for p in parts], axis)
                          for name, axis in _STATS_AXIS.items()},
                       temperature=first.stats.temperature, block_size=first.stats.block_size)
    return ChainResult(stats=stats, init_rows=sum(p.init_rows for p in parts), steps=first.steps,
                       chains_per_start=first.chains_per_start, burn_in=first.burn_in, **cat)
