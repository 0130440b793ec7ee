"""scripts/eval_wmt*.sh and scripts/wmt_eval.py: WMT evaluation end to end on a test-made
Mask-Predict checkpoint, sharding and merge, resumability, one-line errors, Romanian
normalisation, and the preprocessing of the real WMT test sets (when ../shared is present).

No released WMT checkpoint is available here, so real WMT decoding is not tested."""

from __future__ import annotations

import collections
import gzip
import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import ENV, parse_generate, run
from conftest import _built_once
from fairseq_mh.textio import normalise_romanian

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
PAIRS = {"eval_wmt14_de_en.sh": "de-en", "eval_wmt14_en_de.sh": "en-de", "eval_wmt16_ro_en.sh": "ro-en",
         "eval_wmt16_en_ro.sh": "en-ro"}  # the wrappers and the --pair each execs
# two MH epochs of a warm chain at two lengths: quick, translates the toy task well (BLEU > 80), and
# random enough that another seed changes several hypotheses; one-sentence calls are bit-identical
# whatever the sharding (shared calls: up to float rounding)
MH = ["--sampler", "mh", "--mh-epochs", "2", "--proposal-temperature", "2", "--target-temperature", "1.5",
      "--anneal-rate", "0", "--min-target-temperature", "1.5", "--mh-select", "last",
      "--length-beam", "2", "--mh-batching", "sentence"]


def load_wmt_eval():
    spec = importlib.util.spec_from_file_location("wmt_eval", SCRIPTS / "wmt_eval.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


wmt_eval = load_wmt_eval()


def script(wrapper, *args, env=None, bash=False):
    """Runs a wrapper with this test's Python: as a user would (``bash``), or as what it execs,
    ``wmt_eval.py --pair PAIR ARGS`` (test_wrappers_are_thin_and_name_their_direction checks
    that), which the tests' fork server can run without a fresh interpreter."""
    e = {"PYTHON": sys.executable, **(env or {})}
    if bash:
        return subprocess.run(["bash", str(SCRIPTS / wrapper), *map(str, args)], capture_output=True, text=True,
                              env={**ENV, **e})
    return run([sys.executable, SCRIPTS / "wmt_eval.py", "--pair", PAIRS[wrapper], *args], check=False, env=e)


def ok(p):
    assert p.returncode == 0, p.stderr[-4000:]
    return p


def one_line_error(p):
    """The failure is exit status 2 and exactly one stderr line naming the problem."""
    assert p.returncode == 2, (p.returncode, p.stderr[-3000:])
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("wmt_eval: error: ")
    return lines[0]


def temp_leftovers(folder: Path):
    return [p for p in folder.rglob(".*") if ".tmp" in p.name]


def lines(path: Path):
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def h_lines(shard_files):
    """{id: (score, text)} of fairseq H lines, asserting no id appears twice."""
    out = {}
    for f in shard_files:
        for sid, hyps in parse_generate(f.read_text(encoding="utf-8"))["H"].items():
            assert sid not in out and len(hyps) == 1
            out[sid] = tuple(hyps[0])
    return out


def multi_bleu(hyps, refs):
    """Corpus BLEU-4 on whitespace tokens, case-sensitive, no smoothing (multi-bleu.perl)."""
    match, total = [0] * 4, [0] * 4
    hyp_len = ref_len = 0
    for h, r in zip(hyps, refs):
        h, r = h.split(), r.split()
        hyp_len, ref_len = hyp_len + len(h), ref_len + len(r)
        for n in range(1, 5):
            hc = collections.Counter(tuple(h[i:i + n]) for i in range(len(h) - n + 1))
            rc = collections.Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1))
            match[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())
            total[n - 1] += max(0, len(h) - n + 1)
    if min(match) == 0:
        return 0.0
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return 100 * bp * math.exp(sum(math.log(m / t) for m, t in zip(match, total)) / 4)


