"""Progress inside a batch, the cost estimate before work, and the end-of-run summary."""

import json
import os

import pytest

import cli_helpers
from cli_helpers import parse_generate
from fairseq_mh.core import RowEvaluator, SamplerConfig, build_decoder
from fairseq_mh.core.cost import expected_rows
from fairseq_mh.progress import DecodeProgress, format_duration, progress_mode
from test_engine_contract import L, VOCAB, CountingNet, make_starts
from toy_models import MASK, PAD, allowed_vector


def _decode(cfg, starts):
    ev = RowEvaluator(CountingNet(vocab=VOCAB, length=L, seed=4), pad=PAD)
    return build_decoder(cfg, ev, MASK, allowed_vector(VOCAB)).run(starts), ev


# --- the estimator against counted rows --------------------------------------------------
@pytest.mark.parametrize("report", [True, False])
def test_mask_predict_estimate_is_the_counted_rows(report):
    starts = make_starts([7, 5, 6, 3], [0, 1, 2, 3])
    cfg = SamplerConfig(sampler="mask-predict", decoding_iterations=4, report_energy=report)
    _, ev = _decode(cfg, starts)
    assert expected_rows(cfg, starts.free.sum(1).tolist()) == ev.rows


@pytest.mark.parametrize("warm", ["greedy", "mask-predict"])
def test_single_site_mh_estimate_is_exact_given_how_many_proposals_moved(warm):
    starts = make_starts([7, 7], [0, 1])  # one free length, so the moved share is all it needs
    cfg = SamplerConfig(sampler="mh", mh_epochs=4, num_chains=3, warm_start=warm, decoding_iterations=3,
                        proposal_temperature=0.7)
    res, ev = _decode(cfg, starts)
    st = res.stats
    moved = float((st.proposals - st.accepted + st.novel).sum()) / float(st.proposals.sum())
    assert 0 < moved < 1
    assert expected_rows(cfg, starts.free.sum(1).tolist(), moved) == pytest.approx(ev.rows, rel=1e-12)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_single_site_gibbs_estimate_follows_the_counted_rows_given_the_moved_share(temperature):
    # rows are spent only after moves (a step whose conditional a move invalidated, and the
    # epoch's energies); 2T per epoch, the old count, is 40% over at this moved share
    starts = make_starts([7] * 4, [0, 1, 2, 3])
    cfg = SamplerConfig(sampler="gibbs", mh_epochs=6, num_chains=50, proposal_temperature=temperature)
    res, ev = _decode(cfg, starts)
    moved = float(res.stats.novel.sum()) / float(res.stats.proposals.sum())
    assert 0.3 < moved < 0.9
    assert expected_rows(cfg, starts.free.sum(1).tolist(), moved) == pytest.approx(ev.rows, rel=0.03)


def test_block_calibration_measures_blocks_and_the_estimate_uses_their_per_position_share():
    from fairseq_mh.core.cost import DEFAULT_MOVED
    from fairseq_mh.run_estimate import calibration_config, site_moved_share

    block = SamplerConfig(sampler="block-mh", mh_epochs=8, burn_in=2, block_size=4)
    cal = calibration_config(block)
    assert (cal.mh_epochs, cal.burn_in, cal.no_block_anneal) == (2, 0, True)  # every proposal a 4-block
    m = site_moved_share(block, 0.9)
    assert 1 - (1 - m) ** 4 == pytest.approx(0.9)  # a block stays put when its 4 positions do
    single = SamplerConfig(sampler="mh")
    assert site_moved_share(single, 0.3) == 0.3 and site_moved_share(single, None) == DEFAULT_MOVED
    mp = SamplerConfig(sampler="mask-predict", report_energy=True)
    assert calibration_config(mp) is mp  # its energy rows are part of the calibrated shapes


@pytest.mark.parametrize("sampler", ["block-mh", "gibbs", "block-gibbs"])
def test_estimate_bounds_the_other_chain_samplers(sampler):
    starts = make_starts([7, 5, 6], [0, 1, 2])
    cfg = SamplerConfig(sampler=sampler, mh_epochs=3, num_chains=2, block_size=3)
    res, ev = _decode(cfg, starts)
    assert ev.rows <= expected_rows(cfg, starts.free.sum(1).tolist(), moved=1.0)


