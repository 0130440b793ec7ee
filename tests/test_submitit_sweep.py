"""A Hydra multirun of the experiment runner through hydra-submitit-launcher's local launcher
(configs/hydra/launcher/submitit_local.yaml): each point is a submitit job (a real process),
writes its own results folder, and the sweep's tables gather the runs of both."""

from __future__ import annotations

import json

import pytest

from test_experiments import num, read_csv, run_cli, tiny_args


def test_two_point_multirun_through_submitit_local_writes_both_runs_and_the_aggregate(tiny_cmlm, tmp_path):
    work = tmp_path / "work"
    p = run_cli("-m", "sampler=mh_local", "scale=smoke", "seed=1,2", "hydra/launcher=submitit_local",
                *tiny_args(tiny_cmlm, work))
    assert "Submitit 'local' sweep output dir" in p.stdout + p.stderr  # the plug-in's launcher ran the sweep
    rows = {}
    for seed in (1, 2):
        (out,) = (work / "results").glob(f"*--seed={seed}")
        (row,) = read_csv(out / f"{out.name}.csv")
        assert json.loads((out / "results.json").read_text())["config"]["seed"] == seed
        rows[f"seed={seed}"] = row
    assert rows["seed=1"]["E_norm_x1e-3"] != rows["seed=2"]["E_norm_x1e-3"]  # each job decoded with its own seed
    (sweep,) = (work / "hydra" / "multirun").iterdir()
    logs = sorted(sweep.glob(".submitit/*/*_log.out"))
    assert len(logs) == 2  # two submitit jobs, each its own process and log
    jobs = [json.loads(f.read_text()) for f in sorted(sweep.glob("*/fairseq_mh_job.json"))]
    assert [j["tag"] for j in jobs] == ["seed=1", "seed=2"] and not any(j["error"] for j in jobs)
    table = read_csv(sweep / "sweep.csv")
    assert [r["job"] for r in table] == ["seed=1", "seed=2"]
    for r in table:
        for col in ("E_norm_x1e-3", "BLEU", "acceptance", "model_rows"):
            assert num(r[col]) == pytest.approx(num(rows[r["job"]][col]))
    md = [line for line in (sweep / "sweep.md").read_text().splitlines() if line.startswith("|")]
    assert len(md) == 2 + 2 and "seed=1" in md[2] and "seed=2" in md[3]
