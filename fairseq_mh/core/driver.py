"""The chain driver: warm start, epochs of a kernel's moves, statistics, samples.

Chains are batched: every chain of every sentence (and length candidate) of a batch advances
in lock-step, and every model row they need at a step goes to the model in one call (cut
into chunks by the evaluator's budget).  The driver owns the schedule (target temperature,
block size, forced acceptance per epoch), the position order, and what is collected; the
move itself is the kernel's (``kernels``), chosen by the sampler's kind (``kinds``).

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
from dataclasses import dataclass
from typing import Callable, List, Optional

import torch

from . import rng
from .conditional import RowEvaluator
from .config import ConfigError, SamplerConfig, block_size, forced_acceptance, target_temperature
from .energy import ENERGIES
from .kinds import build_kernel
from .moves import Block, StepKey, fill_cache
from .proposals import ProposalShape
from .results import ChainResult, EpochStats
from .starts import initial_states
from .state import ChainState, Starts

__all__ = ["ChainSampler"]


@dataclass
class _Record:
    """What the driver collects over the epochs (first axis) of C chains."""

    energy: torch.Tensor  # [E, C, 2]
    states: torch.Tensor  # [E, C, L]
    terms: torch.Tensor  # [E, C, L, 2]
    counts: dict  # proposals, accepted, novel, rows, report_rows: [E, C] each
    temperature: List[float]
    block_size: List[int]

    @classmethod
    def empty(cls, E: int, C: int, L: int, device) -> "_Record":
        z = lambda *s, dtype=torch.long: torch.zeros(*s, dtype=dtype, device=device)  # noqa: E731
        keys = ("proposals", "accepted", "novel", "rows", "report_rows")
        return cls(z(E, C, 2, dtype=torch.float64), z(E, C, L), z(E, C, L, 2, dtype=torch.float64),
                   {k: z(E, C) for k in keys}, [], [])

    def stats(self) -> EpochStats:
        c = self.counts
        return EpochStats(self.energy, c["proposals"], c["accepted"], c["novel"], c["rows"], c["report_rows"],
                          self.temperature, self.block_size)


class ChainSampler:
    """Runs one chain sampler configuration on batches of starts.

    ``evaluator`` is a RowEvaluator over any masked conditional; ``mask`` the mask symbol;
    ``allowed`` a boolean vector over the vocabulary of the tokens that may be proposed
    (special symbols excluded).  ``monitor``, when given, is called after every step with
    (epochs done, as a fraction, and the epochs in all): progress reporting hooks in there.
    """

    def __init__(self, cfg: SamplerConfig, evaluator: RowEvaluator, mask: int, allowed: torch.Tensor,
                 monitor: Optional[Callable[[float, int], None]] = None):
        if not cfg.kind.is_chain:
            raise ConfigError(f"--sampler {cfg.sampler} is not a chain sampler: build it with core.build_decoder")
        self.cfg = cfg
        self.ev = evaluator
        self.mask = mask
        self.allowed = allowed.bool()
        self.shape = ProposalShape(cfg.proposal_temperature, cfg.proposal_top_p, self.allowed)
        self.kernel = build_kernel(cfg, evaluator, mask, self.shape, ENERGIES[cfg.energy])
        self.monitor = monitor
        # a kind's optional step between epochs (replica exchange): made once, kept for its counts
        self.exchange = cfg.kind.exchange(cfg, ENERGIES[cfg.energy]) if cfg.kind.exchange else None

    @torch.no_grad()
    def run(self, starts: Starts) -> ChainResult:
        """Runs ``num_chains`` chains from every start for ``mh_epochs`` epochs.

        Each start is warm-started once (``warm_start``) and its conditionals computed once;
        its chains copy them (or, for dispersed starts, each chain gets its own: ``starts``)
        and then move independently, with their own random streams
        (chain r of start s: key derive(keys[s], r)), so a chain's path depends on nothing
        but its key, the model and the settings.  Returns every chain's selected state
        (``mh_select``), the states after each epoch, the post-burn-in samples with their
        energies, per-epoch statistics and the rows spent.
        """
        cfg = self.cfg
        st, start, start_rows = initial_states(cfg, self.ev, self.mask, self.shape, starts)
        if self.exchange is not None:
            st = self.exchange.replicate(st)
        rec = _Record.empty(cfg.mh_epochs, st.num_chains, st.tokens.size(1), st.tokens.device)
        for epoch in range(cfg.mh_epochs):
            self._epoch(st, epoch, rec)
        return self._result(starts, start, start_rows, rec)

    # ------------------------------------------------------------------ epochs
    def _epoch(self, st: ChainState, epoch: int, rec: _Record) -> None:
        """One sweep of every chain over its free positions, cut into blocks."""
        cfg = self.cfg
        k = block_size(cfg, epoch)
        key = StepKey(epoch, 0, target_temperature(cfg, epoch), forced_acceptance(cfg, epoch))
        rec.temperature.append(key.tau)
        rec.block_size.append(k)
        order = self._epoch_order(st, epoch)
        n_free = st.free.sum(1)
        C, L = st.tokens.shape
        rows0, rep0 = st.rows.clone(), st.report_rows.clone()
        counts = {name: rec.counts[name][epoch] for name in ("proposals", "accepted", "novel")}
        n_steps = int(((n_free + k - 1) // k).max()) if C else 0
        for s in range(n_steps):
            lo, hi = s * k, min(s * k + k, L)
            pos = order[:, lo:hi].clone()
            pos[torch.arange(lo, hi, device=pos.device)[None, :] >= n_free[:, None]] = -1
            block = Block.from_positions(pos)
            if block.size == 0:
                continue
            _, info = self.kernel.step(StepKey(epoch, s, key.tau, key.forced), st, block)
            counts["proposals"][info.chains] += 1
            counts["accepted"][info.chains[info.accepted]] += 1
            counts["novel"][info.chains[info.novel]] += 1
            if self.monitor is not None:
                self.monitor(epoch + (s + 1) / n_steps, cfg.mh_epochs)
        fill_cache(self.ev, self.mask, st, report=True)
        if self.exchange is not None:
            self.exchange.exchange(st, epoch, key.tau)
        rec.counts["rows"][epoch] = st.rows - rows0
        rec.counts["report_rows"][epoch] = st.report_rows - rep0
        rec.energy[epoch] = st.energy()
        rec.states[epoch] = st.tokens
        rec.terms[epoch] = st.free_terms()

    def _epoch_order(self, st: ChainState, epoch: int) -> torch.Tensor:
        """[C, L] the free positions of each chain in this epoch's order, then the others."""
        C, L = st.tokens.shape
        dev = st.tokens.device
        if self.cfg.position_order == "random":
            keys = rng.uniform(st.keys[:, None], epoch, 0, torch.arange(L, device=dev)[None, :], rng.PURPOSE_ORDER)
        else:
            keys = torch.arange(L, dtype=torch.float64, device=dev).expand(C, L)
        keys = keys.masked_fill(~st.free, math.inf)
        return torch.sort(keys, dim=1, stable=True)[1]

    # ------------------------------------------------------------------ output
    def _result(self, starts: Starts, start: ChainState, start_rows: torch.Tensor, rec: _Record) -> ChainResult:
        cfg = self.cfg
        if self.exchange is not None:
            self.exchange.output(rec)
        S = starts.tokens.size(0)
        C = S * cfg.num_chains
        b = cfg.burn_in
        samples, sample_energy, sample_terms = rec.states[b:], rec.energy[b:], rec.terms[b:]
        if cfg.mh_select == "last":
            pick = torch.full((C,), cfg.mh_epochs - b - 1, dtype=torch.long, device=samples.device)
        else:
            pick = sample_energy[:, :, ENERGIES[cfg.energy]].argmin(0)  # first minimum = earliest
        ar = torch.arange(C, device=samples.device)
        return ChainResult(
            tokens=samples[pick, ar],
            energy=sample_energy[pick, ar],
            n_free=starts.free.sum(1).repeat_interleave(cfg.num_chains),
            start=torch.arange(S, device=samples.device).repeat_interleave(cfg.num_chains),
            stats=rec.stats(),
            init_rows=int(start_rows.sum()),
            steps=cfg.mh_epochs,
            chains_per_start=cfg.num_chains,
            burn_in=b,
            start_tokens=start.tokens,
            start_energy=start.energy(),
            start_rows=start_rows,
            start_per_chain=start.num_chains != S,
            terms=sample_terms[pick, ar],
            states=rec.states,
            samples=samples,
            sample_energy=sample_energy,
            sample_terms=sample_terms,
        )
