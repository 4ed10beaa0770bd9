"""Every placement of tiny instances, and the exact optimum over them: the truth that exact models,
bounds and heuristics are held to."""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import linear_sum_assignment

from placer.model.topology import Topology
from placer.model.trace import Trace

from support.truths import token_counts


def assignments(E: int, G: int, most: int | None = None) -> np.ndarray:
    """``[n, E]`` every map expert -> GPU with at most ``most`` experts per GPU (default E / G:
    exactly E / G each), in lexicographic order, GPU labels kept (no symmetry removed)."""
    most = E // G if most is None else most
    out: list[list[int]] = []

    def extend(prefix: list[int], counts: list[int]) -> None:
        if len(prefix) == E:
            out.append(list(prefix))
            return
        for g in range(G):
            if counts[g] < most:
                counts[g] += 1
                extend(prefix + [g], counts)
                counts[g] -= 1

    extend([], [0] * G)
    return np.array(out, np.int64).reshape(len(out), E)


def replica_holdings(E: int, G: int, S: int) -> list[np.ndarray]:
    """Every ``[E, G]`` bool holding of one layer: each GPU S distinct experts, each expert on >= 1 GPU."""
    out = []
    for choice in itertools.product(itertools.combinations(range(E), S), repeat=G):
        held = np.zeros((E, G), bool)
        for g, experts in enumerate(choice):
            held[list(experts), g] = True
        if held.any(axis=1).all():
            out.append(held)
    return out


def optimum(trace: Trace, topo: Topology, cost: str = "coherent", load_weight: float = 0.0,
            max_imbalance: float | None = None) -> float:
    """The smallest objective (:func:`support.truths.objective_by_token`) over every replica-free
    placement with E / G experts per GPU and, with ``max_imbalance``, every layer's busiest GPU
    within ``max_imbalance`` times the mean; inf when none is.

    Exact over every combination of per-layer assignments, from the token counts: the load terms
    and the pairwise ``ep`` cost are per layer, and the coherent cost chains consecutive layers,
    so a dynamic programme over the layers' assignments visits every combination's value.
    """
    load, trans, _, coact = token_counts(trace)
    L, E, G, K = trace.num_layers, trace.num_experts, topo.num_gpus, trace.top_k
    states, hop = assignments(E, G), topo.hop
    gpu_load = np.stack([[np.bincount(s, weights=load[l], minlength=G) for s in states] for l in range(L)])
    layer = load_weight * gpu_load.max(axis=2)                                  # [L, n]
    if max_imbalance is not None:
        fits = gpu_load.max(axis=2) <= max_imbalance * gpu_load.mean(axis=2) + 1e-9
        layer = np.where(fits, layer, np.inf)
    if cost == "ep":
        pairs = np.triu(coact, 1)
        layer = layer + [[(pairs[l] * hop[np.ix_(s, s)]).sum() for s in states] for l in range(L)]
        return float(layer.min(axis=1).sum())
    W = trans / K**2
    if L == 2 and not layer.any():
        # for a fixed layer 0 the best layer 1 is an assignment of experts to GPU slots
        S = E // G
        best = np.inf
        for s0 in states:
            c = W[0].T @ hop[s0]                                                 # [j, g]
            rows, cols = linear_sum_assignment(np.repeat(c, S, axis=1))
            best = min(best, float(c[rows, cols // S].sum()))
        return best
    best = layer[0]
    for l in range(L - 1):
        via = np.einsum("ij,aig->ajg", W[l], hop[states])                       # [a, j, g]
        step = via[:, np.arange(E), states].sum(axis=2)                          # [a, b]
        best = (best[:, None] + step).min(axis=0) + layer[l + 1]
    return float(best.min())
