"""Cost estimate of an experiment before running it (``dry_run=true``).

Counts decoder rows with the engine's one estimator (``fairseq_mh.core.cost``, which says
how each sampler spends them), for sentences whose free length T is taken from their
references (in model tokens), and divides by a measured rows-per-second.  ``estimate.moved``
is the share of single-site proposals that change a token (measured 0.56 at proposal
temperature 1 on m30k); curve reruns (curves.bleu=rerun) cost one chain for
burn_in + e + 1 epochs per curve epoch e.
"""

from __future__ import annotations

import dataclasses
from typing import List

from ..core.config import SamplerConfig
from ..core.cost import expected_rows
from .spec import Run

__all__ = ["rows_for_run", "estimate_rows"]


def estimate_rows(opts: dict, lengths: List[int], moved: float) -> float:
    """Rows of one fairseq-mh-generate call with options ``opts`` on sentences of free lengths
    (the engine's estimator, ``core.cost``; the runner always writes a trace, so the
    baseline's energies are counted)."""
    names = {f.name for f in dataclasses.fields(SamplerConfig)}
    sc = SamplerConfig(**{k: v for k, v in opts.items() if k in names and k != "report_energy"}, report_energy=True)
    lb = int(opts.get("length_beam", 1))
    return expected_rows(sc, [T for T in lengths for _ in range(lb)], moved)


def rows_for_run(run: Run, lengths: List[int], moved: float, curve_mode: str, curve_epochs) -> dict:
    """{'main': rows, 'curves': rows} of a run."""
    o = run.options
    main = estimate_rows(o, lengths, moved)
    curves = 0.0
    if run.is_chain and curve_mode == "rerun" and not run.anneals_blocks:
        post = o["mh_epochs"] - o["burn_in"]
        for e in curve_epochs(post):
            opts = {**o, "num_chains": 1, "mh_epochs": o["burn_in"] + e + 1}
            curves += estimate_rows(opts, lengths, moved)
    return {"main": main, "curves": curves}
