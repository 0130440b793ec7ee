"""Chain starts: one shared warm start per start, or dispersed starts, one per chain.

Chains that all leave one warm start may not have left it when the run ends, and nothing in
their traces would show it: R-hat compares chains, so chains that begin in the same place
look converged.  Dispersed starts make the comparison informative:

* ``greedy``, ``mask-predict``, ``given``: every chain of a start copies one state (computed
  once, with its conditionals: the cheapest start);
* ``random``: every free position of every chain uniform over the proposable tokens (no row);
* ``mixed``: chain r of a start takes, in turn, greedy, mask-predict, random, and a draw from
  the proposal (each free position drawn independently from the shaped masked conditional of
  the all-mask sequence: one row per start, shared by its chains).

Rows are counted per start record: a shared start's warm-start rows plus its conditionals
(T rows); a dispersed chain's own conditionals (T rows) plus, on the first chain of each
start, the rows of the deterministic starts and the all-mask row it shares.  Random numbers
come from the chain's key (``rng.PURPOSE_START``), so starts do not depend on batching.
"""

from __future__ import annotations

from typing import Tuple

import torch

from . import rng
from .conditional import RowEvaluator
from .mask_predict import mask_predict
from .moves import fill_cache
from .proposals import ProposalShape, sample_from_log_probs, shaped_log_probs
from .rows import masked_rows
from .state import ChainState, Starts

__all__ = ["SHARED_STARTS", "DISPERSED_STARTS", "MIXED_CYCLE", "initial_states"]

SHARED_STARTS = ("greedy", "mask-predict", "given")
DISPERSED_STARTS = ("random", "mixed")
MIXED_CYCLE = ("greedy", "mask-predict", "random", "proposal")  # chain r of a mixed start: r % 4


def initial_states(cfg, ev: RowEvaluator, mask: int, shape: ProposalShape,
                   starts: Starts) -> Tuple[ChainState, ChainState, torch.Tensor]:
    """(chains, start records, rows of each start record).

    ``chains`` holds S * num_chains chains with their conditionals; ``start records`` is one
    state per start (shared starts) or the chains' own starts (dispersed), as ChainResult's
    ``start_tokens`` reports them.
    """
    if cfg.warm_start in SHARED_STARTS:
        start, rows = _shared_start(cfg, ev, mask, shape.allowed, starts)
        return start.expand(cfg.num_chains), start, rows
    st = ChainState(starts.tokens.clone(), starts.free.clone(), starts.context, starts.keys).expand(cfg.num_chains)
    kinds = [MIXED_CYCLE[r % len(MIXED_CYCLE)] if cfg.warm_start == "mixed" else "random"
             for r in range(cfg.num_chains)]
    rows = torch.zeros(st.num_chains, dtype=torch.long, device=st.tokens.device)
    for kind in sorted(set(kinds), key=MIXED_CYCLE.index):
        chains = torch.tensor([r for r, k in enumerate(kinds) if k == kind], dtype=torch.long)
        sel = (torch.arange(starts.tokens.size(0))[:, None] * cfg.num_chains + chains[None, :]).reshape(-1)
        sel = sel.to(st.tokens.device)
        tokens, shared_rows = _DRAW[kind](cfg, ev, mask, shape, starts, st, sel)
        st.tokens[sel] = tokens
        rows[sel[:: chains.numel()]] += shared_rows  # once per start, on its first chain of this kind
    fill_cache(ev, mask, st)
    return st, _copy(st), rows + st.rows


def _shared_start(cfg, ev, mask, allowed, starts: Starts):
    """The one warm-started state of each start, with its conditionals, and the rows it cost."""
    tokens = starts.tokens.clone()
    rows = torch.zeros(tokens.size(0), dtype=torch.long, device=tokens.device)
    if cfg.warm_start != "given":
        tokens, rows = _refined(cfg, ev, mask, allowed, starts, 1 if cfg.warm_start == "greedy" else None)
    elif (starts.free & ~allowed.to(tokens.device)[tokens.clamp(min=0)]).any():
        raise ValueError("warm_start='given' needs ordinary tokens at every free position")
    state = ChainState(tokens, starts.free.clone(), starts.context, starts.keys)
    fill_cache(ev, mask, state)  # conditionals and energies of each start, shared by its chains
    return state, rows + state.rows


