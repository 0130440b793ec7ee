"""Decoding within a memory budget: starts processed in groups whose engine tensors fit.

What grows with the work is the engine's own state: the conditional cache of every chain
([chains, L, V] in the cache dtype: at a 40k vocabulary this is what reaches gigabytes), the
states and energy terms kept for every epoch, and the start states.  ``start_bytes`` bounds
them for one start; ``plan_groups`` cuts the starts into groups under the budget, keeping
the starts of one context (sentence) together, so every model call holds the same rows as
without a budget; ``run_in_groups`` decodes group by group and joins the results.  Chains
draw their numbers from their own keys, so the output is identical with and without a
budget: only peak memory changes.
"""

from __future__ import annotations

from typing import List, Optional

import torch

from .config import SamplerConfig
from .results import ChainResult, concat_results
from .state import Starts

__all__ = ["start_bytes", "plan_groups", "run_in_groups"]


def start_bytes(cfg: SamplerConfig, length: int, vocab: int, cache_itemsize: int = 4) -> int:
    """Upper bound of the engine's bytes for one start of ``length`` positions: the cache
    of the start and of its chains, and the states and energy terms of every epoch."""
    chains = cfg.num_chains if cfg.kind.is_chain else 1
    if cfg.kind.exchange is not None:  # parallel tempering: every chain runs as its replicas
        chains *= len(cfg.ladder)
    epochs = cfg.mh_epochs if cfg.kind.is_chain else 1
    cache = (chains + 1) * length * vocab * cache_itemsize
    per_epoch = chains * length * (8 + 2 * 8) + chains * 7 * 8  # tokens, terms; energies and counts
    return cache + epochs * per_epoch + length * (8 + 2 * 8 + 1)


def plan_groups(context: torch.Tensor, per_start: List[int], budget: Optional[int]) -> List[torch.Tensor]:
    """Index tensors of the starts of each group, in order; a context is never split (one
    that alone exceeds the budget forms its own group)."""
    n, dev = context.numel(), context.device
    if budget is None or sum(per_start) <= budget:
        return [torch.arange(n, device=dev)]
    ctx = context.tolist()
    groups, current, used = [], [], 0
    i = 0
    while i < n:
        j = i
        while j < n and ctx[j] == ctx[i]:
            j += 1
        cost = sum(per_start[i:j])
        if current and used + cost > budget:
            groups.append(torch.tensor(current, device=dev))
            current, used = [], 0
        current += range(i, j)
        used += cost
        i = j
    groups.append(torch.tensor(current, device=dev))
    return groups


def _subset(starts: Starts, idx: torch.Tensor) -> Starts:
    return Starts(starts.tokens[idx], starts.free[idx], starts.context[idx], starts.keys[idx],
                  None if starts.decode is None else starts.decode[idx])


def run_in_groups(decoder, starts: Starts, groups: List[torch.Tensor]) -> ChainResult:
    """``decoder.run`` on each group of starts, joined as one result over all starts."""
    if len(groups) == 1:
        return decoder.run(starts)
    return concat_results([decoder.run(_subset(starts, g)) for g in groups], [int(g.numel()) for g in groups])
