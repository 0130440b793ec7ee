"""fairseq-mh-interactive survives bad lines (issue 10, item 2): each gets one warning, and the
good line after it is still translated."""

import re

import pytest

from cli_helpers import BIN, run

GOOD = b"s1 s2 s3\n"


def interactive(model, stdin: bytes, *extra):
    cmd = [str(BIN / "fairseq-mh-interactive"), str(model["data"]), "--task", "translation_mh", "--path",
           str(model["checkpoint"]), "--sampler", "mh", "--mh-epochs", "1", "--length-beam", "1", "--cpu",
           "--source-lang", "src", "--target-lang", "tgt", *extra]
    p = run(cmd, check=False, input_text=stdin, text=False)
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    assert p.returncode == 0 and "Traceback" not in err, err[-3000:]
    hyps = {}
    for m in re.finditer(r"^H-(\d+)\t\S+\t(.*)$", out, re.M):
        hyps[int(m.group(1))] = m.group(2)
    warnings = [line for line in err.splitlines() if ": warning: " in line]
    return hyps, warnings


def good_translation(hyps, i):
    assert hyps[i].strip() and set(hyps[i].split()) <= {f"t{k}" for k in range(20)} | {f"u{k}" for k in range(20)}


@pytest.mark.parametrize("blank", [b"\n", b"   \t \n"], ids=["empty", "spaces"])
def test_blank_line_gives_an_empty_hypothesis_and_a_warning(tiny_cmlm, blank):
    hyps, warnings = interactive(tiny_cmlm, blank + GOOD)
    assert hyps[0] == ""
    good_translation(hyps, 1)
    assert warnings == ["fairseq-mh-interactive: warning: line 1 is empty: its hypothesis is empty"]


def test_over_long_line_is_skipped_with_the_limit_and_the_session_goes_on(tiny_cmlm):
    long = (" ".join(f"s{i % 20}" for i in range(2000)) + "\n").encode()
    hyps, warnings = interactive(tiny_cmlm, GOOD + long + GOOD)
    assert sorted(hyps) == [0, 2] and hyps[0] == hyps[2]
    assert len(warnings) == 1
    assert re.search(r"line 2 has 2001 tokens, more than the model's limit of \d+ source tokens: skipped", warnings[0])


def test_invalid_utf8_is_replaced_by_default_and_named(tiny_cmlm):
    hyps, warnings = interactive(tiny_cmlm, b"s1 \xff\xfe s2\n" + GOOD)
    assert sorted(hyps) == [0, 1]  # translated with U+FFFD (an unknown word) in place of the bytes
    good_translation(hyps, 1)
    assert len(warnings) == 1
    assert "line 1 has bytes that are not UTF-8 (byte 4): replaced them with U+FFFD" in warnings[0]
    assert "--mh-invalid-utf8 skip" in warnings[0]


def test_invalid_utf8_can_be_skipped(tiny_cmlm):
    hyps, warnings = interactive(tiny_cmlm, GOOD + b"\xc3\x28 s4\n" + GOOD, "--mh-invalid-utf8", "skip")
    assert sorted(hyps) == [0, 2] and hyps[0] == hyps[2]
    assert len(warnings) == 1 and "line 2 has bytes that are not UTF-8 (byte 1): skipped it" in warnings[0]


def test_a_session_of_every_bad_line_keeps_line_numbers_as_ids(tiny_cmlm):
    long = (" ".join(["s3"] * 1500) + "\n").encode()
    hyps, warnings = interactive(tiny_cmlm, b"\n" + long + b"\xff\n" + GOOD, "--buffer-size", "4",
                                 "--batch-size", "4")
    assert hyps[0] == "" and 1 not in hyps and 2 in hyps
    good_translation(hyps, 3)
    assert sorted(w.split(": warning: ")[1].split(" ")[1] for w in warnings) == ["1", "2", "3"]
