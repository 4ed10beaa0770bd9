"""Degree-cap (b-matching) bounds on the weight a placement keeps together, solved as min-cost flows.

One *level* of the topology splits the GPUs into ``parts`` groups (GPUs, or nodes) of ``size``
slots per layer each (``S``, or ``gpus_per_node * S``). For one layer pair with weights
``w [E, E]`` (``trans[l]``: layer-l expert i to layer-(l+1) expert j; or ``coact[l]`` within a
layer, ``within``) a pair (i, j) is *kept* at that level when i and j (a replica of each) share a
group; the *cut* is the weight of the pairs not kept, ``cut = sum(w) - keep``.

Proof of the caps (``d = 1`` within a layer, else 0: an expert is not its own partner).

1. Degrees. A group holds ``size`` slots of each layer, each slot one expert, no expert twice in
   one group. An expert i held by ``c_i`` groups is kept with at most ``(size - d) * c_i``
   partners, ``c_i <= min(parts, 1 + R)`` with R the replicas of the layer, and symmetrically for
   the other layer. One group keeps at most ``size * (size - d)`` (ordered) pairs, so all groups
   at most ``parts * size * (size - d)`` distinct pairs. The kept pairs are therefore an edge set
   of the complete bipartite graph rows x columns (``w``'s) within these degree and edge caps,
   and ``keep <=`` the maximum weight of such an edge set (a b-matching). Without replicas this
   is at least as strong as "each expert keeps at most its S strongest partners" in both
   directions (it satisfies both caps at once).
2. Pooled replicas (:func:`cut_bound`, used when a deadline is given). Every slot holds one
   expert, every expert at least one slot, so ``sum_i c_i = E + R`` exactly at the GPU level and
   ``sum_i (c_i - 1) <= R`` at the node level (an expert's nodes are at most its GPUs). Hence
   ``deg_i <= (size - d) + x_i`` with ``x_i <= (size - d) * min(parts - 1, R)`` and
   ``sum_i x_i <= (size - d) * R``: every row draws its extra degree from one shared pool. This
   is a subset of the caps of 1 (same per-row maximum), so its optimum is never weaker; with
   ``R = 0`` the two are the same.
3. Within a layer the b-matching runs over ordered pairs and counts every kept unordered pair
   twice: half its value bounds the kept co-activation weight (and half the total is the total).

The flow: source -> rows -> columns -> sink with unit arcs for the positive weights, integer
costs (the counts themselves, so the optimum is exact; float counts are scaled and rounded UP,
which can only raise the bound on kept weight), a bypass arc source -> sink for the flow no
positive edge wants, and the pools as one extra node on each side.
"""

from __future__ import annotations

import numpy as np

# Integer weights keep the flow exact; float counts (aggregate inputs) are scaled by this and
# rounded UP, which can only raise the bound on kept weight, so the cost bound stays valid.
_FLOAT_SCALE = 2.0 ** 20


def cut_bound(weights: np.ndarray, parts: int, size: int, within: bool, replicas: int = 0,
              pooled: bool = True) -> float:
    """Lower bound on the weight of ``weights`` ``[E, E]`` cut at one level (see module).

    Units of ``weights``; ``within``: one layer's symmetric co-activation, unordered pairs, the
    diagonal ignored. ``pooled``: the replica caps of item 2 (else item 1 alone, the bound used
    before deadlines existed; the two agree without replicas).
    """
    W = np.array(weights, dtype=np.float64)
    if within:
        np.fill_diagonal(W, 0.0)
    E, d = W.shape[0], int(within)
    half = 0.5 if within else 1.0
    slots = size - d
    if pooled:
        keep = keep_upper_bound(W, slots, parts * size * slots, diagonal=not within,
                                pool=slots * replicas, pool_cap=slots * min(parts - 1, replicas))
    else:
        keep = keep_upper_bound(W, min(E - d, slots * min(parts, 1 + replicas)), parts * size * slots,
                                diagonal=not within)
    return float(half * (W.sum() - keep))


def degree_cut_bound(weights: np.ndarray, parts: int, size: int, within: bool, replicas: int = 0) -> float:
    """The caps of item 1 one at a time, without the flow: ``keep`` is at most the sum of every
    row's (every column's) largest ``cap`` weights, and at most the largest ``edges`` weights.
    Weaker than :func:`cut_bound`, but one sort: what the deadline leaves to pairs without a flow."""
    W = np.array(weights, dtype=np.float64)
    if within:
        np.fill_diagonal(W, 0.0)
    E, d = W.shape[0], int(within)
    cap = min(E - d, (size - d) * min(parts, 1 + replicas))
    edges = min(E * E, parts * size * (size - d))
    rows = -np.sort(-W, axis=1)[:, :cap].sum()
    cols = -np.sort(-W, axis=0)[:cap].sum()
    top = -np.sort(-W.ravel())[:edges].sum()
    return float((0.5 if within else 1.0) * max(0.0, W.sum() - min(rows, cols, top)))


