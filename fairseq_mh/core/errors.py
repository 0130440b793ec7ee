"""The one family of errors a user can cause, and the exit status they end a command with.

``UserError`` is a mistake in the user's input (an option value, a file, a setting); its
message says what is wrong and how to fix it, on one line.  Subclasses exist only where a
caller needs to tell them apart: ``config.ConfigError`` (a sampler setting, also a
``ValueError``) and ``fairseq_mh.experiments.spec.ExperimentError`` (an experiment's config).
Printing lives outside the core, in ``fairseq_mh.errors`` (``report``, ``exit_on_user_error``),
so that every command prints these the same way.  Nothing here imports fairseq.
"""

from __future__ import annotations

__all__ = ["UserError", "EXIT_USER_ERROR"]

# argparse's status for a usage error, which fairseq's own option errors also exit with:
# every command of the project ends a user mistake with this one status.
EXIT_USER_ERROR = 2


class UserError(Exception):
    """A mistake in the user's input; the message says what is wrong and how to fix it."""
