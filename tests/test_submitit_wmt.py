"""scripts/wmt_eval.py --launcher submitit on submitit's local executor (real job processes, no
mocks): two cost-balanced shard jobs plus the merge give the unsharded run's output; a failed
shard is reported with its log and error line, and a rerun resubmits it alone; the cost
balance on skewed lengths.  Reuses the toy model and the unsharded run of test_wmt_scripts."""

from __future__ import annotations

import re
import shutil

import pytest

from fairseq_mh.core.config import SamplerConfig
from fairseq_mh.core.cost import expected_rows
from fairseq_mh.sharding import balanced_shards, sampler_settings, sentence_cost, shard_costs
from test_wmt_scripts import MH, common, full_run, h_lines, lines, ok, one_line_error, script, temp_leftovers, toy  # noqa: F401


def submitit(toy, out, *extra):
    return script("eval_wmt14_de_en.sh", *common(toy), "--out", out, "--launcher", "submitit", "--num-shards", "2",
                  *extra, "--", *MH)


def reuse_prep(full_run, out):
    """prep/ and bin/ of the unsharded run (same inputs): only the shards are decoded here."""
    for d in ("prep", "bin"):
        shutil.copytree(full_run["out"] / d, out / d)


@pytest.fixture(scope="module")
def cluster_run(toy, full_run):
    out = toy["base"] / "submitit"
    reuse_prep(full_run, out)
    return {"out": out, "p": ok(submitit(toy, out))}


def test_two_shard_jobs_and_merge_equal_the_unsharded_run(toy, full_run, cluster_run):
    out, p = cluster_run["out"], cluster_run["p"]
    assert p.stdout == full_run["p"].stdout  # both BLEUs and signatures
    for f in ("hyp.tok.en", "hyp.detok.en"):
        assert lines(out / f) == lines(full_run["out"] / f)
    shards = [out / "shards" / f"shard-{i}-of-2.txt" for i in range(2)]
    assert h_lines(shards) == h_lines([full_run["out"] / "shards" / "shard-0-of-1.txt"])  # scores too
    # each shard decoded its cost-balanced share, under the full test set's ids
    lengths = [len(line.split()) + 1 for line in lines(out / "prep" / "test.de")]
    expected = balanced_shards(lengths, 2, sampler_settings(MH))
    for i in range(2):
        ids = [int(x) for x in lines(out / "shards" / f"ids-{i}-of-2.txt")]
        assert ids == expected[i] and sorted(h_lines([shards[i]])) == ids
    # two jobs of submitit's local executor, each with its own log; the progress line
    assert len(list((out / "logs" / "jobs").glob("*_log.err"))) == 2
    assert "submitting 2 shard job(s)" in p.stderr
    assert re.search(r"shards on local: 2 done, 0 running, 0 failed, 0 waiting \(of 2\)", p.stderr), p.stderr
    assert not temp_leftovers(out)


def test_a_failed_shard_is_reported_and_a_rerun_redoes_it_alone(toy, full_run, tmp_path):
    out = tmp_path / "out"
    reuse_prep(full_run, out)
    blocker = out / "shards" / "shard-1-of-2.txt"
    blocker.mkdir(parents=True)  # shard 1's output cannot be written: its job fails
    p = submitit(toy, out, "--job-logs", tmp_path / "jobs")
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-3000:]
    errors = [line for line in p.stderr.splitlines() if line.startswith("wmt_eval: error: ")]
    assert len(errors) == 1 and p.stderr.splitlines()[-1] == errors[0], p.stderr  # after the progress lines
    assert "shards on local: 1 done, 0 running, 1 failed, 0 waiting (of 2)" in p.stderr
    err = errors[0]
    m = re.search(r"1 of 2 shards failed: shard 1: (.*) \[log: (\S+)\] -- run the same command again", err)
    assert m, err
    assert "Is a directory" in m.group(1) and "wmt_eval: error:" in m.group(1)
    log = m.group(2)
    assert log.startswith(str(tmp_path / "jobs")) and m.group(1).split("wmt_eval: error: ")[1] in open(log).read()
    finished = out / "shards" / "shard-0-of-2.txt"
    stamp = finished.stat().st_mtime_ns
    assert not (out / "scores.json").exists()
    blocker.rmdir()
    p = ok(submitit(toy, out, "--job-logs", tmp_path / "jobs"))
    assert "1 of 2 shards done before, skipped" in p.stderr and "submitting 1 shard job(s)" in p.stderr
    assert finished.stat().st_mtime_ns == stamp  # shard 0 was not decoded again
    assert p.stdout == full_run["p"].stdout
    assert not temp_leftovers(out)


def test_cluster_options_are_checked_before_anything_runs(toy, tmp_path):
    out = tmp_path / "out"
    for extra, needle in ((["--partition", "gpu"], "--partition applies to --launcher submitit only"),
                          (["--launcher", "submitit", "--shard-id", "1"], "drop --shard-id"),
                          (["--launcher", "submitit", "--time-limit", "0"], "--time-limit must be >= 1"),
                          (["--launcher", "submitit", "--gpus-per-shard", "1"], "drop one of them")):
        p = script("eval_wmt14_de_en.sh", *common(toy), "--out", out, "--num-shards", "2", *extra, "--", *MH)
        assert needle in one_line_error(p)
        assert not out.exists()


def test_shards_balance_expected_cost_on_skewed_lengths():
    # a few long sentences first, many short ones after: halves by count put every long one in shard 0
    lengths = [80, 60, 60, 40] + [6] * 60
    chain = sampler_settings(["--sampler", "block-mh", "--mh-epochs", "8", "--num-chains", "3"])
    assert chain.kind.is_chain and sentence_cost(10, chain) == expected_rows(chain, [10])  # the engine's estimator
    shards = balanced_shards(lengths, 2, chain)
    assert sorted(shards[0] + shards[1]) == list(range(len(lengths)))  # every sentence once
    costs = shard_costs(lengths, shards, chain)
    biggest = max(sentence_cost(n, chain) for n in lengths)
    assert max(costs) - min(costs) <= biggest  # the greedy split's guarantee
    assert max(costs) / min(costs) < 1.05
    halves = [list(range(32)), list(range(32, 64))]
    by_count = shard_costs(lengths, halves, chain)
    assert max(by_count) / min(by_count) > 5  # what the count split would have cost
    assert len(shards[0]) != len(shards[1])  # balanced by cost, not by count
    assert balanced_shards(lengths, 2, chain) == shards  # a function of the inputs
    # mask-predict costs iterations + length rows: the same lengths balance differently
    mp = sampler_settings(["--sampler", "mask-predict", "--decoding-iterations", "4"])
    assert not mp.kind.is_chain and sentence_cost(10, mp) == expected_rows(mp, [10]) == 4 + 10
    mp_costs = shard_costs(lengths, balanced_shards(lengths, 2, mp), mp)
    assert max(mp_costs) - min(mp_costs) <= sentence_cost(80, mp)
    assert balanced_shards(lengths, 2, mp) != shards
    # defaults come from SamplerConfig
    assert sampler_settings([]) == SamplerConfig()