# --- progress lines ------------------------------------------------------------------------
class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_progress_lines_are_throttled_and_carry_rows_rate_and_etas(caplog):
    clock, ev = _Clock(), RowEvaluator(lambda *a: None, pad=PAD)
    p = DecodeProgress("log", interval=1.0, run_rows=3000, clock=clock)
    p.begin_batch(4, 1000, ev)
    with caplog.at_level("INFO", logger="fairseq_mh.progress"):
        for step in range(20):  # 20 updates within 0.95 s: one line
            clock.t += 0.05
            ev.rows += 10
            p.update(step / 20, 3)
        assert len(caplog.records) == 1
        clock.t = 2.0
        ev.rows = 500
        p.update(1.5, 3)
    line = caplog.records[-1].getMessage()
    assert "epoch 1.5/3" in line and "500 rows" in line and "250 rows/s" in line
    assert f"ETA batch {format_duration(2.0)}" in line and f"run {format_duration(10.0)}" in line
    p.end_batch()
    assert p.rows_before == 500


def test_progress_mode_follows_fairseqs_conventions():
    class Tty:
        def isatty(self):
            return True

    assert progress_mode(True, None, Tty()) == "off"
    assert progress_mode(False, None, Tty()) == "bar"
    assert progress_mode(False, "json", Tty()) == "log"
    assert progress_mode(False, None, open(os.devnull, "w")) == "log"


# --- through fairseq-mh-generate -------------------------------------------------------------
def _generate(model, *extra, loglevel="INFO"):
    cmd = ["fairseq-mh-generate", model["data"], "--task", "translation_mh", "--path", model["checkpoint"],
           "--batch-size", "8", "--cpu", "--num-chains", "2", "--length-beam", "2", *extra]
    p = cli_helpers.run(cmd, check=False, env={"LOGLEVEL": loglevel})
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def test_a_multi_epoch_decode_logs_progress_and_no_progress_bar_silences_it(tiny_cmlm, tmp_path):
    args = ["--sampler", "mh", "--mh-epochs", "3", "--mh-progress-interval", "0"]
    loud = _generate(tiny_cmlm, *args)
    lines = [l for l in loud.stderr.splitlines() if "fairseq_mh.progress" in l]
    assert lines and all("rows/s" in l and "ETA batch" in l and "/3" in l for l in lines), loud.stderr[-2000:]
    first = [l for l in loud.stderr.splitlines() if "fairseq_mh" in l][0]
    assert "estimate:" in first  # the estimate is the plug-in's first line
    quiet = _generate(tiny_cmlm, *args, "--no-progress-bar")
    assert not [l for l in quiet.stderr.splitlines() if "fairseq_mh.progress" in l]
    assert parse_generate(quiet.stdout)["H"] == parse_generate(loud.stdout)["H"]  # reporting changes nothing


@pytest.mark.parametrize("sampler", ["mh", "mask-predict"])
def test_summary_counts_equal_the_trace(tiny_cmlm, tmp_path, sampler):
    trace = tmp_path / "trace.jsonl"
    p = _generate(tiny_cmlm, "--sampler", sampler, "--mh-epochs", "2", "--mh-trace", trace, "--no-progress-bar")
    recs = [json.loads(l) for l in trace.read_text().splitlines()]
    summary = [l for l in p.stderr.splitlines() if "decoded " in l and "model rows" in l]
    assert len(summary) == 1, p.stderr[-2000:]
    rows = sum(r["rows"] for r in recs)
    assert f": {rows} model rows" in summary[0]
    props = sum(r["proposals"] for r in recs)
    assert (f"over {props} proposals" in summary[0]) == (props > 0)
    translated = [i for i, l in enumerate(p.stderr.splitlines()) if "Translated" in l]
    assert translated and translated[0] < p.stderr.splitlines().index(summary[0])  # after fairseq's own line


def test_mh_estimate_prints_the_estimate_and_decodes_nothing(tiny_cmlm):
    p = _generate(tiny_cmlm, "--sampler", "block-mh", "--mh-epochs", "4", "--mh-estimate", loglevel="WARNING")
    assert parse_generate(p.stdout)["H"] == {}
    line = [l for l in p.stdout.splitlines() if l.startswith("estimate:")]
    assert len(line) == 1 and "model rows" in line[0] and "rows/s" in line[0]
    n = len((tiny_cmlm["raw"] / "test.src").read_text().splitlines())
    assert f"{n} sentences, {2 * n} length candidates x 2 chains (block-mh)" in line[0]
