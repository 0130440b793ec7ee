"""Model-agnostic Metropolis-Hastings sampling from the energies a masked LM defines.

Nothing here imports fairseq: a sampler needs only a masked conditional (see
``conditional``), which a table, a tiny network or a model adapter can provide.

Where things live:
* ``conditional``: the masked-conditional contract and the row evaluator (batching, counts);
* ``rows``: masked rows built from states; ``state``: starts and chain states with their
  cache of conditionals;
* ``energy``: the raw and local energies; ``proposals``: shaped proposal distributions;
* ``moves``: the stages block kernels share (conditionals of a block, the proposal);
* ``kernels``: the MH correction and one kernel class per move (``step``);
* ``kinds``: the table of sampler kinds; ``config``: settings, validation, schedules;
* ``driver``: the chain driver (warm start, epochs, statistics, samples);
* ``mask_predict``: the refinement baseline (also the greedy warm start);
* ``refinement``: PaDIR's strategies for it; ``pair_proposal``: block MH's two-position
  proposal from a derived pairwise joint (``pairwise``);
* ``decoders``: ``build_decoder``, the seam the generator calls; ``results``: what decoders
  return; ``rng``: counter-based random numbers; ``exact``: exact kernels on small spaces.

Adding a sampler: see the docstring of ``kernels``.
"""

from .conditional import MaskedConditional, RowEvaluator
from .config import SAMPLERS, ConfigError, SamplerConfig, block_size, forced_acceptance, target_temperature
from .decoders import build_decoder
from .driver import ChainSampler
from .energy import ENERGIES, LOCAL, RAW, energy_terms
from .kernels import GibbsKernel, MHKernel, StepInfo, acceptance_probability, accept_moves, log_acceptance
from .kinds import SAMPLER_KINDS, SamplerKind
from .mask_predict import MaskPredictDecoder, MaskPredictResult, mask_predict
from .moves import Block, Proposal, StepKey
from .proposals import ProposalShape, sample_from_log_probs, shaped_log_probs
from .results import ChainResult, EpochStats
from .state import ChainState, Starts

__all__ = [
    "MaskedConditional",
    "RowEvaluator",
    "SAMPLERS",
    "SAMPLER_KINDS",
    "SamplerKind",
    "ConfigError",
    "SamplerConfig",
    "block_size",
    "forced_acceptance",
    "target_temperature",
    "build_decoder",
    "ChainSampler",
    "MaskPredictDecoder",
    "ENERGIES",
    "RAW",
    "LOCAL",
    "energy_terms",
    "GibbsKernel",
    "MHKernel",
    "StepInfo",
    "StepKey",
    "Block",
    "Proposal",
    "acceptance_probability",
    "accept_moves",
    "log_acceptance",
    "MaskPredictResult",
    "mask_predict",
    "ProposalShape",
    "sample_from_log_probs",
    "shaped_log_probs",
    "ChainResult",
    "EpochStats",
    "ChainState",
    "Starts",
]
