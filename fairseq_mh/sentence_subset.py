"""``--mh-sentences FILE``: decode only the listed sentences of a split, under their own ids.

Why: a shard of a cost-balanced split (``fairseq_mh.sharding``) is any set of sentences, not
fairseq's every K-th batch.  Binarizing each shard apart would renumber its sentences, and a
chain's random numbers are keyed by the sentence id, so the output would change; this view
keeps the ids of the full split, so a shard's hypotheses are exactly the unsharded run's and
its ``H-`` lines carry the ids a merge orders by.
"""

from __future__ import annotations

from typing import List

import numpy as np
from fairseq.data import BaseWrapperDataset

from .errors import UserError

__all__ = ["SentenceSubset", "read_sentence_ids"]

OPTION = "--mh-sentences"


def read_sentence_ids(path: str, n: int) -> List[int]:
    """The ids in ``path`` (one integer a line), checked: in 0..n-1, none twice, at least one."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = [line.strip() for line in f]
    except OSError as e:
        raise UserError(f"{OPTION} '{path}' cannot be read ({e.strerror or e}): give a file of sentence ids, "
                        f"one a line") from None
    ids, seen = [], set()
    for k, text in enumerate(raw, 1):
        if not text:
            continue
        if not text.isdigit():
            raise UserError(f"{OPTION} '{path}' line {k} is '{text[:40]}', not a sentence id (an integer >= 0)")
        sid = int(text)
        if sid >= n:
            raise UserError(f"{OPTION} '{path}' line {k} names sentence {sid}, but the split has {n} sentences")
        if sid in seen:
            raise UserError(f"{OPTION} '{path}' names sentence {sid} twice (line {k}): list each sentence once")
        seen.add(sid)
        ids.append(sid)
    if not ids:
        raise UserError(f"{OPTION} '{path}' lists no sentence: give at least one id")
    return ids


class SentenceSubset(BaseWrapperDataset):
    """The sentences ``ids`` of ``dataset``; each item keeps the id it has in ``dataset``, and
    batches are formed in the order ``dataset`` would form them (its length sort)."""

    def __init__(self, dataset, ids: List[int]):
        super().__init__(dataset)
        self.ids = np.asarray(sorted(ids), dtype=np.int64)

    def __getitem__(self, index):
        return self.dataset[int(self.ids[index])]  # the item's "id" is the full split's

    def __len__(self):
        return len(self.ids)

    @property
    def sizes(self):
        sizes = self.dataset.sizes
        return [s[self.ids] for s in sizes] if isinstance(sizes, list) else sizes[self.ids]

    def num_tokens(self, index):
        return self.dataset.num_tokens(int(self.ids[index]))

    def num_tokens_vec(self, indices):
        return self.dataset.num_tokens_vec(self.ids[indices])

    def size(self, index):
        return self.dataset.size(int(self.ids[index]))

    def ordered_indices(self):
        rank = np.empty(len(self.dataset), dtype=np.int64)
        rank[self.dataset.ordered_indices()] = np.arange(len(self.dataset))
        return np.argsort(rank[self.ids], kind="stable")

    def filter_indices_by_size(self, indices, max_sizes):
        kept, ignored = self.dataset.filter_indices_by_size(self.ids[indices], max_sizes)
        local = {int(g): i for i, g in zip(indices, self.ids[indices])}
        return np.asarray([local[int(g)] for g in kept], dtype=np.int64), list(ignored)

    @property
    def src(self):
        return self.dataset.src

    @property
    def tgt(self):
        return self.dataset.tgt
