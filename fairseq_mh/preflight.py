"""Checks of a decoding run's whole config, before any data or model is loaded.

Why: fairseq validates ``--nbest`` and the output paths only when it uses them, which is
after the model has loaded (a traceback from ``open``) or after everything was decoded (a
``ZeroDivisionError`` in the BLEU scorer for ``--nbest 0``).  ``check(cfg)`` refuses such a
run up front with one line naming the option and the fix.  So too --bf16 or --fp16 on a CPU
without kernels for that precision, which would not fail but decode about 4x slower than
fp32, its matmuls 7-100x (``cpu_runtime.native_half``).
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, List, Optional, Tuple

from .core.config import ConfigError
from .errors import UserError

__all__ = ["check", "check_nbest", "check_precision", "ALLOW_SLOW_HALF", "check_output_file", "check_output_folder",
           "output_files", "removed_on_error"]

# kernel pseudo-filesystems: writing there changes the machine, never stores records
_PSEUDO = ("/proc", "/sys", "/dev")

# set to 1 to run --bf16/--fp16 on a CPU without kernels for it anyway (e.g. to check numerics)
ALLOW_SLOW_HALF = "FAIRSEQ_MH_ALLOW_SLOW_HALF"


def check(cfg, results: bool = True) -> None:
    """Every run-level check; ``cfg`` is fairseq's full config (task, generation, common_eval);
    ``results``: the command writes ``--results-path`` (fairseq-generate does, -interactive not)."""
    check_nbest(cfg.generation.nbest)
    check_precision(cfg)
    if results and getattr(cfg.common_eval, "results_path", None):
        check_output_folder("--results-path", cfg.common_eval.results_path)
    for option, path in output_files(cfg, results):
        check_output_file(option, path)


def check_nbest(nbest) -> None:
    if nbest is None or int(nbest) < 1:
        raise UserError(f"--nbest must be an integer >= 1 (got {nbest}): it is the number of hypotheses printed "
                        "per sentence")


def check_precision(cfg) -> None:
    """--bf16 or --fp16 on a CPU (--cpu, or no GPU) whose oneDNN lacks kernels for it is refused:
    its matmuls take torch's fallbacks and a decode runs about 4x slower than in fp32."""
    import torch

    from .cli_parser import bf16_requested
    from .cpu_runtime import native_half

    common = getattr(cfg, "common", None)
    on_gpu = torch.cuda.is_available() and getattr(common, "cpu", False) is not True
    if on_gpu or os.environ.get(ALLOW_SLOW_HALF) == "1":
        return
    asked = [("--fp16", torch.float16)] if getattr(common, "fp16", False) is True else []
    asked += [("--bf16", torch.bfloat16)] if bf16_requested() else []
    for option, dtype in asked:
        if native_half(dtype):
            continue
        needs = "AVX-512 or AMX" if dtype is torch.bfloat16 else "AVX512-FP16 or AMX-FP16"
        instead = ("; --bf16 has kernels on this CPU" if dtype is torch.float16 and native_half(torch.bfloat16)
                   else "")
        raise UserError(f"{option}: this CPU has no {option[2:]} matmul kernels (oneDNN needs {needs}), so the "
                        f"decode would run about 4x slower than in fp32: drop {option}{instead} (or set "
                        f"{ALLOW_SLOW_HALF}=1 to run it anyway)")


def output_files(cfg, results: bool = True) -> Iterator[Tuple[str, str]]:
    """(option, file) of every file the run writes besides stdout."""
    for option, path in (("--mh-trace", cfg.task.mh_trace), ("--mh-dump-samples", cfg.task.mh_dump_samples)):
        if path:
            yield option, str(path)
    folder = getattr(cfg.common_eval, "results_path", None) if results else None
    if folder:
        yield "--results-path", os.path.join(folder, f"generate-{cfg.dataset.gen_subset}.txt")


@contextlib.contextmanager
def removed_on_error(paths: List[str]):
    """Files among ``paths`` that this run creates are removed when it fails with a UserError,
    so a refused run leaves no half-written output (an interrupted run keeps its records)."""
    new = [p for p in paths if not os.path.exists(p)]
    try:
        yield
    except (UserError, ConfigError):
        for p in new:
            with contextlib.suppress(OSError):
                if os.path.isfile(p):
                    os.unlink(p)
        raise


def _pseudo_root(path: str) -> Optional[str]:
    real = os.path.realpath(path)
    return next((root for root in _PSEUDO if real == root or real.startswith(root + "/")), None)


def check_output_file(option: str, path: str) -> None:
    """A file the run will create or overwrite: a regular file in a writable, existing folder."""
    root = _pseudo_root(path)
    if root is not None:
        raise UserError(f"{option} {path} is under {root}, a kernel filesystem that cannot hold records: "
                        "give a path on a real disk")
    if os.path.isdir(path):
        raise UserError(f"{option} {path} is a directory: give a file name inside it, "
                        f"e.g. {os.path.join(path, 'out.jsonl')}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(folder) and option == "--results-path":
        return  # fairseq creates the results folder; check_output_folder vetted its ancestors
    if not os.path.isdir(folder):
        what = "does not exist" if not os.path.exists(folder) else "is not a directory"
        raise UserError(f"{option} {path}: the folder {folder} {what}: create it first (mkdir -p {folder})")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise UserError(f"{option} {path} exists and is not writable: choose another file or fix its permissions")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: the folder {folder} is not writable: choose a folder you can write to")


def check_output_folder(option: str, path: str) -> None:
    """A folder fairseq creates (``os.makedirs``): not a file, and its nearest existing ancestor
    a writable directory."""
    root = _pseudo_root(path)
    if root is not None:
        raise UserError(f"{option} {path} is under {root}, a kernel filesystem that cannot hold records: "
                        "give a folder on a real disk")
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise UserError(f"{option} {path} is a file, not a folder: give a folder (it is created if missing)")
        return
    ancestor = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise UserError(f"{option} {path} cannot be created: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path} cannot be created: {ancestor} is not writable")