def _refined(cfg, ev, mask, allowed, starts: Starts, iterations=None):
    """Greedy (one iteration) or mask-predict fill of every start's free positions."""
    iters = cfg.decoding_iterations if iterations is None else iterations
    mp = mask_predict(ev, starts.tokens.clone(), starts.free, starts.context, mask, iters, allowed=allowed,
                      min_remask=cfg.mask_predict_min_remask)
    return mp.tokens, mp.rows


def _greedy(cfg, ev, mask, shape, starts, st, sel):
    tokens, rows = _refined(cfg, ev, mask, shape.allowed, starts, 1)
    return _per_chain(tokens, sel, cfg.num_chains), rows


def _mask_predict(cfg, ev, mask, shape, starts, st, sel):
    tokens, rows = _refined(cfg, ev, mask, shape.allowed, starts)
    return _per_chain(tokens, sel, cfg.num_chains), rows


def _per_chain(tokens, sel, num_chains):
    """Rows of the starts' ``tokens`` for the chains ``sel`` (chain c belongs to start c // n)."""
    return tokens.to(sel.device)[sel // num_chains]


def _uniforms(st: ChainState, sel: torch.Tensor, step: int) -> torch.Tensor:
    L = st.tokens.size(1)
    pos = torch.arange(L, device=sel.device)[None, :]
    return rng.uniform(st.keys[sel][:, None], -1, step, pos, rng.PURPOSE_START)


def _random(cfg, ev, mask, shape, starts, st, sel):
    """Uniform over the proposable tokens at every free position; costs no row."""
    ids = shape.allowed.to(sel.device).nonzero().squeeze(1)
    u = _uniforms(st, sel, 0)
    draw = ids[(u * ids.numel()).long().clamp(max=ids.numel() - 1)]
    tokens = torch.where(st.free[sel], draw, st.tokens[sel])
    return tokens, torch.zeros(starts.tokens.size(0), dtype=torch.long, device=sel.device)


def _proposal(cfg, ev, mask, shape, starts, st, sel):
    """Each free position drawn from the shaped conditional of the all-mask sequence."""
    rows, select = masked_rows(starts.tokens, starts.free, mask)
    has = select.any(1)
    out_rows = torch.zeros(starts.tokens.size(0), dtype=torch.long, device=sel.device)
    tokens = st.tokens[sel].clone()
    if not has.any():
        return tokens, out_rows
    logits = ev(rows[has], starts.context[has], select[has])  # [free positions of the starts, V]
    out_rows[has] = 1
    lq = shaped_log_probs(logits, shape)
    slot = torch.full(starts.free.shape, -1, dtype=torch.long, device=sel.device)
    slot[select & has[:, None]] = torch.arange(logits.size(0), device=sel.device)
    c_i, t_i = st.free[sel].nonzero(as_tuple=True)
    u = _uniforms(st, sel, 1)[c_i, t_i]
    rows_of = slot[(sel // cfg.num_chains)[c_i], t_i].to(lq.device)  # each draw's row of lq
    tokens[c_i, t_i] = sample_from_log_probs(lq[rows_of], u.to(lq.device)).to(tokens)
    return tokens, out_rows


_DRAW = {"greedy": _greedy, "mask-predict": _mask_predict, "random": _random, "proposal": _proposal}


def _copy(st: ChainState) -> ChainState:
    """A snapshot of the chains' start (tokens and energies), for the start records."""
    snap = ChainState(st.tokens.clone(), st.free, st.context, st.keys)
    snap.terms = st.terms.clone()
    return snap
