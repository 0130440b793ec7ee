"""Test data, prepared once per (data, model) setting into a cache folder.

Raw source and reference text (gzip or plain) -> optional Moses tokenisation -> the model's
subword model (SentencePiece or subword-nmt BPE) -> the source-length filter and subset ->
``fairseq-preprocess`` with the model's own dictionaries.  The raw references of the kept
sentences are stored next to the binarised data: BLEU is always against them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List

from ..textio import MosesSettings, Preprocessor, atomic_folder, atomic_write, file_stamp, find_tool, read_lines, run_tool
from .spec import ExperimentError

log = logging.getLogger(__name__)

__all__ = ["Prepared", "prepare_data", "encoder"]

# Models with ``tokenizer: moses`` are decoded with fairseq's --tokenizer moses, whose encoder
# splits dashes (tokenizer.perl -a) and escapes: the test sources are tokenized the same way.
FAIRSEQ_MOSES = MosesSettings(aggressive_dash_splits=True)


@dataclass
class Prepared:
    folder: Path  # the cache folder
    bin_dir: Path  # fairseq-preprocess output (split 'test')
    key: str
    sources: List[str]  # raw
    references: List[str]  # raw
    indices: List[int]  # line numbers of the kept sentences in the raw files


def encoder(model_cfg, lang: str) -> Preprocessor:
    """Raw line -> the model's input text (``model.tokenizer``, then ``model.bpe``)."""
    moses = FAIRSEQ_MOSES if model_cfg.tokenizer == "moses" else None
    return Preprocessor(lang, moses=moses, subword=model_cfg.bpe or None,
                        subword_model=model_cfg.bpe_model if model_cfg.bpe else None)


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
    enc_src, enc_tgt = encoder(m, d.src_lang), encoder(m, d.tgt_lang)
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
    sources = [src_raw[i] for i in keep]
    references = [ref_raw[i] for i in keep]
    meta = {"key": key, "indices": keep, "sources": sources, "references": references,
            "source": str(d.source), "reference": str(d.reference)}
    with atomic_folder(folder, replace=True) as tmp:
        atomic_write(tmp / f"test.{d.src_lang}", "\n".join(src_enc) + "\n")
        atomic_write(tmp / f"test.{d.tgt_lang}", "\n".join(ref_enc) + "\n")
        cmd = [find_tool("fairseq-preprocess"), "--source-lang", d.src_lang, "--target-lang", d.tgt_lang,
               "--testpref", str(tmp / "test"), "--destdir", str(tmp / "bin"), "--srcdict", str(m.src_dict),
               "--tgtdict", str(m.tgt_dict), "--workers", "1"]
        run_tool(cmd, folder.parent / f"{folder.name}.preprocess.log", "fairseq-preprocess", env=_env(cfg))
        atomic_write(tmp / "meta.json", json.dumps(meta, ensure_ascii=False, indent=1))
    log.info("data: %d of %d sentences binarised into %s", len(keep), len(src_raw), folder)
    return Prepared(folder, folder / "bin", key, sources, references, keep)


def _env(cfg) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if cfg.get("threads"):
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(cfg.threads)
    return env
