"""Convergence diagnostics of a decoding run: trace records, the corpus summary, netCDF export.

During a run, ``Convergence.add`` diagnoses every (sentence, length candidate) of a batch
across its chains, on the post-burn-in traces of both energies (``core.diagnostics``: split
R-hat, bulk and tail ESS, stuck chains), and returns the ``DiagnosticsRecord``s the generator
writes to ``--mh-trace``; ``line()`` is the one-line corpus summary ``fairseq-mh-generate``
ends with.  Runs whose chains have fewer post-burn-in draws than ArviZ needs are not
diagnosed, and the summary says so.

After a run, a trace exports to ArviZ's InferenceData::

    python -m fairseq_mh.diagnostics TRACE.jsonl OUT.nc

(one group per sentence and length candidate, labelled ``sentence`` and ``length_rank``;
prints the corpus summary of the trace's epoch records).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Dict, List, Optional, Tuple

import numpy as np

from .core.diagnostics import GroupDiagnostics, chain_traces, diagnose, min_draws, summarize
from .errors import UserError
from .trace import DiagnosticsRecord, encode_rhat, read_trace

logger = logging.getLogger(__name__)

__all__ = ["Convergence", "records_of", "trace_arrays", "main"]

_RUNS: List["Convergence"] = []  # this process's runs, summarised when fairseq-mh-generate ends


class Convergence:
    """Diagnostics of one run, batch by batch."""

    def __init__(self, target: str):
        self.target = target
        self.parts: List[GroupDiagnostics] = []
        self.undiagnosed: Optional[Tuple[int, int]] = None  # (draws, chains) too few to diagnose
        _RUNS.append(self)

    def add(self, res, ids, lengths, per_sentence: int) -> List[DiagnosticsRecord]:
        """The diagnostics records of one batch's chain result (none for too short runs)."""
        R = res.chains_per_start
        draws = res.sample_energy.size(0)
        if draws < min_draws(R):
            self.undiagnosed = (draws, R)
            return []
        diag = diagnose(chain_traces(res.sample_energy.cpu(), R))
        self.parts.append(diag)
        return records_of(diag, ids, lengths, per_sentence, self.target)

    def line(self) -> str:
        if not self.parts and self.undiagnosed:
            draws, R = self.undiagnosed
            return (f"convergence: not diagnosed: {draws} post-burn-in draw(s) per chain, fewer than the "
                    f"{min_draws(R)} needed with {R} chain(s)")
        return summarize(self.parts).line()


def records_of(diag: GroupDiagnostics, ids, lengths, per_sentence: int, target: str) -> List[DiagnosticsRecord]:
    """One record per group (start s: sentence ids[s // per_sentence]) and series."""
    out = []
    for s in range(diag.groups):
        b, j = divmod(s, per_sentence)
        for k, name in enumerate(diag.series):
            d = diag.series_result(s, k)
            out.append(DiagnosticsRecord(
                id=int(ids[b]), length=int(lengths[s]), length_rank=j, series=name, target=name == target,
                rhat=encode_rhat(d.rhat), ess_bulk=d.ess_bulk, ess_tail=d.ess_tail, chains=d.chains,
                draws=d.draws, stuck_chains=d.stuck_chains))
    return out


def summary_lines() -> List[str]:
    """The corpus summary of every run of this process that has chains, and forgets them."""
    lines = [r.line() for r in _RUNS if r.parts or r.undiagnosed]
    _RUNS.clear()
    return lines


def trace_arrays(path) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """[G, chains, draws, 2] post-burn-in energies (raw, local) of a trace, and group labels."""
    groups: Dict[Tuple[int, int], Dict[int, Dict[int, Tuple[float, float]]]] = {}
    for r in read_trace(path):
        if r.record == "epoch" and not r.burn_in:
            groups.setdefault((r.id, r.length_rank), {}).setdefault(r.chain, {})[r.epoch] = (r.energy_raw,
                                                                                           r.energy_local)
    if not groups:
        raise UserError(f"{path} has no post-burn-in epoch records of a chain sampler: nothing to export")
    keys = sorted(groups)
    shapes = {(len(c), len(next(iter(c.values())))) for c in groups.values()}
    if len(shapes) != 1 or any(len(e) != len(next(iter(c.values()))) for c in groups.values() for e in c.values()):
        raise UserError(f"{path}: its groups have different numbers of chains or draws (a trace of several runs?)")
    a = np.array([[[groups[g][c][e] for e in sorted(groups[g][c])] for c in sorted(groups[g])] for g in keys])
    labels = {"sentence": np.array([g[0] for g in keys]), "length_rank": np.array([g[1] for g in keys])}
    return a, labels


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fairseq_mh.diagnostics",
                                description="Export an --mh-trace file to ArviZ InferenceData (netCDF) and print "
                                            "its convergence summary.")
    p.add_argument("trace", help="a trace written by --mh-trace")
    p.add_argument("out", help="the netCDF file to write (e.g. traces.nc)")
    a = p.parse_args(argv)
    from .core.inference_data import write_netcdf

    try:
        traces, labels = trace_arrays(a.trace)
        R, D = traces.shape[1:3]
        if D < min_draws(R):
            raise UserError(f"{a.trace}: {D} post-burn-in draws per chain, fewer than the {min_draws(R)} "
                            f"diagnostics need with {R} chain(s)")
        write_netcdf(traces, a.out, labels=labels)
    except (UserError, OSError) as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 1
    print(summarize(diagnose(traces)).line())
    print(f"wrote {a.out}: {traces.shape[0]} groups, {R} chains, {D} draws")
    return 0


if __name__ == "__main__":
    sys.exit(main())
