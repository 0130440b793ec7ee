"""Counter-based random numbers, one independent stream per chain.

Every random number a chain uses is a pure function of (chain key, epoch, step, slot,
purpose).  Chains therefore draw the same numbers whatever batch they share, in whatever
order sentences arrive and on whichever shard they run, and the draws of all chains of a
batch are computed in one vectorised call.  The mixing function is SplitMix64 (Steele et
al., 2014), evaluated in wrapping int64 arithmetic.
"""

from __future__ import annotations

import torch

__all__ = ["chain_keys", "derive", "uniform", "PURPOSE_ORDER", "PURPOSE_PROPOSAL", "PURPOSE_ACCEPT", "PURPOSE_START",
           "PURPOSE_SWAP"]

PURPOSE_ORDER = 1  # random position order of an epoch
PURPOSE_PROPOSAL = 2  # token draws of a proposal
PURPOSE_ACCEPT = 3  # the uniform of the accept/reject test
PURPOSE_START = 4  # dispersed starts: random tokens and draws from the proposal (epoch -1)
PURPOSE_SWAP = 5  # the uniform of a replica-exchange test

_M64 = (1 << 64) - 1


def _signed(c: int) -> int:
    c &= _M64
    return c - (1 << 64) if c >= (1 << 63) else c


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MUL1 = _signed(0xBF58476D1CE4E5B9)
_MUL2 = _signed(0x94D049BB133111EB)


def _lsr(z: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def _mix(z: torch.Tensor) -> torch.Tensor:
    z = z + _GOLDEN
    z = (z ^ _lsr(z, 30)) * _MUL1
    z = (z ^ _lsr(z, 27)) * _MUL2
    return z ^ _lsr(z, 31)


def _combine(key: torch.Tensor, value) -> torch.Tensor:
    return _mix(key ^ _mix(torch.as_tensor(value, dtype=torch.int64, device=key.device)))


def chain_keys(seed: int, sentence_ids, *streams) -> torch.Tensor:
    """Keys of chains identified by (seed, sentence id, *streams), e.g. length and chain index.

    All arguments broadcast; the result is an int64 tensor.
    """
    ids = torch.as_tensor(sentence_ids, dtype=torch.int64)
    key = _mix(torch.full_like(ids, _signed(seed)))
    key = _combine(key, ids)
    for s in streams:
        key = _combine(key, s)
    return key


def derive(keys: torch.Tensor, stream) -> torch.Tensor:
    """Keys of sub-streams (for example chain r of a start) of the given keys; broadcasts."""
    return _combine(keys, stream)


def uniform(keys: torch.Tensor, epoch: int, step, slot, purpose: int) -> torch.Tensor:
    """Uniform float64 numbers in [0, 1), one per broadcast element of (keys, step, slot)."""
    k = _combine(keys, purpose)
    k = _combine(k, epoch)
    k = _combine(k, step)
    k = _combine(k, slot)
    return _lsr(_mix(k), 11).to(torch.float64) * (2.0**-53)
