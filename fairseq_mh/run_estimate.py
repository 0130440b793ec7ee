"""The cost of a whole run before it starts: expected model rows and time.

The rows come from the engine's estimator (``core.cost``) applied to the length candidates
the model's own length predictor gives each sentence (one encoder pass per sentence), with
the share of proposals that change a token measured by the calibration; the
time from rows per second measured on the actual model and device by a short real decode
(one epoch of the first sentences with the run's settings, about CALIBRATION_ROWS rows), so the rate includes the
engine's own work and the run's call shapes.  ``--mh-estimate`` prints this and exits; every
real run logs it as its first line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch

from .core import SamplerConfig
from .core.cost import DEFAULT_MOVED, expected_rows
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
def calibrate_rows_per_second(model, tgt_dict, dataset, cfg: SamplerConfig, sentences: int, **generator):
    """Rows/s of a short real decode (one epoch, timed after a first pass that warms up) of
    the first ``sentences`` of the dataset with these settings: model calls of the run's
    shapes and the engine's own work.  Returns (rows/s, the share of proposals that changed
    a token, or None without proposals)."""
    import dataclasses

    from .generator import BUILT, MHGenerator

    short = dataclasses.replace(cfg, mh_epochs=1, burn_in=0, report_energy=False)
    gen = MHGenerator(tgt_dict, short, **generator)
    BUILT.remove(gen)  # a calibration, not part of the run's report
    sample = dataset.collater([dataset[i] for i in range(min(sentences, len(dataset)))])
    sample = {k: v.to(_device_of(model)) if torch.is_tensor(v) else v for k, v in sample.items()}
    sample["net_input"] = {k: v.to(_device_of(model)) if torch.is_tensor(v) else v
                           for k, v in sample["net_input"].items()}
    gen.generate([model], sample)  # warm-up: first calls pay one-time costs
    rows, seconds = gen.totals["rows"], gen.totals["seconds"]
    gen.generate([model], sample)
    t = gen.totals
    rows, seconds = t["rows"] - rows, t["seconds"] - seconds
    moved = (t["proposals"] - t["accepted"] + t["novel"]) / t["proposals"] if t["proposals"] else None
    return (rows / seconds if seconds > 0 and rows else float("inf")), moved


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


CALIBRATION_ROWS = 3000  # rows of the timed calibration pass: enough to amortise a batch's overheads


def _calibration_sentences(cfg: SamplerConfig, lengths, length_beam: int) -> int:
    """How many sentences one calibration epoch takes to cost about CALIBRATION_ROWS rows."""
    import dataclasses

    one_epoch = dataclasses.replace(cfg, mh_epochs=1, burn_in=0, report_energy=False)
    per_sentence = expected_rows(one_epoch, lengths) / max(1, len(lengths) // max(1, length_beam))
    return int(min(64, max(1, CALIBRATION_ROWS // max(per_sentence, 1.0))))


def estimate_run(model, tgt_dict, dataset, cfg: SamplerConfig, length_beam: int, length_style: str,
                 max_tokens: int, batching: str = "sentence") -> RunEstimate:
    """Expected rows and time of decoding ``dataset`` with these settings."""
    adapter = adapter_for(model, tgt_dict)
    lengths = candidate_free_lengths(adapter, dataset, length_beam, length_style)
    if not lengths:
        return RunEstimate(len(dataset), 0, 0.0, float("inf"))
    rate, moved = calibrate_rows_per_second(model, tgt_dict, dataset, cfg, _calibration_sentences(cfg, lengths, length_beam),
                                            length_beam=length_beam, length_style=length_style, max_tokens=max_tokens,
                                            batching=batching)
    # the measured share is of single-site proposals only for single-site kinds (a block of k
    # positions changes far more often than one position does)
    single_site = moved is not None and not cfg.kind.block
    rows = expected_rows(cfg, lengths, moved if single_site else DEFAULT_MOVED)
    return RunEstimate(len(dataset), len(lengths), rows, rate)