def b_matching_max(weights: np.ndarray, degree_cap: int, edge_cap: int, diagonal: bool = True,
                   pool: int = 0, pool_cap: int = 0) -> float:
    """Maximum weight of an edge set of the complete bipartite graph rows x columns of ``weights``.

    ``weights`` ``[E, E]`` non-negative integers; each edge used at most once, every row and
    every column in at most ``degree_cap`` edges plus its draw from a pool of ``pool`` extra
    degrees shared by all rows (likewise columns), at most ``pool_cap`` per row; at most
    ``edge_cap`` edges in all; without ``diagonal`` the edges (i, i) are excluded. Solved exactly
    as a min-cost flow.
    """
    from ortools.graph.python import min_cost_flow

    W = np.asarray(weights)
    E = W.shape[0]
    pool_cap = pool_cap if pool > 0 else 0
    flow = int(min(edge_cap, E * degree_cap + min(pool, E * pool_cap)))
    if flow <= 0:
        return 0.0
    rows, cols = np.nonzero(W > 0)
    if not diagonal:
        keep = rows != cols
        rows, cols = rows[keep], cols[keep]
    if len(rows) == 0:
        return 0.0
    # nodes: 0 source, 1..E rows, E+1..2E columns, 2E+1 sink, 2E+2 / 2E+3 the row / column pools;
    # zero-weight edges are not needed because the bypass arc carries the flow no edge wants
    src, sink, pool_a, pool_b = 0, 2 * E + 1, 2 * E + 2, 2 * E + 3
    idx = np.arange(E, dtype=np.int64)
    ones = np.ones(E, np.int64)
    tails = [np.zeros(E, np.int64), rows + 1, idx + E + 1, [src]]
    heads = [idx + 1, cols + E + 1, np.full(E, sink, np.int64), [sink]]
    caps = [ones * degree_cap, np.ones(len(rows), np.int64), ones * degree_cap, [flow]]
    costs = [np.zeros(E, np.int64), -W[rows, cols].astype(np.int64), np.zeros(E, np.int64), [0]]
    if pool_cap > 0:
        tails += [[src], ones * pool_a, idx + E + 1, [pool_b]]
        heads += [[pool_a], idx + 1, ones * pool_b, [sink]]
        caps += [[pool], ones * pool_cap, ones * pool_cap, [pool]]
        costs += [[0], np.zeros(E, np.int64), np.zeros(E, np.int64), [0]]
    mcf = min_cost_flow.SimpleMinCostFlow()
    mcf.add_arcs_with_capacity_and_unit_cost(*(np.concatenate(x).astype(np.int64) for x in (tails, heads, caps, costs)))
    nodes = 2 * E + 4
    supplies = np.zeros(nodes, np.int64)
    supplies[src], supplies[sink] = flow, -flow
    mcf.set_nodes_supplies(np.arange(nodes, dtype=np.int64), supplies)
    status = mcf.solve()
    if status != mcf.OPTIMAL:
        raise RuntimeError(f"min-cost flow for the bound failed with status {status}")
    return float(-mcf.optimal_cost())


def keep_upper_bound(weights: np.ndarray, degree_cap: int, edge_cap: int, diagonal: bool = True,
                     pool: int = 0, pool_cap: int = 0) -> float:
    """Upper bound on the weight of any co-located pair set (degree, pool and edge caps, see
    :func:`b_matching_max`), in the units of ``weights`` (float weights are scaled and rounded up)."""
    W, scale = _integer_weights(weights)
    return b_matching_max(W, degree_cap, edge_cap, diagonal, pool, pool_cap) / scale


def _is_integral(a: np.ndarray) -> bool:
    a = np.asarray(a)
    return np.issubdtype(a.dtype, np.integer) or bool(np.all(a == np.round(a)))


def _integer_weights(a: np.ndarray) -> tuple[np.ndarray, float]:
    """``(W, scale)``: integer weights with ``W / scale >= a`` (exact when ``a`` is integral)."""
    a = np.asarray(a)
    if _is_integral(a):
        return a.astype(np.int64), 1.0
    return np.ceil(a.astype(np.float64) * _FLOAT_SCALE).astype(np.int64), _FLOAT_SCALE