def _toy_model(m, folder):
    """The test-made Mask-Predict checkpoint ``m`` laid out in ``folder`` as a released de-en
    model folder (checkpoint_best.pt, dict.de.txt, dict.en.txt)."""
    model = folder / "maskPredict_de_en"
    model.mkdir()
    shutil.copy(m["checkpoint"], model / "checkpoint_best.pt")
    shutil.copy(m["model_dir"] / "dict.src.txt", model / "dict.de.txt")
    shutil.copy(m["model_dir"] / "dict.tgt.txt", model / "dict.en.txt")
    src, ref = m["raw"] / "test.src", m["raw"] / "test.tgt"
    return {"model": model, "src": src, "ref": ref, "n": len(lines(src)), "base": folder}


@pytest.fixture(scope="session")
def toy(tiny_mask_predict, tmp_path_factory, worker_id):
    """That model folder and its raw test set as the WMT text, built once per test session
    (all workers), read-only for the tests: each writes under its own subfolder of
    ``base`` or under tmp_path."""
    return _built_once(tmp_path_factory, worker_id, "wmt_toy", lambda folder: _toy_model(tiny_mask_predict, folder))


def common(toy):
    return ["--model", toy["model"], "--src", toy["src"], "--ref", toy["ref"], "--cpu", "--batch-size", "8"]


@pytest.fixture(scope="session")
def full_run(toy, tmp_path_factory, worker_id):
    """The unsharded MH run of the toy model, decoded once per test session: this file and
    test_submitit_wmt compare their runs with it and reuse its prep/ and bin/."""
    def build(folder):
        p = ok(script("eval_wmt14_de_en.sh", *common(toy), "--out", folder / "run", "--", *MH, bash=True))  # a user's run
        (folder / "stdout.txt").write_text(p.stdout)
        (folder / "stderr.txt").write_text(p.stderr)
        return {"out": folder / "run", "stdout": folder / "stdout.txt", "stderr": folder / "stderr.txt"}

    r = _built_once(tmp_path_factory, worker_id, "wmt_full_run", build)
    p = subprocess.CompletedProcess([], 0, r["stdout"].read_text(), r["stderr"].read_text())
    return {"out": r["out"], "p": p}


def test_end_to_end_reports_both_bleus(toy, full_run):
    out, p = full_run["out"], full_run["p"]
    n = toy["n"]
    m = re.search(r"^sacreBLEU = ([\d.]+)", p.stdout, re.M)
    t = re.search(r"^tokenized BLEU = ([\d.]+)", p.stdout, re.M)
    assert m and t, p.stdout
    sig = re.search(r"^sacreBLEU signature: (\S+)$", p.stdout, re.M).group(1)
    assert re.fullmatch(r"nrefs:1\|case:mixed\|eff:no\|tok:13a\|smooth:exp\|version:2\.\d+\.\d+", sig)
    assert "tok:none|smooth:none" in p.stdout
    # the converged toy model translates well: a misordered merge could not score this
    assert float(m.group(1)) > 60 and float(t.group(1)) > 60
    ref_raw = lines(toy["ref"])
    hyp_tok, hyp_detok = lines(out / "hyp.tok.en"), lines(out / "hyp.detok.en")
    assert len(hyp_tok) == len(hyp_detok) == n
    assert sum(h == r for h, r in zip(hyp_tok, ref_raw)) >= n // 3  # line i translates source line i
    # the shard output holds one H line per sentence, and hyp.tok is exactly its text in id order
    hyps = h_lines([out / "shards" / "shard-0-of-1.txt"])
    assert sorted(hyps) == list(range(n))
    assert hyp_tok == [hyps[i][1] for i in range(n)]
    # both BLEUs recomputed independently from the files
    scores = json.loads((out / "scores.json").read_text())
    ref_tok = lines(out / "prep" / "test.tok.en")
    assert scores["tokenized_bleu"]["score"] == pytest.approx(multi_bleu(hyp_tok, ref_tok), abs=0.01)
    import sacrebleu

    assert scores["sacrebleu"]["score"] == pytest.approx(sacrebleu.corpus_bleu(hyp_detok, [ref_raw]).score, abs=0.01)
    assert scores["sacrebleu"]["signature"] == sig and scores["sentences"] == n
    # no BPE and no <unk> here, so fairseq-generate's own BLEU (the number Mask-Predict printed)
    # is the same tokenized BLEU
    fairseq_bleu = parse_generate((out / "shards" / "shard-0-of-1.txt").read_text())["BLEU"]
    assert float(fairseq_bleu.split("BLEU4 = ")[1].split(",")[0]) == pytest.approx(float(t.group(1)), abs=0.01)
    assert (out / "scores.txt").read_text().splitlines()[0] in p.stdout
    assert lines(out / "prep" / "ref.raw.en") == ref_raw
    assert not temp_leftovers(out)


