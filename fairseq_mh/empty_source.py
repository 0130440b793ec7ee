"""An empty source sentence translates to an empty hypothesis.

Why: a source of only special symbols (an empty or blank input line) still gets a predicted
length, and the decoder then invents a sentence out of nothing.  ``inference_step`` passes
only the non-empty rows of a batch to the generator and gives the others an empty hypothesis
(just ``</s>``, score 0), in the batch's order.
"""

from __future__ import annotations

import logging
from typing import Callable, List

import torch

__all__ = ["empty_rows", "empty_hypothesis", "inference_step"]

logger = logging.getLogger(__name__)


def empty_rows(src_tokens: torch.Tensor, dictionary) -> torch.Tensor:
    """Rows holding no symbol other than <s>, </s> and <pad>."""
    special = torch.tensor([dictionary.bos(), dictionary.eos(), dictionary.pad()], device=src_tokens.device)
    return torch.isin(src_tokens, special).all(dim=1)


def empty_hypothesis(dictionary, device) -> dict:
    return {
        "tokens": torch.tensor([dictionary.eos()], device=device),
        "score": torch.tensor(0.0),
        "positional_scores": torch.zeros(1),
        "alignment": None,
        "attention": None,
        "hypo_attn": None,
        "steps": 0,
        "energy": [0.0, 0.0],
    }


def _rows(sample, keep: torch.Tensor, batch: int):
    """The sample restricted to rows ``keep``: every tensor whose first dimension is the batch."""
    def pick(v):
        return v[keep] if torch.is_tensor(v) and v.dim() and v.size(0) == batch else v

    out = {k: pick(v) for k, v in sample.items() if k != "net_input"}
    out["net_input"] = {k: pick(v) for k, v in sample["net_input"].items()}
    out["nsentences"] = int(keep.numel())
    return out


def inference_step(step: Callable, generator, models, sample, src_dict, tgt_dict, **kwargs) -> List[list]:
    """``step(generator, models, sample, **kwargs)`` on the non-empty rows only."""
    src = sample["net_input"]["src_tokens"]
    empty = empty_rows(src, src_dict)
    if not bool(empty.any()):
        return step(generator, models, sample, **kwargs)
    if "id" in sample:  # fairseq-generate: say which (interactive input warns per line itself)
        ids = sample["id"][empty.to(sample["id"].device)].tolist()
        logger.warning("source sentence(s) %s are empty: their hypotheses are empty", ids)
    keep = (~empty).nonzero().squeeze(1)
    hypos = step(generator, models, _rows(sample, keep, src.size(0)), **kwargs) if keep.numel() else []
    out = [[empty_hypothesis(tgt_dict, src.device)] for _ in range(src.size(0))]
    for i, h in zip(keep.tolist(), hypos):
        out[i] = h
    return out
