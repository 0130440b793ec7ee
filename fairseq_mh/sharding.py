"""Cost-balanced shards: which sentences each of K decoding jobs takes.

Why: a chain sampler's cost per sentence grows with the square of its length (T(T-1) rows an
epoch, README "Compute contract"), so shards of equal sentence counts finish far apart and
the run waits for the slowest.  Each sentence gets its expected model rows from the engine's
one estimator (``core.cost``: about length^2 x epochs x chains for chain samplers, length x
iterations for mask-predict), and the sentences are dealt, costliest first, to the shard with the least cost so far
(longest-processing-time first; ties go to the lower id and the lower shard), so the split is
a function of the lengths and the settings alone.  Nothing here imports fairseq.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
from typing import List, Sequence

from .core.config import SamplerConfig
from .core.cost import expected_rows

__all__ = ["sampler_settings", "sentence_cost", "balanced_shards", "shard_costs"]

# the settings the cost depends on (the rest of the decoding options leave it unchanged)
_COST_FIELDS = ("sampler", "mh_epochs", "num_chains", "decoding_iterations", "block_size")


def sampler_settings(generate_args: Sequence[str]) -> SamplerConfig:
    """The sampler settings a fairseq-mh-generate command line gives (defaults elsewhere)."""
    defaults = SamplerConfig()
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for name in _COST_FIELDS:
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=type(getattr(defaults, name)),
                       default=getattr(defaults, name))
    known, _ = p.parse_known_args(list(generate_args))
    return dataclasses.replace(defaults, **vars(known))


def sentence_cost(length: int, cfg: SamplerConfig) -> float:
    """Expected model rows of a sentence of ``length`` tokens (``core.cost``)."""
    return expected_rows(cfg, [length])


def balanced_shards(lengths: Sequence[int], k: int, cfg: SamplerConfig) -> List[List[int]]:
    """Sentence ids (ascending) of each of ``k`` shards, balanced by expected cost."""
    order = sorted(range(len(lengths)), key=lambda i: (-sentence_cost(lengths[i], cfg), i))
    heap = [(0.0, s) for s in range(k)]
    shards: List[List[int]] = [[] for _ in range(k)]
    for i in order:
        cost, s = heapq.heappop(heap)
        shards[s].append(i)
        heapq.heappush(heap, (cost + sentence_cost(lengths[i], cfg), s))
    return [sorted(s) for s in shards]


def shard_costs(lengths: Sequence[int], shards: Sequence[Sequence[int]], cfg: SamplerConfig) -> List[float]:
    """The expected cost of each shard."""
    return [sum(sentence_cost(lengths[i], cfg) for i in s) for s in shards]
