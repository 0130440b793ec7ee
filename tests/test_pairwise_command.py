"""The pairwise command (python -m fairseq_mh.pairwise, console script fairseq-mh-pairwise) end to end.

On the tiny checkpoints of both families trained by the tests: the table and the JSON lines
agree with each other and with the theory (AG has the smallest KL to the MLM on every pair),
rows are 1 + 2K per pair, pairs are where they were asked to be and reproducible by seed, and
bad input is refused in one line.
"""

import gzip
import json
import math
import statistics
import sys

import pytest

from cli_helpers import run, user_error
from fairseq_mh.errors import UserError
from fairseq_mh.pairwise import MEASURES, METHODS, pick_pairs

PY = sys.executable


def pairwise(data, checkpoint, *extra, task="translation_mh", check=True):
    return run([PY, "-m", "fairseq_mh.pairwise", data, "--path", checkpoint, "--task", task, *map(str, extra)],
               check=check)


def _read(jsonl):
    recs = [json.loads(l) for l in jsonl.read_text().splitlines()]
    assert recs[-1]["record"] == "summary" and all(r["record"] == "pair" for r in recs[:-1])
    return recs[:-1], recs[-1]


def _check_consistent(pairs, summary, stdout, k):
    assert summary["pairs"] == len(pairs) and summary["rows"] == sum(r["rows"] for r in pairs)
    for r in pairs:
        assert r["rows"] == 1 + 2 * k and r["k"] == k
        kls = {m: r["methods"][m]["kl_all"] for m in METHODS}
        assert all(kls["ag"] <= kls[m] + 1e-9 for m in METHODS), kls  # AG minimises exactly this
        assert r["incompatibility"] >= 0
    for m in METHODS:
        for key in MEASURES:
            xs = [r["methods"][m][key] for r in pairs]
            assert math.isclose(summary["methods"][m][key], statistics.fmean(xs), rel_tol=1e-12)
            se = statistics.stdev(xs) / math.sqrt(len(xs))
            assert math.isclose(summary["methods"][m]["se"][key], se, rel_tol=1e-9, abs_tol=1e-15)
        s = summary["methods"][m]
        assert math.isclose(s["ppl_pair"], math.exp(s["nll_pair"]))
        row = next(l for l in stdout.splitlines() if l.startswith(f"| {m} |"))
        assert f"| {s['nll_pair']:.3f} | {s['ppl_pair']:.2f} | {s['nll_unary']:.3f} |" in row
    assert f"K = {k}" in stdout and f"{summary['rows']} model rows" in stdout


def test_cmlm_adjacent_pairs(tiny_cmlm, tmp_path):
    out = tmp_path / "pairs.jsonl"
    p = pairwise(tiny_cmlm["data"], tiny_cmlm["checkpoint"], "--pairs", "adjacent", "--num-pairs", 12,
                 "--topk", 5, "--seed", 3, "--jsonl", out)
    pairs, summary = _read(out)
    assert len(pairs) == 12 and len({r["id"] for r in pairs}) == 12  # one pair per sentence
    refs = (tiny_cmlm["raw"] / "test.tgt").read_text().splitlines()
    for r in pairs:
        words = refs[r["id"]].split()
        assert r["pos_b"] == r["pos_a"] + 1 and 1 <= r["pos_a"] and r["pos_b"] <= len(words)  # <s> at 0
        assert [r["gold_a"], r["gold_b"]] == words[r["pos_a"] - 1:r["pos_b"]]
    _check_consistent(pairs, summary, p.stdout, 5)
    assert summary["pair_mode"] == "adjacent" and summary["topk"] == 5


def test_mask_predict_random_pairs_full_vocabulary_and_seeds(tiny_mask_predict, tmp_path):
    runs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        out = tmp_path / f"{name}.jsonl"
        p = pairwise(tiny_mask_predict["data"], tiny_mask_predict["checkpoint"], "--pairs", "random", "--num-pairs",
                     6, "--topk", "all", "--seed", seed, "--jsonl", out, task="translation_self")
        runs[name] = (*_read(out), p.stdout)
    pairs, summary, stdout = runs["a"]
    k = pairs[0]["k"]
    assert k > 20 and not any(r["forced_a"] or r["forced_b"] for r in pairs)  # every token is a candidate
    _check_consistent(pairs, summary, stdout, k)
    refs = (tiny_mask_predict["raw"] / "test.tgt").read_text().splitlines()
    for r in pairs:
        words = refs[r["id"]].split()
        assert 0 <= r["pos_a"] < r["pos_b"] < len(words)  # no BOS: tokens from 0, </s> excluded
        assert [r["gold_a"], r["gold_b"]] == [words[r["pos_a"]], words[r["pos_b"]]]
    assert runs["a"][0] == runs["b"][0]  # same seed, same pairs and figures
    key = lambda rs: [(r["id"], r["pos_a"], r["pos_b"]) for r in rs]  # noqa: E731
    assert key(runs["a"][0]) != key(runs["c"][0])


