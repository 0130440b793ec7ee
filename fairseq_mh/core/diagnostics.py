"""Convergence diagnostics of chain traces: rank-normalised split R-hat, bulk and tail ESS.

Exact kernels do not make a run's samples trustworthy: chains that all leave one warm start
may not have left it yet.  These diagnostics compare the chains of one (sentence, length)
group on scalar traces (the target energy and the other energy of each post-burn-in epoch).
ArviZ (arviz-stats) computes the statistics (Vehtari et al. 2021); this module only decides
what they mean where ArviZ has no answer, so that no result is a bare NaN:

* a chain whose trace never changed is counted (``stuck``); for energy traces it never left
  its state (two states with bitwise-equal energies are a coincidence a real model does not
  make);
* if no chain of a series moved, the run carries no evidence of mixing: R-hat is +inf and
  both ESS are 0, so that the group is never counted as converged (ArviZ would say NaN and
  chains * draws);
* ArviZ's remaining NaN (split chains without within-chain variance, e.g. a chain that moved
  once, at its midpoint) is read the same way: R-hat +inf, ESS 0;
* one chain: split R-hat compares its halves; ArviZ wants two chains, so it gets the two
  halves as chains (and splits those again: four quarters are compared).  Such an R-hat sees
  a drift within the chain, never a mode that the chain did not visit.

R-hat needs draws that are long compared with the chains' autocorrelation: chains started
from exact draws of the target are flagged too when they barely move within the run, since
their few samples per sentence do not yet represent the target.

How the generator calls it (arrays of ``ChainResult``; chain c belongs to start
c // num_chains, one start per (sentence, length candidate))::

    traces = chain_traces(result.sample_energy, cfg.num_chains)  # [starts, chains, draws, 2]
    diag = diagnose(traces)          # diag.series_result(start, 0): energy 'raw', 1: 'local'
    parts.append(diag)               # one per batch
    ...
    print(summarize(parts).line())   # at the end: the corpus summary

``diag.rhat[s]`` and friends go into the trace of start s; ``inference_data.write_netcdf``
exports the same traces for ArviZ's plots.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np
from arviz_stats.base import array_stats

__all__ = [
    "SERIES",
    "RHAT_GOOD",
    "RHAT_OK",
    "TAIL_PROB",
    "SeriesDiagnostics",
    "GroupDiagnostics",
    "CorpusSummary",
    "chain_traces",
    "diagnose",
    "diagnose_series",
    "summarize",
    "min_draws",
    "as_group_traces",
    "series_names",
]

SERIES = ("raw", "local")  # the energy columns of ChainResult.sample_energy
RHAT_GOOD = 1.01  # Vehtari et al. (2021): trust the samples below this
RHAT_OK = 1.05  # a laxer, commonly used threshold
TAIL_PROB = (0.05, 0.95)  # tail ESS quantiles of Vehtari et al. (2021) and Stan (arviz-stats: 0.11, 0.89)


def min_draws(chains: int) -> int:
    """Fewest draws per chain ArviZ accepts (4 per chain; a lone chain is cut in two)."""
    return 8 if chains == 1 else 4


@dataclass(frozen=True)
class SeriesDiagnostics:
    """Diagnostics of one scalar series over the chains of one group."""

    rhat: float  # rank-normalised split R-hat; +inf where no chain moved
    ess_bulk: float  # 0 where no chain moved
    ess_tail: float
    chains: int
    draws: int
    stuck_chains: int  # chains whose trace never changed

    @property
    def moved(self) -> bool:
        return self.stuck_chains < self.chains


@dataclass(frozen=True)
class GroupDiagnostics:
    """Diagnostics of G groups and K series: every array is [G, K] except ``never_moved``."""

    rhat: np.ndarray
    ess_bulk: np.ndarray
    ess_tail: np.ndarray
    stuck: np.ndarray  # chains whose trace is constant in that series
    never_moved: np.ndarray  # [G] chains constant in every series
    chains: int
    draws: int
    series: Tuple[str, ...]

    @property
    def groups(self) -> int:
        return self.rhat.shape[0]

    @property
    def worst_rhat(self) -> np.ndarray:
        """[G] the largest R-hat over the series: a group converged only if all did."""
        return self.rhat.max(1)

    def series_result(self, group: int, series: int = 0) -> SeriesDiagnostics:
        g, k = group, series
        return SeriesDiagnostics(float(self.rhat[g, k]), float(self.ess_bulk[g, k]), float(self.ess_tail[g, k]),
                                 self.chains, self.draws, int(self.stuck[g, k]))


def chain_traces(sample_energy, num_chains: int) -> np.ndarray:
    """[draws, S * num_chains, K] (``ChainResult.sample_energy``) -> [S, num_chains, draws, K]."""
    a = np.asarray(sample_energy, dtype=np.float64)
    if a.ndim != 3 or a.shape[1] % num_chains:
        raise ValueError(f"expected [draws, starts * {num_chains}, series], got shape {a.shape}")
    D, C, K = a.shape
    return a.reshape(D, C // num_chains, num_chains, K).transpose(1, 2, 0, 3)


def as_group_traces(traces) -> np.ndarray:
    """float64 [G, chains, draws, K] from [G, chains, draws] (one series) or [G, chains, draws, K]."""
    a = np.asarray(traces, dtype=np.float64)
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4:
        raise ValueError(f"traces must be [groups, chains, draws] or [groups, chains, draws, series], got {a.shape}")
    return a


def series_names(k: int) -> Tuple[str, ...]:
    """``SERIES`` for the two energies of a chain result, else s0, s1, ..."""
    return SERIES if k == len(SERIES) else tuple(f"s{i}" for i in range(k))


def _checked(traces) -> np.ndarray:
    a = as_group_traces(traces)
    G, R, D, K = a.shape
    if R < 1:
        raise ValueError("traces need at least one chain")
    if D < min_draws(R):
        raise ValueError(
            f"convergence diagnostics need at least {min_draws(R)} post-burn-in draws per chain with "
            f"{R} chain(s), got {D}: raise --mh-epochs or lower --burn-in"
        )
    if not np.isfinite(a).all():
        raise ValueError("traces must be finite (energies that were not computed cannot be diagnosed)")
    return a


def _arviz(a: np.ndarray):
    """ArviZ's statistics of a [..., chains, draws] array; a lone chain gives its halves for R-hat."""
    if a.shape[-2] == 1:
        half = a.shape[-1] // 2
        halves = np.concatenate([a[..., :half], a[..., -half:]], axis=-2)
    else:
        halves = a
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat = array_stats.rhat(halves, method="rank")
        bulk = array_stats.ess(a, method="bulk")
        tail = array_stats.ess(a, method="tail", prob=TAIL_PROB)
    return np.asarray(rhat, float), np.asarray(bulk, float), np.asarray(tail, float)


