"""Test data, prepared once per (data, model) setting into a cache folder.

Raw source and reference text (gzip or plain) -> optional Moses tokenisation -> the model's
subword model (SentencePiece or subword-nmt BPE) -> the source-length filter and subset ->
``fairseq-preprocess`` with the model's own dictionaries.  The raw references of the kept
sentences are stored next to the binarised data: BLEU is always against them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List

from .spec import ExperimentError

log = logging.getLogger(__name__)

__all__ = ["Prepared", "prepare_data", "read_lines", "file_stamp", "tool"]


@dataclass
class Prepared:
    folder: Path  # the cache folder
    bin_dir: Path  # fairseq-preprocess output (split 'test')
    key: str
    sources: List[str]  # raw
    references: List[str]  # raw
    indices: List[int]  # line numbers of the kept sentences in the raw files


def read_lines(path: str) -> List[str]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [l.rstrip("\n") for l in f]


def file_stamp(path) -> dict:
    """What identifies a file's version cheaply: path, size, modification time."""
    if path is None:
        return None
    st = os.stat(path)
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime": int(st.st_mtime)}


def tool(name: str) -> str:
    """A console command next to this Python (the virtual environment), else on PATH."""
    import sys

    cand = Path(sys.executable).parent / name
    if cand.exists():
        return str(cand)
    found = shutil.which(name)
    if not found:
        raise ExperimentError(f"command '{name}' not found next to {sys.executable} or on PATH")
    return found


class _Encoder:
    def __init__(self, model_cfg, lang: str):
        self.bpe = model_cfg.bpe
        self.tok = None
        if model_cfg.tokenizer == "moses":
            from sacremoses import MosesTokenizer

            self.tok = MosesTokenizer(lang=lang)
        if self.bpe == "sentencepiece":
            import sentencepiece as spm

            self.sp = spm.SentencePieceProcessor(model_file=str(model_cfg.bpe_model))
        elif self.bpe == "subword_nmt":
            from subword_nmt.apply_bpe import BPE

            with open(model_cfg.bpe_model, encoding="utf-8") as f:
                self.codes = BPE(f)

    def __call__(self, line: str) -> str:
        if self.tok is not None:  # as fairseq's --tokenizer moses (dash splits, escaping)
            line = self.tok.tokenize(line, aggressive_dash_splits=True, return_str=True, escape=True)
        if self.bpe == "sentencepiece":
            return " ".join(self.sp.encode(line, out_type=str))
        if self.bpe == "subword_nmt":
            return self.codes.process_line(line)
        return " ".join(line.split())


def data_key(cfg) -> str:
    m, d = cfg.model, cfg.data
    spec = {
        "source": file_stamp(d.source),
        "reference": file_stamp(d.reference),
        "langs": [d.src_lang, d.tgt_lang],
        "max_source_len": d.max_source_len,
        "max_sentences": d.max_sentences,
        "src_dict": file_stamp(m.src_dict),
        "tgt_dict": file_stamp(m.tgt_dict),
        "bpe": m.bpe,
        "bpe_model": file_stamp(m.bpe_model) if m.bpe else None,
        "tokenizer": m.tokenizer,
        "version": 1,
    }
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def prepare_data(cfg, force: bool = False) -> Prepared:
    """The binarised test set for ``cfg.data`` and ``cfg.model``, from the cache when present."""
    m, d = cfg.model, cfg.data
    key = data_key(cfg)
    folder = Path(cfg.cache_dir) / f"{d.name}--{m.name}--{key[:12]}"
    meta_path = folder / "meta.json"
    if meta_path.is_file() and not force:
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key:
            log.info("data: reusing %s (%d sentences)", folder, len(meta["indices"]))
            return Prepared(folder, folder / "bin", key, meta["sources"], meta["references"], meta["indices"])
    src_raw, ref_raw = read_lines(d.source), read_lines(d.reference)
    if len(src_raw) != len(ref_raw):
        raise ExperimentError(
            f"data.source has {len(src_raw)} lines but data.reference has {len(ref_raw)}: they must be parallel"
        )
    enc_src, enc_tgt = _Encoder(m, d.src_lang), _Encoder(m, d.tgt_lang)
    keep, src_enc, ref_enc = [], [], []
    for i, (s, r) in enumerate(zip(src_raw, ref_raw)):
        es = enc_src(s)
        if not es.strip():
            continue
        if d.max_source_len is not None and len(es.split()) > d.max_source_len:
            continue
        keep.append(i)
        src_enc.append(es)
        ref_enc.append(enc_tgt(r))
        if d.max_sentences is not None and len(keep) == d.max_sentences:
            break
    if not keep:
        raise ExperimentError(
            f"no sentence of {d.source} is left after data.max_source_len={d.max_source_len}: raise it or set it to null"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    prefix = tmp / "test"
    (tmp / f"test.{d.src_lang}").write_text("\n".join(src_enc) + "\n", encoding="utf-8")
    (tmp / f"test.{d.tgt_lang}").write_text("\n".join(ref_enc) + "\n", encoding="utf-8")
    cmd = [tool("fairseq-preprocess"), "--source-lang", d.src_lang, "--target-lang", d.tgt_lang,
           "--testpref", str(prefix), "--destdir", str(tmp / "bin"), "--srcdict", str(m.src_dict),
           "--tgtdict", str(m.tgt_dict), "--workers", "1"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(cfg))
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ExperimentError(f"fairseq-preprocess failed on {tmp}: {last}")
    sources = [src_raw[i] for i in keep]
    references = [ref_raw[i] for i in keep]
    meta = {"key": key, "indices": keep, "sources": sources, "references": references,
            "source": str(d.source), "reference": str(d.reference)}
    (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    log.info("data: %d of %d sentences binarised into %s", len(keep), len(src_raw), folder)
    return Prepared(folder, folder / "bin", key, sources, references, keep)


def _env(cfg) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if cfg.get("threads"):
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(cfg.threads)
    return env
