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
from .core.kinds import BLOCK_PROPOSALS
from .core.refinement import CONFIDENCES, INITS, REMASK_COUNTS

BATCHING_MODES = ("shared", "sentence")

__all__ = ["BATCHING_MODES", "MHDecodingConfig", "sampler_config", "validate_decoding_options"]

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
    block_proposal: ChoiceEnum(list(BLOCK_PROPOSALS)) = field(
        default=_D.block_proposal,
        metadata={"help": "block MH with blocks of two: propose each position independently, or both from the "
                          "Arnold-Gokhale (ag) or Hammersley-Clifford-Besag (hcb) joint on a top-K grid"},
    )
    block_proposal_k: int = field(
        default=_D.block_proposal_k,
        metadata={"help": "candidates per position of the ag/hcb block proposal (1 + 2K model rows per block)"},
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
    mbr_score_weight: float = field(
        default=_D.mbr_score_weight,
        metadata={"help": "MBR selection (mh-select mbr) maximises expected utility + this weight x minus the sample's "
                          "target energy per position (hybrid MBR; 0: plain MBR; 32 was best on the Multi30k "
                          "validation set: docs/results/m30k_mbr_val.md)"},
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
    mask_predict_init: ChoiceEnum(list(INITS)) = field(
        default=_D.mask_predict_init,
        metadata={"help": "mask-predict start (PaDIR): all masks and a full prediction, or random tokens"},
    )
    mask_predict_remask: ChoiceEnum(list(REMASK_COUNTS)) = field(
        default=_D.mask_predict_remask,
        metadata={"help": "least confident positions mask-predict re-masks: the linear schedule, a constant "
                          "number or a constant share (--mask-predict-remask-amount)"},
    )
    mask_predict_remask_amount: float = field(
        default=_D.mask_predict_remask_amount,
        metadata={"help": "how many positions mask-predict re-masks (remask rule constant), or which fraction (share)"},
    )
    mask_predict_stutter: bool = field(
        default=_D.mask_predict_stutter, metadata={"help": "mask-predict also re-masks a token equal to its left neighbour"}
    )
    mask_predict_score: ChoiceEnum(list(CONFIDENCES)) = field(
        default=_D.mask_predict_score,
        metadata={"help": "what ranks positions for re-masking: the current probabilities, or logits summed over "
                          "the iterations"},
    )
    mask_predict_parallel: int = field(
        default=_D.mask_predict_parallel,
        metadata={"help": "mask-predict decodes per length (the first from the configured start, the others from "
                          "random tokens); the best-scoring is kept"},
    )
    mask_predict_length_norm: float = field(
        default=_D.mask_predict_length_norm,
        metadata={"help": "mask-predict candidates score summed log-prob / length^ALPHA: 1 the mean, below 1 a "
                          "brevity term"},
    )
    mask_predict_early_stop: bool = field(
        default=_D.mask_predict_early_stop,
        metadata={"help": "mask-predict stops refining a candidate once an iteration changes none of its tokens"},
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
    mh_max_tokens: Optional[int] = field(
        default=None, metadata={"help": "most target tokens per model call (bounds memory whatever T and chains); "
                                        "default 8192 on CPU, where bigger calls run out of cache, 32768 on GPU"}
    )
    mh_max_memory: str = field(
        default="auto",
        metadata={"help": "bound on the engine's own tensors (conditional caches, stored states): sentences are "
                          "decoded in groups that fit, with identical output; e.g. 2G, 500M, auto (a quarter of the "
                          "machine's memory, half the free GPU memory on CUDA) or none"},
    )
    mh_estimate: bool = field(
        default=False,
        metadata={"help": "print the run's expected model rows and time (length predictor, schedule, chains, and "
                          "rows/s measured on this model and device), then exit without decoding"},
    )
    mh_progress_interval: float = field(
        default=10.0,
        metadata={"help": "seconds between progress lines inside a batch when stderr is not a terminal "
                          "(a terminal gets a bar refreshed every second; fairseq's no-progress-bar option silences both)"},
    )
    mh_sentences: Optional[str] = field(
        default=None,
        metadata={"help": "decode only the sentences whose ids this file lists (one a line), under their ids in the "
                          "full split, so the output is the unsharded run's (cost-balanced shards)"},
    )
    mh_batching: ChoiceEnum(list(BATCHING_MODES)) = field(
        default="shared",
        metadata={"help": "model calls hold rows of many sentences (shared: fastest, equal up to float rounding) "
                          "or of one sentence (sentence: bit-identical whatever the batch size, order or sharding)"},
    )
    # fairseq's own options the plug-in reads (passed explicitly, not through global state)
    seed: int = II("common.seed")
    no_progress_bar: bool = II("common.no_progress_bar")
    log_format: Optional[str] = II("common.log_format")
    gen_subset: str = II("dataset.gen_subset")


def sampler_config(cfg) -> SamplerConfig:
    """The engine's config from the task options (validated as it is made).  The baseline's
    energies are only shown in the trace and the sample dump: without them, mask-predict
    costs what fairseq's generator costs (no T scoring rows per candidate)."""
    sc = SamplerConfig.from_namespace(cfg)
    return dataclasses.replace(sc, report_energy=bool(cfg.mh_trace or cfg.mh_dump_samples))


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_memory(text: str) -> Optional[int]:
    """Bytes of an --mh-max-memory value; None for 'none'; -1 for 'auto' (resolved on the
    model's device)."""
    t = str(text).strip().upper().removesuffix("B")
    if t in ("NONE", "0"):
        return None
    if t == "AUTO":
        return -1
    unit = t[-1:] if t[-1:] in _UNITS else ""
    try:
        value = float(t[: len(t) - len(unit)])
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"--mh-max-memory must be a size such as 2G or 500M, auto or none (got {text!r})")
    return int(value * _UNITS[unit])


def validate_decoding_options(cfg) -> SamplerConfig:
    """Refuses bad values before any data or model is loaded; returns the sampler config."""
    sc = sampler_config(cfg)
    if cfg.length_beam < 1:
        raise ConfigError(f"--length-beam must be an integer >= 1 (got {cfg.length_beam})")
    parse_memory(cfg.mh_max_memory)
    if not cfg.mh_progress_interval >= 0:
        raise ConfigError(f"--mh-progress-interval must be a number >= 0 (got {cfg.mh_progress_interval})")
    if cfg.mh_max_tokens is not None and cfg.mh_max_tokens < 1:
        raise ConfigError(f"--mh-max-tokens must be an integer >= 1 (got {cfg.mh_max_tokens})")
    return sc
