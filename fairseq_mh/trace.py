"""The ``--mh-trace`` and ``--mh-dump-samples`` records: one type each, written by the
generator and read by everything else (evaluation, the experiment runner, aggregation).

A trace holds one ``TraceRecord`` per (sentence, length candidate, chain, epoch), plus, for
chain samplers, one ``record='start'`` record per (sentence, length candidate) with the
warm-start state (``chain`` and ``epoch`` -1; with dispersed starts, ``--warm-start random``
or ``mixed``, one per chain, ``chain`` its index).  Records are JSON lines whose keys are the
field names; a file written by an older version lacking a field is refused with one line.

Chain samplers with enough post-burn-in draws also write one ``DiagnosticsRecord``
(``record='diagnostics'``) per (sentence, length candidate, energy): the convergence
diagnostics across its chains (``fairseq_mh.diagnostics``).  Strict JSON has no infinity, so
an infinite R-hat (no chain moved: no evidence of mixing) is written as the string ``"inf"``;
``read_diagnostics`` gives it back as ``float('inf')``.  ``read_trace`` skips these records.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Callable, Dict, Iterable, List, Optional, Tuple, Union

import torch

from .errors import UserError

__all__ = ["TraceRecord", "SampleRecord", "DiagnosticsRecord", "trace_records", "sample_records", "write_records",
           "read_trace", "read_samples", "read_diagnostics", "proposal_rates"]


@dataclass
class TraceRecord:
    id: int
    length: int
    length_rank: int
    chain: int
    epoch: int
    sampler: str
    target_energy: str
    energy_raw: float
    energy_local: float
    proposals: int
    acceptance: Optional[float]  # share of the epoch's proposals accepted
    novel: Optional[float]  # share of the epoch's proposals accepted and different
    rows: int
    report_rows: int
    target_temperature: Optional[float]
    block_size: Optional[int]
    burn_in: bool
    n_free: int
    record: str = "epoch"  # or "start"
    text: Optional[str] = None  # start records: the warm-start state as text


@dataclass
class SampleRecord:
    id: int
    length_rank: int
    chain: int
    epoch: int
    tokens: str


@dataclass
class DiagnosticsRecord:
    id: int
    length: int
    length_rank: int
    series: str  # the energy traced: "raw" or "local"
    target: bool  # whether it is the run's target energy
    rhat: Union[float, str]  # rank-normalised split R-hat; "inf" where no chain moved
    ess_bulk: float
    ess_tail: float
    chains: int
    draws: int  # post-burn-in draws per chain
    stuck_chains: int  # chains whose trace never changed
    record: str = "diagnostics"


def encode_rhat(value: float) -> Union[float, str]:
    """R-hat as JSON allows it: a number, or "inf"."""
    return "inf" if value == float("inf") else float(value)


def trace_records(res, ids, lengths, per_sentence: int, sampler: str, target: str,
                  text: Callable[[torch.Tensor], str]) -> List[TraceRecord]:
    """The records of one batch's result: its start records (chain samplers), then per chain
    and epoch.  Start s is sentence ``ids[s // per_sentence]``, length rank s % per_sentence."""
    out = []
    if res.start_tokens is not None:
        k = res.chains_per_start if res.start_per_chain else 1  # start records per start
        for i in range(res.start_tokens.size(0)):
            s = i // k
            b, j = divmod(s, per_sentence)
            e = res.start_energy[i]
            out.append(TraceRecord(
                id=int(ids[b]), length=int(lengths[s]), length_rank=j, chain=i % k if k > 1 else -1, epoch=-1,
                sampler=sampler, target_energy=target, energy_raw=float(e[0]), energy_local=float(e[1]), proposals=0,
                acceptance=None, novel=None, rows=int(res.start_rows[i]), report_rows=0, target_temperature=None,
                block_size=None, burn_in=True, n_free=int(res.n_free[s * res.chains_per_start]), record="start",
                text=text(res.start_tokens[i])))
    st = res.stats
    chain_index = res.chain_index.tolist()
    for c, s in enumerate(res.start.tolist()):
        b, j = divmod(s, per_sentence)
        for e in range(st.energy.size(0)):
            prop = int(st.proposals[e, c])
            out.append(TraceRecord(
                id=int(ids[b]), length=int(lengths[s]), length_rank=j, chain=chain_index[c], epoch=e,
                sampler=sampler, target_energy=target, energy_raw=float(st.energy[e, c, 0]),
                energy_local=float(st.energy[e, c, 1]), proposals=prop,
                acceptance=float(st.accepted[e, c]) / prop if prop else None,
                novel=float(st.novel[e, c]) / prop if prop else None, rows=int(st.rows[e, c]),
                report_rows=int(st.report_rows[e, c]), target_temperature=st.temperature[e],
                block_size=st.block_size[e], burn_in=e < res.burn_in, n_free=int(res.n_free[c])))
    return out


def sample_records(res, ids, per_sentence: int, text: Callable[[torch.Tensor], str]) -> List[SampleRecord]:
    """Every post-burn-in state of every chain of one batch's result, as text."""
    out = []
    chain_index = res.chain_index.tolist()
    for c, s in enumerate(res.start.tolist()):
        b, j = divmod(s, per_sentence)
        for k in range(res.samples.size(0)):
            out.append(SampleRecord(id=int(ids[b]), length_rank=j, chain=chain_index[c], epoch=res.burn_in + k,
                                    tokens=text(res.samples[k, c])))
    return out


def write_records(f, records: Iterable) -> None:
    """Appends records to an open text file as JSON lines and flushes them: whatever is in
    the file is complete lines."""
    f.write("".join(json.dumps(asdict(r)) + "\n" for r in records))
    f.flush()


def _read(path, cls, kind: Callable[[dict], bool]):
    names = {f.name for f in fields(cls)}
    required = {f.name for f in fields(cls) if f.default is MISSING}
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                raise UserError(f"{path}, line {n}: not a JSON record (a cut-off write?): "
                                f"decode again to rewrite the file") from None
            if not kind(d):
                continue
            missing = required - d.keys()
            if missing:
                raise UserError(f"{path}, line {n}: the record lacks {', '.join(sorted(missing))}: the file was "
                                f"written by an older fairseq_mh or is not a {cls.__name__} file; decode again")
            out.append(cls(**{k: v for k, v in d.items() if k in names}))
    return out


def read_trace(path) -> List[TraceRecord]:
    """The start and epoch records of an ``--mh-trace`` file."""
    return _read(path, TraceRecord, lambda d: d.get("record") != "diagnostics")


def read_diagnostics(path) -> List[DiagnosticsRecord]:
    """The diagnostics records of an ``--mh-trace`` file (R-hat as a float, +inf included)."""
    out = _read(path, DiagnosticsRecord, lambda d: d.get("record") == "diagnostics")
    for r in out:
        r.rhat = float(r.rhat)
    return out


def read_samples(path) -> List[SampleRecord]:
    """The records of an ``--mh-dump-samples`` file."""
    return _read(path, SampleRecord, lambda d: True)


def proposal_rates(records: Iterable[TraceRecord]) -> Tuple[int, Optional[float], Optional[float]]:
    """(proposals, acceptance, novel rate) over records, each weighted by its proposals."""
    prop, acc, nov = 0, 0.0, 0.0
    for r in records:
        if r.proposals:
            prop += r.proposals
            acc += r.acceptance * r.proposals
            nov += r.novel * r.proposals
    return prop, (acc / prop if prop else None), (nov / prop if prop else None)


def by_epoch(records: Iterable[TraceRecord]) -> Dict[int, List[TraceRecord]]:
    """Epoch records grouped by epoch (start records left out)."""
    out: Dict[int, List[TraceRecord]] = {}
    for r in records:
        if r.record == "epoch":
            out.setdefault(r.epoch, []).append(r)
    return dict(sorted(out.items()))
