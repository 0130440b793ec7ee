"""The experiment runner, a Hydra app:

    python -m fairseq_mh.experiments.run experiment=table1 [scale=paper] [decode.num_chains=5] ...
    python -m fairseq_mh.experiments.run sampler=mh_local            # one setting
    python -m fairseq_mh.experiments.run -m experiment=table1,table2 seed=1,2,3   # sweeps

For each experiment: prepare the data once (cache), run fairseq-mh-generate per run (and per
curve epoch) with --mh-trace, keep each call's output in ``runs/RUN/...`` (reused unless
``force=true``), then write NAME.csv, NAME.md, curves.csv, results.json and energy.png,
bleu.png, acceptance.png into ``${out_dir}/${name}/``.  Every setting is checked before the
first run; a mistake is reported in one line (exit status 2).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional

from omegaconf import DictConfig, OmegaConf

from ..errors import UserError, exit_on_user_error, report
from ..textio import atomic_folder, atomic_write, error_line, file_stamp, find_tool
from ..trace import TraceRecord, read_samples, read_trace
from . import hydra_compat, sweep
from .aggregate import (
    bleu,
    bleu_from_dump,
    detokenizer,
    parse_generate,
    summarize_trace,
    table_row,
    write_curves_csv,
    write_plots,
    write_tables,
)
from .data import Prepared, _env, prepare_data
from .spec import ExperimentError, Run, check_config, curve_mode

log = logging.getLogger("fairseq_mh.experiments")

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = Path(os.environ.get("FAIRSEQ_MH_CONFIGS", REPO / "configs"))  # a checkout's configs/
CONFIG_NAME = "runner"  # not "config": importing fairseq registers a structured config of that name
PROG = "fairseq-mh-experiment"

OmegaConf.register_new_resolver("fmh_repo", lambda: str(REPO), replace=True)

__all__ = ["run_experiment", "compose_config", "curve_epochs", "main", "CONFIG_DIR"]


# ------------------------------------------------------------------------------ one call
def _flags(options: Dict) -> List[str]:
    out = []
    for k, v in options.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            if v:
                out.append(flag)
        elif v is not None:
            out += [flag, str(v)]
    return out


def _command(cfg, data: Prepared, options: Dict, trace: str, dump: Optional[str]) -> List[str]:
    m, d, g = cfg.model, cfg.data, cfg.generate
    cmd = list(g.cmd)
    first = cmd[0] if "/" in cmd[0] else find_tool(cmd[0])
    cmd = [first, *cmd[1:], str(data.bin_dir), "--task", m.task, "--path", str(m.checkpoint),
           "--gen-subset", "test", "--source-lang", d.src_lang, "--target-lang", d.tgt_lang,
           "--batch-size", str(g.batch_size), "--cpu", "--seed", str(cfg.seed), "--num-workers", "0",
           "--mh-trace", trace]
    if dump:
        cmd += ["--mh-dump-samples", dump]
    if m.bpe:
        cmd += ["--post-process", m.bpe]
    if m.tokenizer:
        cmd += ["--tokenizer", m.tokenizer]
    return cmd + _flags(options) + [str(a) for a in g.extra_args]


def _sentences_traced(trace: Path, seen: set, offset: int) -> int:
    """Reads the trace lines appended since ``offset`` into ``seen`` (sentence ids); new offset."""
    try:
        with open(trace, "rb") as f:
            f.seek(offset)
            chunk = f.read()
    except FileNotFoundError:
        return offset
    end = chunk.rfind(b"\n") + 1  # a line still being written is read next time
    for line in chunk[:end].splitlines():
        try:
            seen.add(json.loads(line)["id"])
        except (ValueError, KeyError):
            pass
    return offset + end


def _run_with_progress(cmd: List[str], env: Dict, tmp: Path, name: str, n: int,
                       every_s: float = 60.0) -> subprocess.CompletedProcess:
    """Runs one fairseq-mh-generate call with its streams in ``tmp``, logging every ``every_s``
    seconds how many of the ``n`` sentences its --mh-trace already holds (long runs show progress)."""
    out_path, err_path = tmp / "stdout.txt", tmp / "stderr.txt"
    t0, seen, offset = time.perf_counter(), set(), 0
    with open(out_path, "w", encoding="utf-8") as out, open(err_path, "w", encoding="utf-8") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env)
        while True:
            try:
                code = proc.wait(timeout=every_s)
                break
            except subprocess.TimeoutExpired:
                offset = _sentences_traced(tmp / "trace.jsonl", seen, offset)
                log.info("  %s: %d/%d sentences decoded, %.1f min", name, len(seen), n,
                         (time.perf_counter() - t0) / 60)
            except BaseException:
                proc.kill()
                proc.wait()
                raise
    return subprocess.CompletedProcess(cmd, code, out_path.read_text(encoding="utf-8"),
                                       err_path.read_text(encoding="utf-8"))


def call_generate(cfg, data: Prepared, run: Run, options: Dict, folder: Path, dump: bool = False) -> dict:
    """One fairseq-mh-generate call; its outputs go to ``folder`` (trace.jsonl, stdout.txt,
    stderr.txt, done.json), written whole or not at all, and reused when the inputs match."""
    cmd = _command(cfg, data, options, "TRACE", "DUMP" if dump else None)
    key = hashlib.sha1(json.dumps({
        "cmd": cmd[1:], "tool": Path(cmd[0]).name, "data": data.key, "checkpoint": file_stamp(cfg.model.checkpoint),
    }, sort_keys=True).encode()).hexdigest()
    done_path = folder / "done.json"
    if done_path.is_file() and not cfg.force:
        done = json.loads(done_path.read_text())
        if done.get("key") == key:
            done["reused"] = True
            return done
    with atomic_folder(folder, replace=True) as tmp:
        cmd = _command(cfg, data, options, str(tmp / "trace.jsonl"), str(tmp / "samples.jsonl") if dump else None)
        t0 = time.perf_counter()
        p = _run_with_progress(cmd, _env(cfg), tmp, run.name, len(data.references))
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            _generate_failed(run, p, dump, folder.parent / f"{folder.name}.failed.log")
        out = parse_generate(p.stdout, p.stderr)
        n = len(data.references)
        missing = [i for i in range(n) if i not in out["D"]]
        if missing:
            log_path = folder.parent / f"{folder.name}.failed.log"
            atomic_write(log_path, p.stdout + p.stderr)
            raise ExperimentError(f"run '{run.name}': no hypothesis for {len(missing)} of {n} sentences "
                                  f"(output in {log_path})")
        done = {
            "key": key,
            "cmd": cmd,
            "wall_s": wall,
            "decode_s": out["decode_s"],
            "hyps": [out["D"][i] for i in range(n)],
            "p_len": [out["P_len"].get(i) for i in range(n)],
            "finished": datetime.now().isoformat(timespec="seconds"),
        }
        atomic_write(tmp / "done.json", json.dumps(done, ensure_ascii=False, indent=1))
    done["reused"] = False
    return done


def _generate_failed(run: Run, p: subprocess.CompletedProcess, dump: bool, log_path: Path) -> None:
    """Raises the one-line error of a failed call; its stderr is kept in ``log_path``."""
    if dump and "--mh-dump-samples" in p.stderr and "unrecognized" in p.stderr:
        raise ExperimentError(
            f"run '{run.name}': this fairseq-mh-generate has no --mh-dump-samples: use curves.bleu=rerun or off"
        )
    atomic_write(log_path, p.stderr)
    raise ExperimentError(f"run '{run.name}': fairseq-mh-generate exited {p.returncode}: {error_line(p.stderr)} "
                          f"(full output in {log_path})")


# ------------------------------------------------------------------------------ one run
def curve_epochs(post_epochs: int, points: Optional[int]) -> List[int]:
    """Post-burn-in epochs of a curve: all, or ``points`` evenly spaced (first and last in)."""
    if post_epochs <= 0:
        return []
    if points is None or points >= post_epochs:
        return list(range(post_epochs))
    if points == 1:
        return [post_epochs - 1]
    return sorted({round(k * (post_epochs - 1) / (points - 1)) for k in range(points)})


def _retrace_diff(main_trace: List[TraceRecord], rerun_trace: List[TraceRecord], epoch: int) -> float:
    """Largest energy difference between chain 0 of the main run and the rerun at ``epoch``."""
    ref = {(r.id, r.length_rank): r for r in main_trace if r.chain == 0 and r.epoch == epoch}
    worst = 0.0
    for r in rerun_trace:
        if r.epoch != epoch:
            continue
        m = ref.get((r.id, r.length_rank))
        if m is None:
            return float("inf")
        worst = max(worst, abs(m.energy_local - r.energy_local), abs(m.energy_raw - r.energy_raw))
    return worst


def run_one(cfg, data: Prepared, run: Run, folder: Path, i: int, n: int) -> dict:
    mode = curve_mode(cfg)
    o = run.options
    what = (f"{o.get('sampler')}, {o.get('mh_epochs')} epochs, {o.get('num_chains')} chains"
            if run.is_chain else f"{o.get('sampler')}, {o.get('decoding_iterations')} iterations")
    log.info("[%d/%d] %s (%s) on %d sentences", i, n, run.name, what, len(data.references))
    main = call_generate(cfg, data, run, o, folder / "main", dump=(mode == "dump" and run.is_chain))
    trace = read_trace(folder / "main" / "trace.jsonl")
    refs = data.references
    ids = list(range(len(refs)))
    offset = cfg.model.fixed_symbols - 1  # printed positional scores -> candidate length
    out_len = {i: pl + offset for i, pl in enumerate(main["p_len"]) if pl is not None}
    s = summarize_trace(trace, run, cfg.model.fixed_symbols, ids, out_len)
    result = {"run": run.name, "setting": run.setting, "label": run.label, "grid": run.grid, "options": o,
              "BLEU": bleu(main["hyps"], refs), "wall_s": main["wall_s"], "decode_s": main["decode_s"],
              "reused": main["reused"], **s}
    bleu_curve: Dict[int, dict] = {}
    if run.is_chain and mode != "off":
        post = o["mh_epochs"] - o["burn_in"]
        wanted = curve_epochs(post, cfg.curves.points)
        if mode == "dump":
            dump = read_samples(folder / "main" / "samples.jsonl")
            full = bleu_from_dump(dump, trace, run, cfg.model.fixed_symbols, ids, refs,
                                  detokenizer(cfg.model, cfg.data.tgt_lang))
            bleu_curve = {e: full[e] for e in wanted if e in full}
        elif run.anneals_blocks:
            log.warning("%s: no BLEU curve from reruns: the annealed block size depends on --mh-epochs "
                        "(use curves.bleu=dump)", run.name)
        else:
            for k, e in enumerate(wanted, 1):
                opts = {**o, "num_chains": 1, "mh_epochs": o["burn_in"] + e + 1, "burn_in": o["burn_in"] + e,
                        "mh_select": "last"}
                c = call_generate(cfg, data, run, opts, folder / f"epoch{e:03d}")
                diff = _retrace_diff(trace, read_trace(folder / f"epoch{e:03d}" / "trace.jsonl"), o["burn_in"] + e)
                b = bleu(c["hyps"], refs)
                bleu_curve[e] = {"bleu": b, "chains": 1, "retrace_max_abs_diff": diff, "wall_s": c["wall_s"]}
                if diff > 1e-3:
                    log.warning("%s: the rerun for epoch %d does not retrace chain 0 (energies differ by %.3g); "
                                "its BLEU is of a different chain", run.name, e, diff)
                log.info("[%d/%d] %s: BLEU at post-burn-in epoch %d (%d/%d): %.2f", i, n, run.name, e, k,
                         len(wanted), b)
    result["bleu_curve"] = bleu_curve
    if bleu_curve:
        vals = [v["bleu"] for v in bleu_curve.values()]
        result.update(BLEU_epoch_avg=sum(vals) / len(vals), BLEU_epoch_best=max(vals),
                      BLEU_curve_chains=max(v["chains"] for v in bleu_curve.values()))
    atomic_write(folder / "result.json", json.dumps(result, indent=1, ensure_ascii=False, default=str))
    log.info("[%d/%d] %s: %s in %.1f s: BLEU %.2f, E_norm/sent %.2f%s", i, n, run.name,
             "reused" if main["reused"] else "done", main["wall_s"], result["BLEU"], s["E_norm"] / len(refs),
             "" if s["acceptance"] is None else f", acceptance {s['acceptance']:.3f}, novel {s['novel']:.3f}")
    return result


# ------------------------------------------------------------------------------ experiment
def results_dir(cfg) -> Path:
    """${out_dir}/${name}, or ${out_dir}/${name}--${tag} (multirun jobs: tag = their overrides)."""
    tag = str(cfg.tag or "").replace("/", "_").replace(" ", "")
    return Path(cfg.out_dir) / (f"{cfg.name}--{tag}" if tag else cfg.name)


def run_experiment(cfg: DictConfig) -> Path:
    """Runs every run of the config and writes the experiment's tables and plots."""
    runs = check_config(cfg)
    out = results_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(cfg)
    if cfg.dry_run:
        return dry_run(cfg, data, runs, out)
    log.info("%s: %d runs, %d sentences of %s, results in %s", cfg.name, len(runs), len(data.references),
             cfg.data.name, out)
    t0 = time.perf_counter()
    results = [run_one(cfg, data, r, out / "runs" / r.name, k, len(runs)) for k, r in enumerate(runs, 1)]
    rows = [table_row(r) for r in results]
    d = cfg.data
    header = "\n".join([
        f"# {cfg.name}: {cfg.description or ''}".rstrip(": "),
        "",
        f"Model `{cfg.model.name}`; data `{d.name}`: {len(data.references)} sentences"
        + (f" with sources of at most {d.max_source_len} model tokens" if d.max_source_len else "")
        + f"; seed {cfg.seed}; curves.bleu={curve_mode(cfg)}; written {datetime.now().isoformat(timespec='seconds')}.",
    ])
    grid_keys = list(runs[0].grid) if runs else []
    write_tables(out, out.name, rows, grid_keys, header)
    write_curves_csv(out, results)
    write_plots(out, results, cfg.name)
    atomic_write(out / "results.json", json.dumps({"config": OmegaConf.to_container(cfg, resolve=True),
                                                   "runs": results}, indent=1, ensure_ascii=False, default=str))
    log.info("%s: finished in %.1f s: %s", cfg.name, time.perf_counter() - t0, out / f"{cfg.name}.md")
    return out


