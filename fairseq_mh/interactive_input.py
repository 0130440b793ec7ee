"""fairseq-interactive input that survives bad lines: one warning each, the session goes on.

Why: fairseq reads stdin as text (bytes that are not UTF-8 end the session with a traceback),
and one line longer than the model accepts raises ``Size of sample #0 is invalid``, losing
every following line.  ``InputSession`` replaces ``fairseq_cli.interactive``'s
``buffered_read`` and ``make_batches`` for one run:

* bytes that are not UTF-8: a warning with the line number, then the line is translated with
  U+FFFD in their place (``--mh-invalid-utf8 replace``, the default) or skipped (``skip``);
* a line longer than the model's source limit: a warning naming the limit; skipped;
* a line the tokenizer fails on: a warning; skipped;
* an empty or blank line: a warning; its hypothesis is empty (``fairseq_mh.empty_source``).

Output ids stay the 0-based line numbers, also when lines are skipped.
"""

from __future__ import annotations

import sys
from typing import Iterator, List, Optional, Set

import torch

__all__ = ["InputSession", "decode_line", "source_limit", "run"]


def _warn(message: str) -> None:
    prog = (sys.argv[0] or "fairseq-mh-interactive").rsplit("/", 1)[-1]
    print(f"{prog}: warning: {message}", file=sys.stderr, flush=True)


def decode_line(raw: bytes, number: int, mode: str) -> Optional[str]:
    """The line as text, or None when it is skipped; warns about bytes that are not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        where = f"line {number} has bytes that are not UTF-8 (byte {e.start + 1})"
        if mode == "skip":
            _warn(f"{where}: skipped it (--mh-invalid-utf8 replace would translate it with U+FFFD instead)")
            return None
        _warn(f"{where}: replaced them with U+FFFD (--mh-invalid-utf8 skip would skip such lines)")
        return raw.decode("utf-8", errors="replace")


def source_limit(max_positions) -> Optional[int]:
    """The most source tokens the model takes (fairseq's max_positions: int, tuple or None)."""
    if isinstance(max_positions, (tuple, list)):
        max_positions = max_positions[0] if max_positions else None
    return int(max_positions) if max_positions is not None else None


class InputSession:
    """Per-run state: the input mode, the line count, the lines to leave out."""

    def __init__(self, original_make_batches, invalid_utf8: str = "replace"):
        self.original_make_batches = original_make_batches
        self.invalid_utf8 = invalid_utf8
        self.start = 0  # line number (0-based) of the buffer being batched
        self.skipped: Set[int] = set()

    def _raw_lines(self, source: str) -> Iterator[bytes]:
        if source == "-":
            yield from sys.stdin.buffer
            return
        with open(source, "rb") as f:
            yield from f

    def buffered_read(self, source: str, buffer_size: int) -> Iterator[List[str]]:
        """fairseq's ``buffered_read``, reading bytes; a skipped line stays as a placeholder."""
        buffer: List[str] = []
        number = 0
        for raw in self._raw_lines(source):
            text = decode_line(raw, number + 1, self.invalid_utf8)
            if text is None:
                self.skipped.add(number)
            buffer.append((text or "").strip())
            number += 1
            if len(buffer) >= buffer_size:
                self.start = number - len(buffer)
                yield buffer
                buffer = []
        if buffer:
            self.start = number - len(buffer)
            yield buffer

    def _usable(self, i: int, line: str, task, limit: Optional[int], encode_fn) -> bool:
        number = self.start + i
        if number in self.skipped:
            return False
        if not line:
            _warn(f"line {number + 1} is empty: its hypothesis is empty")
            return True
        try:
            _, lengths = task.get_interactive_tokens_and_lengths([line], encode_fn)
        except Exception as e:  # a tokenizer or BPE failing on odd input: skip that line only
            _warn(f"line {number + 1} cannot be tokenized ({type(e).__name__}: {' '.join(str(e).split())[:80]}): "
                  "skipped it")
            return False
        if limit is not None and lengths[0] > limit:
            _warn(f"line {number + 1} has {lengths[0]} tokens, more than the model's limit of {limit} source "
                  "tokens: skipped it (split it into shorter sentences)")
            return False
        return True

    def make_batches(self, lines, cfg, task, max_positions, encode_fn):
        """fairseq's ``make_batches`` on the usable lines, ids mapped back to the buffer's."""
        limit = source_limit(max_positions)
        kept = [i for i, line in enumerate(lines) if self._usable(i, line, task, limit, encode_fn)]
        if not kept:
            return
        index = torch.tensor(kept)
        for batch in self.original_make_batches([lines[i] for i in kept], cfg, task, max_positions, encode_fn):
            yield batch._replace(ids=index[batch.ids])


def run(main, cfg):
    """``fairseq_cli.interactive.main(cfg)`` with this module's input handling."""
    import fairseq_cli.interactive as interactive

    session = InputSession(interactive.make_batches, str(getattr(cfg.task, "mh_invalid_utf8", "replace")))
    saved = interactive.buffered_read, interactive.make_batches
    interactive.buffered_read, interactive.make_batches = session.buffered_read, session.make_batches
    try:
        return main(cfg)
    finally:
        interactive.buffered_read, interactive.make_batches = saved
