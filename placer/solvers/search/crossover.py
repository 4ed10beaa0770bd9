"""Chain crossover: the best layer-by-layer combination of several layouts (coherent, no replicas).

The coherent cost is a sum over consecutive layer pairs, and the search's moves change one
layer, or a window of a few layers between two GPUs, at a time. Layouts from different starts
are each good on different stretches of the model; no such move combines them. This one does:

1. Candidates for every layer: that layer's split in each given layout (the starts' refined
   layouts and the best so far), and in greedy chains grown from each of them
   (:func:`greedy_chain`: layer l re-assigned optimally given only layer l-1, forward, or only
   layer l+1, backward). Equal splits are kept once (:func:`canonical`).
2. Dynamic programming along the layers picks one candidate per layer and names its GPUs: for a
   candidate of layer l+1 after one of layer l, the naming is a linear assignment of its G groups
   to GPUs on the ``[G, G]`` weight between the two splits (:func:`name_after`).

With one hop level (a single node) a pair's cost under its best naming depends on the two splits
only, so the result is the optimum over every combination of the candidates. With nodes, naming
a layer also fixes the node split the next pair sees, and each candidate keeps the naming of its
best path: a heuristic there. Either way the cost the programme returns is the layout's exact
coherent cost, and the caller keeps the layout only if it is better. Every candidate meets the
load cap (naming permutes a layer's GPU loads; a greedy layer over the cap keeps its source's
split), so the result does too.

Cost: ``L K^2`` namings (K candidates a layer) of ``O(E^2 + G^3)`` each. It stops at its
deadline, or as soon as the first greedy chain or the first layer transition, timed, says the
rest would not fit before it.
Measured on ESFT top-1 projections, four starts of 2.5 s each (docs/benchmarks.md, fifth session):
intent on 4 GPUs from 46,184 (best start) to 37,823 after the programme and a refinement, in
0.65 s.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.optimize import linear_sum_assignment

from placer.solvers.search.problem import Problem, layer_loads
from placer.solvers.search.refine import best_assignment


def applies(prob: Problem) -> bool:
    """Coherent cost without replicas on two GPUs and two layers or more (ep has no coupling
    between layers to combine over; copies have no split to name)."""
    return prob.W is not None and not prob.replicated and prob.G > 1 and prob.L > 1


def canonical(gpu_l: np.ndarray) -> bytes:
    """The split of one layer ``gpu_l [E]`` without the GPUs' names: groups renamed in order of
    their first expert."""
    _, first, inverse = np.unique(gpu_l, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inverse].astype(np.int32).tobytes()


def greedy_chain(prob: Problem, gpu: np.ndarray, forward: bool, deadline: float) -> np.ndarray | None:
    """``gpu [L, E]`` re-assigned layer after layer given only the previous layer in the direction
    (its other neighbour ignored); a layer whose assignment would break the load cap keeps its
    split. None at the deadline."""
    out = gpu.copy()
    order = range(1, prob.L) if forward else range(prob.L - 2, -1, -1)
    for l in order:
        if time.perf_counter() > deadline:
            return None
        if forward:
            cost = prob.W[l - 1].T @ prob.hop[out[l - 1]]          # [E, G]: sum_i W[i, e] hop(g(i), h)
        else:
            cost = prob.W[l] @ prob.hop[:, out[l + 1]].T            # sum_j W[e, j] hop(h, g(j))
        new = best_assignment(prob, cost)
        if not np.isfinite(prob.cap[l]) or layer_loads(prob, l, new).max() <= prob.cap[l]:
            out[l] = new
    return out


def name_after(prob: Problem, w: np.ndarray, named: np.ndarray, split: np.ndarray) -> tuple[np.ndarray, float]:
    """``(gpu_l1 [E], cost)``: ``split [E]`` (layer l+1's groups) renamed to the GPUs that make
    the transition from layer l, laid out as ``named [E]``, cheapest, and that cost
    (``w [E, E]``: the transitions l -> l+1)."""
    G = prob.G
    M = np.bincount((named[:, None] * G + split[None, :]).ravel(), weights=w.ravel(), minlength=G * G).reshape(G, G)
    A = M.T @ prob.hop                      # [group h, GPU p]: group h of layer l+1 named p
    rows, cols = linear_sum_assignment(A)
    name = np.empty(G, np.int64)
    name[rows] = cols
    return name[split], float(A[rows, cols].sum())


def candidates(prob: Problem, layouts: list[np.ndarray], deadline: float) -> list[list[np.ndarray]] | None:
    """Per layer, the distinct splits of ``layouts`` and of the greedy chains grown from each."""
    # the best so far is often one of the starts still: grow its chains once
    layouts = [g for i, g in enumerate(layouts) if not any(np.array_equal(g, h) for h in layouts[:i])]
    pool = list(layouts)
    for i, gpu in enumerate(layouts):
        for forward in (True, False):
            began = time.perf_counter()
            chain = greedy_chain(prob, gpu, forward, deadline)
            if chain is None or (i == 0 and forward and
                                 began + (time.perf_counter() - began) * 2 * len(layouts) > deadline):
                return None         # the chains alone would not fit: stop now, not at the deadline
            pool.append(chain)
    out = []
    for l in range(prob.L):
        seen, layer = set(), []
        for gpu in pool:
            key = canonical(gpu[l])
            if key not in seen:
                seen.add(key)
                layer.append(gpu[l])
        out.append(layer)
    return out


def crossover(prob: Problem, layouts: list[np.ndarray], deadline: float) -> tuple[np.ndarray, float, int] | None:
    """``(gpu [L, E], coherent cost, candidates)``: the cheapest chain through the candidates of
    ``layouts`` (module docstring), or None when the deadline comes first."""
    cands = candidates(prob, layouts, deadline)
    if cands is None:
        return None
    namings = [len(a) * len(b) for a, b in zip(cands[:-1], cands[1:])]
    # per candidate of the current layer: (cost of the best path to it, its naming, back pointer)
    states = [[(0.0, c, -1) for c in cands[0]]]
    began = time.perf_counter()
    for l in range(prob.L - 1):
        if l == 1 and time.perf_counter() + (time.perf_counter() - began) / namings[0] * sum(namings[1:]) > deadline:
            # the first transition, timed, says the rest would not fit: stop now, not at the
            # deadline (DeepSeek-V3 shape on 64 GPUs: seconds, more than the share)
            return None
        nxt = []
        for split in cands[l + 1]:
            if time.perf_counter() > deadline:
                return None
            best = None
            for k, (cost, named, _) in enumerate(states[l]):
                gpu_l1, step = name_after(prob, prob.W[l], named, split)
                if best is None or cost + step < best[0]:
                    best = (cost + step, gpu_l1, k)
            nxt.append(best)
        states.append(nxt)
    k = int(np.argmin([s[0] for s in states[-1]]))
    total = states[-1][k][0]
    out = np.empty((prob.L, prob.E), np.int64)
    for l in range(prob.L - 1, -1, -1):
        out[l] = states[l][k][1]
        k = states[l][k][2]
    return out, float(total), sum(len(c) for c in cands)
