"""The README's main command: the demo decodes with every decoder and writes its outputs."""

import sys
from pathlib import Path

from cli_helpers import run

REPO = Path(__file__).resolve().parents[1]
DECODERS = ["mask-predict", "degenerate Gibbs", "MH raw", "MH local", "annealed block MH raw"]


def demo(*args):
    return run([sys.executable, "-m", "fairseq_mh.demo", *args], check=False, cwd=REPO)


def test_demo_prints_the_table_and_writes_the_plot(tmp_path):
    # the embedded model on the first 4 of its 12 sentences, one length each (the default run, cut)
    for lang in ("de", "en"):
        lines = (REPO / "demo" / f"sentences.{lang}").read_text().splitlines(keepends=True)
        (tmp_path / f"first4.{lang}").write_text("".join(lines[:4]))
    p = demo("--sentences", tmp_path / "first4", "--epochs", "2", "--burn-in", "0", "--chains", "1",
             "--length-beam", "1", "--out", tmp_path / "out")
    assert p.returncode == 0, p.stderr[-3000:]
    table = [l for l in p.stdout.splitlines() if l.startswith("|")]
    names = [l.split("|")[1].strip() for l in table if not l.startswith("| decoder") and "---" not in l]
    assert names == DECODERS
    for line in table[2:]:
        bleu = float(line.split("|")[2])
        assert 0 <= bleu <= 100
    assert (tmp_path / "out" / "results.md").read_text().strip() == "\n".join(table)
    png = (tmp_path / "out" / "energy_acceptance.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    hyps = (tmp_path / "out" / "hyp_MH_raw.en").read_text().splitlines()
    assert len(hyps) == 4 and all(hyps)


def test_demo_bad_input_is_one_line(tmp_path):
    p = demo("--model", tmp_path / "nomodel", "--out", tmp_path / "out")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().count("\n") == 0 and "checkpoint.pt is missing" in p.stderr
    assert not (tmp_path / "out").exists()
