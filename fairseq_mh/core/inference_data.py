"""Chain traces as ArviZ InferenceData (an xarray DataTree), written to netCDF.

A user plots the chains of a run with ArviZ, e.g.::

    import arviz_stats, xarray
    dt = xarray.open_datatree("traces.nc", engine="h5netcdf")
    arviz_stats.rhat(dt)                                # diagnostics.diagnose's R-hat
    arviz_stats.ess(dt, method="tail", prob=(0.05, 0.95))  # its tail ESS (TAIL_PROB;
                                                        # ArviZ's default is 0.11, 0.89)

The ``posterior`` group holds one variable per series (``energy_raw``, ``energy_local``) with
dimensions (chain, draw, group): a group is one (sentence, length candidate), labelled by
the optional coordinates the caller passes (e.g. ``sentence`` and ``length``).  The file is
netCDF-4 written by h5netcdf (groups need netCDF-4; h5netcdf is lighter than netCDF4-python).

The generator passes the same traces as to ``diagnostics.diagnose``::

    write_netcdf(chain_traces(result.sample_energy, cfg.num_chains), path,
                 labels={"sentence": ids, "length": lengths})
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
from arviz_base import from_dict

from .diagnostics import as_group_traces, series_names

__all__ = ["ENGINE", "to_inference_data", "write_netcdf"]

ENGINE = "h5netcdf"


def to_inference_data(traces, series: Optional[Sequence[str]] = None,
                      labels: Optional[Mapping[str, Sequence]] = None):
    """DataTree with a ``posterior`` group built from ``traces`` [G, chains, draws, K].

    ``series`` names the K series (default: ``diagnostics.series_names``); ``labels`` maps
    coordinate names to G values each, attached along the ``group`` dimension.
    """
    a = as_group_traces(traces)
    G, R, D, K = a.shape
    series = series_names(K) if series is None else tuple(series)
    if len(series) != K:
        raise ValueError(f"{K} series but {len(series)} names")
    data = {f"energy_{name}": a[..., k].transpose(1, 2, 0) for k, name in enumerate(series)}
    dims = {v: ["group"] for v in data}
    dt = from_dict({"posterior": data}, dims=dims, coords={"group": np.arange(G)})
    if labels:
        extra = {}
        for name, values in labels.items():
            values = np.asarray(values)
            if values.shape != (G,):
                raise ValueError(f"label {name!r} needs {G} values, got shape {values.shape}")
            extra[name] = ("group", values)
        dt["posterior"] = dt["posterior"].to_dataset().assign_coords(extra)
    return dt


def write_netcdf(traces, path, series: Optional[Sequence[str]] = None,
                 labels: Optional[Mapping[str, Sequence]] = None) -> Path:
    """Writes ``to_inference_data(traces, series, labels)`` to ``path``; returns the path."""
    path = Path(path)
    to_inference_data(traces, series, labels).to_netcdf(path, engine=ENGINE)
    return path