def test_rerun_skips_finished_steps_and_refuses_other_settings(toy, full_run):
    out = full_run["out"]
    watched = [out / "prep" / "test.de", out / "bin" / "test.de-en.de.bin", out / "shards" / "shard-0-of-1.txt"]
    before = {f: f.stat().st_mtime_ns for f in watched}
    p = ok(script("eval_wmt14_de_en.sh", *common(toy), "--out", out, "--", *MH))
    for step in ("prepare", "binarize", "decode"):
        assert re.search(rf"\[wmt_eval\] {step}: .*done before, skipped", p.stderr), p.stderr
    assert "--distributed" not in p.stderr and "decode: shard 0 of 1: " not in p.stderr  # generate did not run
    assert {f: f.stat().st_mtime_ns for f in watched} == before
    assert p.stdout == full_run["p"].stdout
    # the same folder with another seed: a clear refusal, nothing touched
    err = one_line_error(script("eval_wmt14_de_en.sh", *common(toy), "--out", out, "--seed", "2", "--", *MH))
    assert "other settings (seed differ)" in err and "another --out" in err
    assert {f: f.stat().st_mtime_ns for f in watched} == before


@pytest.fixture(scope="module")
def sharded(toy, full_run):
    """The full run's decoding again as 2 shards (shard 1 first), each its own process, in a
    folder that reuses the full run's prep and bin (same inputs)."""
    out = toy["base"] / "sharded"
    for d in ("prep", "bin"):
        shutil.copytree(full_run["out"] / d, out / d)
    args = [*common(toy), "--out", out]
    p1 = ok(script("eval_wmt14_de_en.sh", *args, "--num-shards", "2", "--shard-id", "1", "--", *MH))
    p0 = ok(script("eval_wmt14_de_en.sh", *args, "--num-shards", "2", "--shard-id", "0", "--", *MH))
    return {"out": out, "shard_runs": [p0, p1]}


def test_two_shards_and_merge_equal_the_unsharded_run(toy, full_run, sharded):
    out, single_out = sharded["out"], full_run["out"]
    single = h_lines([single_out / "shards" / "shard-0-of-1.txt"])
    for i, p in enumerate(sharded["shard_runs"]):
        assert f"--mh-sentences {out / 'shards' / f'ids-{i}-of-2.txt'}" in p.stderr  # its cost-balanced share
        assert "run again with --num-shards 2 --merge" in p.stderr and "BLEU" not in p.stdout
        assert "prepare: done before, skipped" in p.stderr
    shards = [out / "shards" / f"shard-{i}-of-2.txt" for i in range(2)]
    parts = [set(h_lines([f])) for f in shards]
    assert parts[0] and parts[1] and not parts[0] & parts[1]
    assert h_lines(shards) == single  # same sentences, same hypotheses, same scores
    assert not (out / "scores.json").exists()
    p = ok(script("eval_wmt14_de_en.sh", "--out", out, "--num-shards", "2", "--merge"))
    assert p.stdout == full_run["p"].stdout  # both BLEUs and signatures
    for f in ("hyp.tok.en", "hyp.detok.en"):
        assert lines(out / f) == lines(single_out / f)
    # the equality means something: another seed changes several hypotheses
    g = run(["fairseq-mh-generate", out / "bin", "--task", "translation_self", "--path",
             toy["model"] / "checkpoint_best.pt", "--cpu", "--batch-size", "8", "--seed", "2", *MH])
    other = {k: tuple(v[0]) for k, v in parse_generate(g.stdout)["H"].items()}
    assert sorted(other) == sorted(single)
    assert sum(other[k][1] != single[k][1] for k in single) >= 4
    assert not temp_leftovers(out)


