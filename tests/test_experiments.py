"""The experiment runner (fairseq_mh/experiments, configs/): the shipped configs expand to the
paper's settings, a tiny experiment runs end to end with sane and independently recomputed
numbers, results are reused, and mistakes are reported in one line."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import cli_helpers
import pytest

from fairseq_mh.experiments import run as runner
from fairseq_mh.experiments.spec import check_config

REPO = Path(__file__).resolve().parents[1]
# beside cli_helpers.ENV (one thread, no warnings): this checkout first, Hydra's one-line errors, and
# fairseq's default log level
ENV = {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), "HYDRA_FULL_ERROR": "0",
       "LOGLEVEL": None}
PNG = b"\x89PNG\r\n\x1a\n"
TEMPS = [2.0, 1.5, 1.0, 0.8, 0.5]


def run_cli(*args, check=True):
    p = cli_helpers.run([sys.executable, "-m", "fairseq_mh.experiments.run", *args], check=False, cwd=REPO,
                        env=ENV)
    if check and p.returncode != 0:
        raise AssertionError(f"runner failed ({p.returncode}):\n{p.stderr[-4000:]}")
    return p


def tiny_args(model, work, *extra):
    root = Path(model["checkpoint"]).parents[1]
    return ["model=tiny", "data=tiny", f"model.dir={root}", f"data.dir={model['raw']}", f"work_dir={work}",
            "threads=1", "scale.sentences=5", *extra]


def one_error_line(stderr: str) -> str:
    lines = [l for l in stderr.splitlines() if ": error:" in l]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def num(s):
    return None if s == "" else float(s)


# ------------------------------------------------------------------------------ configs
def expand(*overrides):
    return check_config(runner.compose_config(list(overrides)), check_files=False)


def settings(runs, key):
    return {(r.label, r.options.get(key)) for r in runs}


def test_table1_is_five_temperatures_times_norm_and_deg():
    """Table 1: MH with E_norm and degenerate Gibbs at each of the paper's 5 temperatures."""
    runs = expand("experiment=table1")
    assert len(runs) == 10
    assert settings(runs, "proposal_temperature") == {(l, t) for l in ("norm", "deg") for t in TEMPS}
    for r in runs:
        assert (r.options["sampler"], r.options["energy"]) == (("mh", "local") if r.label == "norm" else ("gibbs", "local"))
        assert r.options["proposal_top_p"] == 1.0


def test_table2_is_five_nuclei_times_norm_and_deg():
    runs = expand("experiment=table2")
    assert len(runs) == 10
    assert settings(runs, "proposal_top_p") == {(l, p) for l in ("norm", "deg") for p in (1.0, 0.99, 0.95, 0.90, 0.80)}
    assert {r.options["proposal_temperature"] for r in runs} == {1.0}


def test_table3_is_block_samplers_with_annealed_blocks():
    """Table 3: block Gibbs, block MH raw and norm; blocks shrink over epochs (appendix D)."""
    runs = expand("experiment=table3")
    got = {(r.options["sampler"], r.options.get("energy")) for r in runs}
    assert got == {("block-gibbs", "local"), ("block-mh", "raw"), ("block-mh", "local")}
    for r in runs:
        assert r.options["block_size"] > 1 and not r.options.get("no_block_anneal", False)
        assert r.options["proposal_temperature"] == 1.0 and r.options["proposal_top_p"] == 1.0


def test_table4_is_three_anneal_rates_times_raw_and_local():
    runs = expand("experiment=table4")
    assert len(runs) == 6
    assert {(r.options["energy"], r.options["anneal_rate"]) for r in runs} == {
        (e, a) for e in ("raw", "local") for a in (0.02, 0.04, 0.06)}
    assert all(r.options["sampler"] == "mh" and r.options["target_temperature"] == 1.0 for r in runs)


