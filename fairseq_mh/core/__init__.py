"""Model-agnostic Metropolis-Hastings sampling from the energies a masked LM defines.

Nothing here imports fairseq: a sampler needs only a masked conditional (see
``conditional``), which a table, a tiny network or a model adapter can provide.
"""

from .conditional import MaskedConditional, RowEvaluator
from .config import SAMPLERS, ConfigError, SamplerConfig, block_size, forced_acceptance, target_temperature
from .energy import ENERGIES, LOCAL, RAW, energy_terms
from .kernels import acceptance_probability, accept_moves, block_log_q, log_acceptance
from .mask_predict import MaskPredictResult, mask_predict
from .proposals import ProposalShape, sample_from_log_probs, shaped_log_probs
from .sampler import ChainResult, ChainSampler, EpochStats, Starts

__all__ = [
    "MaskedConditional",
    "RowEvaluator",
    "SAMPLERS",
    "ConfigError",
    "SamplerConfig",
    "block_size",
    "forced_acceptance",
    "target_temperature",
    "ENERGIES",
    "RAW",
    "LOCAL",
    "energy_terms",
    "acceptance_probability",
    "accept_moves",
    "block_log_q",
    "log_acceptance",
    "MaskPredictResult",
    "mask_predict",
    "ProposalShape",
    "sample_from_log_probs",
    "shaped_log_probs",
    "ChainResult",
    "ChainSampler",
    "EpochStats",
    "Starts",
]