def dry_run(cfg, data: Prepared, runs: List[Run], out: Path) -> Path:
    """Writes estimate.md: each run's decoder rows and hours at estimate.rows_per_s."""
    from .estimate import rows_for_run

    tgt = (data.folder / f"test.{cfg.data.tgt_lang}").read_text(encoding="utf-8").splitlines()
    lengths = [len(l.split()) for l in tgt]
    rate = float(cfg.estimate.rows_per_s)
    lines = [f"# {cfg.name}: cost estimate", "",
             f"{len(lengths)} sentences (mean reference length {sum(lengths) / len(lengths):.1f} tokens), "
             f"{rate:g} rows/s, moved fraction {cfg.estimate.moved}; curves.bleu={curve_mode(cfg)}.", "",
             "| run | rows (main) | rows (curves) | hours |", "|---|---|---|---|"]
    total = 0.0
    for r in runs:
        e = rows_for_run(r, lengths, float(cfg.estimate.moved), curve_mode(cfg),
                         lambda post: curve_epochs(post, cfg.curves.points))
        h = (e["main"] + e["curves"]) / rate / 3600
        total += h
        lines.append(f"| {r.name} | {e['main']:,.0f} | {e['curves']:,.0f} | {h:.2f} |")
        log.info("%s: about %.0f rows (+%.0f for curves): %.2f h", r.name, e["main"], e["curves"], h)
    lines += ["", f"Total: about **{total:.1f} hours** of decoding (plus ~10 s of start-up per call)."]
    atomic_write(out / "estimate.md", "\n".join(lines) + "\n")
    log.info("%s: estimated %.1f hours in all (%s)", cfg.name, total, out / "estimate.md")
    return out


