"""The tests' fork server (cli_forkserver.py, used by cli_helpers.run): a command run as its
child behaves as the same command in a fresh interpreter -- output, exit code, stdin, working
folder, environment, argv, sys.path, __main__, atexit and thread shutdown, fresh random seeds --
and commands it cannot reproduce (start-up variables differ) get a fresh process."""

from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest

import cli_helpers
from cli_forkserver import forkable_env

PROBE = textwrap.dedent('''
    import atexit, json, os, random, sys, threading, time
    mode = sys.argv[1]
    print(json.dumps({"argv0": os.path.basename(sys.argv[0]), "argv": sys.argv[1:], "cwd": os.getcwd(),
                      "var": os.environ.get("FAIRSEQ_MH_PROBE"), "stdin": sys.stdin.read(), "path0": sys.path[0],
                      "extra": [p for p in sys.path if p.endswith("probe_extra")], "name": __name__}))
    if mode == "random":
        import numpy, torch
        print(random.random(), numpy.random.rand(), torch.rand(1).item())
    if mode == "parent":
        print(os.getppid())
    if mode == "atexit":
        atexit.register(lambda: print("at exit"))
        threading.Thread(target=lambda: (time.sleep(0.2), print("thread done"))).start()
    sys.stderr.write("to stderr\\n")
    if mode == "exit-message":
        sys.exit("a message")
    if mode == "exit-3":
        sys.exit(3)
    if mode == "raise":
        raise ValueError("boom")
''')


@pytest.fixture
def probe(tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    pkg = tmp_path / "probe_extra" / "probe_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(PROBE)
    return tmp_path


def both(cmd, **kw):
    forked, fresh = cli_helpers.run(cmd, check=False, **kw), cli_helpers.run(cmd, check=False, fresh=True, **kw)
    return forked, fresh


@pytest.mark.parametrize("mode,code", [("ok", 0), ("exit-message", 1), ("exit-3", 3), ("atexit", 0)])
def test_a_forked_script_is_the_fresh_one(probe, tmp_path, mode, code):
    work = tmp_path / "work"
    work.mkdir()
    forked, fresh = both([sys.executable, probe / "probe.py", mode, "x y"], cwd=work, input_text="in\nput",
                         env={"FAIRSEQ_MH_PROBE": "v"})
    assert forked.returncode == fresh.returncode == code
    assert forked.stdout == fresh.stdout and forked.stderr == fresh.stderr
    seen = json.loads(forked.stdout.splitlines()[0])
    assert seen == {"argv0": "probe.py", "argv": [mode, "x y"], "cwd": str(work), "var": "v", "stdin": "in\nput",
                    "path0": str(probe), "extra": [], "name": "__main__"}
    if mode == "atexit":
        assert forked.stdout.splitlines()[-2:] == ["thread done", "at exit"]
    if mode == "exit-message":
        assert forked.stderr.splitlines()[-1] == "a message"


def test_a_module_with_pythonpath_and_an_uncaught_error(probe, tmp_path):
    extra = str(probe / "probe_extra")
    forked, fresh = both([sys.executable, "-m", "probe_pkg.mod", "raise"], cwd=tmp_path, env={"PYTHONPATH": extra})
    assert forked.returncode == fresh.returncode == 1
    assert forked.stdout == fresh.stdout
    seen = json.loads(forked.stdout)
    assert seen["argv0"] == "mod.py" and seen["path0"] == str(tmp_path) and seen["extra"] == [extra]
    for p in (forked, fresh):  # the tracebacks differ in runpy's frames only
        assert "Traceback" in p.stderr and p.stderr.splitlines()[-1] == "ValueError: boom"


def test_a_console_script_gets_the_same_output_and_bytes_round_trip():
    forked, fresh = both(["fairseq-mh-generate", "--help"])
    assert forked.returncode == fresh.returncode == 0 and forked.stdout == fresh.stdout
    assert forked.stdout.startswith("usage: fairseq-mh-generate")
    forked = cli_helpers.run([sys.executable, "-c", "print(1)"], check=False, text=False)  # -c: always fresh
    assert forked.stdout == b"1\n"


def test_children_draw_fresh_seeds(probe):
    runs = [cli_helpers.run([sys.executable, probe / "probe.py", "random"]).stdout.splitlines()[1].split()
            for _ in range(2)]
    assert all(a != b for a, b in zip(*runs))  # Python, numpy and torch seeded from the OS, as a new process


def test_only_runtime_variables_may_differ(probe):
    base = {"PATH": "/bin", "OMP_NUM_THREADS": "1", "LOGLEVEL": "WARNING"}
    assert forkable_env(base, {**base, "LOGLEVEL": "INFO", "FAIRSEQ_MH_X": "1", "PYTHONPATH": "/x"})
    assert forkable_env(base, {k: v for k, v in base.items() if k != "LOGLEVEL"})
    assert not forkable_env(base, {**base, "OMP_NUM_THREADS": "2"})
    assert not forkable_env(base, {**base, "PYTHONHASHSEED": "0"})
    assert not forkable_env(base, {k: v for k, v in base.items() if k != "PATH"})
    if os.environ.get("FAIRSEQ_MH_TEST_FORK", "1") == "0":
        pytest.skip("FAIRSEQ_MH_TEST_FORK=0: every command runs in a fresh interpreter")
    # such a command runs in a fresh interpreter (its parent is this test process), others forked
    me = str(os.getpid())
    assert cli_helpers.run([sys.executable, probe / "probe.py", "parent"], env={"OMP_NUM_THREADS": "2"}
                           ).stdout.splitlines()[1] == me
    assert cli_helpers.run([sys.executable, probe / "probe.py", "parent"]).stdout.splitlines()[1] != me
