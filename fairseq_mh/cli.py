"""Console commands: fairseq's own, with the plug-in loaded (no --user-dir needed)."""

from __future__ import annotations

import os
import sys


def _run(module: str) -> None:
    import importlib

    import fairseq_mh  # noqa: F401  (registers the plug-in)
    from fairseq_mh.errors import exit_on_user_error

    with exit_on_user_error(os.path.basename(sys.argv[0])):
        importlib.import_module(module).cli_main()


def generate() -> None:
    """fairseq-mh-generate: fairseq-generate with the plug-in."""
    _run("fairseq_cli.generate")


def interactive() -> None:
    """fairseq-mh-interactive: fairseq-interactive with the plug-in."""
    _run("fairseq_cli.interactive")


def preprocess() -> None:
    """fairseq-mh-preprocess: fairseq-preprocess with the plug-in (for --task translation_self);
    it leaves a marker saying which dictionaries it used (``fairseq_mh.data_check``)."""
    import fairseq_cli.preprocess

    from .data_check import marking

    fairseq_cli.preprocess.main = marking(fairseq_cli.preprocess.main)
    _run("fairseq_cli.preprocess")


def pairwise() -> None:
    """fairseq-mh-pairwise: explicit two-position joints of a CMLM (also python -m fairseq_mh.pairwise)."""
    _run("fairseq_mh.pairwise")
