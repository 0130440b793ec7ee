"""Mask-predict (Ghazvininejad et al., 2019) and the greedy warm start, on any conditional.

The algorithm, as the original code does it: predict every decoded position from the
all-mask input (argmax, keeping its probability); then for c = 1 .. T-1 re-mask the
n = floor(L * (1 - c/T)) lowest-probability positions (at least ``min_remask``), predict them
again and update their tokens and probabilities only.  A candidate's score is its summed
log-probability divided by L.  ``iterations=1`` with special symbols excluded is the greedy
warm start of Algorithm 1 (line 3).  ``MaskPredictDecoder`` offers the algorithm as a
decoder of its own, behind the same ``run(starts) -> ChainResult`` seam as the chain driver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from .conditional import RowEvaluator
from .config import SamplerConfig
from .moves import fill_cache
from .results import ChainResult, EpochStats
from .state import ChainState, Starts

__all__ = ["MaskPredictResult", "mask_predict", "MaskPredictDecoder"]


@dataclass
class MaskPredictResult:
    tokens: torch.Tensor  # [S, L]
    log_probs: torch.Tensor  # [S, L] log-probability of each decoded token (0 elsewhere)
    score: torch.Tensor  # [S] mean log-probability over decoded positions
    rows: torch.Tensor  # [S] model rows each start cost


@torch.no_grad()
def mask_predict(
    evaluator: RowEvaluator,
    tokens: torch.Tensor,
    decode: torch.Tensor,
    context: torch.Tensor,
    mask: int,
    iterations: int,
    allowed: Optional[torch.Tensor] = None,
    min_remask: int = 1,
) -> MaskPredictResult:
    """Runs mask-predict on the ``decode`` positions of each row of ``tokens``.

    ``allowed`` (bool [V]) restricts the argmax to those tokens (None: full vocabulary, as
    the original).  ``min_remask`` is 1 in the original (``max(1, n)``), 0 in fairseq's CMLM.
    """
    S, L = tokens.shape
    tok = tokens.clone()
    tok[decode] = mask
    n_dec = decode.sum(1)
    probs = torch.ones(S, L, dtype=torch.float32, device=tokens.device)
    rows = torch.zeros(S, dtype=torch.long, device=tokens.device)

    def predict(row_ids: torch.Tensor, positions: torch.Tensor):
        lg = evaluator(tok[row_ids], context[row_ids], positions[row_ids])
        if allowed is not None:
            lg = lg.masked_fill(~allowed.to(lg.device), -math.inf)
        p, w = torch.softmax(lg.float(), dim=-1).max(dim=-1)
        sel = torch.zeros_like(positions)
        sel[row_ids] = positions[row_ids]
        tok[sel] = w
        probs[sel] = p.to(probs.dtype)
        rows[row_ids] += 1

    has = (n_dec > 0).nonzero().squeeze(1)
    if has.numel():
        predict(has, decode)
    for c in range(1, iterations):
        num = (n_dec.float() * (1.0 - (c / iterations))).long().clamp(min=min_remask)
        num = torch.minimum(num, n_dec)
        remask = torch.zeros_like(decode)
        for r in (num > 0).nonzero().squeeze(1).tolist():
            worst = probs[r].topk(int(num[r]), largest=False, sorted=False)[1]
            remask[r, worst] = True
        remask &= decode
        todo = remask.any(1).nonzero().squeeze(1)
        if todo.numel() == 0:
            continue
        tok[remask] = mask
        predict(todo, remask)
    log_probs = torch.where(decode, probs.log(), torch.zeros_like(probs))
    score = log_probs.sum(1) / n_dec.clamp(min=1).float()
    return MaskPredictResult(tok, log_probs, score, rows)


class MaskPredictDecoder:
    """The mask-predict baseline behind the decoders' seam: one deterministic decode per
    start, ranked by its mean token log-probability (``ChainResult.score``).

    Its outputs' energies cost T rows each and are computed only with ``report_energy``
    (NaN otherwise), so that without a trace it costs what fairseq's own generator costs.
    """

    def __init__(self, cfg: SamplerConfig, evaluator: RowEvaluator, mask: int, allowed: torch.Tensor):
        self.cfg = cfg
        self.ev = evaluator
        self.mask = mask

    @torch.no_grad()
    def run(self, starts: Starts) -> ChainResult:
        """Decodes the ``decode`` positions of every start (``free`` when not given)."""
        cfg = self.cfg
        S = starts.tokens.size(0)
        decode = starts.decode if starts.decode is not None else starts.free
        mp = mask_predict(self.ev, starts.tokens, decode, starts.context, self.mask, cfg.decoding_iterations,
                          min_remask=cfg.mask_predict_min_remask)
        st = ChainState(mp.tokens, starts.free.clone(), starts.context, starts.keys)
        if cfg.report_energy:
            fill_cache(self.ev, self.mask, st, report=True)
            energy = st.energy()
        else:  # nobody will read them: spend no rows (energies NaN, terms 0)
            energy = torch.full((S, 2), float("nan"), dtype=torch.float64, device=st.tokens.device)
        zeros = torch.zeros(1, S, dtype=torch.long, device=st.tokens.device)
        terms = st.free_terms()
        stats = EpochStats(energy=energy[None], proposals=zeros, accepted=zeros.clone(), novel=zeros.clone(),
                           rows=(st.rows + mp.rows)[None], report_rows=st.report_rows[None],
                           temperature=[cfg.target_temperature], block_size=[0])
        return ChainResult(
            tokens=mp.tokens, energy=energy, n_free=st.free.sum(1), start=torch.arange(S, device=st.tokens.device),
            stats=stats, init_rows=0, steps=cfg.decoding_iterations, terms=terms, states=mp.tokens[None],
            samples=mp.tokens[None], sample_energy=energy[None], sample_terms=terms[None],
            score=mp.score, positional_scores=mp.log_probs,
        )
