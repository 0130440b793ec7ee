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

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import torch

from . import rng
from .conditional import RowEvaluator
from .config import SamplerConfig
from .refinement import PURPOSE_INIT, Refinement, random_tokens, stutter_positions
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


class _Refiner:
    """The tokens, confidences and row counts of one mask-predict run, and its three steps:
    predict the masked positions, choose what to re-mask, collect the result."""

    def __init__(self, evaluator, tokens, decode, context, mask, allowed, ref: Refinement, proposable=None):
        S, L = tokens.shape
        dev = tokens.device
        self.ev, self.decode, self.context, self.mask, self.allowed, self.ref = (
            evaluator, decode, context, mask, allowed, ref)
        self.tok = tokens.clone()
        self.n_dec = decode.sum(1)
        self.probs = torch.ones(S, L, dtype=torch.float32, device=dev)
        # summed logits: positions that are not decoded are never the least confident
        self.summed = torch.full((S, L), math.inf, dtype=torch.float32, device=dev)
        self.summed[decode] = 0.0
        self.rows = torch.zeros(S, dtype=torch.long, device=dev)
        self.proposable = proposable
        self.active = torch.ones(S, dtype=torch.bool, device=dev)

    def start(self, keys) -> None:
        """Fills the decoded positions (``init``): all masks and a first prediction, or random
        tokens (which needs the rows' RNG ``keys`` and the proposable tokens)."""
        if self.ref.init == "random":
            if keys is None or self.proposable is None:
                raise ValueError("a random start needs the rows' RNG keys and the proposable tokens")
            rand = random_tokens(keys, self.decode, self.proposable)
            self.tok[self.decode] = rand[self.decode]
            # below any prediction's probability (>= 1/V): random tokens are re-masked first
            low = rng.uniform(keys[:, None], 0, 1, torch.arange(self.tok.size(1), device=self.tok.device)[None, :],
                              PURPOSE_INIT)
            low = (low * 1e-7).float()
            self.probs[self.decode] = low[self.decode]
            self.summed[self.decode] = low[self.decode]
            return
        self.tok[self.decode] = self.mask
        has = (self.n_dec > 0).nonzero().squeeze(1)
        if has.numel():
            self.predict(has, self.decode)

    def predict(self, row_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Argmax predictions at ``positions`` of rows ``row_ids``; [len(row_ids)] whether any
        token changed."""
        before = self.tok[row_ids].clone()
        self.tok[positions & _rows_mask(positions, row_ids)] = self.mask
        lg = self.ev(self.tok[row_ids], self.context[row_ids], positions[row_ids])
        if self.allowed is not None:
            lg = lg.masked_fill(~self.allowed.to(lg.device), -math.inf)
        p, w = torch.softmax(lg.float(), dim=-1).max(dim=-1)
        sel = torch.zeros_like(positions)
        sel[row_ids] = positions[row_ids]
        self.tok[sel] = w
        self.probs[sel] = p.to(self.probs.dtype)
        self.summed[sel] += lg.gather(1, w[:, None]).squeeze(1).float()
        self.rows[row_ids] += 1
        return (self.tok[row_ids] != before).any(1)

    def choose(self, c: int, iterations: int, min_remask: int) -> torch.Tensor:
        """[S, L] the positions re-masked at iteration c: the least confident, and stutters."""
        conf = self.probs if self.ref.confidence == "probs" else self.summed
        num = self.ref.remask_count(self.n_dec, c, iterations, min_remask)
        remask = torch.zeros_like(self.decode)
        for r in ((num > 0) & self.active).nonzero().squeeze(1).tolist():
            worst = conf[r].topk(int(num[r]), largest=False, sorted=False)[1]
            remask[r, worst] = True
        if self.ref.stutter:
            remask |= stutter_positions(self.tok, self.decode) & self.active[:, None]
        return remask & self.decode

    def result(self) -> MaskPredictResult:
        log_probs = torch.where(self.decode, self.probs.log(), torch.zeros_like(self.probs))
        return MaskPredictResult(self.tok, log_probs, self.ref.score(log_probs, self.n_dec), self.rows)


def _rows_mask(positions: torch.Tensor, row_ids: torch.Tensor) -> torch.Tensor:
    keep = torch.zeros(positions.size(0), 1, dtype=torch.bool, device=positions.device)
    keep[row_ids] = True
    return keep


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
    refinement: Optional[Refinement] = None,
    keys: Optional[torch.Tensor] = None,
    proposable: Optional[torch.Tensor] = None,
) -> MaskPredictResult:
    """Runs mask-predict on the ``decode`` positions of each row of ``tokens``.

    ``allowed`` (bool [V]) restricts the argmax to those tokens (None: full vocabulary, as
    the original).  ``min_remask`` is 1 in the original (``max(1, n)``), 0 in fairseq's CMLM.
    ``refinement``: PaDIR's strategies (default: the original algorithm); a random start
    draws from ``proposable`` (bool [V]) with the rows' RNG ``keys``.
    """
    ref = refinement or Refinement()
    run = _Refiner(evaluator, tokens, decode, context, mask, allowed, ref, proposable)
    run.start(keys)
    for c in range(1, iterations):
        remask = run.choose(c, iterations, min_remask)
        todo = remask.any(1).nonzero().squeeze(1)
        if todo.numel() == 0:
            continue
        changed = run.predict(todo, remask)
        if ref.early_stop:
            run.active[todo[~changed]] = False
    return run.result()


class MaskPredictDecoder:
    """The mask-predict baseline behind the decoders' seam: one decode per start (or the best
    of ``mask_predict_parallel``: the configured start, then random ones), ranked by its mean
    token log-probability or PaDIR's variants of it (``ChainResult.score``).

    ``monitor`` is accepted for the seam and unused: a decode is a few passes.  Its outputs'
    energies cost T rows each and are computed only with ``report_energy``
    (NaN otherwise), so that without a trace it costs what fairseq's own generator costs.
    """

    def __init__(self, cfg: SamplerConfig, evaluator: RowEvaluator, mask: int, allowed: torch.Tensor, monitor=None):
        self.cfg = cfg
        self.ev = evaluator
        self.mask = mask
        self.allowed = allowed
        self.ref = Refinement.from_config(cfg)

    def _decode(self, starts: Starts, decode: torch.Tensor) -> MaskPredictResult:
        """The best-scoring of the parallel decodes of each start (the first of equal scores);
        rows are summed over them.  Decode 0 starts as ``--mask-predict-init`` says, decode
        i >= 1 from random tokens drawn with key derive(start key, i)."""
        cfg = self.cfg
        runs = []
        for i in range(cfg.mask_predict_parallel):
            ref = self.ref if i == 0 else dataclasses.replace(self.ref, init="random")
            keys = starts.keys if i == 0 else rng.derive(starts.keys, i)
            runs.append(mask_predict(self.ev, starts.tokens, decode, starts.context, self.mask,
                                     cfg.decoding_iterations, min_remask=cfg.mask_predict_min_remask,
                                     refinement=ref, keys=keys, proposable=self.allowed))
        if len(runs) == 1:
            return runs[0]
        best = torch.stack([r.score for r in runs]).argmax(0)  # first maximum
        ar = torch.arange(best.numel(), device=best.device)
        pick = lambda name: torch.stack([getattr(r, name) for r in runs])[best, ar]  # noqa: E731
        return MaskPredictResult(pick("tokens"), pick("log_probs"), pick("score"), sum(r.rows for r in runs))

    @torch.no_grad()
    def run(self, starts: Starts) -> ChainResult:
        """Decodes the ``decode`` positions of every start (``free`` when not given)."""
        cfg = self.cfg
        S = starts.tokens.size(0)
        decode = starts.decode if starts.decode is not None else starts.free
        mp = self._decode(starts, decode)
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