# ------------------------------------------------------------------------------ entry points
def one_line(e: BaseException) -> str:
    """An exception's message (Hydra's and OmegaConf's are several lines) as one line."""
    msg = str(e) or (str(e.__cause__) if e.__cause__ else type(e).__name__)
    if e.__cause__ is not None and str(e.__cause__) and str(e.__cause__) not in msg:
        msg += "\n" + str(e.__cause__)
    msg = msg.split("Config search path:")[0]
    keep, options = [], False
    for l in msg.splitlines():
        l = l.strip()
        if not l or l.startswith(("Set the environment variable HYDRA_FULL_ERROR", "full_key:", "object_type=",
                                  "reference_type=")):
            continue
        if options and keep[-1].endswith(":"):
            keep[-1] += " " + l
        elif options:
            keep[-1] += ", " + l
        else:
            keep.append(l)
        options = options or l.startswith("Available options")
    return " ".join(keep)


def config_errors() -> tuple:
    """Hydra's and OmegaConf's config errors: a user's mistakes too (several lines, made one)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return OmegaConfBaseException, HydraException


def user_errors():
    """A user's mistakes end the runner with one line: its own errors and the plug-in's
    (UserError), and Hydra's and OmegaConf's config errors."""
    return exit_on_user_error(PROG, also=config_errors(), message=one_line)


def compose_config(overrides: List[str]) -> DictConfig:
    """The composed config for ``overrides`` (Hydra's compose API; used by checks and tests)."""
    from hydra import compose, initialize_config_dir

    with hydra_compat.version_base_restored():
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name=CONFIG_NAME, overrides=list(overrides))