def _merge_case(sharded, tmp_path, edit):
    out = sharded["out"]
    case = tmp_path / "case"
    for d in ("prep", "bin"):
        shutil.copytree(out / d, case / d)
    (case / "shards").mkdir()
    for i in range(2):
        shutil.copy(out / "shards" / f"shard-{i}-of-2.txt", case / "shards")
    edit(case / "shards")
    p = script("eval_wmt14_de_en.sh", "--out", case, "--num-shards", "2", "--merge")
    assert not [f.name for f in case.iterdir() if f.is_file()], "no merged output on error"
    return one_line_error(p)


def test_merge_refuses_a_missing_shard(sharded, tmp_path):
    err = _merge_case(sharded, tmp_path, lambda d: (d / "shard-1-of-2.txt").unlink())
    assert "1 of 2 shards have no output" in err and "shard ids 1" in err


def test_merge_refuses_duplicated_sentences(sharded, tmp_path):
    def dup(d):
        s0, s1 = (d / "shard-0-of-2.txt").read_text().split("\n", 1), (d / "shard-1-of-2.txt").read_text()
        (d / "shard-1-of-2.txt").write_text(s1 + s0[1])  # shard 0's lines appended to shard 1

    assert re.search(r"sentence \d+ was decoded by shard 0 and shard 1", _merge_case(sharded, tmp_path, dup))


def test_merge_refuses_a_missing_sentence(toy, sharded, tmp_path):
    def drop(d):
        f = d / "shard-1-of-2.txt"
        text = f.read_text().split("\n")
        first_h = next(i for i, line in enumerate(text) if line.startswith("H-"))
        drop.sid = int(text[first_h].split("\t")[0][2:])
        f.write_text("\n".join(text[:first_h] + text[first_h + 1:]))

    err = _merge_case(sharded, tmp_path, drop)
    assert f"1 of {toy['n']} sentences have no hypothesis" in err and f"(ids {drop.sid})" in err


def _model_without(toy, tmp_path, name):
    m = tmp_path / "model"
    shutil.copytree(toy["model"], m)
    (m / name).unlink()
    return m


def _short_ref(toy, tmp_path):
    ref = tmp_path / "ref.en"
    ref.write_text("".join(line + "\n" for line in lines(toy["ref"])[:-1]))
    src = tmp_path / "src.de.gz"  # gzip input is read as well
    with gzip.open(src, "wt", encoding="utf-8") as f:
        f.write(toy["src"].read_text())
    return ["--src", src, "--ref", ref]


