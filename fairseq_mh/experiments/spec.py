"""From a composed config to the list of runs, every value checked before any work starts.

An experiment names sampler settings (``runs``: the ``sampler/`` presets, placed with
``/sampler@runs.NAME``, plus per-run changes) and a ``grid`` of option values; a run is one
setting at one grid point.  Its options are ``decode`` (shared) < the setting < the grid point,
all named as the plug-in's options (``proposal_top_p`` is ``--proposal-top-p``).
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import os
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Dict, List

from omegaconf import DictConfig, ListConfig, OmegaConf

from ..core.errors import UserError
from ..core.config import SamplerConfig
from ..core.kinds import SAMPLER_KINDS, SamplerKind

__all__ = ["ExperimentError", "Run", "expand_runs", "check_config", "plugin_options", "RUNNER_KEYS"]

RUNNER_KEYS = ("label",)  # keys of a setting that are the runner's, not the plug-in's
MANAGED = ("mh_trace",)  # options the runner sets itself
CURVE_MODES = ("off", "rerun", "dump")
ALIASES = {"proposal_temperature": "T", "proposal_top_p": "p", "anneal_rate": "anneal", "length_beam": "beam"}


class ExperimentError(UserError):
    """A mistake in the experiment's configuration or inputs; the message is one line."""


@dataclass
class Run:
    """One sampler setting at one grid point."""

    name: str  # unique within the experiment, safe as a folder name
    setting: str  # the key under ``runs``
    label: str
    options: Dict[str, Any]  # plug-in options (underscore names) -> value
    grid: Dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> SamplerKind:
        """The sampler's row in the engine's table of kinds."""
        return kind_of(self.options)

    @property
    def is_chain(self) -> bool:
        return self.kind.is_chain

    @property
    def anneals_blocks(self) -> bool:
        """Block moves whose size is annealed over the epochs (so it depends on --mh-epochs)."""
        return self.kind.block and not self.options.get("no_block_anneal", SamplerConfig.no_block_anneal)


def kind_of(options: Dict[str, Any]) -> SamplerKind:
    """The sampler kind of a run's plug-in options (the plug-in's default when unset)."""
    return SAMPLER_KINDS[options.get("sampler", SamplerConfig.sampler)]


def plugin_options() -> Dict[str, dataclasses.Field]:
    """The plug-in's decoding options (fields of its fairseq dataclass) by name."""
    from fairseq_mh.options import MHDecodingConfig

    def interpolated(f):  # e.g. seed: ${common.seed}, fairseq's own option, not a decoding one
        return isinstance(f.default, str) and f.default.startswith("${")

    return {f.name: f for f in dataclasses.fields(MHDecodingConfig) if not f.name.startswith("_") and not interpolated(f)}


def _plain(node) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def expand_runs(cfg: DictConfig) -> List[Run]:
    """The runs of a config: every setting of ``runs`` (or the single ``sampler``) at every
    point of ``grid``; grid points vary slowest, so a table lists the settings side by side."""
    runs = _plain(cfg.get("runs")) or {}
    single = _plain(cfg.get("sampler"))
    if runs and single:
        raise ExperimentError("give experiment=NAME or sampler=NAME, not both")
    if not runs and not single:
        raise ExperimentError("nothing to run: choose experiment=NAME (a table or figure) or sampler=NAME (one setting)")
    if single:
        runs = {str(single.get("label") or "single"): single}
    grid = _plain(cfg.get("grid")) or {}
    if not isinstance(grid, dict):
        raise ExperimentError(f"grid must map option names to lists of values (got {grid!r})")
    for k, vals in grid.items():
        if not isinstance(vals, list) or not vals:
            raise ExperimentError(f"grid.{k} must be a non-empty list of values (got {vals!r})")
    decode = _plain(cfg.get("decode")) or {}
    keys = list(grid)
    out: List[Run] = []
    for point in itertools.product(*(grid[k] for k in keys)):
        g = dict(zip(keys, point))
        for setting, spec in runs.items():
            if not isinstance(spec, dict):
                raise ExperimentError(f"runs.{setting} must be a mapping of options (got {spec!r})")
            opts = {**decode, **{k: v for k, v in spec.items() if k not in RUNNER_KEYS}, **g}
            suffix = "".join(f"_{ALIASES.get(k, k)}{_fmt(v)}" for k, v in g.items())
            label = str(spec.get("label") or setting)
            out.append(Run(name=f"{setting}{suffix}", setting=setting, label=label, options=opts, grid=g))
    names = [r.name for r in out]
    if len(set(names)) != len(names):
        raise ExperimentError(f"run names collide: {names}")
    return out


def _choices(f: dataclasses.Field):
    t = f.type
    if isinstance(t, type) and issubclass(t, enum.Enum):
        return [e.value for e in t]
    return None


