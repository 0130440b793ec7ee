"""The cost of a whole run before it starts: expected model rows and time.

The rows come from the engine's estimator (``core.cost``) applied to the length candidates
the model's own length predictor gives each sentence (one encoder pass per sentence); the
time from rows per second measured on the actual model and device by a short real decode
(one epoch of the first two sentences with the run's settings), so the rate includes the
engine's own work and the run's call shapes.  ``--mh-estimate`` prints this and exits; every
real run logs it as its first line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch

from .core import SamplerConfig
from .core.cost import expected_rows
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
def calibrate_rows_per_second(model, tgt_dict, dataset, cfg: SamplerConfig, sentences: int = 2, **generator) -> float:
    """Rows/s of a short real decode (one epoch) of the first ``sentences`` of the dataset
    with these settings: model calls of the run's shapes and the engine's own work."""
    import dataclasses

    from .generator import BUILT, MHGenerator

    short = dataclasses.replace(cfg, mh_epochs=1, burn_in=0, report_energy=False)
    gen = MHGenerator(tgt_dict, short, **generator)
    BUILT.remove(gen)  # a calibration, not part of the run's report
    sample = dataset.collater([dataset[i] for i in range(min(sentences, len(dataset)))])
    sample = {k: v.to(_device_of(model)) if torch.is_tensor(v) else v for k, v in sample.items()}
    sample["net_input"] = {k: v.to(_device_of(model)) if torch.is_tensor(v) else v
                           for k, v in sample["net_input"].items()}
    gen.generate([model], sample)
    t = gen.totals
    return t["rows"] / t["seconds"] if t["seconds"] > 0 and t["rows"] else float("inf")


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


def estimate_run(model, tgt_dict, dataset, cfg: SamplerConfig, length_beam: int, length_style: str,
                 max_tokens: int, batching: str = "sentence") -> RunEstimate:
    """Expected rows and time of decoding ``dataset`` with these settings."""
    adapter = adapter_for(model, tgt_dict)
    lengths = candidate_free_lengths(adapter, dataset, length_beam, length_style)
    rate = (calibrate_rows_per_second(model, tgt_dict, dataset, cfg, length_beam=length_beam,
                                      length_style=length_style, max_tokens=max_tokens, batching=batching)
            if lengths else float("inf"))
    return RunEstimate(len(dataset), len(lengths), expected_rows(cfg, lengths), rate)
