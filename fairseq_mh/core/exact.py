"""Exact computations on sequence spaces small enough to enumerate.

These build the target distribution and the transition matrices of the implemented kernels
from the engine's own pieces (shaped proposals, energy terms, the MH acceptance), so that
tests can check detailed balance and stationarity to machine precision and compare sampled
chains with the exact law of the chain after a given number of epochs.
"""

from __future__ import annotations

import itertools
from typing import List, Sequence, Type

import torch

from .conditional import MaskedConditional
from .energy import energy_terms
from .kernels import Kernel, MHKernel
from .pair_proposal import pair_table
from .proposals import ProposalShape, shaped_log_probs
from .rows import masked_rows

__all__ = [
    "SmallSpace",
    "target_distribution",
    "total_variation",
    "closed_class",
    "product_kernel",
    "product_target",
    "swap_kernel",
]


def target_distribution(energy: torch.Tensor, tau: float) -> torch.Tensor:
    """p(X) proportional to exp(-E(X) / tau) over the enumerated states."""
    return torch.softmax(-energy.to(torch.float64) / tau, dim=0)


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p.to(torch.float64) - q.to(torch.float64)).abs().sum())


def closed_class(kernel: torch.Tensor, start: int) -> torch.Tensor:
    """Boolean mask of the states reachable from ``start`` under ``kernel`` ([N, N])."""
    reach = torch.zeros(kernel.size(0), dtype=torch.bool)
    reach[start] = True
    adj = kernel > 0
    while True:
        nxt = reach | adj[reach].any(0)
        if torch.equal(nxt, reach):
            return reach
        reach = nxt


class SmallSpace:
    """All sequences with the given fixed symbols and ordinary tokens at the free positions.

    ``template`` [L]: fixed symbols in place (free positions' values are ignored); ``free``
    [L] bool; ``alphabet``: the ordinary token ids a free position can hold.
    """

    def __init__(self, conditional: MaskedConditional, template, free, alphabet: Sequence[int], mask: int, context: int = 0):
        self.fn = conditional
        self.template = torch.as_tensor(template, dtype=torch.long)
        self.free = torch.as_tensor(free, dtype=torch.bool)
        self.alphabet = torch.as_tensor(list(alphabet), dtype=torch.long)
        self.mask = mask
        self.context = context
        self.free_pos = self.free.nonzero().squeeze(1).tolist()
        A, T = len(self.alphabet), len(self.free_pos)
        combos = torch.tensor(list(itertools.product(range(A), repeat=T)), dtype=torch.long).reshape(-1, T)
        self.codes = combos  # [N, T] alphabet indices, in lexicographic order
        self.states = self.template.repeat(len(combos), 1)
        self.states[:, self.free_pos] = self.alphabet[combos]
        self.energy = self._energies()  # [N, 2]

    @property
    def size(self) -> int:
        return self.states.size(0)

    def index_of(self, tokens: torch.Tensor) -> torch.Tensor:
        """State indices of rows of ``tokens`` ([..., L])."""
        lookup = torch.full((int(self.alphabet.max()) + 1,), -1, dtype=torch.long)
        lookup[self.alphabet] = torch.arange(len(self.alphabet))
        codes = lookup[tokens[..., self.free_pos]]
        A = len(self.alphabet)
        weights = A ** torch.arange(len(self.free_pos) - 1, -1, -1)
        return (codes * weights).sum(-1)

    def _conditionals(self, states: torch.Tensor, positions: List[int]) -> torch.Tensor:
        """Logits [N, len(positions), V] at ``positions`` given each state with them masked."""
        sel = torch.zeros_like(states, dtype=torch.bool)
        sel[:, positions] = True
        rows, sel = masked_rows(states, sel, self.mask)
        ctx = torch.full((rows.size(0),), self.context, dtype=torch.long)
        return self.fn(rows, ctx, sel).reshape(rows.size(0), len(positions), -1)

    def _energies(self) -> torch.Tensor:
        terms = torch.zeros(self.size, 2, dtype=torch.float64)
        for t in self.free_pos:
            lg = self._conditionals(self.states, [t])[:, 0]
            terms += energy_terms(lg, self.states[:, t])
        return terms

    def block_kernel(self, block: Sequence[int], shape: ProposalShape, energy: int, tau: float,
                     kernel: Type[Kernel]) -> torch.Tensor:
        """Transition matrix of one block move of ``kernel`` (its ``transition_weight``)."""
        block = sorted(block)
        N = self.size
        lq = shaped_log_probs(self._conditionals(self.states, block), shape).to(torch.float64)  # [N, k, V]
        k = len(block)
        slots = [self.free_pos.index(b) for b in block]
        A = len(self.alphabet)
        weights = A ** torch.arange(len(self.free_pos) - 1, -1, -1)
        K = torch.zeros(N, N, dtype=torch.float64)
        for combo in itertools.product(range(A), repeat=k):
            combo_t = torch.tensor(combo, dtype=torch.long)
            new_codes = self.codes.clone()
            new_codes[:, slots] = combo_t
            dest = (new_codes * weights).sum(-1)
            fwd = lq[:, torch.arange(k), self.alphabet[combo_t]].sum(-1)
            cur = self.states[:, block]
            rev = lq.gather(-1, cur.unsqueeze(-1)).squeeze(-1).sum(-1)
            prob = kernel.transition_weight(fwd, rev, self.energy[:, energy], self.energy[dest, energy], tau)
            moving = dest != torch.arange(N)
            K[torch.arange(N)[moving], dest[moving]] += prob[moving]
        K[torch.arange(N), torch.arange(N)] = 1.0 - K.sum(1)
        return K

    def pair_block_kernel(self, block: Sequence[int], evaluator, method: str, k: int, shape: ProposalShape,
                          energy: int, tau: float) -> torch.Tensor:
        """Transition matrix of one two-position move of ``pair_proposal.PairMHKernel``, from
        its own rule (``pair_table``: the forward joint and every cell's reverse probability)."""
        a, b = sorted(block)
        N = self.size
        n_pos = torch.full((N,), a, dtype=torch.long)
        tab = pair_table(evaluator, self.mask, self.states, torch.full((N,), self.context, dtype=torch.long), n_pos,
                         torch.full((N,), b, dtype=torch.long), method, k, shape.allowed, shape.temperature)
        K = torch.zeros(N, N, dtype=torch.float64)
        kk = tab.joint.cand_a.size(1)
        for i in range(kk):
            for j in range(kk):
                dest_tokens = self.states.clone()
                dest_tokens[:, a] = tab.joint.cand_a[:, i]
                dest_tokens[:, b] = tab.joint.cand_b[:, j]
                dest = self.index_of(dest_tokens)
                prob = MHKernel.transition_weight(tab.joint.log_q[:, i, j].double(), tab.log_q_rev[:, i, j].double(),
                                                  self.energy[:, energy], self.energy[dest, energy], tau)
                moving = dest != torch.arange(N)
                K[torch.arange(N)[moving], dest[moving]] += prob[moving]
        K[torch.arange(N), torch.arange(N)] = 1.0 - K.sum(1)
        return K

    def epoch_kernel(self, block_size: int, order: str, shape: ProposalShape, energy: int, tau: float,
                     kernel: Type[Kernel], pair=None) -> torch.Tensor:
        """Transition matrix of one epoch: the free positions in left-to-right order or in a
        uniformly random order, cut into consecutive blocks of ``block_size``.  ``pair``
        (evaluator, method, k): two-position blocks move by ``pair_block_kernel``."""
        perms = [tuple(self.free_pos)] if order == "left-to-right" else list(itertools.permutations(self.free_pos))
        cache = {}
        M = torch.zeros(self.size, self.size, dtype=torch.float64)
        for perm in perms:
            P = torch.eye(self.size, dtype=torch.float64)
            for i in range(0, len(perm), block_size):
                blk = tuple(sorted(perm[i : i + block_size]))
                if blk not in cache and pair is not None and len(blk) == 2:
                    cache[blk] = self.pair_block_kernel(blk, *pair, shape, energy, tau)
                if blk not in cache:
                    cache[blk] = self.block_kernel(blk, shape, energy, tau, kernel)
                P = P @ cache[blk]
            M += P
        return M / len(perms)


