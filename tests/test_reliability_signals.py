"""Interruption loses nothing (issue 10, item 3): real decodes stopped mid-run by SIGINT or
SIGTERM end with one line and exit 130 / 143; the records hold only complete JSON lines, of
at least every sentence the line counts as finished."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from cli_helpers import BIN, ENV
from test_wmt_scripts import SCRIPTS, common, temp_leftovers, toy  # noqa: F401  (toy: the WMT model fixture)

SLOW = ["--sampler", "mh", "--mh-epochs", "100", "--num-chains", "2", "--length-beam", "2", "--batch-size", "1",
        "--cpu"]


def _sigint_as_from_a_terminal():
    """Run in the child before exec: SIGINT back to its default.  A shell that starts pytest
    in the background (``cmd &`` without job control, nohup) makes every child ignore
    SIGINT, and a program that inherits an ignored SIGINT rightly keeps ignoring it; these
    tests are about a decode started from a terminal, so they must not depend on that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(cmd, **kw):
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_as_from_a_terminal, **kw)


def _communicate_or_kill(p, group, timeout=120):
    """p's (stdout, stderr); if it outlives ``timeout``, it (and its group) is killed first,
    so that a failing test leaves no decode running beside the rest of the suite."""
    try:
        return p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        (os.killpg if group else os.kill)(p.pid, signal.SIGKILL)
        p.communicate()
        raise


def _records(path):
    """Every line of a records file, parsed (a half-written line would fail here)."""
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def interrupted_run(model, tmp_path, signum, whole_group=False):
    trace, dump = tmp_path / "trace.jsonl", tmp_path / "samples.jsonl"
    cmd = [str(BIN / "fairseq-mh-generate"), str(model["data"]), "--task", "translation_mh", "--path",
           str(model["checkpoint"]), *SLOW, "--mh-trace", str(trace), "--mh-dump-samples", str(dump)]
    p = _start(cmd, env=ENV, start_new_session=whole_group)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and not (trace.exists() and trace.stat().st_size):
        time.sleep(0.2)
    assert p.poll() is None, "the decode ended before it could be interrupted"
    time.sleep(0.7)  # mid-way through a later batch
    (os.killpg if whole_group else os.kill)(p.pid, signum)  # a terminal's Ctrl-C reaches the whole group
    out, err = _communicate_or_kill(p, whole_group)
    return p.returncode, out, err, trace, dump


@pytest.mark.parametrize("signum,code,name,group", [
    (signal.SIGINT, 130, "SIGINT (Ctrl-C)", False),
    (signal.SIGTERM, 143, "SIGTERM", False),
    (signal.SIGINT, 130, "SIGINT (Ctrl-C)", True),
], ids=["sigint", "sigterm", "ctrl-c-to-the-process-group"])
def test_interrupted_decode_says_what_was_finished_and_keeps_complete_records(tiny_cmlm, tmp_path, signum, code,
                                                                              name, group):
    rc, out, err, trace, dump = interrupted_run(tiny_cmlm, tmp_path, signum, whole_group=group)
    assert rc == code, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("fairseq-mh-generate: ")]
    assert len(lines) == 1, err[-3000:]
    m = re.fullmatch(rf"fairseq-mh-generate: interrupted by {re.escape(name)}: (\d+) sentences? finished; "
                     rf"their records are complete in {re.escape(str(trace))}, {re.escape(str(dump))}, "
                     r"the hypotheses printed so far", lines[0])
    assert m, lines[0]
    finished = int(m.group(1))
    traced = {r["id"] for r in _records(trace)}
    dumped = {r["id"] for r in _records(dump)}
    # a signal between the records and the count leaves one batch (one sentence) uncounted
    assert 1 <= finished <= len(traced) <= finished + 1 and dumped == traced
    assert len(traced) < 23, "the run was interrupted, not finished"
    hyps = re.findall(r"^H-(\d+)\t", out, re.M)
    assert len(hyps) >= finished - 1  # hypotheses of the finished sentences reached stdout


def test_interrupted_wmt_decode_leaves_no_shard_output(toy, tmp_path):
    """Ctrl-C (to the process group, as a terminal sends it) while the WMT script decodes:
    the shard output is written atomically, so neither it nor a temporary file is left."""
    out = tmp_path / "out"
    p = _start(["bash", str(SCRIPTS / "eval_wmt14_de_en.sh"), *map(str, common(toy)), "--out", str(out), "--",
                "--sampler", "mh", "--mh-epochs", "400", "--num-chains", "4"],
               start_new_session=True, env={**ENV, "PYTHON": sys.executable})
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and not (out / "bin").is_dir():
        time.sleep(0.2)
    time.sleep(8)  # the decode has started: the model loads and the chains run
    assert p.poll() is None, p.communicate()[1][-3000:]
    os.killpg(p.pid, signal.SIGINT)
    _, err = _communicate_or_kill(p, group=True)
    assert p.returncode != 0
    assert not (out / "shards" / "shard-0-of-1.txt").exists() and not (out / "scores.json").exists()
    assert not temp_leftovers(out), temp_leftovers(out)