BAD = {
    "missing checkpoint": (lambda t, d: ["--model", _model_without(t, d, "checkpoint_best.pt")],
                           "checkpoint_best.pt' not found"),
    "missing dictionary": (lambda t, d: ["--model", _model_without(t, d, "dict.en.txt")], "dict.en.txt' not found"),
    "line counts differ": (_short_ref, "has 23 lines but reference"),
    "missing source": (lambda t, d: ["--src", d / "nope.de"], "give both --src and --ref"),
    "absent source file": (lambda t, d: ["--src", d / "nope.de", "--ref", t["ref"]], "source file"),
    "missing BPE codes file": (lambda t, d: ["--bpe-codes", d / "codes"], "BPE codes"),
    "BPE codes for a word-level model": (lambda t, d: ["--bpe-codes", t["src"]], "holds no BPE pieces"),
    "option owned by the script": (lambda t, d: ["--", "--seed", "3"], "give --seed before --"),
    "bad shard id": (lambda t, d: ["--num-shards", "2", "--shard-id", "2"], "--shard-id must be in 0..1"),
    "unknown option": (lambda t, d: ["--modle", "x"], "unrecognized arguments"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_writes_nothing(toy, tmp_path, case):
    make, expected = BAD[case]
    out = tmp_path / "out"
    args = make(toy, tmp_path)
    base = {"--model": toy["model"], "--src": toy["src"], "--ref": toy["ref"]}
    given = {a for a in args if isinstance(a, str) and a.startswith("--")}
    if case == "missing source":
        base.pop("--ref")
    pre = [x for k, v in base.items() if k not in given for x in (k, v)]
    cut = args.index("--") if "--" in args else len(args)
    p = script("eval_wmt14_de_en.sh", *pre, *args[:cut], "--out", out, "--cpu", *args[cut:])
    assert expected in one_line_error(p)
    assert not out.exists()


def test_missing_tool_is_one_line(toy, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    p = script("eval_wmt14_de_en.sh", *common(toy), "--out", tmp_path / "out", env={"FAIRSEQ_MH_BIN": str(empty)})
    assert "fairseq-mh-preprocess not found" in one_line_error(p)
    assert not (tmp_path / "out").exists()


def test_a_failing_decode_leaves_no_shard_output(toy, full_run, tmp_path):
    out = tmp_path / "out"
    for d in ("prep", "bin"):  # same inputs as the full run: those steps are skipped
        shutil.copytree(full_run["out"] / d, out / d)
    p = script("eval_wmt14_de_en.sh", *common(toy), "--out", out, "--", "--sampler", "mh", "--mh-epochs", "-1")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    errors = [line for line in p.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("wmt_eval: error: fairseq-mh-generate failed"), p.stderr
    assert "mh-epochs" in errors[0]
    assert not (out / "shards" / "shard-0-of-1.txt").exists() and not temp_leftovers(out)
    assert not (out / "scores.json").exists()


def test_wrappers_are_thin_and_name_their_direction():
    assert sorted(PAIRS) == sorted(p.name for p in SCRIPTS.glob("eval_wmt*.sh"))
    for w, pair in PAIRS.items():
        text = (SCRIPTS / w).read_text()
        assert re.search(rf'^exec "\$PY" "\$here/wmt_eval\.py" --pair {pair} "\$@"$', text, re.M)
        assert os.access(SCRIPTS / w, os.X_OK)
        assert pair in wmt_eval.DEFAULT_TESTSETS
    # the same exec line in each; one runs here through bash (de-en runs end to end in full_run)
    p = script("eval_wmt16_en_ro.sh", "--help", bash=True)
    assert p.returncode == 0 and "--num-shards" in p.stdout
    assert p.stdout == script("eval_wmt16_en_ro.sh", "--help").stdout  # what the other tests run in its place


def test_romanian_normalisation():
    crafted = "\u015eeful \u015ftie c\u0103 \u0162ara \u0163ine \u00ceN \u00eenc\u0103 \u00c2\u00e2 \u0218\u0219\u021a\u021b \u201ebine\u201d \u2013 5,5%"
    assert normalise_romanian(crafted) == "Seful stie ca Tara tine IN inca Aa SsTt \u201ebine\u201d \u2013 5,5%"
    # punctuation is left to the Moses tokenizer (normalise-romanian.py does not touch it)
    pre = wmt_eval.make_preprocessor("ro")
    assert pre.tokenize("\u015eeful ONU declar\u0103 c\u0103 \u201enu exist\u0103\u201d") == \
        "Seful ONU declara ca \u201e nu exista \u201d"
    # --normalize-punctuation: Moses normalize-punctuation first (Romanian quotes become ")
    assert wmt_eval.make_preprocessor("ro", normalize_punctuation=True).tokenize("\u201enu \u0219tiu\u201d") == \
        "&quot; nu stiu &quot;"
    # other languages keep their diacritics; Moses escapes as tokenizer.perl's default
    assert wmt_eval.make_preprocessor("en").tokenize("\u0219i don't \"x\" & y") == \
        "\u0219i don &apos;t &quot; x &quot; &amp; y"


# --- the real WMT test sets (../shared) ---------------------------------------------------------

REAL = {  # README of ../shared/data: md5 of the plain text
    "wmt14_deen/newstest2014.de": (3003, "f6c3818b477e4a25cad68b61cc883c17"),
    "wmt14_deen/newstest2014.en": (3003, "dabf51a9c02b2235632f3cee75c72d49"),
    "wmt16_roen/newstest2016-enro.ro.gz": (1999, "2ffed90d6479855965428c1d893e4755"),
    "wmt16_roen/newstest2016-enro.en.gz": (1999, "9fb63c6f38cc7235c6dd5ff3bcde3e6d"),
}


def test_real_test_sets_load_whole(shared):
    for rel, (n, md5) in REAL.items():
        got = wmt_eval.read_lines(shared / "data" / rel)
        assert len(got) == n
        assert hashlib.md5("".join(x + "\n" for x in got).encode("utf-8")).hexdigest() == md5, rel
    assert set(wmt_eval.DEFAULT_TESTSETS["de-en"] + wmt_eval.DEFAULT_TESTSETS["ro-en"]) == set(REAL)


@pytest.mark.parametrize("pair", ["de-en", "ro-en"])
def test_real_test_sets_preprocess_sanely(shared, tmp_path, pair):
    src_lang, tgt_lang = pair.split("-")
    data, codes = shared / "data", shared / "data" / "bpe" / "bpe.32000"
    src_file, ref_file = (data / p for p in wmt_eval.DEFAULT_TESTSETS[pair])
    src_raw, ref_raw = wmt_eval.read_lines(src_file)[:20], wmt_eval.read_lines(ref_file)[:20]
    args = type("A", (), {"pair": pair, "normalize_punctuation": False})()
    inp = {"src_lang": src_lang, "tgt_lang": tgt_lang, "src": src_file, "ref": ref_file, "src_lines": src_raw,
           "ref_lines": ref_raw, "bpe_codes": codes}
    out = tmp_path / "out"
    wmt_eval.step_prepare(args, inp, out, wmt_eval.prep_fingerprint(args, inp))
    prep = out / "prep"
    for lang, raw in ((src_lang, src_raw), (tgt_lang, ref_raw)):
        tok, bpe = lines(prep / f"test.tok.{lang}"), lines(prep / f"test.{lang}")
        assert len(tok) == len(bpe) == 20 and all(tok) and all(bpe)
        assert [(b + " ").replace("@@ ", "").rstrip() for b in bpe] == tok  # BPE only splits words
        assert any("@@" in b for b in bpe) and sum(len(b.split()) for b in bpe) > sum(len(t.split()) for t in tok)
        for r, t in zip(raw, tok):
            assert "  " not in t and '"' not in t and "'" not in t  # Moses escapes quotes (&quot; &apos;)
            if '"' in r:
                assert "&quot;" in t
        if lang == "ro":
            assert not re.search("[\u0218\u0219\u021a\u021b\u015e\u015f\u0162\u0163\u0102\u0103\u00c2\u00e2\u00ce\u00ee]",
                                 "".join(tok))
            assert any(re.search("[\u0219\u021b\u0103\u00e2\u00ee]", r) for r in raw)
        else:  # Moses detokenization gives most raw lines back exactly
            detok = wmt_eval.moses_detokenizer(lang)
            assert sum(detok(t) == r for t, r in zip(tok, raw)) >= 14
    assert lines(prep / f"ref.raw.{tgt_lang}") == ref_raw
    done = json.loads((prep / "done.json").read_text())
    assert done["sentences"] == 20 and done["fingerprint"]["bpe_codes"] is not None