def job_overrides(args: List[str], multirun: bool) -> List[List[str]]:
    """The override lists of the jobs a command line starts: one, or with -m the product of the
    swept values in the order Hydra's basic sweeper runs them (a later override of the same key
    wins, as there)."""
    if not multirun:
        return [args]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    choices: Dict[str, List[str]] = {}
    for o in OverridesParser.create().parse_overrides(args):
        key = o.get_key_element()
        if not o.is_sweep_override():
            choices[key] = [f"{key}={o.get_value_element_as_str()}"]
        elif o.is_discrete_sweep():
            choices[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            raise ExperimentError(f"'{o.input_line}': only lists of values can be swept (a,b,c or choice(...)), "
                                  f"not {o.value_type.name.lower()} sweeps")
    return [list(job) for job in itertools.product(*choices.values())]


def precheck(argv: List[str]) -> None:
    """Composes and checks every job of the command line before Hydra starts the first one."""
    multirun = any(a in ("-m", "--multirun") for a in argv)
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv):
        return  # --help, --cfg, --config-dir, ...: Hydra's business
    args = [a for a in argv if not a.startswith("-") and not a.startswith(("hydra.", "hydra/", "+hydra", "~hydra"))]
    for job in job_overrides(args, multirun):
        check_config(compose_config(job))