def test_pick_pairs():
    eligible = [[1, 2, 3, 4, 5], [1], [1, 3], [2, 3]]
    adj = pick_pairs(eligible, "adjacent", 2, seed=0)
    assert sorted(s for s, _, _ in adj) == [0, 3] and all(b == a + 1 for _, a, b in adj)
    rnd = pick_pairs(eligible, "random", 3, seed=0)
    assert sorted(s for s, _, _ in rnd) == [0, 2, 3]
    assert all(a < b and a in eligible[s] and b in eligible[s] for s, a, b in rnd)
    assert pick_pairs(eligible, "random", 3, seed=5) == pick_pairs(eligible, "random", 3, seed=5)
    with pytest.raises(UserError, match="exceeds the 2 sentences with a pair"):
        pick_pairs(eligible, "adjacent", 3, seed=0)
    with pytest.raises(UserError, match="at least 2 tokens"):
        pick_pairs([[1], [], [4]], "random", 1, seed=0)


@pytest.fixture(scope="module")
def one_token_data(tiny_cmlm, tmp_path_factory):
    """The tiny CMLM's dictionaries, a test set whose references are all one token long."""
    raw = tmp_path_factory.mktemp("short")
    (raw / "test.src").write_text("s1 s2\ns3\n")
    (raw / "test.tgt").write_text("t2\nt3\n")
    data = raw / "bin"
    d = tiny_cmlm["data"]
    run(["fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt", "--testpref", raw / "test",
         "--destdir", data, "--srcdict", d / "dict.src.txt", "--tgtdict", d / "dict.tgt.txt", "--workers", "1"])
    return data


def test_bad_input_is_refused_in_one_line(tiny_cmlm, one_token_data, tmp_path):
    data, ckpt = tiny_cmlm["data"], tiny_cmlm["checkpoint"]
    cases = [  # each in its own process: a one-line error, no traceback
        (data, tmp_path / "missing.pt", (), "missing.pt"),
        (tmp_path / "nodata", ckpt, (), "does not exist"),
        (data, ckpt, ("--topk", "100000"), "--topk 100000 exceeds the model's"),
        (data, ckpt, ("--num-pairs", "100000"), "--num-pairs 100000 exceeds the"),
        (data, ckpt, ("--gen-subset", "nosuch"), "nosuch"),
        (one_token_data, ckpt, (), "pairs need references of at least 2 tokens"),
    ]
    for d, c, extra, expected in cases:
        line = user_error(pairwise(d, c, "--topk", 5, *extra, check=False))
        assert line.startswith("fairseq-mh-pairwise: error:") and expected in line, (extra, line)


@pytest.mark.parametrize("extra,expected", [
    (("--topk", "0"), "--topk: must be >= 1 or 'all'"),
    (("--topk", "many"), "--topk: must be a positive integer or 'all'"),
    (("--num-pairs", "0"), "--num-pairs: must be >= 1"),
    (("--pairs", "diagonal"), "invalid choice: 'diagonal'"),
    (("--ag-tol", "-1"), "--ag-tol must be >= 0"),
    (("--jsonl", "/nonexistent/dir/x.jsonl"), "cannot write --jsonl"),
])
def test_bad_options_are_refused_before_loading_anything(extra, expected, capsys):
    from fairseq_mh.pairwise import main

    assert main(["data", "--path", "ckpt.pt", *extra]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fairseq-mh-pairwise: error:") and expected in err, err
    assert main(["data"]) == 1 and "required: --path" in capsys.readouterr().err


def test_console_entry_point_target(tiny_cmlm, tmp_path):
    """setup.py's fairseq-mh-pairwise = fairseq_mh.cli:pairwise (the editable install predates it)."""
    code = "import sys; from fairseq_mh.cli import pairwise; sys.argv[0] = 'fairseq-mh-pairwise'; pairwise()"
    p = run([PY, "-c", code, tiny_cmlm["data"], "--path", tmp_path / "missing.pt"], check=False)
    assert p.returncode == 1 and "missing.pt" in user_error(p)


def test_real_multi30k_cmlm(shared, tmp_path):
    """A few pairs on the real model of ../shared (a smoke test; figures: docs/results/pairwise_m30k.md)."""
    import sentencepiece as spm

    model, text = shared / "models" / "m30k-cmlm", shared / "data" / "multi30k"
    sp = spm.SentencePieceProcessor(model_file=str(model / "spm.model"))
    for lang in ("de", "en"):
        lines = gzip.open(text / f"test_2016_flickr.{lang}.gz", "rt", encoding="utf-8").read().splitlines()[:6]
        (tmp_path / f"test.{lang}").write_text("".join(" ".join(sp.encode(l, out_type=str)) + "\n" for l in lines))
    run(["fairseq-preprocess", "--source-lang", "de", "--target-lang", "en", "--testpref", tmp_path / "test",
         "--destdir", tmp_path / "bin", "--srcdict", model / "dict.de.txt", "--tgtdict", model / "dict.en.txt",
         "--workers", "1"])
    out = tmp_path / "m30k.jsonl"
    p = pairwise(tmp_path / "bin", model / "checkpoint.pt", "--num-pairs", 4, "--topk", 8, "--jsonl", out)
    pairs, summary = _read(out)
    _check_consistent(pairs, summary, p.stdout, 8)
    assert summary["incompatibility"] > 0  # a real MLM's conditionals are incompatible
