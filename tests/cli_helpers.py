"""Running the plug-in's commands in tests, and the tiny models the tests train themselves."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "LOGLEVEL": "WARNING", "OMP_NUM_THREADS": "1"}


def run(cmd: List[str], check=True, input_text=None, cwd=None, env=None, fresh=False,
        text=True) -> subprocess.CompletedProcess:
    """Runs a command of the venv (``env``: variables to set beside ``ENV``, None to unset one;
    ``text=False``: bytes in and out, as subprocess.run's).  A Python command
    runs as a child of this worker's fork server (``cli_forkserver``: the same process a fresh
    start would be, less the seconds of importing torch); ``fresh`` (or FAIRSEQ_MH_TEST_FORK=0)
    starts a new interpreter instead."""
    exe = str(BIN / cmd[0]) if (BIN / cmd[0]).exists() else cmd[0]
    argv = [exe, *map(str, cmd[1:])]
    full_env = {k: v for k, v in {**ENV, **(env or {})}.items() if v is not None}
    p = None if fresh else _forked(argv, full_env, cwd, input_text, text)
    if p is None:
        p = subprocess.run(argv, capture_output=True, text=text, env=full_env, input=input_text, cwd=cwd)
    if check and p.returncode != 0:
        err = p.stderr if text else p.stderr.decode("utf-8", "replace")
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{err[-4000:]}")
    return p


def _entry(argv: List[str]):
    """(kind, target, sys.argv) of a Python command as the interpreter would run it, or None."""
    exe = argv[0]
    if exe in (sys.executable, str(BIN / "python"), str(BIN / "python3")):
        if len(argv) > 2 and argv[1] == "-m":
            return "module", argv[2], ["-m", *argv[3:]]  # runpy puts the module's file in argv[0]
        if len(argv) > 1 and argv[1].endswith(".py"):
            return "path", argv[1], argv[1:]
        return None
    try:
        with open(exe, "rb") as f:
            first = f.readline()
    except OSError:
        return None
    return ("path", exe, argv) if first.startswith(b"#!") and b"python" in first else None


class _ForkServer:
    """This worker's ``cli_forkserver`` process (started on first use, ended with the worker)."""

    def __init__(self):
        self.env = dict(ENV)
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("cli_forkserver.py"))],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=self.env)
        hello = self.proc.stdout.readline()
        self.ready = bool(hello) and json.loads(hello)["ready"]

    def run(self, entry, argv, env, cwd, input_text, text) -> subprocess.CompletedProcess:
        kind, target, child_argv = entry
        with tempfile.TemporaryDirectory(prefix="fork-") as tmp:
            files = {k: os.path.join(tmp, k) for k in ("stdin", "stdout", "stderr")}
            if input_text is None:
                files["stdin"] = os.devnull
            else:
                with open(files["stdin"], "w" if text else "wb") as f:
                    f.write(input_text)
            req = {"entry": [kind, str(target)], "argv": child_argv, "env": env,
                   "cwd": str(cwd) if cwd else None, **files}
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            self.proc.stdin.flush()
            answer = self.proc.stdout.readline()
            if not answer:
                raise RuntimeError(f"the tests' fork server ended (exit {self.proc.poll()}) while running {argv}")
            out = []
            for k in ("stdout", "stderr"):
                with open(files[k], "r" if text else "rb") as f:  # as subprocess.run decodes (text: locale)
                    out.append(f.read())
        return subprocess.CompletedProcess(argv, json.loads(answer)["returncode"], *out)


_server: Optional[_ForkServer] = None


def _forked(argv, env, cwd, input_text, text) -> Optional[subprocess.CompletedProcess]:
    """The command run by the fork server, or None where it must be a fresh process."""
    global _server
    from cli_forkserver import forkable_env

    entry = _entry(argv)
    if entry is None or os.environ.get("FAIRSEQ_MH_TEST_FORK", "1") == "0" or not hasattr(os, "fork"):
        return None
    if _server is None:
        _server = _ForkServer()
    if not _server.ready or not forkable_env(_server.env, env):
        return None
    return _server.run(entry, argv, env, cwd, input_text, text)


