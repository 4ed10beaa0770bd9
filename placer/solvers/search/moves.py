"""Incremental move costs: what moving one instance, or swapping two, does to the objective.

The objective itself lives in :mod:`placer.cost.objectives`; recomputing it for each of the
P x G moves of a layer would cost O(P G E^2), so the search prices all moves of a layer at once
from its neighbours (O(E^2 G)). Cost model (same as :mod:`.problem`):

- coherent: the edges of layer l go to layers l-1 and l+1 (``W[l-1].T`` and ``W[l]``), so with
  the neighbours fixed a layer's cost is a sum over its instances: :func:`move_costs` is exact,
  and the gains of disjoint swaps add up.
- ep-pairwise: the edges lie inside the layer (``C[l]``); a swap's gain needs the edge between
  the two swapped experts (the correction in :func:`swap_gains`), and swaps interact, so the
  refinement checks batches on :func:`~.problem.window_cost`.
- replicas: every edge uses its nearest copy pair (min hop); :func:`nearest_copy_distances`
  gives the distance from each neighbour expert's nearest copy to every GPU, and moving one
  copy of an expert keeps its other copies in the min (:func:`replica_rows`).

Hop costs are ``prob.move_hop`` (see :class:`~.problem.Problem`).
"""

from __future__ import annotations

import numpy as np

from placer.solvers.search.problem import Problem, layer_loads


def nearest_copy_distances(ie: np.ndarray, gpu_l: np.ndarray, E: int, hop: np.ndarray) -> np.ndarray:
    """``[E, G]``: ``min over GPUs g' holding expert n of hop[g', g]`` (distance from a replica set).

    ``ie``, ``gpu_l`` ``[P]``: expert and GPU of each instance of one layer.
    """
    out = np.full((E, hop.shape[1]), np.inf)
    np.minimum.at(out, ie, hop[gpu_l])
    return out


def _blocks(prob: Problem, l: int) -> list[tuple[np.ndarray, int, np.ndarray]]:
    """Edge blocks touching layer l: ``(w [E, E], neighbour layer, hop_from_l [G, G])`` where
    ``w[e, n]`` weighs layer-l expert e against expert n of the neighbour layer."""
    hop = prob.move_hop
    if prob.W is None:
        return [(prob.C[l], l, hop)]
    out = []
    if l > 0:
        out.append((prob.W[l - 1].T, l - 1, hop.T))     # hop(g(l-1, n), g(l, e))
    if l + 1 < prob.L:
        out.append((prob.W[l], l + 1, hop))             # hop(g(l, e), g(l+1, n))
    return out


def move_costs(prob: Problem, gpu: np.ndarray, l: int) -> np.ndarray:
    """``[P, G]``: cost of the edges of instance x's expert if x alone moved to GPU g.

    Exact for the coherent model (no edges inside a layer); for ep the edge between two swapped
    experts needs the correction in :func:`swap_gains`.
    """
    lin, Wn, Mn = linear_costs(prob, gpu, l)
    cost = lin[prob.inst_expert[l]]
    if Wn is not None:
        rep = np.flatnonzero(prob.cnt[l, prob.inst_expert[l]] > 1)
        replica_rows(prob, gpu, l, rep, Wn, Mn, cost)
    return cost


