"""Sampler settings, their validation, and the per-epoch schedules derived from them.

Field names match the command-line options of the fairseq plug-in (``proposal_top_p`` is
``--proposal-top-p``), so an error message names the option a user has to fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import Enum

from .kinds import BLOCK_PROPOSALS, SAMPLER_KINDS, SAMPLERS, SamplerKind

from .errors import UserError
from .refinement import CONFIDENCES, INITS, REMASK_COUNTS

__all__ = [
    "SAMPLERS",
    "SamplerConfig",
    "ConfigError",
    "target_temperature",
    "block_size",
    "forced_acceptance",
]

ENERGY_NAMES = ("raw", "local")
POSITION_ORDERS = ("left-to-right", "random")
SELECTIONS = ("best", "last", "mbr")
WARM_STARTS = ("greedy", "mask-predict", "random", "mixed", "given")  # "given": the engine's callers only
MBR_UTILITIES = ("bleu", "chrf")


class ConfigError(UserError, ValueError):
    """An invalid sampler setting; the message names the option and the allowed values."""


@dataclass
class SamplerConfig:
    """Everything that defines a sampling run (see README, 'Decoding options').

    These are also the defaults of the command line.  A config is validated when it is made
    (also by ``dataclasses.replace``), so an invalid one never exists.
    """

    sampler: str = "mask-predict"
    energy: str = "raw"
    mh_epochs: int = 10
    burn_in: int = 0
    num_chains: int = 1
    proposal_temperature: float = 1.0
    proposal_top_p: float = 1.0
    target_temperature: float = 1.0
    anneal_rate: float = 0.0
    min_target_temperature: float = 0.05
    block_size: int = 4
    block_proposal: str = "independent"
    block_proposal_k: int = 10
    no_block_anneal: bool = False
    position_order: str = "random"
    force_accept_epochs: int = 0
    mh_select: str = "best"
    warm_start: str = "greedy"
    decoding_iterations: int = 10
    mask_predict_min_remask: int = 1
    mask_predict_init: str = "masks"
    mask_predict_remask: str = "linear"
    mask_predict_remask_amount: float = 0.0
    mask_predict_stutter: bool = False
    mask_predict_score: str = "probs"
    mask_predict_parallel: int = 1
    mask_predict_length_norm: float = 1.0
    mask_predict_early_stop: bool = False
    pt_temperatures: str = "1,0.8,0.6,0.4"  # parallel tempering: the replicas' ladder (comma-separated)
    mbr_utility: str = "bleu"  # --mh-select mbr: the utility (sacreBLEU sentence BLEU or chrF)
    mbr_score_weight: float = 0.0  # --mh-select mbr: + this x minus the target energy per position (0: plain MBR)
    report_energy: bool = True  # mask-predict: also compute its outputs' energies (T rows each)
    seed: int = 1

    def __post_init__(self):
        self.validate()

    @property
    def ladder(self) -> tuple:
        """The replicas' temperature multipliers of ``pt_temperatures`` (replica 0 is output)."""
        return _ladder(self.pt_temperatures)

    @property
    def kind(self) -> SamplerKind:
        """The sampler's row in the table of kinds (kernel, block moves, decoder)."""
        return SAMPLER_KINDS[self.sampler]

    def validate(self) -> "SamplerConfig":
        """Refuses bad settings before any work is done; returns self."""

        def opt(name):
            return "--" + name.replace("_", "-")

        def choice(name, allowed):
            v = getattr(self, name)
            if v not in allowed:
                raise ConfigError(f"{opt(name)} must be one of {', '.join(allowed)} (got {v!r})")

        def at_least(name, lo):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ConfigError(f"{opt(name)} must be an integer >= {lo} (got {v!r})")

        choice("sampler", SAMPLERS)
        choice("energy", ENERGY_NAMES)
        choice("position_order", POSITION_ORDERS)
        choice("mh_select", SELECTIONS)
        choice("warm_start", WARM_STARTS)
        choice("mbr_utility", MBR_UTILITIES)
        self.ladder  # noqa: B018  (refuses a bad ladder)
        if self.mh_select == "mbr" and not self.kind.is_chain:
            raise ConfigError(f"--mh-select mbr needs a chain sampler: --sampler {self.sampler} has no samples")
        for name in ("proposal_temperature", "target_temperature", "min_target_temperature"):
            self._finite(name, positive=True)
        p = self.proposal_top_p
        if not isinstance(p, (int, float)) or not math.isfinite(p) or not 0 < p <= 1:
            raise ConfigError(f"--proposal-top-p must be in (0, 1] (got {p!r})")
        self._finite("anneal_rate")
        self._finite("mbr_score_weight")
        at_least("mh_epochs", 1)
        at_least("burn_in", 0)
        if self.burn_in >= self.mh_epochs:
            raise ConfigError(
                f"--burn-in must be smaller than --mh-epochs (got burn-in {self.burn_in}, "
                f"epochs {self.mh_epochs}): no sample would be kept"
            )
        at_least("num_chains", 1)
        at_least("block_size", 1)
        choice("block_proposal", tuple(BLOCK_PROPOSALS))
        at_least("block_proposal_k", 1)
        self._check_block_proposal()
        at_least("force_accept_epochs", 0)
        at_least("decoding_iterations", 1)
        at_least("mask_predict_min_remask", 0)
        self._check_refinement(choice, at_least)
        if not isinstance(self.seed, int):
            raise ConfigError(f"--seed must be an integer (got {self.seed!r})")
        return self

    def _finite(self, name, positive=False):
        """Refuses a setting that is not a finite number > 0 (``positive``) or >= 0."""
        v = getattr(self, name)
        if not isinstance(v, (int, float)) or not math.isfinite(v) or (v <= 0 if positive else v < 0):
            opt = "--" + name.replace("_", "-")
            raise ConfigError(f"{opt} must be a finite number {'>' if positive else '>='} 0 (got {v!r})")

    def _check_refinement(self, choice, at_least):
        """PaDIR's mask-predict strategies (``refinement``)."""
        choice("mask_predict_init", INITS)
        choice("mask_predict_remask", tuple(REMASK_COUNTS))
        choice("mask_predict_score", CONFIDENCES)
        at_least("mask_predict_parallel", 1)
        a, rule = self.mask_predict_remask_amount, self.mask_predict_remask
        if rule == "constant" and not (isinstance(a, (int, float)) and a >= 1 and float(a).is_integer()):
            raise ConfigError(f"--mask-predict-remask constant needs --mask-predict-remask-amount N, an integer >= 1 "
                              f"(got {a!r})")
        if rule == "share" and not (isinstance(a, (int, float)) and 0 < a <= 1):
            raise ConfigError(f"--mask-predict-remask share needs --mask-predict-remask-amount in (0, 1] (got {a!r})")
        self._finite("mask_predict_length_norm")

    def _check_block_proposal(self):
        """A joint two-position proposal needs block MH with blocks of two and no nucleus."""
        if BLOCK_PROPOSALS[self.block_proposal].joint is None:
            return
        bp = f"--block-proposal {self.block_proposal}"
        if not (self.kind.block and self.kind.exact):
            names = ", ".join(k.name for k in SAMPLER_KINDS.values() if k.block and k.exact)
            raise ConfigError(f"{bp} is a block MH proposal: it needs --sampler {names} (got {self.sampler})")
        if self.block_size != 2:
            raise ConfigError(f"{bp} proposes two positions at once: it needs --block-size 2 (got {self.block_size})")
        if self.proposal_top_p < 1:
            raise ConfigError(f"{bp} has no nucleus: it needs --proposal-top-p 1 (got {self.proposal_top_p})")

    @classmethod
    def from_namespace(cls, ns) -> "SamplerConfig":
        """Builds a config from any object with matching attributes (argparse, omegaconf);
        enumerated choices (fairseq's ChoiceEnum) arrive as their string values."""
        kw = {f.name: getattr(ns, f.name) for f in fields(cls) if hasattr(ns, f.name)}
        return cls(**{k: v.value if isinstance(v, Enum) else v for k, v in kw.items()})


