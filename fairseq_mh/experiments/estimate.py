"""Cost estimate of an experiment before running it (``dry_run=true``).

Counts decoder rows (one masked target sequence through the decoder each) the way the engine
spends them (fairseq_mh/core/driver.py, "Compute contract"), for a sentence whose free length
T is taken from its reference (in model tokens), then divides by a measured rows-per-second:

* warm start and first energies: 1 + T rows per length candidate (shared by its chains);
* single-site MH epoch: T(T-1) rows for each proposal that changes a token, a fraction
  ``estimate.moved`` of the T proposals (measured 0.56 at proposal temperature 1 on m30k);
* block-MH epoch with block size k >= 2: ceil(T/k) steps of 1 row, plus T rows for the
  energy of each proposal that changes (upper bound: all);
* degenerate (block) Gibbs epoch: up to one row per step plus T rows to report energies;
* mask-predict: one row per iteration plus T rows to report its energies;
* curve reruns (curves.bleu=rerun): one chain for burn_in + e + 1 epochs per curve epoch e.
"""

from __future__ import annotations

import math
from typing import List

from fairseq_mh.core.config import SamplerConfig, block_size

from .spec import Run, kind_of

__all__ = ["rows_for_run", "estimate_rows"]


def _epoch_rows(exact: bool, T: int, k: int, moved: float) -> float:
    """Rows of one epoch of an MH (``exact``) or degenerate Gibbs chain at block size k."""
    if not exact:
        return 2.0 * T if k == 1 else math.ceil(T / k) + T
    return moved * T * max(T - 1, 0) if k == 1 else math.ceil(T / k) * (1 + T)


def estimate_rows(opts: dict, lengths: List[int], moved: float) -> float:
    """Rows of one fairseq-mh-generate call with options ``opts`` on sentences of free lengths."""
    lb = int(opts.get("length_beam", 1))
    kind = kind_of(opts)
    if not kind.is_chain:
        return lb * sum(int(opts.get("decoding_iterations", SamplerConfig.decoding_iterations)) + T for T in lengths)
    sc = SamplerConfig(sampler=kind.name, mh_epochs=int(opts["mh_epochs"]),
                       block_size=int(opts.get("block_size", SamplerConfig.block_size)),
                       no_block_anneal=bool(opts.get("no_block_anneal", False)))
    ks = [block_size(sc, e) for e in range(sc.mh_epochs)]
    C = int(opts.get("num_chains", 1))
    return lb * sum((1 + T) + C * sum(_epoch_rows(kind.exact, T, k, moved) for k in ks) for T in lengths)


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
