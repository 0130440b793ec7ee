"""The chain driver: warm start, epochs of single-site or block moves, statistics, samples.

Chains are batched: every chain of every sentence (and length candidate) of a batch advances
in lock-step, and every model row they need at a step goes to the model in one call (cut
into chunks by the evaluator's budget).

Compute contract.  Each chain caches, for its current state X, the masked conditional at
every free position (logits given X with that position masked) and the energy terms they
give.  Hence
* a single-site proposal reads its forward and reverse probabilities from the cache;
* a proposal that redraws the current tokens costs nothing;
* E(X') costs one row per free position, minus the position t where X' differs from X if
  it is the only one (X' masked at t is X masked at t, already cached): T-1 rows for a
  single-site move, T for a block move that changes two or more positions;
* a block proposal of k >= 2 positions costs one row (X with the block masked).
Degenerate Gibbs keeps the same cache but never needs E(X') to move; the energies it reports
at each epoch's end cost up to T rows, counted as ``report_rows``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional

import torch

from . import rng
from .conditional import RowEvaluator
from .config import SamplerConfig, block_size, forced_acceptance, target_temperature
from .energy import ENERGIES, energy_terms
from .kernels import accept_moves, log_acceptance
from .mask_predict import mask_predict
from .proposals import ProposalShape, sample_from_log_probs, shaped_log_probs

__all__ = ["Starts", "ChainResult", "EpochStats", "ChainSampler"]


@dataclass
class Starts:
    """The chains' starting points, one per (sentence, length candidate).

    ``tokens`` [S, L]: fixed symbols in place, pad beyond the length; free positions hold the
    mask symbol (warm starts fill them) or, for ``warm_start='given'``, the starting tokens.
    ``free`` [S, L]: positions the sampler may change; only they enter the energy.
    ``context`` [S]: the conditioning input of each start, passed through to the model.
    ``keys`` [S]: RNG keys (see rng.chain_keys); chain r of start s uses key (keys[s], r).
    ``decode`` [S, L]: positions mask-predict decodes (defaults to ``free``).
    """

    tokens: torch.Tensor
    free: torch.Tensor
    context: torch.Tensor
    keys: torch.Tensor
    decode: Optional[torch.Tensor] = None


@dataclass
class EpochStats:
    """Per epoch (first axis) and chain (second axis)."""

    energy: torch.Tensor  # [E, C, 2] raw, local at the epoch's end
    proposals: torch.Tensor  # [E, C]
    accepted: torch.Tensor  # [E, C]
    novel: torch.Tensor  # [E, C] accepted proposals that differ from the current state
    rows: torch.Tensor  # [E, C] model rows spent by the chain (report rows included)
    report_rows: torch.Tensor  # [E, C] rows spent only to report energies
    temperature: List[float]
    block_size: List[int]


@dataclass
class ChainResult:
    """Everything a run produces for C = S * num_chains chains (chain c = start c // num_chains)."""

    tokens: torch.Tensor  # [C, L] the selected state of each chain (best or last)
    energy: torch.Tensor  # [C, 2] its energies (raw, local)
    n_free: torch.Tensor  # [C]
    start: torch.Tensor  # [C] index of the chain's start
    stats: EpochStats
    init_rows: int  # rows shared by the chains of a start (warm start, first energies)
    start_tokens: Optional[torch.Tensor] = None  # [S, L] the warm-start state of each start
    start_energy: Optional[torch.Tensor] = None  # [S, 2] its energies (raw, local)
    start_rows: Optional[torch.Tensor] = None  # [S] rows each start cost before its chains ran
    terms: Optional[torch.Tensor] = None  # [C, L, 2] energy terms of the selected states (0 off free)
    states: Optional[torch.Tensor] = None  # [E, C, L] every chain's state at each epoch's end
    samples: Optional[torch.Tensor] = None  # [E - burn_in, C, L] post-burn-in states (a view)
    sample_energy: Optional[torch.Tensor] = None  # [E - burn_in, C, 2]
    sample_terms: Optional[torch.Tensor] = None  # [E - burn_in, C, L, 2]
    positional_scores: Optional[torch.Tensor] = None  # [C, L] mask-predict only
    extra: dict = field(default_factory=dict)


class _State:
    """Current states of C chains with their cached conditionals.

    ``cache[c, t]`` holds the logits of the masked conditional at t given the chain's state
    with t masked, and ``terms[c, t]`` the energy terms (raw, local) it gives, wherever
    ``valid[c, t]``; the cache is allocated at the first model call (vocabulary and dtype).
    """

    def __init__(self, tokens, free, context, keys):
        C, L = tokens.shape
        self.tokens = tokens
        self.free = free
        self.context = context
        self.keys = keys
        self.cache: Optional[torch.Tensor] = None
        self.terms = torch.zeros(C, L, 2, dtype=torch.float64)
        self.valid = torch.zeros(C, L, dtype=torch.bool)
        self.rows = torch.zeros(C, dtype=torch.long)
        self.report_rows = torch.zeros(C, dtype=torch.long)

    def store(self, chain, pos, logits):
        if self.cache is None:
            C, L = self.tokens.shape
            self.cache = torch.zeros(C, L, logits.size(-1), dtype=logits.dtype)
        self.cache[chain, pos] = logits.to(self.cache.dtype)
        self.terms[chain, pos] = energy_terms(logits, self.tokens[chain, pos])
        self.valid[chain, pos] = True

    def energy(self) -> torch.Tensor:
        return (self.terms * self.free.unsqueeze(-1)).sum(1)

    def expand(self, n: int) -> "_State":
        """n chains per state, each with its own key; caches are copied, not recomputed."""
        S = self.tokens.size(0)
        new = _State.__new__(_State)
        for name in ("tokens", "free", "context", "terms", "valid"):
            setattr(new, name, getattr(self, name).repeat_interleave(n, dim=0))
        new.cache = None if self.cache is None else self.cache.repeat_interleave(n, dim=0)
        new.keys = rng.derive(self.keys.repeat_interleave(n), torch.arange(n).repeat(S))
        new.rows = torch.zeros(S * n, dtype=torch.long)
        new.report_rows = torch.zeros_like(new.rows)
        return new


class ChainSampler:
    """Runs one sampler configuration on batches of starts.

    ``conditional`` is a RowEvaluator over any masked conditional; ``mask`` the mask symbol;
    ``allowed`` a boolean vector over the vocabulary of the tokens that may be proposed
    (special symbols excluded).
    """

    def __init__(self, cfg: SamplerConfig, evaluator: RowEvaluator, mask: int, allowed: torch.Tensor):
        self.cfg = cfg.validate()
        self.ev = evaluator
        self.mask = mask
        self.allowed = allowed.bool()
        self.shape = ProposalShape(cfg.proposal_temperature, cfg.proposal_top_p, self.allowed)
        self.target = ENERGIES[cfg.energy]

    # ------------------------------------------------------------------ model rows
    def _eval_single(self, st: _State, chain: torch.Tensor, pos: torch.Tensor, tokens: torch.Tensor, report=False):
        """Masked conditionals of rows ``tokens[chain]`` with ``pos`` masked (one per row)."""
        rows = tokens[chain].clone()
        ar = torch.arange(rows.size(0))
        rows[ar, pos] = self.mask
        select = torch.zeros_like(rows, dtype=torch.bool)
        select[ar, pos] = True
        logits = self.ev(rows, st.context[chain], select)
        counts = torch.bincount(chain, minlength=st.tokens.size(0))
        st.rows += counts
        if report:
            st.report_rows += counts
        return logits

    def _fill_cache(self, st: _State, report=False):
        """Computes the conditionals of every free position whose cache entry is stale."""
        need = st.free & ~st.valid
        if not need.any():
            return
        chain, pos = need.nonzero(as_tuple=True)
        logits = self._eval_single(st, chain, pos, st.tokens, report=report)
        st.store(chain, pos, logits)

    # ------------------------------------------------------------------ warm start
    def _initial_state(self, starts: Starts) -> tuple:
        """Warm-start tokens and the rows each start spent on them."""
        cfg = self.cfg
        tokens = starts.tokens.clone()
        rows = torch.zeros(tokens.size(0), dtype=torch.long)
        if cfg.warm_start in ("greedy", "mask-predict"):
            iters = 1 if cfg.warm_start == "greedy" else cfg.decoding_iterations
            mp = mask_predict(self.ev, tokens, starts.free, starts.context, self.mask, iters, allowed=self.allowed,
                              min_remask=cfg.mask_predict_min_remask)
            tokens, rows = mp.tokens, mp.rows
        else:
            bad = starts.free & ~self.allowed[tokens.clamp(min=0)]
            if bad.any():
                raise ValueError("warm_start='given' needs ordinary tokens at every free position")
        return tokens, rows

    # ------------------------------------------------------------------ one step
    def _step(self, st: _State, pos: torch.Tensor, epoch: int, step: int, tau: float, forced: bool, acc):
        """Advance the chains whose row in ``pos`` ([C, K], -1 = unused) names a block."""
        used_all = pos >= 0
        idx = used_all.any(1).nonzero().squeeze(1)
        if idx.numel() == 0:
            return
        P = pos[idx]
        used = used_all[idx]
        n, K = P.shape
        kc = used.sum(1)
        Pc = P.clamp(min=0)
        cur_tok = st.tokens[idx]

        # 1. conditionals of the block given the rest: cached for a single position, else one row.
        V = st.cache.size(-1)
        block_logits = torch.empty(n, K, V, dtype=st.cache.dtype)
        single = kc == 1
        from_cache = single & st.valid[idx, Pc[:, 0]]
        if from_cache.any():
            block_logits[from_cache, 0] = st.cache[idx[from_cache], Pc[from_cache, 0]]
        need = (~from_cache).nonzero().squeeze(1)
        if need.numel():
            Pn, un = P[need], used[need]
            rows = cur_tok[need].clone()
            sel = torch.zeros_like(rows, dtype=torch.bool)
            r_i, k_i = un.nonzero(as_tuple=True)
            sel[r_i, Pn[r_i, k_i]] = True
            rows[sel] = self.mask
            logits = self.ev(rows, st.context[idx[need]], sel)
            st.rows[idx[need]] += 1
            # logits are in row-major order of ``sel``: find each slot's place in it.
            first = torch.cumsum(sel.sum(1), 0) - sel.sum(1)
            rank = sel.long().cumsum(1)[r_i, Pn[r_i, k_i]] - 1
            block_logits[need[r_i], k_i] = logits[first[r_i] + rank].to(block_logits.dtype)
            fresh = single[need]
            if fresh.any():  # a fresh single-position conditional is a valid cache entry
                st.store(idx[need][fresh], Pn[fresh, 0], block_logits[need[fresh], 0])

        # 2. the proposal: independent draws from the shaped conditionals of the block.
        slot_c, slot_k = used.nonzero(as_tuple=True)
        lq = shaped_log_probs(block_logits[slot_c, slot_k], self.shape)
        if not torch.isfinite(lq).any(-1).all():
            raise RuntimeError("a proposal distribution has no token left to propose")
        u = rng.uniform(st.keys[idx][slot_c], epoch, step, slot_k, rng.PURPOSE_PROPOSAL)
        w = sample_from_log_probs(lq, u)
        positions = P[slot_c, slot_k]
        old = cur_tok[slot_c, positions]
        fwd = torch.zeros(n, dtype=torch.float64).index_add_(0, slot_c, lq.gather(1, w[:, None]).squeeze(1).double())
        rev = torch.zeros(n, dtype=torch.float64).index_add_(0, slot_c, lq.gather(1, old[:, None]).squeeze(1).double())
        changed = w != old
        d = torch.zeros(n, dtype=torch.long).index_add_(0, slot_c, changed.long())
        new_tok = cur_tok.clone()
        new_tok[slot_c, positions] = w
        moved = d > 0
        acc["proposals"][idx] += 1

        ch_pos = torch.full((n,), -1, dtype=torch.long)  # the changed position, when lone
        ch_pos[slot_c[changed]] = positions[changed]
        if not self.cfg.is_mh:
            # degenerate Gibbs: always accept; only a lone changed position keeps its cache entry.
            m = moved.nonzero().squeeze(1)
            if m.numel():
                mc = idx[m]
                lone = m[d[m] == 1]
                keep = torch.zeros(m.numel(), st.tokens.size(1), dtype=torch.bool)
                li = (d[m] == 1).nonzero().squeeze(1)
                keep[li, ch_pos[lone]] = True
                st.valid[mc] &= keep
                st.tokens[mc] = new_tok[m]
                ci, pi = (st.valid[mc] & keep).nonzero(as_tuple=True)
                st.terms[mc[ci], pi] = energy_terms(st.cache[mc[ci], pi], st.tokens[mc[ci], pi])
            acc["accepted"][idx] += 1
            acc["novel"][idx[moved]] += 1
            return

        # 3. MH: energies of the proposals that move.
        acc["accepted"][idx[~moved]] += 1
        if not moved.any():
            return
        m = moved.nonzero().squeeze(1)
        mc = idx[m]
        X1 = new_tok[m]
        lone = d[m] == 1
        j = ch_pos[m]
        need_rows = st.free[mc].clone()
        li = lone.nonzero().squeeze(1)
        need_rows[li, j[li]] = False
        r, t = need_rows.nonzero(as_tuple=True)
        new_terms = torch.zeros(m.numel(), st.tokens.size(1), 2, dtype=torch.float64)
        logits = None
        if r.numel():
            rows = X1[r].clone()
            ar = torch.arange(r.numel())
            rows[ar, t] = self.mask
            sel = torch.zeros_like(rows, dtype=torch.bool)
            sel[ar, t] = True
            logits = self.ev(rows, st.context[mc[r]], sel)
            st.rows += torch.bincount(mc[r], minlength=st.tokens.size(0))
            new_terms[r, t] = energy_terms(logits, X1[r, t])
        if li.numel():
            # X' masked at its lone changed position is X masked there: reuse the cache.
            new_terms[li, j[li]] = energy_terms(st.cache[mc[li], j[li]], X1[li, j[li]])
        e_new = (new_terms * st.free[mc].unsqueeze(-1)).sum(1)
        e_old = st.energy()[mc]
        if forced:
            ok = torch.ones(m.numel(), dtype=torch.bool)
        else:
            la = log_acceptance(e_old[:, self.target], e_new[:, self.target], tau, fwd[m], rev[m])
            ua = rng.uniform(st.keys[mc], epoch, step, 0, rng.PURPOSE_ACCEPT)
            ok = accept_moves(la, ua)
        acc["accepted"][mc[ok]] += 1
        acc["novel"][mc[ok]] += 1
        if ok.any():
            okc = mc[ok]
            st.tokens[okc] = X1[ok]
            st.terms[okc] = new_terms[ok]
            if logits is not None:
                keep_row = ok[r]
                st.cache[mc[r[keep_row]], t[keep_row]] = logits[keep_row].to(st.cache.dtype)
            st.valid[okc] = st.free[okc]

    # ------------------------------------------------------------------ epochs
    def _epoch_order(self, st: _State, epoch: int) -> torch.Tensor:
        C, L = st.tokens.shape
        if self.cfg.position_order == "random":
            keys = rng.uniform(st.keys[:, None], epoch, 0, torch.arange(L)[None, :], rng.PURPOSE_ORDER)
        else:
            keys = torch.arange(L, dtype=torch.float64).expand(C, L)
        keys = keys.masked_fill(~st.free, math.inf)
        return torch.sort(keys, dim=1, stable=True)[1]

    @torch.no_grad()
    def run(self, starts: Starts) -> ChainResult:
        if self.cfg.sampler == "mask-predict":
            return self._run_mask_predict(starts)
        cfg = self.cfg
        S, L = starts.tokens.shape
        tokens, warm_rows = self._initial_state(starts)
        st0 = _State(tokens, starts.free.clone(), starts.context, starts.keys)
        self._fill_cache(st0)  # conditionals and energies of each start, shared by its chains
        start_rows = warm_rows + st0.rows
        st = st0.expand(cfg.num_chains)
        C = st.tokens.size(0)
        E = cfg.mh_epochs
        stats = {k: torch.zeros(E, C, dtype=torch.long) for k in ("proposals", "accepted", "novel", "rows", "report_rows")}
        energy = torch.zeros(E, C, 2, dtype=torch.float64)
        temps, ks = [], []
        kept = E - cfg.burn_in
        states = torch.empty(E, C, L, dtype=torch.long)
        state_terms = torch.empty(E, C, L, 2, dtype=torch.float64)
        n_free = st.free.sum(1)
        for epoch in range(E):
            tau = target_temperature(cfg, epoch)
            k = block_size(cfg, epoch)
            forced = forced_acceptance(cfg, epoch)
            temps.append(tau)
            ks.append(k)
            order = self._epoch_order(st, epoch)
            n_steps = (n_free + k - 1) // k
            acc = {key: stats[key][epoch] for key in ("proposals", "accepted", "novel")}
            rows0, rep0 = st.rows.clone(), st.report_rows.clone()
            for s in range(int(n_steps.max()) if C else 0):
                lo = s * k
                hi = min(lo + k, L)
                pos = order[:, lo:hi].clone()
                idx_in_order = torch.arange(lo, hi)[None, :]
                pos[idx_in_order >= n_free[:, None]] = -1
                self._step(st, pos, epoch, s, tau, forced, acc)
            self._fill_cache(st, report=True)
            stats["rows"][epoch] = st.rows - rows0
            stats["report_rows"][epoch] = st.report_rows - rep0
            energy[epoch] = st.energy()
            states[epoch] = st.tokens
            state_terms[epoch] = st.terms * st.free.unsqueeze(-1)
        samples, sample_energy, sample_terms = states[cfg.burn_in :], energy[cfg.burn_in :], state_terms[cfg.burn_in :]
        if cfg.mh_select == "last":
            pick = torch.full((C,), kept - 1, dtype=torch.long)
        else:
            pick = sample_energy[:, :, self.target].argmin(0)  # first minimum = earliest
        ar = torch.arange(C)
        es = EpochStats(energy, stats["proposals"], stats["accepted"], stats["novel"], stats["rows"], stats["report_rows"], temps, ks)
        return ChainResult(
            tokens=samples[pick, ar],
            energy=sample_energy[pick, ar],
            n_free=n_free,
            start=torch.arange(S).repeat_interleave(cfg.num_chains),
            stats=es,
            init_rows=int(start_rows.sum()),
            start_tokens=tokens,
            start_energy=st0.energy(),
            start_rows=start_rows,
            terms=sample_terms[pick, ar],
            states=states,
            samples=samples,
            sample_energy=sample_energy,
            sample_terms=sample_terms,
        )

    def _run_mask_predict(self, starts: Starts) -> ChainResult:
        """The mask-predict baseline: one deterministic decode per start, energies reported."""
        cfg = self.cfg
        S, L = starts.tokens.shape
        decode = starts.decode if starts.decode is not None else starts.free
        mp = mask_predict(
            self.ev, starts.tokens, decode, starts.context, self.mask, cfg.decoding_iterations,
            min_remask=cfg.mask_predict_min_remask,
        )
        st = _State(mp.tokens, starts.free.clone(), starts.context, starts.keys)
        if cfg.report_energy:
            self._fill_cache(st, report=True)
            energy = st.energy()
        else:  # nobody will read them: spend no rows (energies NaN, terms 0)
            energy = torch.full((S, 2), float("nan"), dtype=torch.float64)
        zeros = torch.zeros(1, S, dtype=torch.long)
        es = EpochStats(
            energy=energy[None],
            proposals=zeros,
            accepted=zeros.clone(),
            novel=zeros.clone(),
            rows=(st.rows + mp.rows)[None],
            report_rows=st.report_rows[None],
            temperature=[cfg.target_temperature],
            block_size=[0],
        )
        return ChainResult(
            tokens=mp.tokens,
            energy=energy,
            n_free=st.free.sum(1),
            start=torch.arange(S),
            stats=es,
            init_rows=0,
            terms=st.terms * st.free.unsqueeze(-1),
            states=mp.tokens[None],
            samples=mp.tokens[None],
            sample_energy=energy[None],
            sample_terms=(st.terms * st.free.unsqueeze(-1))[None],
            positional_scores=mp.log_probs,
            extra={"mask_predict_score": mp.score},
        )