def test_table5_has_appendix_f_settings_on_the_full_test_set():
    """Table 5: warm start (greedy fill = mask-predict, 1 iteration), degenerate Gibbs at 0.8,
    mask-predict beam 1 / 10 iterations, annealed MH local and raw with proposal temperature 0.8
    and forced acceptance for 2 epochs; no source-length filter."""
    cfg = runner.compose_config(["experiment=table5"])
    assert cfg.data.max_source_len is None
    runs = {r.setting: r.options for r in check_config(cfg, check_files=False)}
    assert runs["warm_start"]["sampler"] == "mask-predict" and runs["warm_start"]["decoding_iterations"] == 1
    assert runs["warm_start"]["length_beam"] == runs["local"]["length_beam"]  # the chains' own start
    assert runs["deg"]["sampler"] == "gibbs" and runs["deg"]["proposal_temperature"] == 0.8
    mp = runs["mask_predict"]
    assert (mp["sampler"], mp["length_beam"], mp["decoding_iterations"]) == ("mask-predict", 1, 10)
    for k, energy in (("local", "local"), ("raw", "raw")):
        o = runs[k]
        assert (o["sampler"], o["energy"], o["proposal_temperature"], o["force_accept_epochs"]) == ("mh", energy, 0.8, 2)
        assert o["anneal_rate"] > 0


def test_figures_have_their_samplers_and_bleu_curves():
    f1 = runner.compose_config(["experiment=figure1"])
    assert {(r.options["sampler"], r.options.get("energy")) for r in check_config(f1, check_files=False)} == {
        ("gibbs", "local"), ("mh", "raw"), ("mh", "local")}
    f2 = runner.compose_config(["experiment=figure2"])
    r2 = check_config(f2, check_files=False)
    assert {r.options["energy"] for r in r2} == {"raw", "local"} and all(r.options["anneal_rate"] > 0 for r in r2)
    assert f1.curves.bleu == f2.curves.bleu == "rerun" and f1.curves.points is None


@pytest.mark.parametrize("preset", sorted(p.stem for p in (REPO / "configs" / "sampler").glob("*.yaml")))
def test_every_sampler_preset_passes_the_plugins_checks(preset):
    """A preset alone is one run whose options the plug-in accepts."""
    (r,) = expand(f"sampler={preset}")
    assert r.options["sampler"] in ("mask-predict", "gibbs", "block-gibbs", "mh", "block-mh")


def test_scales_and_grid_overrides_reach_the_options():
    (p,) = {(r.options["mh_epochs"], r.options["burn_in"], r.options["num_chains"])
            for r in expand("experiment=figure1", "scale=paper")}
    assert p == (33, 7, 5)  # the paper's burn-in 7 + 26 epochs, 5 chains
    runs = expand("experiment=table1", "grid.proposal_temperature=[0.5]", "decode.num_chains=4")
    assert len(runs) == 2 and all(r.options["num_chains"] == 4 for r in runs)


def test_real_model_and_data_paths_exist(shared):
    """The default model and data configs point at ../shared (files checked)."""
    cfg = runner.compose_config(["experiment=table1", f"shared_dir={shared}"])
    check_config(cfg, check_files=True)
    assert cfg.model.bpe == "sentencepiece" and cfg.data.max_source_len == 20


def test_curve_epochs_are_evenly_spaced_with_first_and_last():
    assert runner.curve_epochs(26, 3) == [0, 12, 25]
    assert runner.curve_epochs(5, None) == [0, 1, 2, 3, 4]
    assert runner.curve_epochs(5, 9) == [0, 1, 2, 3, 4]
    assert runner.curve_epochs(10, 1) == [9]


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("args, needle", [
    (["sampler=mh_local", "decode.proposal_temperature=-1"], "--proposal-temperature must be a finite number > 0"),
    (["sampler=mh_local", "sampler.proposal_temp=2"], "Could not override 'sampler.proposal_temp'"),
    (["sampler=mh_local", "+sampler.proposal_temp=2"], "unknown decoding option 'proposal_temp'"),
    (["sampler=mh_local", "sampler.energy=global"], "energy must be one of raw, local"),
    (["sampler=mh_local", "decode.burn_in=12"], "--burn-in must be smaller than --mh-epochs"),
    (["experiment=table9"], "experiment/table9"),
    (["experiment=table1", "sampler=mh_raw"], "not both"),
    ([], "nothing to run"),
    (["sampler=mh_local", "curves.bleu=sometimes"], "curves.bleu must be one of off, rerun, dump"),
    (["sampler=mh_local", "model=tiny", "data=tiny"], "Missing mandatory value: model.dir"),
    (["sampler=mh_local", "model.checkpoint=/nonexistent/ckpt.pt"], "model.checkpoint: file '/nonexistent/ckpt.pt'"),
    (["-m", "sampler=mh_local", "decode.proposal_top_p=0.5,1.5"], "--proposal-top-p must be in (0, 1]"),
])
def test_bad_values_give_one_line_before_anything_runs(args, needle, capsys):
    """Every job of a command line is composed and checked first (a sweep's bad value too)."""
    with pytest.raises(SystemExit) as e:
        runner.main(args)
    assert e.value.code == 2
    line = one_error_line(capsys.readouterr().err)
    assert needle in line and line.startswith("fairseq-mh-experiment: error:")


