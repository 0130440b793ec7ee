"""The decoding options both tasks add to fairseq's command line (one dataclass field each).

fairseq turns every field into a flag (``proposal_top_p`` -> ``--proposal-top-p``); values
arrive in ``cfg.task``.  Names avoid fairseq's own (``--sampling``, ``--beam``), since
fairseq-generate asserts ``nbest == beam`` under ``--sampling``.  The sampler's fields take
their names and defaults from ``core.config.SamplerConfig``, which is built from them once,
at task set-up (``sampler_config``), with the run's ``--seed``.
"""


import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from omegaconf import II

from .core.config import (
    ENERGY_NAMES, MBR_UTILITIES, POSITION_ORDERS, SAMPLERS, SELECTIONS, WARM_STARTS, ConfigError, SamplerConfig,
)

__all__ = ["MHDecodingConfig", "sampler_config", "validate_decoding_options"]

_D = SamplerConfig()


@dataclass
class MHDecodingConfig(FairseqDataclass):
    sampler: ChoiceEnum(list(SAMPLERS)) = field(
        default=_D.sampler,
        metadata={"help": "decoding algorithm: the mask-predict baseline, degenerate (block) Gibbs, (block) MH, or "
                          "parallel tempering of (block) MH replicas"},
    )
    energy: ChoiceEnum(list(ENERGY_NAMES)) = field(
        default=_D.energy,
        metadata={"help": "target energy: raw (minus summed masked logits) or local (minus pseudo-log-likelihood)"},
    )
    mh_epochs: int = field(default=_D.mh_epochs, metadata={"help": "epochs (sweeps over all positions) per chain"})
    burn_in: int = field(default=_D.burn_in, metadata={"help": "epochs whose states are never output"})
    num_chains: int = field(default=_D.num_chains, metadata={"help": "independent chains per sentence and length"})
    proposal_temperature: float = field(
        default=_D.proposal_temperature, metadata={"help": "temperature of the proposal (masked conditional)"}
    )
    proposal_top_p: float = field(default=_D.proposal_top_p, metadata={"help": "nucleus mass of the proposal"})
    target_temperature: float = field(
        default=_D.target_temperature, metadata={"help": "initial temperature tau of the target exp(-E/tau)"}
    )
    anneal_rate: float = field(default=_D.anneal_rate, metadata={"help": "subtracted from tau after each epoch"})
    min_target_temperature: float = field(
        default=_D.min_target_temperature, metadata={"help": "floor of the annealed target temperature"}
    )
    block_size: int = field(
        default=_D.block_size, metadata={"help": "positions per block move (block samplers); annealed to 1 over the epochs"}
    )
    no_block_anneal: bool = field(default=_D.no_block_anneal, metadata={"help": "keep the block size fixed"})
    position_order: ChoiceEnum(list(POSITION_ORDERS)) = field(
        default=_D.position_order, metadata={"help": "order of positions within an epoch"}
    )
    force_accept_epochs: int = field(
        default=_D.force_accept_epochs, metadata={"help": "accept every proposal during the first N epochs"}
    )
    mh_select: ChoiceEnum(list(SELECTIONS)) = field(
        default=_D.mh_select,
        metadata={"help": "output each chain's lowest-energy post-burn-in state (best), its last state, or the "
                          "sentence's sample of highest expected utility against all its samples (mbr)"},
    )
    mbr_utility: ChoiceEnum(list(MBR_UTILITIES)) = field(
        default=_D.mbr_utility,
        metadata={"help": "utility of MBR selection (mh-select mbr): sacreBLEU sentence BLEU or chrF on the printed text"},
    )
    warm_start: ChoiceEnum([w for w in WARM_STARTS if w != "given"]) = field(
        default=_D.warm_start,
        metadata={"help": "chain start: greedy fill of the all-mask sequence, a mask-predict decode, uniform random "
                          "tokens, or mixed (chain r: greedy, mask-predict, random, a proposal draw, in turn)"},
    )
    pt_temperatures: str = field(
        default=_D.pt_temperatures,
        metadata={"help": "parallel tempering (pt-mh, pt-block-mh): the replicas' temperatures, multiplying the "
                          "target temperature; the first replica's samples are the output"},
    )
    decoding_iterations: int = field(
        default=_D.decoding_iterations, metadata={"help": "mask-predict iterations (sampler and warm start)"}
    )
    mask_predict_min_remask: int = field(
        default=_D.mask_predict_min_remask,
        metadata={"help": "least positions mask-predict re-masks per iteration: 1 as the original, 0 as fairseq's CMLM"},
    )
    length_beam: int = field(default=5, metadata={"help": "number of target-length candidates per sentence"})
    length_candidates: ChoiceEnum(["top", "around-argmax"]) = field(
        default="top",
        metadata={"help": "the length-beam most probable lengths (original Mask-Predict), or argmax +- offsets (fairseq)"},
    )
    hypothesis_score: ChoiceEnum(["mean-energy", "energy"]) = field(
        default="mean-energy",
        metadata={"help": "rank chains across lengths by target energy per position (mean-energy) or in total"},
    )
    mh_trace: Optional[str] = field(
        default=None, metadata={"help": "write per-epoch chain statistics as JSON lines to this file"}
    )
    mh_dump_samples: Optional[str] = field(
        default=None,
        metadata={"help": "write every post-burn-in state of every chain as JSON lines (id, length_rank, chain, "
                          "epoch, tokens) to this file"},
    )
    mh_invalid_utf8: ChoiceEnum(["replace", "skip"]) = field(
        default="replace",
        metadata={"help": "fairseq-mh-interactive: an input line with bytes that are not UTF-8 is translated "
                          "with U+FFFD in their place (replace) or skipped (skip); either way a warning names the line"},
    )
    mh_max_tokens: int = field(
        default=32768, metadata={"help": "most target tokens per model call (bounds memory whatever T and chains)"}
    )


    seed: int = II("common.seed")


def sampler_config(cfg) -> SamplerConfig:
    """The engine's config from the task options (validated as it is made).  The baseline's
    energies are only shown in the trace and the sample dump: without them, mask-predict
    costs what fairseq's generator costs (no T scoring rows per candidate)."""
    sc = SamplerConfig.from_namespace(cfg)
    return dataclasses.replace(sc, report_energy=bool(cfg.mh_trace or cfg.mh_dump_samples))


def validate_decoding_options(cfg) -> SamplerConfig:
    """Refuses bad values before any data or model is loaded; returns the sampler config."""
    sc = sampler_config(cfg)
    if cfg.length_beam < 1:
        raise ConfigError(f"--length-beam must be an integer >= 1 (got {cfg.length_beam})")
    if cfg.mh_max_tokens < 1:
        raise ConfigError(f"--mh-max-tokens must be an integer >= 1 (got {cfg.mh_max_tokens})")
    return sc
