"""fairseq_mh.textio, the text and file module both pipelines share: line reading, files and
folders written whole or not at all, tool errors as one line, the preprocessor's explicit
settings, and BLEU."""

from __future__ import annotations

import gzip
import os
import stat
import sys
import types
from pathlib import Path

import pytest

from fairseq_mh.core.errors import UserError
from fairseq_mh.textio import (
    MosesSettings,
    Preprocessor,
    atomic_file,
    atomic_folder,
    atomic_write,
    error_line,
    find_tool,
    read_lines,
    run_tool,
    sacrebleu_score,
    tokenized_bleu,
    write_lines,
)

REPO = Path(__file__).resolve().parents[1]


def leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------------------ lines
def test_lines_split_on_newline_only(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes("a\r\nb\rc\u2028d\n\ne".encode("utf-8"))
    assert read_lines(f) == ["a", "b\rc\u2028d", "", "e"]  # CRLF ends a line, a lone CR does not
    g = tmp_path / "t.txt.gz"
    with gzip.open(g, "wb") as h:
        h.write("x\ny\n".encode("utf-8"))
    assert read_lines(g) == ["x", "y"]
    (tmp_path / "empty").write_bytes(b"")
    assert read_lines(tmp_path / "empty") == []


def test_bad_bytes_are_one_line_naming_the_file_and_the_byte(tmp_path):
    f = tmp_path / "latin1.txt"
    f.write_bytes("ok\nSch\u00f6n\n".encode("latin-1"))
    with pytest.raises(UserError) as e:
        read_lines(f)
    msg = str(e.value)
    assert "latin1.txt' is not UTF-8 text" in msg and "at byte 6" in msg and "convert it to UTF-8" in msg
    with pytest.raises(UserError, match="cannot read"):
        read_lines(tmp_path / "absent.txt")


# ------------------------------------------------------------------------------ atomic writes
def test_atomic_write_replaces_whole_with_plain_permissions(tmp_path):
    f = tmp_path / "sub" / "out.txt"
    atomic_write(f, "old\n")
    write_lines(f, ["new", "lines"])
    assert f.read_text() == "new\nlines\n" and leftovers(f.parent) == []
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_a_failed_write_leaves_nothing(tmp_path, exc):
    f = tmp_path / "out.txt"
    with pytest.raises(exc):
        with atomic_file(f) as h:
            h.write("half")
            raise exc()
    assert not f.exists() and leftovers(tmp_path) == []
    atomic_write(f, "kept\n")
    with pytest.raises(exc):
        with atomic_file(f, binary=True) as h:
            h.write(b"half")
            raise exc()
    assert f.read_text() == "kept\n" and leftovers(tmp_path) == []


def test_atomic_folder_all_or_nothing(tmp_path):
    final = tmp_path / "step"
    with pytest.raises(UserError):
        with atomic_folder(final) as tmp:
            (tmp / "part").write_text("x")
            raise UserError("tool failed")
    assert not final.exists() and leftovers(tmp_path) == []
    with atomic_folder(final) as tmp:
        (tmp / "a").write_text("first")
    assert (final / "a").read_text() == "first"
    with atomic_folder(final) as tmp:  # another process was first: its folder is kept
        (tmp / "a").write_text("second")
    assert (final / "a").read_text() == "first" and leftovers(tmp_path) == []
    with atomic_folder(final, replace=True) as tmp:
        (tmp / "b").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["b"] and leftovers(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):
        with atomic_folder(final, replace=True) as tmp:
            raise KeyboardInterrupt()
    assert (final / "b").read_text() == "new" and leftovers(tmp_path) == []


# ------------------------------------------------------------------------------ tools
def test_error_line_is_the_tools_own():
    assert error_line("log\nusage: x\nx: error: bad flag\n\n") == "x: error: bad flag"
    assert error_line("a\n  last words  \n\n") == "last words"
    assert error_line("") == "(no output)"


def test_a_failing_tool_is_one_line_with_its_log(tmp_path):
    code = "import sys; print('working'); print('tool: error: --x must be > 0', file=sys.stderr); sys.exit(3)"
    log = tmp_path / "logs" / "tool.log"
    with pytest.raises(UserError) as e:
        run_tool([sys.executable, "-c", code], log, "tool")
    assert str(e.value) == f"tool failed (exit 3): tool: error: --x must be > 0 [log: {log}]"
    assert "working" in log.read_text()


def test_find_tool_honours_fairseq_mh_bin(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRSEQ_MH_BIN", str(tmp_path))
    with pytest.raises(UserError, match=r"fairseq-mh-generate not found in \$FAIRSEQ_MH_BIN"):
        find_tool("fairseq-mh-generate")
    exe = tmp_path / "fairseq-mh-generate"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert find_tool("fairseq-mh-generate") == str(exe)


# ------------------------------------------------------------------------------ preprocessing
def test_the_moses_settings_have_no_default_for_dash_splits():
    with pytest.raises(TypeError):
        MosesSettings()
    with pytest.raises(TypeError):
        Preprocessor("en")  # moses= must be given (None: no Moses)


def test_dash_splits_and_the_other_settings_do_what_they_say():
    line = "state-of-the-art \u201equotes\u201d & \u0219i"
    plain = Preprocessor("en", moses=MosesSettings(aggressive_dash_splits=False))
    dashes = Preprocessor("en", moses=MosesSettings(aggressive_dash_splits=True))
    assert plain.tokenize(line) == "state-of-the-art \u201e quotes \u201d &amp; \u0219i"
    assert dashes.tokenize(line) == "state @-@ of @-@ the @-@ art \u201e quotes \u201d &amp; \u0219i"
    raw = Preprocessor("en", moses=MosesSettings(aggressive_dash_splits=False, escape=False))
    assert raw.tokenize("a & b") == "a & b"
    punct = Preprocessor("ro", moses=MosesSettings(aggressive_dash_splits=False, normalize_punctuation=True),
                         romanian=True)
    assert punct.tokenize("\u201enu \u0219tiu\u201d") == "&quot; nu stiu &quot;"
    none = Preprocessor("en", moses=None)
    assert none.tokenize("  a-b  ") == "  a-b  " and none("  a-b  c ") == "a-b c"


def test_each_pipeline_states_its_dash_setting(tmp_path):
    """wmt_eval: no dash splits (the released models' data); the runner with tokenizer: moses:
    dash splits (fairseq's --tokenizer moses)."""
    import importlib.util

    from fairseq_mh.experiments.data import encoder

    spec = importlib.util.spec_from_file_location("wmt_eval_for_textio", REPO / "scripts" / "wmt_eval.py")
    wmt_eval = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wmt_eval)
    assert wmt_eval.make_preprocessor("de")("Nord-Ost") == "Nord-Ost"
    cfg = types.SimpleNamespace(tokenizer="moses", bpe=None, bpe_model=None)
    assert encoder(cfg, "de")("Nord-Ost") == "Nord @-@ Ost"
    cfg = types.SimpleNamespace(tokenizer=None, bpe=None, bpe_model=None)
    assert encoder(cfg, "de")(" Nord-Ost  x") == "Nord-Ost x"


def test_subword_models_and_their_errors(tmp_path):
    codes = tmp_path / "codes"
    codes.write_text("#version: 0.2\nN o\nNo r\nNor d</w>\n", encoding="utf-8")
    bpe = Preprocessor("de", moses=MosesSettings(aggressive_dash_splits=False), subword="subword_nmt",
                       subword_model=codes)
    assert bpe("Nord Nordost") == "Nord Nor@@ d@@ o@@ s@@ t" and bpe.segment("") == ""
    with pytest.raises(UserError, match="cannot read sentencepiece model"):
        Preprocessor("de", moses=None, subword="sentencepiece", subword_model=tmp_path / "absent.model")
    with pytest.raises(UserError, match="unknown subword model 'gpt2'"):
        Preprocessor("de", moses=None, subword="gpt2")


# ------------------------------------------------------------------------------ BLEU
def test_bleu_is_sacrebleus_and_the_tokenized_one():
    import sacrebleu

    hyps, refs = ["the cat sat on the mat .", "a dog"], ["the cat sat on a mat .", "a big dog"]
    score, sig = sacrebleu_score(hyps, refs)
    assert score.score == sacrebleu.corpus_bleu(hyps, [refs]).score and "tok:13a" in sig
    tok, tsig = tokenized_bleu(["x &apos;s y z w"], ["x &apos;s y z w"])
    assert tok.score == pytest.approx(100.0) and "tok:none" in tsig and "smooth:none" in tsig
    assert tokenized_bleu(["a b c d"], ["e f g h"])[0].score == 0.0
