"""User-facing errors: one printer, one exit status, never a raw traceback.

The error classes live in ``fairseq_mh.core.errors`` (``UserError``, re-exported here, and its
subclasses ``ConfigError`` and ``ExperimentError``).  This module is the only place that prints
them: ``report`` writes the single line ``PROG: error: MESSAGE`` on stderr, and
``exit_on_user_error`` wraps a command's work so that a user error ends it with
``EXIT_USER_ERROR`` (2).  The console commands (``cli.py``), the experiment runner,
``scripts/wmt_eval.py`` and the demo all use it; importing the plug-in installs an exception
hook that does the same under the stock ``fairseq-generate --user-dir fairseq_mh``.  Any other
exception keeps its traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterator, Tuple, Type

from .core.errors import EXIT_USER_ERROR, UserError

__all__ = ["UserError", "EXIT_USER_ERROR", "report", "exit_on_user_error", "install_excepthook"]


def report(problem: object, prog: str) -> None:
    """Prints ``prog: error: problem`` as one line (the message's whitespace collapsed)."""
    msg = " ".join(str(problem).split())
    print(f"{prog}: error: {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def exit_on_user_error(prog: str, also: Tuple[Type[BaseException], ...] = (),
                       message: Callable[[BaseException], str] = str) -> Iterator[None]:
    """Runs the block; a ``UserError`` (or one of ``also``, e.g. Hydra's config errors) is
    reported by ``report(message(err), prog)`` and ends the process with EXIT_USER_ERROR."""
    try:
        yield
    except (UserError, *also) as err:
        report(message(err), prog)
        raise SystemExit(EXIT_USER_ERROR) from None


def _prog() -> str:
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "fairseq-mh"


def install_excepthook() -> None:
    """Reports an uncaught ``UserError`` as one line and exits with EXIT_USER_ERROR.

    Raising SystemExit from the hook makes the interpreter exit with that status after its
    normal shutdown (atexit handlers and logging run).  In an interactive session the error is
    only reported: the session goes on.
    """
    previous = sys.excepthook
    if getattr(previous, "_fairseq_mh", False):
        return

    def hook(exc_type, exc, tb):
        if not isinstance(exc, UserError):
            previous(exc_type, exc, tb)
            return
        report(exc, _prog())
        if not (hasattr(sys, "ps1") or sys.flags.interactive):
            raise SystemExit(EXIT_USER_ERROR)

    hook._fairseq_mh = True
    sys.excepthook = hook
