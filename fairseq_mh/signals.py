"""Interruption that loses nothing: Ctrl-C and SIGTERM end a run with one line.

Why: fairseq lets ``KeyboardInterrupt`` escape as a traceback, SIGTERM kills the process
without a word, and either can land in the middle of writing a batch's records, leaving a
half JSON line.  Here:

* ``RecordFile`` writes each batch's records in one piece, with signals held back until the
  batch is written and flushed, so the file only ever holds complete lines;
* ``guard(main, cfg, prog)`` turns SIGINT / SIGTERM into one line saying how many sentences
  were finished and which files hold their records, then exits 130 / 143 (128 + signal).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Callable, List, Optional

__all__ = ["RecordFile", "deferred", "guard", "count_finished", "Interrupted"]


class Interrupted(BaseException):
    """SIGTERM, raised like ``KeyboardInterrupt`` (a BaseException, so no ``except Exception``
    in fairseq swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


_finished = [0]


def count_finished(n: int) -> None:
    """Called once a batch's hypotheses (and records) are complete."""
    _finished[0] += int(n)


def _raise(signum, frame):
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Interrupted(signum)


@contextlib.contextmanager
def deferred():
    """Holds SIGINT / SIGTERM back inside the block and delivers the last one at its end."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: List[int] = []
    old = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if pending:
            signum, handler = pending[-1], old[pending[-1]]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)  # the default action: redeliver it


class RecordFile:
    """A JSON-lines output whose every ``write`` (one batch) is complete on disk or absent."""

    def __init__(self, path: str):
        self.path = path
        self._f = open(path, "w", encoding="utf-8")

    def write(self, text: str) -> None:
        with deferred():
            self._f.write(text)
            self._f.flush()

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _interrupt_line(signum: int, outputs: List[str]) -> str:
    name = "SIGINT (Ctrl-C)" if signum == signal.SIGINT else signal.Signals(signum).name
    n = _finished[0]
    where = ", ".join(outputs + ["the hypotheses printed so far"]) if outputs else "the hypotheses printed so far"
    return (f"interrupted by {name}: {n} sentence{'s' if n != 1 else ''} finished; "
            f"their records are complete in {where}")


def guard(main: Callable, cfg, prog: str, outputs: Optional[List[str]] = None):
    """Runs ``main(cfg)``; an interruption prints one line and exits 128 + the signal number."""
    _finished[0] = 0
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        return main(cfg)
    except KeyboardInterrupt:
        signum = signal.SIGINT
    except Interrupted as e:
        signum = e.signum
    finally:
        signal.signal(signal.SIGTERM, previous)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    print(f"{prog}: {_interrupt_line(signum, list(outputs or []))}", file=sys.stderr, flush=True)
    sys.exit(128 + signum)