def diagnose(traces) -> GroupDiagnostics:
    """Diagnostics of every group: ``traces`` [G, chains, draws] or [G, chains, draws, K].

    Series are named by ``series_names``.
    """
    a = _checked(traces)
    G, R, D, K = a.shape
    a = a.transpose(0, 3, 1, 2)  # [G, K, R, D]: ArviZ's chain and draw axes last
    stuck = (a.max(-1) == a.min(-1)).sum(-1)  # [G, K]
    never = (a.max(-1) == a.min(-1)).all(1).sum(-1)  # [G]
    rhat, bulk, tail = _arviz(a)
    dead = stuck == R
    rhat = np.where(dead | np.isnan(rhat), np.inf, rhat)
    bulk = np.where(dead | np.isnan(bulk), 0.0, bulk)
    tail = np.where(dead | np.isnan(tail), 0.0, tail)
    return GroupDiagnostics(rhat, bulk, tail, stuck, never, R, D, series_names(K))


def diagnose_series(trace) -> SeriesDiagnostics:
    """Diagnostics of one series over its chains: ``trace`` [chains, draws]."""
    a = np.asarray(trace, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"trace must be [chains, draws], got shape {a.shape}")
    return diagnose(a[None]).series_result(0, 0)


@dataclass(frozen=True)
class CorpusSummary:
    """What the generator prints at the end: one line over every group of the corpus."""

    groups: int
    rhat_good: int  # groups whose worst R-hat is below RHAT_GOOD
    rhat_ok: int  # ... below RHAT_OK
    median_ess_bulk: float  # median over groups of the smallest bulk ESS over the series
    median_ess_tail: float
    never_moved: int  # chains constant in every series
    chains: int  # chains in all

    def share(self, count: int) -> float:
        return count / self.groups if self.groups else 0.0

    def line(self) -> str:
        if not self.groups:
            return "convergence: no chains to diagnose"
        return (
            f"convergence over {self.groups} sentence-length groups: "
            f"R-hat < {RHAT_GOOD} in {100 * self.share(self.rhat_good):.1f}%, "
            f"< {RHAT_OK} in {100 * self.share(self.rhat_ok):.1f}%; "
            f"median ESS bulk {self.median_ess_bulk:.0f}, tail {self.median_ess_tail:.0f}; "
            f"chains that never moved: {self.never_moved} of {self.chains}"
        )


def summarize(parts: Sequence[GroupDiagnostics] | GroupDiagnostics) -> CorpusSummary:
    """Corpus summary of one or more batches' diagnostics (medians over all their groups)."""
    parts = [parts] if isinstance(parts, GroupDiagnostics) else list(parts)
    worst = np.concatenate([p.worst_rhat for p in parts]) if parts else np.zeros(0)
    bulk = np.concatenate([p.ess_bulk.min(1) for p in parts]) if parts else np.zeros(0)
    tail = np.concatenate([p.ess_tail.min(1) for p in parts]) if parts else np.zeros(0)
    n = worst.size
    return CorpusSummary(
        groups=n,
        rhat_good=int((worst < RHAT_GOOD).sum()),
        rhat_ok=int((worst < RHAT_OK).sum()),
        median_ess_bulk=float(np.median(bulk)) if n else 0.0,
        median_ess_tail=float(np.median(tail)) if n else 0.0,
        never_moved=int(sum(int(p.never_moved.sum()) for p in parts)),
        chains=int(sum(p.groups * p.chains for p in parts)),
    )