def test_bad_value_from_the_command_line_exits_2_without_traceback(tmp_path):
    p = run_cli("sampler=mh_local", "decode.proposal_top_p=0", f"work_dir={tmp_path}", check=False)
    assert p.returncode == 2
    assert "--proposal-top-p must be in (0, 1]" in one_error_line(p.stderr)
    assert not (tmp_path / "results").exists()


# ------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def smoke(tiny_cmlm, tmp_path_factory):
    """experiment=smoke (mask-predict + MH E_norm, 3 epochs, burn-in 1, 2 chains, BLEU of the
    last epoch from a rerun) on 5 sentences of the tiny model."""
    work = tmp_path_factory.mktemp("exp")
    p = run_cli("experiment=smoke", "curves.points=1", *tiny_args(tiny_cmlm, work))
    return {"work": work, "out": work / "results" / "smoke", "stderr": p.stderr, "model": tiny_cmlm}


def test_tables_have_the_papers_columns_and_one_row_per_setting(smoke):
    out = smoke["out"]
    rows = read_csv(out / "smoke.csv")
    assert [r["run"] for r in rows] == ["mask_predict", "norm"]
    for col in ("E_norm_x1e-3", "E_norm_per_sentence", "novel", "acceptance", "BLEU", "BLEU_epoch_avg", "wall_s",
                "model_rows"):
        assert col in rows[0]
    md = (out / "smoke.md").read_text().splitlines()
    table = [l for l in md if l.startswith("|")]
    assert len(table) == 2 + 2  # header, rule, one line per setting
    assert "E_norm ×1e-3" in table[0] and "novel" in table[0] and "accept" in table[0] and "BLEU" in table[0]
    assert all(l.count("|") == table[0].count("|") for l in table)


def test_numbers_are_sane(smoke):
    mp, mh = read_csv(smoke["out"] / "smoke.csv")
    assert mp["acceptance"] == "" and mp["novel"] == ""  # mask-predict makes no proposals
    acc, nov = num(mh["acceptance"]), num(mh["novel"])
    assert 0 <= nov <= acc <= 1
    for r in (mp, mh):
        assert 0 <= num(r["BLEU"]) <= 100
        assert num(r["E_norm_per_sentence"]) > 0  # minus a sum of log-probabilities
        assert num(r["E_norm_x1e-3"]) * 1000 == pytest.approx(num(r["E_norm_per_sentence"]) * 5)
        assert num(r["model_rows"]) > 0 and num(r["wall_s"]) > 0 and int(r["sentences"]) == 5
    assert num(mh["E_norm_best_x1e-3"]) <= num(mh["E_norm_x1e-3"]) + 1e-12
    assert num(mh["model_rows"]) > num(mp["model_rows"])  # MH re-scores sequences, mask-predict does not
    curves = [r for r in read_csv(smoke["out"] / "curves.csv") if r["run"] == "norm"]
    assert [int(r["epoch_post_burn_in"]) for r in curves] == [0, 1]  # epochs 1, 2 after burn-in 1
    assert all(0 <= num(r["acceptance"]) <= 1 for r in curves)
    assert [num(r["BLEU"]) is not None for r in curves] == [False, True]  # curves.points=1: the last


