"""One error family, one printer, one exit status: every kind of user error, raised through a
real command line, ends the process with EXIT_USER_ERROR and exactly one line
``PROG: error: ...`` on stderr, without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fairseq_mh.core.config import ConfigError
from fairseq_mh.core.errors import EXIT_USER_ERROR, UserError
from fairseq_mh.experiments.spec import ExperimentError

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
       "PYTHONWARNINGS": "ignore", "LOGLEVEL": "WARNING", "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}


def test_the_error_classes_are_one_family():
    assert issubclass(ConfigError, UserError) and issubclass(ConfigError, ValueError)
    assert issubclass(ExperimentError, UserError)
    import fairseq_mh.errors as printer

    assert printer.UserError is UserError and printer.EXIT_USER_ERROR == EXIT_USER_ERROR == 2


def test_the_core_errors_import_no_fairseq():
    code = ("import sys; sys.modules['fairseq'] = None\n"
            "import fairseq_mh.core.errors, fairseq_mh.core.config\n"
            "assert not [m for m in sys.modules if m.startswith('fairseq.') or m == 'fairseq_cli']\n")
    p = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def _empty_data(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    return d


CASES = {
    # ConfigError from the plug-in's option checks, through fairseq-mh-generate (cli.py)
    "ConfigError, cli": (lambda t: [str(BIN / "fairseq-mh-generate"), _empty_data(t), "--task", "translation_mh",
                                    "--sampler", "mh", "--mh-epochs", "-1", "--path", t / "none.pt"],
                         "fairseq-mh-generate", "--mh-epochs must be an integer >= 1"),
    # the same through the stock fairseq-generate: the exception hook the plug-in installs
    "ConfigError, excepthook": (lambda t: [str(BIN / "fairseq-generate"), _empty_data(t), "--user-dir",
                                           REPO / "fairseq_mh", "--task", "translation_mh", "--sampler", "mh",
                                           "--mh-epochs", "-1", "--path", t / "none.pt"],
                                "fairseq-generate", "--mh-epochs must be an integer >= 1"),
    # a plain UserError of the plug-in (a data folder without dictionaries)
    "UserError, cli": (lambda t: [str(BIN / "fairseq-mh-generate"), _empty_data(t), "--task", "translation_mh",
                                  "--path", t / "none.pt"], "fairseq-mh-generate", "cannot infer the language pair"),
    "ExperimentError, runner": (lambda t: [sys.executable, "-m", "fairseq_mh.experiments.run",
                                           f"work_dir={t}"], "fairseq-mh-experiment", "nothing to run"),
    "UserError, wmt_eval": (lambda t: [sys.executable, REPO / "scripts" / "wmt_eval.py", "--pair", "de-en",
                                       "--out", t / "out"], "wmt_eval", "--model is required"),
    "UserError, demo": (lambda t: [sys.executable, "-m", "fairseq_mh.demo", "--model", t / "none",
                                   "--out", t / "out"], "fairseq_mh.demo", "checkpoint.pt is missing"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_error_class_ends_a_real_command_the_same_way(case, tmp_path):
    make, prog, needle = CASES[case]
    p = subprocess.run([str(a) for a in make(tmp_path)], env=ENV, capture_output=True, text=True, cwd=REPO)
    assert p.returncode == EXIT_USER_ERROR, (p.returncode, p.stderr[-3000:])
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    errors = [line for line in p.stderr.splitlines() if ": error:" in line]
    assert len(errors) == 1, p.stderr[-3000:]
    assert errors[0].startswith(f"{prog}: error: ") and needle in errors[0], errors[0]
    assert not (tmp_path / "out").exists()


def test_an_interactive_session_survives_a_user_error():
    """The hook reports the error but does not end an interactive interpreter."""
    code = "import fairseq_mh\nfrom fairseq_mh.errors import UserError\nraise UserError('bad value: fix it')\nprint('alive')\n"
    p = subprocess.run([sys.executable, "-i", "-q"], input=code, env=ENV, capture_output=True, text=True)
    assert "alive" in p.stdout and "error: bad value: fix it" in p.stderr and "Traceback" not in p.stderr
