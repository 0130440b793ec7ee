"""The run-level side of issue 11 on a test-made CMLM: diagnostics in the trace and the
summary line, the netCDF export, MBR output, the new options on the command line, and the
Python API (``MHTranslator``), which must agree with the command line."""

import json

import pytest
import xarray

from cli_helpers import parse_generate, run, user_error
from fairseq_mh import MHTranslator
from fairseq_mh.core.config import ConfigError
from fairseq_mh.core.mbr import mbr_select
from fairseq_mh.trace import read_diagnostics, read_samples, read_trace

RUN = ["--mh-epochs", "6", "--burn-in", "1", "--num-chains", "4", "--length-beam", "2", "--batch-size", "8", "--cpu",
       "--seed", "5"]


def generate(model, *extra, check=True):
    return run(["fairseq-mh-generate", model["data"], "--task", "translation_mh", "--path", model["checkpoint"],
                *extra], check=check)


def sources(model):
    return (model["raw"] / "test.src").read_text().splitlines()


@pytest.fixture(scope="module")
def tempered_mbr_run(tiny_cmlm, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mbr")
    trace, dump = tmp / "trace.jsonl", tmp / "samples.jsonl"
    p = generate(tiny_cmlm, "--sampler", "pt-block-mh", "--pt-temperatures", "1,0.7,0.5", "--warm-start", "mixed",
                 "--mh-select", "mbr", "--mbr-utility", "chrf", *RUN, "--mh-trace", trace, "--mh-dump-samples", dump)
    return p, trace, dump, tmp


def test_trace_holds_diagnostics_and_the_run_ends_with_the_summary(tiny_cmlm, tempered_mbr_run):
    p, trace, _, _ = tempered_mbr_run
    n = len(sources(tiny_cmlm))
    summary = [l for l in p.stderr.splitlines() if l.startswith("convergence over")]
    assert summary == [summary[0]] and f"over {2 * n} sentence-length groups" in summary[0], p.stderr[-2000:]
    assert "chains that never moved:" in summary[0] and f"of {2 * n * 4}" in summary[0]
    diag = read_diagnostics(trace)
    assert len(diag) == 2 * n * 2  # sentences x lengths x energies
    assert {(d.series, d.target) for d in diag} == {("raw", True), ("local", False)}
    assert all(d.chains == 4 and d.draws == 5 and (d.rhat >= 0.9 or d.rhat == float("inf")) for d in diag)
    raw = [json.loads(l) for l in trace.read_text().splitlines() if '"diagnostics"' in l]
    assert all(isinstance(r["rhat"], float) or r["rhat"] == "inf" for r in raw)  # strict JSON, no Infinity
    records = read_trace(trace)  # the epoch reader skips diagnostics records
    assert {r.record for r in records} == {"start", "epoch"}
    starts = [r for r in records if r.record == "start"]
    assert len(starts) == 2 * n * 4 and {r.chain for r in starts} == {0, 1, 2, 3}  # dispersed: one per chain


def test_mbr_output_is_the_expected_utility_winner_of_the_dumped_samples(tiny_cmlm, tempered_mbr_run):
    p, _, dump, _ = tempered_mbr_run
    H = parse_generate(p.stdout)["H"]
    by_sentence = {}
    for s in read_samples(dump):
        by_sentence.setdefault(s.id, []).append(s.tokens)
    assert len(by_sentence) == len(sources(tiny_cmlm))
    for sid, texts in by_sentence.items():
        assert len(texts) == 2 * 4 * 5  # lengths x chains (replica 0) x post-burn-in epochs
        assert H[sid][0][1] == mbr_select(texts, None, "chrf").best


def test_hybrid_mbr_output_is_the_winner_of_the_dumped_samples_with_their_traced_energies(tiny_cmlm, tmp_path):
    # --mbr-score-weight w: EU + w * (minus the raw energy per position), the energy read back
    # from the trace record of the sample's chain and epoch; a weight large enough to matter
    trace, dump = tmp_path / "trace.jsonl", tmp_path / "samples.jsonl"
    p = generate(tiny_cmlm, "--sampler", "mh", "--mh-select", "mbr", "--mbr-score-weight", "40", *RUN,
                 "--mh-trace", trace, "--mh-dump-samples", dump)
    H = parse_generate(p.stdout)["H"]
    energy = {(r.id, r.length_rank, r.chain, r.epoch): -r.energy_raw / max(1, r.n_free)
              for r in read_trace(trace) if r.record == "epoch"}
    by_sentence, moved = {}, 0
    for s in read_samples(dump):
        texts, scores = by_sentence.setdefault(s.id, ([], []))
        texts.append(s.tokens)
        scores.append(energy[(s.id, s.length_rank, s.chain, s.epoch)])
    assert len(by_sentence) == len(sources(tiny_cmlm))
    for sid, (texts, scores) in by_sentence.items():
        hybrid = mbr_select(texts, None, "bleu", scores, 40.0)
        assert H[sid][0][1] == hybrid.best
        moved += hybrid.best != mbr_select(texts, None, "bleu").best
    assert moved > 0, "the weight changed no choice: the test would not see it ignored"


def test_traces_export_to_netcdf_for_arviz(tiny_cmlm, tempered_mbr_run):
    _, trace, _, tmp = tempered_mbr_run
    out = tmp / "traces.nc"
    p = run(["python", "-m", "fairseq_mh.diagnostics", trace, out])
    assert p.stdout.startswith("convergence over")
    dt = xarray.open_datatree(out, engine="h5netcdf")
    post = dt["posterior"]
    assert post["energy_raw"].shape == (4, 5, 2 * len(sources(tiny_cmlm)))
    assert set(post.coords) >= {"sentence", "length_rank"}
    bad = run(["python", "-m", "fairseq_mh.diagnostics", tmp / "missing.jsonl", out], check=False)
    assert "missing.jsonl" in user_error(bad)


@pytest.mark.parametrize("args,option", [
    (["--pt-temperatures", "1,0"], "--pt-temperatures"),
    (["--sampler", "mask-predict", "--mh-select", "mbr"], "--mh-select mbr"),
    (["--mbr-utility", "ter"], "--mbr-utility"),
    (["--mbr-score-weight", "-1"], "--mbr-score-weight"),
    (["--mbr-score-weight", "nan"], "--mbr-score-weight"),
    (["--warm-start", "given"], "--warm-start"),
])
def test_bad_new_options_are_refused_in_one_line(tiny_cmlm, args, option):
    p = generate(tiny_cmlm, "--sampler", "pt-mh", *args, "--cpu", check=False)
    assert option in user_error(p)


@pytest.fixture(scope="module")
def translator(tiny_cmlm):
    return MHTranslator.from_pretrained(tiny_cmlm["checkpoint"].parent, checkpoint_file=tiny_cmlm["checkpoint"].name,
                                        data=str(tiny_cmlm["data"]), source_lang="src", target_lang="tgt", spm=None,
                                        seed=5)


def test_translate_agrees_with_the_command_line(tiny_cmlm, translator):
    opts = dict(mh_epochs=3, num_chains=2, length_beam=2, warm_start="random")
    cli = parse_generate(generate(tiny_cmlm, "--sampler", "mh", "--mh-epochs", "3", "--num-chains", "2",
                                  "--length-beam", "2", "--warm-start", "random", "--batch-size", "8", "--cpu",
                                  "--seed", "5").stdout)["H"]
    ours = translator.translate(sources(tiny_cmlm), sampler="mh", batch_size=8, **opts)
    assert ours == [cli[i][0][1] for i in range(len(ours))]
    assert isinstance(translator.translate(sources(tiny_cmlm)[0]), str)


def test_sample_returns_every_post_burn_in_state_with_its_statistics(tiny_cmlm, translator):
    sentence = sources(tiny_cmlm)[0]
    samples = translator.sample(sentence, n=3, sampler="mh", mh_epochs=5, burn_in=2, length_beam=1)
    assert len(samples) == 3 * 3 and {s.chain for s in samples} == {0, 1, 2}
    assert {s.epoch for s in samples} == {2, 3, 4}
    assert all(0 <= s.acceptance <= 1 and 0 <= s.chain_acceptance <= 1 for s in samples)
    best = min(samples, key=lambda s: s.energy_raw)
    assert best.text == translator.translate(sentence, sampler="mh", mh_epochs=5, burn_in=2, num_chains=3,
                                             length_beam=1)


def test_api_diagnostics_and_validation(tiny_cmlm, translator):
    d = translator.diagnostics(sources(tiny_cmlm)[:3], sampler="mh", mh_epochs=6, num_chains=2, length_beam=1)
    assert len(d.records) == 3 * 2 and d.summary.startswith("convergence over 3 sentence-length groups")
    with pytest.raises(ConfigError, match="--mh-epochs"):
        translator.translate("s1 s2", sampler="mh", mh_epochs=0)
    with pytest.raises(ConfigError, match="unknown option.*--mh-epoch\\b"):
        translator.translate("s1 s2", sampler="mh", mh_epoch=3)
    with pytest.raises(ConfigError, match="--length-candidates"):
        translator.translate("s1 s2", length_candidates="all")
    with pytest.raises(ConfigError, match="--sampler"):
        translator.translate("s1 s2", sampler="MH")


def test_the_shared_model_translates_through_the_api(shared):
    model = shared / "models" / "m30k-cmlm-e33"
    if not (model / "checkpoint.pt").is_file():
        pytest.skip(f"{model} is absent")
    mt = MHTranslator.from_pretrained(model, spm="spm.model")
    out = mt.translate(["Ein Hund läuft über die Wiese."], sampler="mh", mh_epochs=2, num_chains=2,
                       mh_select="mbr", length_beam=1)
    assert len(out) == 1 and "dog" in out[0].lower()