def test_bleu_and_energy_match_an_independent_computation(smoke):
    """BLEU: sacreBLEU of the printed D- lines against the raw references of the first 5
    sentences; E_norm: mean over chains and post-burn-in epochs of the summed E_local."""
    import sacrebleu

    out, model = smoke["out"], smoke["model"]
    refs = (Path(model["raw"]) / "test.tgt").read_text().splitlines()[:5]
    rows = {r["run"]: r for r in read_csv(out / "smoke.csv")}
    for run in ("mask_predict", "norm"):
        stdout = (out / "runs" / run / "main" / "stdout.txt").read_text()
        hyps = {}
        for line in stdout.splitlines():
            if line.startswith("D-"):
                sid, _, text = line[2:].split("\t")
                hyps[int(sid)] = text
        assert sorted(hyps) == list(range(5))
        expect = sacrebleu.corpus_bleu([hyps[i] for i in range(5)], [refs]).score
        assert num(rows[run]["BLEU"]) == pytest.approx(expect)
    trace = [json.loads(l) for l in (out / "runs" / "norm" / "main" / "trace.jsonl").read_text().splitlines()]
    post = [r for r in trace if r["epoch"] >= 1]
    totals = {}
    for r in post:
        totals[(r["epoch"], r["chain"])] = totals.get((r["epoch"], r["chain"]), 0.0) + r["energy_local"]
    assert len(totals) == 2 * 2  # 2 post-burn-in epochs x 2 chains
    assert num(rows["norm"]["E_norm_x1e-3"]) == pytest.approx(sum(totals.values()) / len(totals) / 1000)
    acc = sum(r["acceptance"] * r["proposals"] for r in post) / sum(r["proposals"] for r in post)
    assert num(rows["norm"]["acceptance"]) == pytest.approx(acc)


def test_bleu_curve_reruns_retrace_chain_0(smoke):
    """A run with --num-chains 1 --mh-epochs b+e+1 --mh-select last reproduces chain 0 of the
    main run up to epoch b+e (same energies), so its output is chain 0's state there."""
    res = json.loads((smoke["out"] / "results.json").read_text())
    (norm,) = [r for r in res["runs"] if r["run"] == "norm"]
    assert list(norm["bleu_curve"]) == ["1"]
    for point in norm["bleu_curve"].values():
        assert point["chains"] == 1 and point["retrace_max_abs_diff"] < 1e-6


def test_plots_are_pngs(smoke):
    for name in ("energy.png", "bleu.png", "acceptance.png"):
        data = (smoke["out"] / name).read_bytes()
        assert data[:8] == PNG and len(data) > 5000, name


def test_second_run_reuses_every_result_unless_forced(smoke):
    """Each fairseq-mh-generate call's complete output is reused when its inputs match (the
    tables come out identical without running anything); force=true runs again."""
    import shutil

    copy = smoke["work"] / "results" / "again"
    shutil.copytree(smoke["out"], copy)
    done = sorted((copy / "runs").glob("*/*/done.json"))
    assert [p.parent.name for p in done] == ["main", "epoch001", "main"]
    stamps = [p.stat().st_mtime_ns for p in done]
    run_cli("experiment=smoke", "name=again", "curves.points=1", *tiny_args(smoke["model"], smoke["work"]))
    assert [p.stat().st_mtime_ns for p in done] == stamps
    assert (copy / "again.csv").read_text() == (smoke["out"] / "smoke.csv").read_text()
    assert not list(copy.rglob(".*tmp*")), "no temporary file is left behind"
    run_cli("experiment=smoke", "name=again", "force=true", "~runs.norm", "curves.points=1",
            *tiny_args(smoke["model"], smoke["work"]))
    assert done[0].stat().st_mtime_ns != stamps[0]  # mask-predict ran again
    assert [p.stat().st_mtime_ns for p in done[1:]] == stamps[1:]  # the deleted run did not