def check_options(run: Run) -> None:
    """The plug-in's own checks on a run's options (one-line ConfigError -> ExperimentError)."""
    from fairseq_mh.core.config import ConfigError
    from fairseq_mh.options import validate_decoding_options

    fields = plugin_options()
    where = f"run '{run.name}'"
    for k, v in run.options.items():
        if k in MANAGED:
            raise ExperimentError(f"{where}: option '{k}' is set by the runner; drop it")
        if k not in fields:
            raise ExperimentError(
                f"{where}: unknown decoding option '{k}' (known: {', '.join(n for n in fields if n not in MANAGED)})"
            )
        allowed = _choices(fields[k])
        if allowed is not None and v not in allowed:
            raise ExperimentError(f"{where}: {k} must be one of {', '.join(allowed)} (got {v!r})")
        if fields[k].type is bool and not isinstance(v, bool):
            raise ExperimentError(f"{where}: {k} must be true or false (got {v!r})")
    ns = SimpleNamespace()
    for name, f in fields.items():
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        setattr(ns, name, default.value if isinstance(default, enum.Enum) else default)
    for k, v in run.options.items():
        setattr(ns, k, v)
    try:
        validate_decoding_options(ns)
    except ConfigError as e:
        raise ExperimentError(f"{where}: {e}") from None


def _one_of(name, value, allowed):
    if value not in allowed:
        shown = ", ".join("null" if a is None else str(a) for a in allowed)
        raise ExperimentError(f"{name} must be one of {shown} (got {value!r})")


def _int_or_null(name, value, lo=1):
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise ExperimentError(f"{name} must be an integer >= {lo} or null (got {value!r})")


def _file(name, path):
    if not isinstance(path, str) or not os.path.isfile(path):
        raise ExperimentError(f"{name}: file '{path}' does not exist")


def curve_mode(cfg) -> str:
    mode = cfg.curves.bleu
    return "off" if mode is False or mode is None else mode


def check_config(cfg: DictConfig, check_files: bool = True) -> List[Run]:
    """Every check that can fail before running anything; returns the runs."""
    runs = expand_runs(cfg)
    for r in runs:
        check_options(r)
    _one_of("curves.bleu", curve_mode(cfg), CURVE_MODES)
    _int_or_null("curves.points", cfg.curves.points)
    g = cfg.generate
    cmd = _plain(g.cmd)
    if not isinstance(cmd, list) or not cmd or not all(isinstance(c, str) and c for c in cmd):
        raise ExperimentError(f"generate.cmd must be a non-empty list of words (got {cmd!r})")
    if not isinstance(_plain(g.extra_args), list):
        raise ExperimentError(f"generate.extra_args must be a list (got {g.extra_args!r})")
    _int_or_null("generate.batch_size", g.batch_size)
    if g.batch_size is None:
        raise ExperimentError("generate.batch_size must be an integer >= 1 (got null)")
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool):
        raise ExperimentError(f"seed must be an integer (got {cfg.seed!r})")
    _int_or_null("threads", cfg.threads)
    if not isinstance(cfg.dry_run, bool):
        raise ExperimentError(f"dry_run must be true or false (got {cfg.dry_run!r})")
    for k in ("rows_per_s", "moved"):
        v = cfg.estimate[k]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
            raise ExperimentError(f"estimate.{k} must be a number > 0 (got {v!r})")
    if not isinstance(cfg.name, str) or not cfg.name or "/" in cfg.name:
        raise ExperimentError(f"name must be a non-empty folder name (got {cfg.name!r})")
    if not isinstance(cfg.tag, str):
        raise ExperimentError(f"tag must be a string (got {cfg.tag!r})")
    m, d = cfg.model, cfg.data
    _one_of("model.task", m.task, ("translation_mh", "translation_self"))
    _one_of("model.bpe", m.bpe, ("sentencepiece", "subword_nmt", None))
    _one_of("model.tokenizer", m.tokenizer, ("moses", None))
    _one_of("model.fixed_symbols", m.fixed_symbols, (1, 2))
    _int_or_null("data.max_source_len", d.max_source_len)
    _int_or_null("data.max_sentences", d.max_sentences)
    for k in ("src_lang", "tgt_lang", "name"):
        if not isinstance(d[k], str) or not d[k]:
            raise ExperimentError(f"data.{k} must be a non-empty string (got {d[k]!r})")
    if check_files:
        _file("model.checkpoint", m.checkpoint)
        _file("model.src_dict", m.src_dict)
        _file("model.tgt_dict", m.tgt_dict)
        if m.bpe is not None:
            _file("model.bpe_model", m.bpe_model)
        _file("data.source", d.source)
        _file("data.reference", d.reference)
    return runs
