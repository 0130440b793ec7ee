"""Corpus BLEU, computed one way for every pipeline.

``sacrebleu_score``: sacreBLEU's defaults (13a tokenization, exponential smoothing) on
detokenized hypotheses against raw references, the number the experiment tables report.
``tokenized_bleu``: whitespace tokens, case-sensitive, no smoothing (multi-bleu.perl), the
BLEU Mask-Predict reports on Moses-tokenized, BPE-removed text.  Each returns sacreBLEU's
score object and its signature.
"""

from __future__ import annotations

from typing import Sequence, Tuple

__all__ = ["sacrebleu_score", "tokenized_bleu"]


def sacrebleu_score(hyps: Sequence[str], refs: Sequence[str]) -> Tuple[object, str]:
    from sacrebleu.metrics import BLEU

    metric = BLEU()
    return metric.corpus_score(list(hyps), [list(refs)]), str(metric.get_signature())


def tokenized_bleu(hyps: Sequence[str], refs: Sequence[str]) -> Tuple[object, str]:
    from sacrebleu.metrics import BLEU

    metric = BLEU(tokenize="none", smooth_method="none", force=True)
    return metric.corpus_score(list(hyps), [list(refs)]), str(metric.get_signature())
