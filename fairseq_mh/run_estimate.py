"""The cost of a whole run before it starts: expected model rows and time.

The rows come from the engine's estimator (``core.cost``) applied to the length candidates
the model's own length predictor gives each sentence (one encoder pass per sentence), with
the share of proposals that change a token measured by the calibration
(``site_moved_share``); the time from rows per second measured on the actual model and
device by a short real decode (two epochs of sentences spread over the run's lengths, with its settings,
about CALIBRATION_ROWS rows), so the rate includes the engine's own work and the run's call
shapes.  ``--mh-estimate`` prints this and exits; every
real run logs it as its first line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch

from .core import SamplerConfig
from .core.cost import DEFAULT_MOVED, expected_rows
from .models.adapters import adapter_for, length_candidates
from .progress import format_duration

__all__ = ["RunEstimate", "candidate_free_lengths", "calibrate_rows_per_second", "estimate_run", "site_moved_share"]


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
    """Free length of every (sentence, length candidate) the generator will decode, in the
    dataset's order (sentence i's candidates at i * l, ..., i * l + l - 1; the collater
    sorts a batch by source length, so its ids put them back)."""
    by_id = {}
    for lo in range(0, len(dataset), batch_size):
        sample = dataset.collater([dataset[i] for i in range(lo, min(lo + batch_size, len(dataset)))])
        net_input = {k: v.to(_device(adapter)) if torch.is_tensor(v) else v for k, v in sample["net_input"].items()}
        encs = adapter.encode(net_input)
        lp, lens = adapter.length_distribution(encs, net_input)
        cand = length_candidates(lp, lens, length_beam, length_style, max_len=adapter.max_target_length)
        _, free, _ = adapter.target_rows(cand.reshape(-1))
        per = free.sum(1).view(cand.shape).tolist()
        by_id.update(zip(sample["id"].tolist(), per))
    return [T for i in sorted(by_id) for T in by_id[i]]


def site_moved_share(cfg: SamplerConfig, moved) -> float:
    """The share of single-position proposals that change a token, from the calibration's
    share of proposals that moved: for block kinds those are blocks of ``block_size``
    positions (calibrated at the first epoch's size), so a block stays put with probability
    (1 - m)^k, positions taken as independent; DEFAULT_MOVED without a measurement."""
    if moved is None:
        return DEFAULT_MOVED
    if cfg.kind.block and cfg.block_size > 1:
        return 1.0 - (1.0 - moved) ** (1.0 / cfg.block_size)
    return moved


@torch.no_grad()
def calibrate_rows_per_second(model, tgt_dict, dataset, cfg: SamplerConfig, sentences, **generator):
    """Rows/s of a short real decode (``calibration_config``, timed after a first pass that warms up) of
    the dataset's ``sentences`` (indices; an int n: the first n) with these settings: model
    calls of the run's shapes and the engine's own work.  Returns (rows/s, the share of
    proposals that changed a token or None without proposals, the rows one pass counted)."""
    from .generator import BUILT, MHGenerator

    gen = MHGenerator(tgt_dict, calibration_config(cfg), **generator)
    BUILT.remove(gen)  # a calibration, not part of the run's report
    if isinstance(sentences, int):
        sentences = range(min(sentences, len(dataset)))
    sample = dataset.collater([dataset[i] for i in sentences])
    sample = {k: v.to(_device_of(model)) if torch.is_tensor(v) else v for k, v in sample.items()}
    sample["net_input"] = {k: v.to(_device_of(model)) if torch.is_tensor(v) else v
                           for k, v in sample["net_input"].items()}
    gen.generate([model], sample)  # warm-up: first calls pay one-time costs
    rows, seconds = gen.totals["rows"], gen.totals["seconds"]
    gen.generate([model], sample)
    t = gen.totals
    rows, seconds = t["rows"] - rows, t["seconds"] - seconds
    moved = (t["proposals"] - t["accepted"] + t["novel"]) / t["proposals"] if t["proposals"] else None
    return (rows / seconds if seconds > 0 and rows else float("inf")), moved, rows


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


CALIBRATION_ROWS = 5000  # rows of the timed calibration pass: enough to amortise a batch's overheads
CALIBRATION_EPOCHS = 2


def calibration_config(cfg: SamplerConfig) -> SamplerConfig:
    """The calibration's settings: the run's, for at most CALIBRATION_EPOCHS epochs (so a
    start's one-time work weighs on the rate about as it does in a run), without burn-in,
    and with block moves kept at their first size (the measured moved share is of blocks of
    ``block_size`` positions).  Mask-predict keeps its energy rows: they are part of its shapes."""
    import dataclasses

    if not cfg.kind.is_chain:
        return cfg
    return dataclasses.replace(cfg, mh_epochs=min(cfg.mh_epochs, CALIBRATION_EPOCHS), burn_in=0,
                               no_block_anneal=True)


def calibration_sentences(cfg: SamplerConfig, lengths, length_beam: int) -> List[int]:
    """Indices of the sentences the calibration decodes: about CALIBRATION_ROWS rows' worth,
    spread evenly over the run's sorted lengths, since rows/s grows with the length (longer
    rows, more rows per call) and the first sentences of a file need not be typical."""
    n_sent = max(1, len(lengths) // max(1, length_beam))
    per_start = len(lengths) // n_sent
    per_sentence = expected_rows(calibration_config(cfg), lengths) / n_sent
    n = int(min(64, n_sent, max(1, CALIBRATION_ROWS // max(per_sentence, 1.0))))
    longest = [max(lengths[i * per_start:(i + 1) * per_start]) for i in range(n_sent)]
    order = sorted(range(n_sent), key=lambda i: (longest[i], i))
    return sorted({order[int((j + 0.5) * n_sent / n)] for j in range(n)})


def estimate_run(model, tgt_dict, dataset, cfg: SamplerConfig, length_beam: int, length_style: str,
                 max_tokens: Optional[int], batching: str = "sentence") -> RunEstimate:
    """Expected rows and time of decoding ``dataset`` with these settings."""
    adapter = adapter_for(model, tgt_dict)
    lengths = candidate_free_lengths(adapter, dataset, length_beam, length_style)
    if not lengths:
        return RunEstimate(len(dataset), 0, 0.0, float("inf"))
    chosen = calibration_sentences(cfg, lengths, length_beam)
    rate, moved, counted = calibrate_rows_per_second(model, tgt_dict, dataset, cfg, chosen, length_beam=length_beam,
                                                     length_style=length_style, max_tokens=max_tokens,
                                                     batching=batching)
    m = site_moved_share(cfg, moved)
    # a ratio estimator: the model's count scaled by counted / predicted on the calibration's
    # own starts, which carries what one moved share misses (longer sentences move more)
    per = len(lengths) // len(dataset)
    predicted = expected_rows(calibration_config(cfg), [lengths[i * per + j] for i in chosen for j in range(per)], m)
    scale = counted / predicted if predicted > 0 and counted > 0 else 1.0
    return RunEstimate(len(dataset), len(lengths), expected_rows(cfg, lengths, m) * scale, rate)
