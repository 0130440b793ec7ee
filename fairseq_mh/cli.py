"""Console commands: fairseq's own, with the plug-in loaded (no --user-dir needed)."""

from __future__ import annotations

import sys


def _run(module: str) -> None:
    import importlib

    import fairseq_mh  # noqa: F401  (registers the plug-in)
    from fairseq_mh.errors import UserError, report
    from fairseq_mh.core.config import ConfigError

    try:
        importlib.import_module(module).cli_main()
    except (UserError, ConfigError) as e:
        report(e, prog=sys.argv[0].rsplit("/", 1)[-1])
        sys.exit(1)


def generate() -> None:
    """fairseq-mh-generate: fairseq-generate with the plug-in."""
    _run("fairseq_cli.generate")


def interactive() -> None:
    """fairseq-mh-interactive: fairseq-interactive with the plug-in."""
    _run("fairseq_cli.interactive")


def preprocess() -> None:
    """fairseq-mh-preprocess: fairseq-preprocess with the plug-in (for --task translation_self)."""
    _run("fairseq_cli.preprocess")


def pairwise() -> None:
    """fairseq-mh-pairwise: explicit two-position joints of a CMLM (also python -m fairseq_mh.pairwise)."""
    _run("fairseq_mh.pairwise")
