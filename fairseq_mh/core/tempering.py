"""Parallel tempering (replica exchange): replicas of every chain on a ladder of temperatures.

Each chain becomes M replicas (``--pt-temperatures`` t_0, ..., t_{M-1}); replica m targets
exp(-E / (tau_e * t_m)), tau_e being the epoch's scheduled target temperature, and moves with
the sampler's own kernel (``ChainState.tau_scale`` carries t_m).  After every epoch,
neighbouring replicas propose to exchange their states, the even pairs (0,1), (2,3), ... after
even epochs and the odd pairs after odd ones (the deterministic even-odd scheme of Okabe et
al. 2001; Syed et al. 2021), each accepted with the replica-exchange ratio

    min(1, exp((1/T_i - 1/T_j) * (E(X_i) - E(X_j)))),    T_m = tau_e * t_m,

which leaves the product of the replicas' targets invariant (tests/test_tempering_exact.py).
A swap costs no model row: it exchanges the states with their cached conditionals and
energies, while keys, temperatures and row counters stay with the replica.

The output of a run is replica 0 (the first temperature, normally 1: the target itself); the
rows of a chain are those of all its replicas.  Replica m of chain c is chain c * M + m.
"""

from __future__ import annotations

import torch

from . import rng
from .state import ChainState

__all__ = ["ReplicaExchange", "swap_log_ratio", "swap_pairs"]

_SWAPPED = ("tokens", "terms", "valid")


def swap_log_ratio(e_i, e_j, t_i, t_j):
    """log of the replica-exchange ratio of states with energies e_i, e_j at temperatures t_i, t_j."""
    return (1.0 / t_i - 1.0 / t_j) * (e_i - e_j)


def swap_pairs(replicas: int, epoch: int):
    """The lower rungs m of the pairs (m, m + 1) that propose an exchange after ``epoch``."""
    return list(range(epoch % 2, replicas - 1, 2))


class ReplicaExchange:
    """The replicas of a tempered run: made from the chains, exchanged, reduced to replica 0."""

    def __init__(self, cfg, target: int):
        self.ladder = torch.tensor(cfg.ladder, dtype=torch.float64)
        self.replicas = self.ladder.numel()
        self.target = target
        self.proposed = 0  # exchanges proposed and accepted, over every run of this sampler
        self.accepted = 0

    def replicate(self, st: ChainState) -> ChainState:
        """M replicas of every chain, each at its rung (own keys, copied caches)."""
        new = st.expand(self.replicas)
        new.tau_scale = st.tau_scale.repeat_interleave(self.replicas) * self.ladder.to(new.tau_scale.device).repeat(
            st.num_chains)
        return new

    def exchange(self, st: ChainState, epoch: int, tau: float) -> None:
        """Proposes the exchanges of this epoch's pairs and commits the accepted ones."""
        low = swap_pairs(self.replicas, epoch)
        if not low:
            return
        groups = st.num_chains // self.replicas
        base = torch.arange(groups, device=st.tokens.device)[:, None] * self.replicas
        i = (base + torch.tensor(low, device=base.device)[None, :]).reshape(-1)
        j = i + 1
        e = st.energy()[:, self.target]
        t = tau * st.tau_scale
        la = swap_log_ratio(e[i], e[j], t[i], t[j])
        u = rng.uniform(st.keys[i], epoch, 0, 0, rng.PURPOSE_SWAP)
        ok = u < torch.exp(la.clamp(max=0.0)).nan_to_num(nan=0.0)
        self.proposed += i.numel()
        self.accepted += int(ok.sum())
        if ok.any():
            a, b = i[ok], j[ok]
            perm = torch.arange(st.num_chains, device=a.device)
            perm[a], perm[b] = b, a
            for name in _SWAPPED:
                setattr(st, name, getattr(st, name)[perm])
            if st.cache is not None:
                st.cache[torch.cat([a, b])] = st.cache[torch.cat([b, a])]

    @property
    def acceptance(self):
        """Share of the proposed exchanges accepted (None before any)."""
        return self.accepted / self.proposed if self.proposed else None

    def output(self, rec) -> None:
        """Reduces the driver's record to replica 0, charging it the rows of all replicas."""
        M = self.replicas
        rec.energy, rec.states, rec.terms = rec.energy[:, ::M], rec.states[:, ::M], rec.terms[:, ::M]
        for name, v in rec.counts.items():
            E, C = v.shape
            rec.counts[name] = v.view(E, C // M, M).sum(-1) if name in ("rows", "report_rows") else v[:, ::M]