def forced_half(dtype) -> Optional[Dict[str, str]]:
    """The ``env`` that lets a CLI test run --bf16/--fp16 (``dtype``) on a CPU without kernels for
    it, where the run is refused by default (``preflight.check_precision``); None where it has them."""
    from fairseq_mh.cpu_runtime import native_half
    from fairseq_mh.preflight import ALLOW_SLOW_HALF

    return None if native_half(dtype) else {ALLOW_SLOW_HALF: "1"}


def parse_generate(stdout: str) -> Dict[str, Dict[int, list]]:
    """{'S': {id: [fields]}, 'T': ..., 'H': {id: [[score, text], ...]}, 'D': ..., 'P': ...} and 'BLEU'."""
    out: Dict[str, Dict[int, list]] = {k: {} for k in "STHDP"}
    bleu = None
    for line in stdout.splitlines():
        m = re.match(r"^([STHDP])-(\d+)\t(.*)$", line)
        if m:
            kind, sid, rest = m.group(1), int(m.group(2)), m.group(3).split("\t")
            if kind in "HDP":
                out[kind].setdefault(sid, []).append(rest)
            else:
                out[kind][sid] = rest
        elif "BLEU" in line and line.startswith("Generate"):
            bleu = line
    out["BLEU"] = bleu
    return out


def user_error(p: subprocess.CompletedProcess) -> str:
    """The one-line error of a failed command (asserts it is one line and no traceback)."""
    assert p.returncode != 0, "command should have failed"
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    lines = [l for l in p.stderr.splitlines() if ": error:" in l]
    assert len(lines) == 1, p.stderr[-3000:]
    return lines[0]


# --- a synthetic translation task ----------------------------------------------------------

def write_toy_corpus(folder: Path, n_train=2000, n_valid=40, n_test=23, vocab=20, seed=0) -> None:
    """Source: random words s0..s{vocab-1}; target: the source reversed, each word mapped to
    t<i>, words divisible by 7 expanding to two tokens (so lengths differ)."""
    rnd = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("valid", n_valid), ("test", n_test)):
        src, tgt = [], []
        for _ in range(n):
            words = [rnd.randrange(vocab) for _ in range(rnd.randint(3, 7))]
            t = []
            for w in reversed(words):
                t.append(f"t{w}")
                if w % 7 == 0:
                    t.append(f"u{w}")
            src.append(" ".join(f"s{w}" for w in words))
            tgt.append(" ".join(t))
        (folder / f"{split}.src").write_text("\n".join(src) + "\n")
        (folder / f"{split}.tgt").write_text("\n".join(tgt) + "\n")


CMLM_TRAIN_ARGS = [
    "--task", "translation_lev", "--arch", "cmlm_transformer", "--noise", "random_mask",
    "--criterion", "nat_loss", "--share-all-embeddings",
    "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "32",
    "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
    "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
    "--optimizer", "adam", "--lr", "0.005", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "40",
    "--max-tokens", "4000", "--length-loss-factor", "0.1", "--apply-bert-init",
    "--decoder-learned-pos", "--encoder-learned-pos", "--dropout", "0.0", "--cpu", "--seed", "1",
    "--no-epoch-checkpoints", "--num-workers", "0", "--disable-validation", "--log-interval", "1000",
]


def train_tiny_cmlm(workdir: Path, updates: int = 120) -> Dict[str, Path]:
    """Corpus -> fairseq-preprocess -> fairseq-train cmlm_transformer for a few updates."""
    raw = workdir / "raw"
    write_toy_corpus(raw)
    data = workdir / "bin"
    run(["fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt", "--trainpref", raw / "train",
         "--validpref", raw / "valid", "--testpref", raw / "test", "--destdir", data, "--joined-dictionary",
         "--workers", "1"])
    ckpt_dir = workdir / "ckpt"
    run(["fairseq-train", data, *CMLM_TRAIN_ARGS, "--max-update", str(updates), "--save-dir", ckpt_dir])
    return {"raw": raw, "data": data, "checkpoint": ckpt_dir / "checkpoint_last.pt"}
