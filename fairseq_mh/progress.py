"""Progress inside a batch: epoch, rows done, rows/s and the ETA of the batch and the run.

fairseq's own progress bar moves only when a batch ends, and an MH batch can take an hour.
The generator reports here as its chains advance (the engine's ``monitor`` hook and the row
evaluator's counts).  Following fairseq's conventions: nothing with ``--no-progress-bar``; a
tqdm bar when stderr is a terminal and ``--log-format`` is unset or ``tqdm``; otherwise
plain log lines, at most one every ``--mh-progress-interval`` seconds (CI, the WMT scripts,
cluster logs).  An update is a clock read and a comparison, so its cost does not show.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Optional

__all__ = ["DecodeProgress", "progress_mode", "format_duration"]

logger = logging.getLogger("fairseq_mh.progress")


def progress_mode(no_progress_bar: bool, log_format: Optional[str], stream=None) -> str:
    """'off', 'bar' (tqdm on a terminal) or 'log' (plain lines)."""
    if no_progress_bar:
        return "off"
    stream = stream or sys.stderr
    tty = hasattr(stream, "isatty") and stream.isatty()
    return "bar" if tty and log_format in (None, "tqdm") else "log"


def format_duration(seconds: Optional[float]) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class DecodeProgress:
    """Tracks one run: ``begin_batch``, then ``update`` as it advances, then ``end_batch``."""

    def __init__(self, mode: str = "log", interval: float = 10.0, run_rows: Optional[float] = None,
                 clock=time.monotonic):
        self.mode, self.interval, self.run_rows, self.clock = mode, interval, run_rows, clock
        self.rows_before = 0  # rows of the batches already finished
        self.t0 = None  # start of the first batch
        self._bar = None
        self._last = -float("inf")
        self.batch = 0

    # -- batches
    def begin_batch(self, sentences: int, expected_rows: float, evaluator) -> None:
        self.batch += 1
        self.sentences, self.expected, self.ev = sentences, expected_rows, evaluator
        self.ev_rows0 = evaluator.rows
        self.tb = self.clock()
        if self.t0 is None:
            self.t0 = self.tb
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=int(expected_rows) or None, unit="row", mininterval=1.0, leave=False,
                             desc=f"batch {self.batch} ({sentences} sent.)", file=sys.stderr)

    def update(self, epochs_done: float, epochs: int) -> None:
        """Called by the engine after each step; throttled."""
        if self.mode == "off":
            return
        now = self.clock()
        if now - self._last < (1.0 if self.mode == "bar" else self.interval):
            return
        self._last = now
        done = self.ev.rows - self.ev_rows0
        if self._bar is not None:
            self._bar.set_postfix_str(f"epoch {epochs_done:.1f}/{epochs}", refresh=False)
            self._bar.update(done - self._bar.n)
        else:
            logger.info(self.line(epochs_done, epochs, done, now))

    def end_batch(self) -> None:
        self.rows_before += self.ev.rows - self.ev_rows0
        self.ev = None  # not kept alive (with the batch's encoder states) until the next batch
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # -- the line
    def line(self, epochs_done: float, epochs: int, done: int, now: float) -> str:
        rate = done / max(now - self.tb, 1e-9)
        eta_batch = max(self.expected - done, 0) / rate if rate > 0 else None
        text = (f"batch {self.batch} ({self.sentences} sentences): epoch {epochs_done:.1f}/{epochs}, "
                f"{done} rows, {rate:.0f} rows/s, ETA batch {format_duration(eta_batch)}")
        if self.run_rows:
            total_done = self.rows_before + done
            run_rate = total_done / max(now - self.t0, 1e-9)
            left = max(self.run_rows - total_done, 0) / run_rate if run_rate > 0 else None
            text += f", run {format_duration(left)}"
        return text
