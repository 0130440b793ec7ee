"""Registers the plug-in with fairseq: tasks, models, criterion, safe loading, error hook."""

from __future__ import annotations

import importlib
import logging
import sys

_registered = False

_MODULES = (
    "fairseq_mh.checkpoints",
    "fairseq_mh.models.mask_predict_transformer",
    "fairseq_mh.criterions.label_smoothed_length_cross_entropy",
    "fairseq_mh.tasks.translation_self",
    "fairseq_mh.tasks.translation_mh",
)


def register() -> None:
    """Idempotent: importing the modules runs fairseq's @register_* decorators."""
    global _registered
    if _registered:
        return
    from .errors import install_excepthook

    install_excepthook()
    for name in _MODULES:
        module = importlib.import_module(name)
        if hasattr(module, "install"):
            module.install()
    _shard_by_num_shards()
    _guard_runs()
    from .cli_parser import install as command_line

    command_line()
    _registered = True


def _shard_by_num_shards() -> None:
    """fairseq 0.12's generate shards by --distributed-world-size/--distributed-rank and
    ignores --num-shards/--shard-id (each shard would decode everything); map the latter onto
    the former when they are given."""
    import fairseq_cli.generate as generate

    original = generate._main
    if getattr(original, "_fairseq_mh", False):
        return

    def _main(cfg, output_file):
        ds, dt = cfg.dataset, cfg.distributed_training
        if ds.num_shards > 1 and dt.distributed_world_size == 1:
            if not 0 <= ds.shard_id < ds.num_shards:
                from .errors import UserError

                raise UserError(f"--shard-id must be in [0, {ds.num_shards}) for --num-shards {ds.num_shards} "
                                f"(got {ds.shard_id})")
            dt.distributed_world_size, dt.distributed_rank = ds.num_shards, ds.shard_id
        return original(cfg, output_file)

    _main._fairseq_mh = True
    generate._main = _main


# tasks whose runs get the plug-in's run-level checks, input handling and interruption line
_TASKS = ("translation_mh", "translation_self")


def _guard_runs() -> None:
    """Wraps ``main`` of fairseq-generate and fairseq-interactive (looked up when they run, after
    the plug-in is imported, also through --user-dir): the output paths and --nbest are checked
    before anything loads, files a failed run created are removed, interactive input survives
    bad lines, and Ctrl-C / SIGTERM end the run with one line (``fairseq_mh.signals``)."""
    import fairseq_cli.generate as generate
    import fairseq_cli.interactive as interactive

    for module, is_interactive in ((generate, False), (interactive, True)):
        if not getattr(module.main, "_fairseq_mh", False):
            module.main = _guarded(module.main, is_interactive)


def _report_run(generators) -> None:
    """After fairseq's own "Translated ..." line: what the run spent, then its convergence."""
    from . import diagnostics

    for gen in generators:
        logging.getLogger("fairseq_mh.generate").info(gen.summary_line())
    for line in diagnostics.summary_lines():
        print(line, file=sys.stderr, flush=True)


def _guarded(original, is_interactive: bool):
    def main(cfg):
        from argparse import Namespace

        from fairseq.dataclass.utils import convert_namespace_to_omegaconf

        from . import interactive_input, output_text, preflight, signals
        from .generator import BUILT

        if isinstance(cfg, Namespace):
            cfg = convert_namespace_to_omegaconf(cfg)
        if getattr(cfg.task, "_name", None) not in _TASKS:
            return original(cfg)
        preflight.check(cfg, results=not is_interactive)
        outputs = [f for _, f in preflight.output_files(cfg, results=not is_interactive)]
        run = (lambda c: interactive_input.run(original, c)) if is_interactive else original
        prog = (sys.argv[0] or "fairseq-mh").rsplit("/", 1)[-1]
        BUILT.clear()
        output_text.configure(cfg)  # MBR compares the text the run prints
        with preflight.removed_on_error(outputs):
            result = signals.guard(run, cfg, prog, outputs)
        _report_run(BUILT)
        return result

    main._fairseq_mh = True
    return main
