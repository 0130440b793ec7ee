"""The seam every decoder sits behind: ``build_decoder(cfg, ...).run(starts) -> ChainResult``.

Which class decodes is the sampler kind's ``decoder`` (see ``kinds``): the chain driver for
chain samplers, mask-predict for the refinement baseline.
"""

from __future__ import annotations

import torch

from .conditional import RowEvaluator
from .config import SamplerConfig
from .driver import ChainSampler
from .mask_predict import MaskPredictDecoder

__all__ = ["DECODERS", "build_decoder"]

DECODERS = {"chain": ChainSampler, "refinement": MaskPredictDecoder}


def build_decoder(cfg: SamplerConfig, evaluator: RowEvaluator, mask: int, allowed: torch.Tensor, monitor=None):
    """The decoder of ``cfg.sampler`` over ``evaluator`` (mask symbol, proposable tokens);
    ``monitor(epochs_done, epochs)`` is called as a chain sampler advances."""
    return DECODERS[cfg.kind.decoder](cfg, evaluator, mask, allowed, monitor=monitor)
