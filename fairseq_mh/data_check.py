"""Binarized data made with a dictionary other than the task's: detected before decoding.

Why: Mask-Predict dictionaries put ``<mask>`` at index 4, before the entries of
``dict.*.txt``; stock ``fairseq-preprocess`` with the same ``dict.*.txt`` does not, so every
id is off by one, nothing fails, and the output is garbage (BLEU 0).  Two signals decide:

* a marker, ``fairseq_mh_preprocess.json``, that ``fairseq-mh-preprocess`` writes beside the
  data, saying whether its dictionaries had ``<mask>``; when present it settles the question;
* without a marker, the ids themselves: correctly binarized Mask-Predict data never holds the
  ``<mask>`` id (the binarizer never emits it), while off-by-one data maps the dictionary's
  first, most frequent entry (".", ",", "the") to it, so any real test set holds it many times.
  Ids beyond the dictionary are refused for every task.
"""

from __future__ import annotations

import json
import os
from typing import Optional

import numpy as np

from .errors import UserError

__all__ = ["MARKER", "write_marker", "marking", "check_binarized"]

MARKER = "fairseq_mh_preprocess.json"
_SCAN_SENTENCES = 200_000  # fallback scan (non-mmap data): enough for any test set


def write_marker(args) -> None:
    """Records how ``fairseq-mh-preprocess`` binarized ``args.destdir``."""
    record = {"written_by": "fairseq-mh-preprocess", "task": args.task,
              "mask_symbol": args.task == "translation_self",
              "source_lang": args.source_lang, "target_lang": args.target_lang}
    with open(os.path.join(args.destdir, MARKER), "w", encoding="utf-8") as f:
        json.dump(record, f)
        f.write("\n")


def marking(main):
    """``fairseq_cli.preprocess.main`` that also writes the marker."""
    def main_and_mark(args):
        result = main(args)
        write_marker(args)
        return result

    return main_and_mark


def _read_marker(folder: str) -> Optional[dict]:
    try:
        with open(os.path.join(folder, MARKER), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _ids(dataset) -> np.ndarray:
    """All token ids of an indexed dataset: the mmap buffer when there is one, else a scan."""
    inner = dataset
    while not hasattr(inner, "_bin_buffer") and hasattr(inner, "dataset"):
        inner = inner.dataset
    if getattr(inner, "_bin_buffer", None) is not None:
        return np.frombuffer(inner._bin_buffer, dtype=inner._index.dtype)
    n = min(len(dataset), _SCAN_SENTENCES)
    return np.concatenate([np.asarray(dataset[i]) for i in range(n)]) if n else np.zeros(0, np.int64)


def _command(task, split: str, folder: str) -> str:
    cfg = task.cfg
    pref = f"--{split}pref" if split in ("train", "valid", "test") else "--testpref"
    return (f"fairseq-mh-preprocess --task {task.task_name} --source-lang {cfg.source_lang} "
            f"--target-lang {cfg.target_lang} --srcdict {os.path.join(folder, f'dict.{cfg.source_lang}.txt')} "
            f"--tgtdict {os.path.join(folder, f'dict.{cfg.target_lang}.txt')} {pref} RAW_TEXT_PREFIX "
            f"--destdir NEW_FOLDER")


def check_binarized(task, split: str, folder: str) -> None:
    """Refuses ``split`` of ``folder`` when it was binarized for another dictionary layout."""
    dataset = task.datasets[split]
    mask = getattr(task.source_dictionary, "mask_index", None)
    marker = _read_marker(folder)
    wrong = None
    if marker is not None and bool(marker.get("mask_symbol")) != (mask is not None):
        with_without = "with" if marker.get("mask_symbol") else "without"
        wrong = f"its marker {MARKER} says it was binarized for --task {marker.get('task')}, {with_without} <mask>"
    for side, d, ds in (("source", task.source_dictionary, dataset.src), ("target", task.target_dictionary,
                                                                          getattr(dataset, "tgt", None))):
        if wrong is not None or ds is None:
            continue
        ids = _ids(ds)
        if ids.size and int(ids.max()) >= len(d):
            wrong = f"its {side} ids go up to {int(ids.max())} but the {side} dictionary has {len(d)} entries"
        elif marker is None and mask is not None and ids.size and (hits := int((ids == mask).sum())):
            wrong = (f"{hits} of its {ids.size} {side} tokens have id {mask}, which --task {task.task_name} "
                     f"reserves for <mask>: it was binarized without <mask> (stock fairseq-preprocess), so every "
                     f"id is off by one")
    if wrong is not None:
        raise UserError(f"the '{split}' data in {folder} does not match --task {task.task_name}'s dictionaries: "
                        f"{wrong}; binarize it again with: {_command(task, split, folder)}")
