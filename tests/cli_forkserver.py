"""A fork server for the tests' command-line runs (``cli_helpers.run``).

Why: every command the tests run (``fairseq-mh-generate``, ``fairseq-train``, ``python -m
fairseq_mh.demo``, ...) is a new Python process that spends about 4 of its first 5 seconds
importing torch, scikit-learn and SciPy (the last two through fairseq's criterions) before it
does anything.  The suite runs well over a hundred of them.  This server imports those
third-party libraries once per test worker, then forks a child per command.  The child becomes
the command: its own process, argv, environment, working folder, stdin/stdout/stderr (files;
stdin is /dev/null unless the test gives input), ``sys.path``, fresh random seeds and exit code,
and it runs the console script or module exactly as the interpreter would.  fairseq and
fairseq_mh are *not* preloaded: they import in the child, in the order a fresh process imports
them (logging set-up, plug-in registration, --user-dir).

What a child can not get from a fork is what the interpreter or a preloaded library read when the
server started: interpreter options and start-up variables, the hash seed, and the variables
torch/numpy/OpenMP read on import.  So ``cli_helpers`` forks only when the command's environment
differs from the server's in ``RUNTIME_VARIABLES`` alone (read after start-up), and starts a fresh
process otherwise; ``FAIRSEQ_MH_TEST_FORK=0`` makes every run a fresh process.

Protocol: one JSON line per request on stdin (argv, entry, env, cwd, file paths), one JSON line
back with the exit code.  The server ends when its stdin closes (its test worker ended).
"""

from __future__ import annotations

import importlib
import json
import os
import sys

# heavy, side-effect-free on import (no logging set-up, no registries): torch 2.0 s, scikit-learn
# and SciPy 1.9 s (fairseq's criterions import sklearn.metrics), torch.onnx (fairseq's models)
PRELOAD = ("torch", "torch.onnx", "numpy", "scipy.stats", "sklearn.metrics", "omegaconf", "hydra", "sacrebleu",
           "sentencepiece")

# variables read at run time (by fairseq_mh, fairseq_cli, Hydra, the tests' scripts) or emulated by
# the child (PYTHONPATH): a command whose environment differs from the server's only in these forks
RUNTIME_VARIABLES = ("PYTHON", "PYTHONPATH", "LOGLEVEL", "HYDRA_FULL_ERROR")
RUNTIME_PREFIXES = ("FAIRSEQ_MH_", "PYTEST_")


def forkable_env(server_env: dict, env: dict) -> bool:
    """Whether a command with ``env`` can be a child of a server started with ``server_env``."""
    def runtime(k):
        return k in RUNTIME_VARIABLES or k.startswith(RUNTIME_PREFIXES)

    return all(server_env.get(k) == env.get(k) for k in set(server_env) | set(env) if not runtime(k))


def _exit_code(code) -> int:
    """What the interpreter makes of ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except Exception:  # noqa: BLE001
        pass
    return 1


def _child(req: dict, base_path: list) -> None:
    """Becomes the command of ``req`` and never returns."""
    import atexit
    import random
    import runpy
    import signal
    import threading

    code = 1
    try:
        if req["cwd"]:
            os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        for fd, path, flags in ((0, req["stdin"], os.O_RDONLY),
                                (1, req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                (2, req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
            f = os.open(path, flags, 0o644)
            os.dup2(f, fd)
            os.close(f)
        kind, target = req["entry"]
        first = os.path.dirname(os.path.realpath(target)) if kind == "path" else os.getcwd()
        extra = [p for p in req["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.path[:] = [first, *extra, *base_path]
        sys.argv = list(req["argv"])
        # a fresh interpreter seeds these from the OS, not from the server's state
        random.seed()
        import numpy
        import torch

        numpy.random.seed()
        torch.seed()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            if kind == "path":
                runpy.run_path(target, run_name="__main__")
            else:
                runpy.run_module(target, run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as e:
            code = _exit_code(e.code)
        except KeyboardInterrupt:
            sys.excepthook(*sys.exc_info())
            code = -signal.SIGINT
        except BaseException:  # noqa: BLE001 -- what the interpreter does with an uncaught error
            sys.excepthook(*sys.exc_info())
            code = 1
        threading._shutdown()  # the interpreter's own order: threads, then atexit, then flush
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        if code < 0:  # died of a signal, as an uncaught KeyboardInterrupt does
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        os._exit(code)


def serve() -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    here = os.path.dirname(os.path.realpath(__file__))
    own = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    base_path = [p for p in sys.path[1:] if p not in own and p != here]
    # forking is only safe from a single-threaded process (OpenMP/BLAS pools started on import)
    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 0
    os.write(1, (json.dumps({"ready": threads == 1, "threads": threads}) + "\n").encode())
    # unbuffered: a child reads its own stdin from fd 0, so nothing may sit in a read-ahead buffer
    for line in open(0, "rb", buffering=0, closefd=False):
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(req, base_path)
        _, status = os.waitpid(pid, 0)
        os.write(1, (json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n").encode())


if __name__ == "__main__":
    serve()
