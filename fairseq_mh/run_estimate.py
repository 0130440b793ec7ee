"""The cost of a whole run before it starts: expected model rows and time.

The rows come from the engine's estimator (``core.cost``) applied to the length candidates
the model's own length predictor gives each sentence (one encoder pass per sentence); the
time from rows per second measured by a short calibration of the actual model on the
actual device, with calls shaped as a decode's (one sentence's rows for all its chains and
lengths, cut by ``--mh-max-tokens``).  ``--mh-estimate`` prints this and exits; every real
run logs it as its first line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import List

import torch

from .core import RowEvaluator, SamplerConfig
from .core.cost import expected_rows
from .core.rows import single_masked_rows
from .models.adapters import adapter_for, length_candidates
from .progress import format_duration

__all__ = ["RunEstimate", "candidate_free_lengths", "calibrate_rows_per_second", "estimate_run"]


@dataclass
class RunEstimate:
    sentences: int
    starts: int  # sentences x length candidates
    rows: float
    rows_per_second: float

    @property
    def seconds(self) -> float:
        return self.rows / self.rows_per_second if self.rows_per_second > 0 else float("inf")

    def line(self, cfg: SamplerConfig) -> str:
        chains = f" x {cfg.num_chains} chains" if cfg.kind.is_chain else ""
        return (f"estimate: {self.sentences} sentences, {self.starts} length candidates{chains} ({cfg.sampler}): "
                f"{self.rows:,.0f} model rows, at {self.rows_per_second:.0f} rows/s (measured here) about "
                f"{format_duration(self.seconds)}")


def _device(adapter) -> torch.device:
    return next(adapter.model.parameters()).device


@torch.no_grad()
def candidate_free_lengths(adapter, dataset, length_beam: int, length_style: str, batch_size: int = 64) -> List[int]:
    """Free length of every (sentence, length candidate) the generator will decode."""
    out: List[int] = []
    for lo in range(0, len(dataset), batch_size):
        sample = dataset.collater([dataset[i] for i in range(lo, min(lo + batch_size, len(dataset)))])
        net_input = {k: v.to(_device(adapter)) if torch.is_tensor(v) else v for k, v in sample["net_input"].items()}
        encs = adapter.encode(net_input)
        lp, lens = adapter.length_distribution(encs, net_input)
        cand = length_candidates(lp, lens, length_beam, length_style, max_len=adapter.max_target_length)
        _, free, _ = adapter.target_rows(cand.reshape(-1))
        out += free.sum(1).tolist()
    return out


@torch.no_grad()
def calibrate_rows_per_second(adapter, dataset, rows_per_call: int, max_tokens: int, seconds: float = 1.0) -> float:
    """Rows/s of the model on calls of ``rows_per_call`` single-masked rows of one sentence."""
    sample = dataset.collater([dataset[0]])
    net_input = {k: v.to(_device(adapter)) if torch.is_tensor(v) else v for k, v in sample["net_input"].items()}
    encs = adapter.encode(net_input)
    lp, lens = adapter.length_distribution(encs, net_input)
    cand = length_candidates(lp, lens, 1, "top", max_len=adapter.max_target_length)
    tokens, free, _ = adapter.target_rows(cand.reshape(-1))
    tokens = tokens.masked_fill(free, int(adapter.allowed().nonzero()[0]))  # any ordinary token: speed only
    pos = free[0].nonzero().squeeze(1)
    if pos.numel() == 0:
        return float("inf")
    pos = pos.repeat((rows_per_call + pos.numel() - 1) // pos.numel())[:rows_per_call]
    rows, select = single_masked_rows(tokens.expand(pos.numel(), -1), pos, adapter.mask)
    ev = RowEvaluator(adapter.conditional(encs), pad=adapter.pad, max_tokens=max_tokens)
    context = torch.zeros(rows.size(0), dtype=torch.long, device=rows.device)
    ev(rows, context, select)  # warm-up
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < seconds:
        ev(rows, context, select)
        n += 1
        if n >= 50:
            break
    return n * rows.size(0) / (time.perf_counter() - t0)


def estimate_run(model, tgt_dict, dataset, cfg: SamplerConfig, length_beam: int, length_style: str,
                 max_tokens: int) -> RunEstimate:
    """Expected rows and time of decoding ``dataset`` with these settings."""
    adapter = adapter_for(model, tgt_dict)
    lengths = candidate_free_lengths(adapter, dataset, length_beam, length_style)
    T = max(1, sorted(lengths)[len(lengths) // 2]) if lengths else 1
    per_call = (cfg.num_chains if cfg.kind.is_chain else 1) * length_beam * T
    rate = calibrate_rows_per_second(adapter, dataset, per_call, max_tokens) if lengths else float("inf")
    return RunEstimate(len(dataset), len(lengths), expected_rows(cfg, lengths), rate)
