"""User-facing errors: one clear line, a non-zero exit, never a raw traceback.

Every mistake a user can make (a bad option value, a missing or unsafe checkpoint, a
dictionary that does not match the model) raises ``UserError``.  Importing the plug-in
installs an exception hook that prints such an error as a single line (the interpreter then
exits with status 1), also under the stock ``fairseq-generate``; any other exception keeps
its traceback.
"""

from __future__ import annotations

import sys

__all__ = ["UserError", "install_excepthook", "report"]


class UserError(Exception):
    """A mistake in the user's input; the message says what is wrong and how to fix it."""


def report(err: BaseException, prog: str = "fairseq-mh") -> None:
    msg = " ".join(str(err).split())
    print(f"{prog}: error: {msg}", file=sys.stderr)


def _is_user_error(exc: BaseException) -> bool:
    from .core.config import ConfigError

    return isinstance(exc, (UserError, ConfigError))


def install_excepthook() -> None:
    previous = sys.excepthook
    if getattr(previous, "_fairseq_mh", False):
        return

    def hook(exc_type, exc, tb):
        if _is_user_error(exc):
            report(exc)
            return
        previous(exc_type, exc, tb)

    hook._fairseq_mh = True
    sys.excepthook = hook
