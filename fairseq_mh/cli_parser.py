"""The command line of the plug-in's runs: a full ``--help`` and one-line parse errors.

Why: fairseq parses the command line twice, adding the task's options (where all decoding
options live) only before the second pass, but ``-h`` already fires in the first pass, so the
help never shows ``--sampler`` or ``--mh-epochs``.  The patched
``fairseq.options.parse_args_and_arch`` hides ``-h`` from the first pass; the second pass,
with every option in place, prints the help, each option with its default.  And argparse
answers a bad value (``--sampler MH``, ``--mh-epochs x``) with fairseq's 200-line usage before
the error: here it is the error line alone, pointing at ``--help``.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["install", "HELP_FLAGS"]

HELP_FLAGS = ("-h", "--help")


def _one_line_error(parser: argparse.ArgumentParser) -> None:
    def error(message):
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(message).split())} (see --help)\n")

    parser.error = error


_PARSED = {"bf16": False}


def bf16_requested() -> bool:
    """Whether the command line asked for --bf16 (fairseq-generate applies --fp16 itself but
    ignores --bf16; the task's config cannot say: a task set up from a checkpoint's Namespace
    turns the unresolved "${common.bf16}" into True)."""
    return _PARSED["bf16"]


def _remember(args):
    _PARSED["bf16"] = bool(getattr(args, "bf16", False))
    return args


def _help_later(original):
    def parse_args_and_arch(parser, input_args=None, *args, **kwargs):
        argv = list(sys.argv[1:] if input_args is None else input_args)
        _one_line_error(parser)
        if not any(a in HELP_FLAGS for a in argv) or getattr(parser, "_fairseq_mh_help", False):
            return _remember(original(parser, input_args, *args, **kwargs))
        first_pass = parser.parse_known_args
        without_help = [a for a in argv if a not in HELP_FLAGS]

        def parse_known_args(args=None, namespace=None):
            del parser.parse_known_args  # later passes (the one that prints the help) see -h
            return first_pass(without_help, namespace)

        parser.parse_known_args = parse_known_args
        parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
        parser._fairseq_mh_help = True
        return original(parser, input_args, *args, **kwargs)

    parse_args_and_arch._fairseq_mh = True
    return parse_args_and_arch


def install() -> None:
    """Idempotent; also effective under stock ``fairseq-generate --user-dir``, which imports the
    plug-in before it parses."""
    from fairseq import options

    if not getattr(options.parse_args_and_arch, "_fairseq_mh", False):
        options.parse_args_and_arch = _help_later(options.parse_args_and_arch)
