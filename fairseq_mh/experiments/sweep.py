"""A multirun sweep's jobs and its aggregate tables, whatever launcher ran the jobs.

Why: with ``hydra/launcher=submitit_slurm`` (or ``submitit_local``) the jobs run in other
processes, on other machines, so neither the command line (``sys.argv``) nor the jobs'
return values reach the process that started the sweep.  So:

* the runner passes the swept keys to every job in the config (``swept``), and a job names
  its results folder ``NAME--KEY=VALUE,...`` from them and its own overrides;
* each job writes ``fairseq_mh_job.json`` into its Hydra job folder: its results folder, or
  its one-line error (a job's failure never stops the other jobs);
* ``SweepTables``, a Hydra callback (``configs/runner.yaml``), runs in the starting process
  when the sweep ends: it writes ``sweep.csv`` and ``sweep.md`` into the sweep folder, one
  row per run of every finished job, the job's swept values first, and reports each failed
  job in one line (exit status 2).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from pathlib import Path
from typing import List, Optional, Sequence

from hydra.experimental.callback import Callback

from ..errors import EXIT_USER_ERROR, report
from ..textio import atomic_write
from .aggregate import table_row, write_tables

__all__ = ["JOB_FILE", "swept_keys", "job_tag", "record_job", "read_jobs", "SweepTables"]

log = logging.getLogger("fairseq_mh.experiments")
JOB_FILE = "fairseq_mh_job.json"


def swept_keys(args: Sequence[str]) -> List[str]:
    """The keys a multirun command line sweeps (``seed=1,2``), not the experiment: its name
    tells the folders apart already."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])
    return sorted({o.key_or_group for o in parsed if o.is_sweep_override()} - {"experiment"})


def job_tag(swept: Sequence[str], job_overrides: Sequence[str]) -> str:
    """The job's values of the swept keys, e.g. 'seed=2' (its results folder's suffix)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    wanted = set(swept)
    return ",".join(f"{o.key_or_group}={o.get_value_element_as_str()}"
                    for o in OverridesParser.create().parse_overrides(list(job_overrides)) if o.key_or_group in wanted)


def record_job(folder: Path, overrides: Sequence[str], tag: str, results: Optional[Path] = None,
               error: Optional[str] = None) -> None:
    """What the sweep's end reads of this job."""
    atomic_write(folder / JOB_FILE, json.dumps({"overrides": list(overrides), "tag": tag, "error": error,
                                                "results": str(results) if results else None}, indent=1) + "\n")


def read_jobs(sweep_dir: Path) -> List[dict]:
    """Every job's record, in job order (folders are ``NUM_NAME``)."""
    def num(p: Path) -> int:
        m = re.match(r"(\d+)", p.parent.name)
        return int(m.group(1)) if m else 1 << 30

    return [{**json.loads(p.read_text(encoding="utf-8")), "folder": str(p.parent)}
            for p in sorted(sweep_dir.glob(f"*/{JOB_FILE}"), key=lambda p: (num(p), p.parent.name))]


def write_sweep_tables(sweep_dir: Path, jobs: List[dict]) -> Optional[Path]:
    """sweep.csv and sweep.md: one row per run of every finished job (None when no job has
    results: a dry run's jobs write estimates only)."""
    rows, grid_keys = [], ["job"]
    for job in jobs:
        if job["error"] or not (Path(job["results"]) / "results.json").is_file():
            continue
        res = json.loads((Path(job["results"]) / "results.json").read_text(encoding="utf-8"))
        for r in res["runs"]:
            grid_keys += [k for k in r["grid"] if k not in grid_keys]
            rows.append({"job": job["tag"] or Path(job["results"]).name, **table_row(r)})
    failed = sum(bool(j["error"]) for j in jobs)
    header = (f"# sweep of {len(jobs)} jobs ({failed} failed), {len(rows)} runs\n\nJobs' results folders: "
              + ", ".join(f"`{j['results']}`" for j in jobs if not j["error"])
              + f".  Written {datetime.now().isoformat(timespec='seconds')}.")
    if not rows:
        return None
    write_tables(sweep_dir, "sweep", rows, grid_keys, header)
    return sweep_dir / "sweep.md"


class SweepTables(Callback):
    """Hydra callback: the sweep's tables and failures, in the process that started it."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        jobs = read_jobs(sweep_dir)
        if not jobs:
            return
        path = write_sweep_tables(sweep_dir, jobs)
        if path is not None:
            log.info("sweep: %d jobs, tables of all their runs in %s", len(jobs), path)
        failed = [j for j in jobs if j["error"]]
        for j in failed:
            report(f"sweep job {Path(j['folder']).name} ({' '.join(j['overrides'])}) failed: {j['error']}",
                   "fairseq-mh-experiment")
        if failed:
            raise SystemExit(EXIT_USER_ERROR)
