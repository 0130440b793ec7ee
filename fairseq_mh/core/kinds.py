"""The one table of sampler kinds: every ``--sampler`` value and what it is made of.

Options, validation, the generator and the experiments ask this table (through
``SamplerConfig.kind``) instead of comparing sampler names.  A kind is either a chain
sampler (``decoder='chain'``: the chain driver running a transition kernel, single-site or
block) or a deterministic refinement decoder (``decoder='refinement'``: mask-predict).  A
chain kind may name an ``exchange``: the driver then runs several replicas of every chain and
calls it after each epoch (``tempering.ReplicaExchange``: parallel tempering).
Adding a sampler is adding a row here (and its kernel in ``kernels``).  ``BLOCK_PROPOSALS``
is the table of ``--block-proposal`` values: how a block sampler proposes two positions
(independent draws, or a derived pairwise joint, ``pair_proposal``); ``build_kernel`` reads
both tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Type

from .kernels import GibbsKernel, Kernel, MHKernel
from .pair_proposal import PairMHKernel
from .tempering import ReplicaExchange

__all__ = ["SamplerKind", "SAMPLER_KINDS", "SAMPLERS", "BlockProposal", "BLOCK_PROPOSALS", "build_kernel"]


@dataclass(frozen=True)
class SamplerKind:
    name: str
    decoder: str  # "chain" or "refinement"
    kernel: Optional[Type[Kernel]] = None  # chain samplers: the transition kernel
    block: bool = False  # chain samplers: block moves (``--block-size``) or single-site
    exchange: Optional[type] = None  # a step between epochs over several replicas per chain
    help: str = ""

    @property
    def is_chain(self) -> bool:
        return self.decoder == "chain"

    @property
    def exact(self) -> bool:
        """Whether the chains sample the energy model (an MH-corrected kernel)."""
        return self.kernel is not None and issubclass(self.kernel, MHKernel)


SAMPLER_KINDS: Dict[str, SamplerKind] = {
    k.name: k
    for k in (
        SamplerKind("mask-predict", "refinement", help="the original non-probabilistic baseline"),
        SamplerKind("gibbs", "chain", GibbsKernel, help="degenerate Gibbs: always accept single-site draws"),
        SamplerKind("block-gibbs", "chain", GibbsKernel, block=True, help="degenerate Gibbs with block draws"),
        SamplerKind("mh", "chain", MHKernel, help="Metropolis-Hastings with single-site proposals"),
        SamplerKind("block-mh", "chain", MHKernel, block=True, help="Metropolis-Hastings with block proposals"),
        SamplerKind("pt-mh", "chain", MHKernel, exchange=ReplicaExchange,
                    help="parallel tempering: single-site MH replicas at --pt-temperatures, neighbours exchanged"),
        SamplerKind("pt-block-mh", "chain", MHKernel, block=True, exchange=ReplicaExchange,
                    help="parallel tempering with block MH replicas"),
    )
}

SAMPLERS = tuple(SAMPLER_KINDS)


@dataclass(frozen=True)
class BlockProposal:
    name: str
    joint: Optional[str] = None  # a ``pairwise.JOINTS`` method; None: the kind's own kernel
    help: str = ""


BLOCK_PROPOSALS: Dict[str, BlockProposal] = {
    b.name: b
    for b in (
        BlockProposal("independent", help="each position of a block from the block-masked conditional"),
        BlockProposal("ag", "ag", help="two positions jointly from the Arnold-Gokhale joint (top-K grid)"),
        BlockProposal("hcb", "hcb", help="two positions jointly from the Hammersley-Clifford-Besag joint (top-K grid)"),
    )
}


def build_kernel(cfg, evaluator, mask: int, shape, target: int) -> Kernel:
    """The transition kernel of ``cfg`` (a SamplerConfig): the kind's kernel, or the pairwise
    block proposal that ``--block-proposal`` names."""
    joint = BLOCK_PROPOSALS[cfg.block_proposal].joint
    if joint is None:
        return cfg.kind.kernel(evaluator, mask, shape, target)
    return PairMHKernel(evaluator, mask, shape, target, joint, cfg.block_proposal_k)