def _app(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        with user_errors():
            run_experiment(cfg)
        return
    _sweep_job(cfg, hc)


def _sweep_job(cfg: DictConfig, hc) -> None:
    """One job of a sweep (here or in a submitit job): its own results folder, named by its
    swept values, and a record the sweep's end gathers; an error is reported in one line here
    (the job's log) and there, and does not stop the other jobs."""
    overrides = list(hc.overrides.task)
    tag = cfg.tag or sweep.job_tag(list(cfg.swept), overrides)
    OmegaConf.update(cfg, "tag", tag, force_add=True)
    folder = Path(hc.runtime.output_dir)
    try:
        out = run_experiment(cfg)
    except (UserError, *config_errors()) as e:
        report(one_line(e), PROG)
        sweep.record_job(folder, overrides, tag, error=one_line(e))
        return
    sweep.record_job(folder, overrides, tag, results=out)


def main(argv: Optional[List[str]] = None) -> None:
    import hydra

    argv = sys.argv[1:] if argv is None else argv
    with user_errors():
        precheck(argv)
        if any(a in ("-m", "--multirun") for a in argv) and not any(a.startswith("swept=") for a in argv):
            argv = [*argv, "swept=[" + ",".join(f"'{k}'" for k in sweep.swept_keys(argv)) + "]"]
    sys.argv = [sys.argv[0], *argv]
    from fairseq_mh.experiments import run as importable  # not __main__: submitit jobs unpickle it by name

    hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=CONFIG_NAME)(importable._app)()


if __name__ == "__main__":
    hydra_compat.forget_structured_configs()  # fairseq's, stored when the plug-in was imported
    main()
