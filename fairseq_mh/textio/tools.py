"""Finding the external commands and Python packages a pipeline needs, running a command, and
turning its failure into one line.

A failing tool is reported as a ``UserError`` whose message is the tool's own error line
(fairseq and argparse write ``prog: error: ...``; otherwise its last non-empty output line),
so the user sees the cause without opening the log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import IO, Dict, List, Optional

from ..core.errors import UserError

__all__ = ["find_tool", "require_module", "error_line", "run_tool"]


def find_tool(name: str) -> str:
    """A console command: in $FAIRSEQ_MH_BIN when that is set, else beside this Python (the
    virtual environment), else on PATH."""
    where = os.environ.get("FAIRSEQ_MH_BIN")
    folder = Path(where) if where else Path(sys.executable).parent
    if (folder / name).is_file() and os.access(folder / name, os.X_OK):
        return str(folder / name)
    found = None if where else shutil.which(name)
    if not found:
        place = f"$FAIRSEQ_MH_BIN ({where})" if where else f"{folder} or PATH"
        raise UserError(f"{name} not found in {place}: install the plug-in (bash scripts/setup.sh) "
                        f"or set FAIRSEQ_MH_BIN to the folder holding it")
    return found


def require_module(module: str, package: str) -> None:
    """Fails with the pip command when the Python package is not installed."""
    try:
        __import__(module)
    except ImportError:
        raise UserError(f"the Python package '{package}' is missing: pip install {package}") from None


def error_line(output: str) -> str:
    """The line of a failed command's output that says why: its last ``: error:`` line, else
    its last non-empty line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if ": error:" in line]
    return errors[-1] if errors else (lines[-1] if lines else "(no output)")


def run_tool(cmd: List[str], log_path: Path, name: str, stdout: Optional[IO] = None,
             env: Optional[Dict[str, str]] = None) -> None:
    """Runs ``cmd`` with its stderr (and its stdout, unless ``stdout`` is given) in
    ``log_path``; a non-zero exit is a UserError naming the tool, its error line and the log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        p = subprocess.run(cmd, stdout=stdout or log, stderr=log, text=True, env=env)
    if p.returncode != 0:
        last = error_line(log_path.read_text(encoding="utf-8", errors="replace"))
        raise UserError(f"{name} failed (exit {p.returncode}): {last} [log: {log_path}]")