def linear_costs(prob: Problem, gpu: np.ndarray, l: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(lin [E, G], Wn [E, N], Mn [N, G])``: cost of expert e alone on GPU g; with replicas also
    the edge weights to the N neighbour experts and their nearest-copy distances (else None)."""
    E, G = prob.E, prob.G
    lin = np.zeros((E, G))
    rep_terms = []
    for w, nl, hop_l in _blocks(prob, l):
        if not prob.replicated:
            # aggregate edge weight per neighbour GPU, then one small [E, G] x [G, G] product
            order = np.argsort(gpu[nl], kind="stable")
            g_sorted = gpu[nl][order]
            starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
            A = np.zeros((E, G))
            A[:, g_sorted[starts]] = np.add.reduceat(w[:, prob.inst_expert[nl][order]], starts, axis=1)
            lin += A @ hop_l.T
        else:
            # m[n, g]: distance from neighbour n's nearest replica to GPU g
            m = nearest_copy_distances(prob.inst_expert[nl], gpu[nl], E, hop_l.T)
            m = np.where(np.isfinite(m), m, 0.0)
            lin += w @ m
            rep_terms.append((w, m))
    if not rep_terms:
        return lin, None, None
    return (lin, np.concatenate([w for w, _ in rep_terms], axis=1),
            np.concatenate([m for _, m in rep_terms], axis=0))


MAX_HOP_LEVELS = 8    # distinct hop costs up to which replica_rows prices moves by products per level
PRODUCT_MIN_SIZE = 2 ** 20    # x N G elements from which it does


def replica_rows(prob: Problem, gpu: np.ndarray, l: int, rows: np.ndarray, Wn: np.ndarray,
                 Mn: np.ndarray, cost: np.ndarray) -> None:
    """Fill ``cost[rows]`` for instances of replicated experts: moving copy x to g keeps the
    expert's other copies, and each neighbour uses its nearest copy (min rule)."""
    if not len(rows):
        return
    ie = prob.inst_expert[l]
    has = np.zeros((prob.E, prob.G), bool)
    has[ie, gpu[l]] = True
    others = has[ie[rows]].copy()
    others[np.arange(len(rows)), gpu[l, rows]] = False
    # each copy's other copies as GPU indices (G: a column of inf), so the nearest of them is a
    # min over a copy count, not over all G columns
    width = max(1, int(others.sum(axis=1).max()))
    rank = np.cumsum(others, axis=1) - 1
    other_gpus = np.full((len(rows), width), prob.G)
    xs, gs = np.nonzero(others)
    other_gpus[xs, rank[xs, gs]] = gs
    Mp = np.concatenate([Mn, np.full((Mn.shape[0], 1), np.inf)], axis=1)
    levels = np.unique(Mn)
    if len(levels) <= MAX_HOP_LEVELS and len(rows) * Mn.size >= PRODUCT_MIN_SIZE:
        # min(a, b) over a few hop levels h_0 < h_1 < ...: h_0 + sum_k (h_k - h_{k-1}) [a >= h_k] [b >= h_k],
        # so the [x, N, G] minimum becomes one [x, N] x [N, G] product per level (128 GPUs, 128
        # replicas: 36-38 ms a layer -> about 4 ms); the nearest distances r take values among Mn's.
        # Its sums run in another order, exact for integer weights and hops but not for ESFT's
        # fractional weights, where the last bits flip ties in the search; below
        # PRODUCT_MIN_SIZE the einsum is as fast and small instances keep their sums
        r = Mp[:, other_gpus].min(axis=2).T                               # [x, N]
        w = Wn[ie[rows]]
        out = levels[0] * w.sum(axis=1)[:, None] + np.zeros((len(rows), Mn.shape[1]))
        for lo, h in zip(levels[:-1], levels[1:]):
            out += (h - lo) * ((w * (r >= h)) @ (Mn >= h).astype(w.dtype))
        cost[rows] = out
        return
    for k0 in range(0, len(rows), 32):           # bounded memory: 32 x N x G
        sl = slice(k0, k0 + 32)
        r = Mp[:, other_gpus[sl]].min(axis=2).T                           # [x, N]
        near = np.minimum(r[:, :, None], Mn[None])                        # [x, N, G]
        cost[rows[sl]] = np.einsum("xn,xng->xg", Wn[ie[rows[sl]]], near)


def pair_deltas(cost: np.ndarray, g: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """``[P, P]`` (``[A, P]`` for instances ``rows``): ``D[a, g_b] + D[b, g_a]``, the summed move
    costs of swapping instances a and b (``cost [P, G]`` from :func:`move_costs`, ``g [P]`` the
    layer's GPUs)."""
    D = cost - cost[np.arange(len(g)), g][:, None]
    if rows is None:
        M = D[:, g]
        return M + M.T
    return D[rows][:, g] + D[:, g[rows]].T


def duplicate_mask(prob: Problem, g: np.ndarray, ie: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """``[P, P]`` bool (``[A, P]`` for instances ``rows``): swaps that move nothing (same GPU,
    same expert) or, with replicas, put a second copy of an expert on a GPU."""
    r = np.arange(len(g)) if rows is None else rows
    bad = (g[r][:, None] == g[None, :]) | (ie[r][:, None] == ie[None, :])
    if prob.replicated:
        has = np.zeros((prob.E, prob.G), bool)
        has[ie, g] = True
        bad |= has[ie[r]][:, g] | has[ie][:, g[r]].T     # expert(a) on gpu(b), expert(b) on gpu(a)
    return bad


def swapped_loads(prob: Problem, l: int, g: np.ndarray, rows: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(loads [G], new_a [P, P], new_b [P, P])``: GPU loads of layer l, and the loads of a's and
    b's GPUs after swapping instances a and b (``[A, P]`` for instances a in ``rows``)."""
    loads = layer_loads(prob, l, g)
    ld = prob.inst_load[l]
    r = slice(None) if rows is None else rows
    diff = ld[None, :] - ld[r, None]              # [a, b]: load_b - load_a
    return loads, loads[g[r]][:, None] + diff, loads[g][None, :] - diff


def swap_gains(prob: Problem, gpu: np.ndarray, l: int, cost: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """``[P, P]`` objective change of swapping instances a and b (inf where not allowed);
    ``[A, P]`` for instances a in ``rows``."""
    g = gpu[l]
    ie = prob.inst_expert[l]
    r = slice(None) if rows is None else rows
    delta = pair_deltas(cost, g, rows)
    if prob.C is not None:
        delta += 2.0 * prob.C[l][np.ix_(ie[r], ie)] * prob.move_hop[np.ix_(g[r], g)]
    bad = duplicate_mask(prob, g, ie, rows)
    if np.isfinite(prob.cap[l]):
        _, new_a, new_b = swapped_loads(prob, l, g, rows)
        bad |= (new_a > prob.cap[l]) | (new_b > prob.cap[l])
    delta[bad] = np.inf
    return delta
