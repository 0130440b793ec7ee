"""Shard commands as submitit jobs: one array on Slurm where it is available, submitit's
local executor (one process per shard on this machine) otherwise.

Why: a paper-scale decode needs more than one GPU, and the fairseq ecosystem reaches Slurm
through submitit; this module is the one place that submits, waits and reads the jobs back,
so ``scripts/wmt_eval.py`` only says which shards to run.  Each job runs one command (a real
process, its own log); a failed job is reported with the path of its log and the error line
the log ends with.  Slurm takes the array parallelism itself; locally at most that many
shards run at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from .textio import error_line, require_module

__all__ = ["ClusterOptions", "ShardFailure", "run_commands"]


@dataclass(frozen=True)
class ClusterOptions:
    folder: Path  # submitit's job folder: pickles and one log pair per job
    partition: Optional[str] = None
    gpus_per_job: int = 0
    time_limit_min: int = 240
    array_parallelism: int = 64
    job_name: str = "fairseq_mh"
    cluster: Optional[str] = None  # None: Slurm when srun is on PATH, else local


@dataclass(frozen=True)
class ShardFailure:
    shard: int
    log: Path
    line: str


def _executor(opts: ClusterOptions):
    import submitit

    ex = submitit.AutoExecutor(folder=str(opts.folder), cluster=opts.cluster)
    ex.update_parameters(timeout_min=opts.time_limit_min, gpus_per_node=opts.gpus_per_job, tasks_per_node=1,
                         nodes=1, name=opts.job_name, slurm_array_parallelism=opts.array_parallelism)
    if opts.partition:
        ex.update_parameters(slurm_partition=opts.partition)
    return ex


def _failure(shard: int, job) -> Optional[ShardFailure]:
    """None when the job succeeded; else its log and last error line."""
    err = job.exception()
    if err is None:
        return None
    log = Path(job.paths.stderr)
    text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else str(err)
    return ShardFailure(shard, log, error_line(text))


def _say(states: Dict[str, int], total: int, where: str) -> str:
    return (f"shards on {where}: {states['done']} done, {states['running']} running, {states['failed']} failed, "
            f"{states['waiting']} waiting (of {total})")


def run_commands(commands: Dict[int, List[str]], opts: ClusterOptions, log: Callable[[str], None],
                 poll_s: float = 1.0) -> List[ShardFailure]:
    """Runs each shard's command as a job and waits for all; returns the failed ones."""
    require_module("submitit", "submitit")
    from submitit.helpers import CommandFunction

    ex = _executor(opts)
    local = ex.cluster != "slurm"
    limit = opts.array_parallelism if local else len(commands)  # Slurm throttles the array itself
    waiting, running, failures, done = sorted(commands), {}, [], 0
    last, shown_at = "", 0.0
    try:
        while waiting or running:
            free = max(0, limit - len(running))
            if free and waiting:
                batch, waiting = waiting[:free], waiting[free:]
                jobs = ex.submit_array([CommandFunction(commands[i], verbose=True) for i in batch])
                running.update(zip(batch, jobs))
            for i, job in list(running.items()):
                if job.done():
                    del running[i]
                    f = _failure(i, job)
                    failures += [f] if f else []
                    done += f is None
            line = _say({"done": done, "running": len(running), "failed": len(failures), "waiting": len(waiting)},
                        len(commands), ex.cluster)
            if line != last or time.monotonic() - shown_at > 60:
                log(line)
                last, shown_at = line, time.monotonic()
            if waiting or running:
                time.sleep(poll_s)
    except BaseException:
        for job in running.values():  # Ctrl-C or an error here: leave no job behind
            job.cancel(check=False)
        raise
    return sorted(failures, key=lambda f: f.shard)