def test_multirun_sweep_gets_a_folder_per_job_and_dry_run_estimates(smoke):
    """-m with seed=1,2: two jobs, results in NAME--seed=1 and NAME--seed=2; dry_run=true
    writes each run's estimated decoder rows and runs nothing."""
    run_cli("-m", "experiment=smoke", "dry_run=true", "seed=1,2", *tiny_args(smoke["model"], smoke["work"]))
    for seed in (1, 2):
        out = smoke["work"] / "results" / f"smoke--seed={seed}"
        lines = [l for l in (out / "estimate.md").read_text().splitlines() if l.startswith("| ")]
        assert [l.split("|")[1].strip() for l in lines[1:]] == ["mask_predict", "norm"]
        assert all(float(l.split("|")[2].replace(",", "")) > 0 for l in lines[1:])
        assert not (out / "runs").exists()


def test_sample_dumps_give_curves_over_all_chains(smoke, tmp_path):
    """With curves.bleu=dump (the plug-in's --mh-dump-samples), every chain's state enters the
    BLEU curve; chain 0's dumped states are exactly the reruns' outputs."""
    run_cli("sampler=mh_local", "scale=smoke", "name=dump", "curves.bleu=dump",
            *tiny_args(smoke["model"], smoke["work"]))
    out = smoke["work"] / "results" / "dump"
    (row,) = read_csv(out / "dump.csv")
    assert int(row["BLEU_curve_chains"]) == 2 and num(row["BLEU_epoch_avg"]) is not None
    curve = [r for r in read_csv(out / "curves.csv")]
    assert [num(r["BLEU"]) is not None for r in curve] == [True, True]  # every epoch, no rerun
    samples = [json.loads(l) for l in (out / "runs" / "norm" / "main" / "samples.jsonl").read_text().splitlines()]
    assert {s["epoch"] for s in samples} == {1, 2} and {s["chain"] for s in samples} == {0, 1}
    rerun = json.loads((smoke["out"] / "runs" / "norm" / "epoch001" / "done.json").read_text())["hyps"]
    chain0 = {s["id"]: s["tokens"] for s in samples if s["chain"] == 0 and s["epoch"] == 2}
    assert [chain0[i] for i in range(5)] == rerun


def test_failing_generate_is_one_line(smoke):
    p = run_cli("sampler=warm_start", "scale=smoke", "name=broken", "generate.extra_args=[--no-such-flag]",
                *tiny_args(smoke["model"], smoke["work"]), check=False)
    assert p.returncode == 2
    line = one_error_line(p.stderr)
    assert "fairseq-mh-generate exited" in line and "--no-such-flag" in line


def test_progress_counts_sentences_in_the_trace_and_waits_for_whole_lines(tmp_path, caplog):
    trace = tmp_path / "trace.jsonl"
    trace.write_text('{"id": 3}\n{"id": 3}\n{"id": 7}\n{"id": 1', encoding="utf-8")
    seen = set()
    offset = runner._sentences_traced(trace, seen, 0)
    assert seen == {3, 7} and offset == len('{"id": 3}\n{"id": 3}\n{"id": 7}\n')
    with open(trace, "a", encoding="utf-8") as f:
        f.write('2}\n')
    runner._sentences_traced(trace, seen, offset)
    assert seen == {3, 7, 12}
    # a child that writes its trace slowly: the runner logs progress while it runs
    script = ("import time,sys\n"
              "for i in range(3):\n"
              "    open(sys.argv[1],'a').write('{\"id\": %d}\\n' % i); time.sleep(0.4)\n"
              "print('done'); print('warn', file=sys.stderr)\n")
    work = tmp_path / "job"
    work.mkdir()
    with caplog.at_level("INFO", logger="fairseq_mh.experiments"):
        p = runner._run_with_progress([sys.executable, "-c", script, str(work / "trace.jsonl")], dict(os.environ),
                                      work, "slow", 3, every_s=0.3)
    assert p.returncode == 0 and p.stdout == "done\n" and p.stderr == "warn\n"
    lines = [r.getMessage() for r in caplog.records if "slow:" in r.getMessage()]
    assert lines and all("/3 sentences decoded" in l for l in lines), lines