def product_kernel(kernels: Sequence[torch.Tensor]) -> torch.Tensor:
    """Transition matrix of independent replicas, each moved by its own kernel ([N, N] each);
    the joint state (x_0, ..., x_{M-1}) has index sum_m x_m N^(M-1-m)."""
    out = torch.ones(1, 1, dtype=torch.float64)
    for k in kernels:
        out = torch.kron(out, k.to(torch.float64))
    return out


def product_target(energy: torch.Tensor, temperatures: Sequence[float]) -> torch.Tensor:
    """The replicas' joint target: the product of exp(-E / t_m) over the replicas."""
    return product_kernel([target_distribution(energy, t)[None, :] for t in temperatures])[0]


def swap_kernel(energy: torch.Tensor, temperatures: Sequence[float], pairs: Sequence[int]) -> torch.Tensor:
    """Transition matrix of the replica exchanges of the pairs (m, m + 1), m in ``pairs``
    (disjoint), on the joint space of ``product_target``, from ``tempering.swap_log_ratio``."""
    from .tempering import swap_log_ratio

    N, M = energy.numel(), len(temperatures)
    codes = torch.tensor(list(itertools.product(range(N), repeat=M)), dtype=torch.long).reshape(-1, M)
    weights = N ** torch.arange(M - 1, -1, -1)
    K = torch.eye(codes.size(0), dtype=torch.float64)
    e = energy.to(torch.float64)
    for m in pairs:
        la = swap_log_ratio(e[codes[:, m]], e[codes[:, m + 1]], temperatures[m], temperatures[m + 1])
        p = torch.exp(la.clamp(max=0.0))
        swapped = codes.clone()
        swapped[:, [m, m + 1]] = codes[:, [m + 1, m]]
        dest = (swapped * weights).sum(-1)
        step = torch.diag(1.0 - p)
        step[torch.arange(codes.size(0)), dest] += p
        K = K @ step
    return K