def _ladder(text) -> tuple:
    bad = ConfigError(f"--pt-temperatures must be two or more comma-separated finite numbers > 0 (got {text!r})")
    try:
        values = tuple(float(v) for v in (text.split(",") if isinstance(text, str) else text))
    except (TypeError, ValueError):
        raise bad from None
    if len(values) < 2 or not all(math.isfinite(v) and v > 0 for v in values):
        raise bad
    return values


def target_temperature(cfg: SamplerConfig, epoch: int) -> float:
    """Linear annealing per epoch: max(floor, start - rate * epoch) (paper, section 8)."""
    return max(cfg.min_target_temperature, cfg.target_temperature - cfg.anneal_rate * epoch)


def block_size(cfg: SamplerConfig, epoch: int) -> int:
    """Block size of an epoch: the initial size, annealed linearly to 1 at the last epoch
    (paper, appendix D) unless ``no_block_anneal``; 1 for single-site samplers."""
    if not cfg.kind.block:
        return 1
    k0 = cfg.block_size
    if cfg.no_block_anneal or cfg.mh_epochs == 1:
        return k0
    frac = epoch / (cfg.mh_epochs - 1)
    return max(1, int(round(k0 - (k0 - 1) * frac)))


def forced_acceptance(cfg: SamplerConfig, epoch: int) -> bool:
    """Whether every proposal of this epoch is accepted (paper, appendix F)."""
    return epoch < cfg.force_accept_epochs
