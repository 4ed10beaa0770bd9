"""Starting layouts for ``partition``: hierarchical multi-constraint METIS, random, replica-free.

The layered instance graph has one vertex per (MoE layer, instance), vertex ``l * P + x``, and
edges weighted by the cost model (:func:`graph_edges`): ``W[l, i, j]`` between layer l and
l+1 (coherent), ``C[l, i, j]`` inside layer l (ep), an edge between replicated experts split
over their instance pairs (weight / (c_i c_j)). METIS minimises the weighted cut with one
balance constraint per layer; it is only approximately balanced, so every start goes through
:func:`placer.solvers.search.feasible.make_feasible` before the refinement.

METIS is a hard dependency (pymetis ships the library); when it fails the one-line
:class:`~placer.errors.PlacerError` of :func:`.metis.part_graph_kway` surfaces, as every other
user-facing error does, rather than a quietly weaker solve.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.base import Constraints
from placer.solvers.partition.metis import csr_from_edges, part_graph_kway
from placer.solvers.search.feasible import repair_counts
from placer.solvers.search.problem import DEFAULT_REPLICA_IMBALANCE, Problem, build_problem, coarsened
from placer.solvers.search.refine import refine


# ----------------------------------------------------------------------------- graph
def _top_edges(u: np.ndarray, v: np.ndarray, w: np.ndarray, degree: int) -> np.ndarray:
    """``[m]`` bool: edges among the ``degree`` heaviest of either endpoint (sparsifies the graph)."""
    keep = np.zeros(len(w), bool)
    for end in (u, v):
        order = np.lexsort((-w, end))                  # by vertex, heaviest first
        sorted_end = end[order]
        first = np.searchsorted(sorted_end, sorted_end, side="left")
        rank = np.arange(len(order)) - first
        keep[order[rank < degree]] = True
    return keep


def graph_edges(prob: Problem, degree: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undirected edges ``(u, v, w)`` of the instance graph (see module docstring), w > 0 ints.

    ``degree``: keep only edges among the ``degree`` heaviest of one of their endpoints (METIS
    time grows with edges; a start does not need the light ones).
    """
    P = prob.P
    us, vs, ws = [], [], []
    if prob.W is not None:
        for l in range(prob.L - 1):
            ia, ib = prob.inst_expert[l], prob.inst_expert[l + 1]
            w = prob.W[l][np.ix_(ia, ib)] / np.outer(prob.cnt[l, ia], prob.cnt[l + 1, ib])
            a, b = np.nonzero(w > 0)
            us.append(l * P + a)
            vs.append((l + 1) * P + b)
            ws.append(w[a, b])
    else:
        for l in range(prob.L):
            ie = prob.inst_expert[l]
            w = prob.C[l][np.ix_(ie, ie)] / np.outer(prob.cnt[l, ie], prob.cnt[l, ie])
            a, b = np.nonzero(np.triu(w, 1) > 0)
            us.append(l * P + a)
            vs.append(l * P + b)
            ws.append(w[a, b])
    if not us:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    u, v, w = np.concatenate(us), np.concatenate(vs), np.concatenate(ws)
    if degree:
        keep = _top_edges(u, v, w, degree)
        u, v, w = u[keep], v[keep], w[keep]
    if len(w) == 0:
        return u.astype(np.int64), v.astype(np.int64), np.zeros(0, np.int64)
    # METIS needs integer weights; 1e6 levels keep the relative error below 1e-6 of the largest.
    wi = np.maximum(1, np.rint(w / w.max() * 1e6)).astype(np.int64)
    return u.astype(np.int64), v.astype(np.int64), wi


def metis_degree(prob: Problem, degree: int | None) -> int | None:
    """Edges kept per vertex for METIS: all on small graphs; the 8 heaviest from 10^6 edges on
    (DeepSeek-V3 shape, planted data, loaded 2-core machine: all edges 22 s and a start 9% above
    the planted score; 8 per vertex 7-13 s and 0.1% above)."""
    if degree is not None:
        return degree or None
    n_edges = (prob.L - 1) * prob.P * prob.P if prob.W is not None else prob.L * prob.P * prob.P // 2
    return 8 if n_edges >= 1_000_000 else None


# ----------------------------------------------------------------------------- starts
def _metis(vertices: np.ndarray, edges: tuple, L: int, P: int, nparts: int, seed: int) -> np.ndarray:
    """Parts ``[len(vertices)]`` of the subgraph induced by ``vertices`` (one constraint per layer)."""
    u, v, w = edges
    local = np.full(L * P, -1, np.int64)
    local[vertices] = np.arange(len(vertices))
    keep = (local[u] >= 0) & (local[v] >= 0)
    xadj, adj, adjw = csr_from_edges(len(vertices), local[u[keep]], local[v[keep]], w[keep])
    layer = vertices // P
    present = np.unique(layer)
    vwgt = (layer[:, None] == present[None, :]).astype(np.int64)
    return part_graph_kway(xadj, adj, adjw, vwgt, nparts, seed=seed)


def metis_start(prob: Problem, seed: int, degree: int | None = None) -> np.ndarray:
    """``[L, P]`` GPUs from multi-constraint METIS, hierarchical on multi-node topologies: nodes
    first (inter-node hops cost most; each layer repaired to exact node balance), then the GPUs
    of each node. Not yet exactly balanced per GPU (see module docstring)."""
    L, P, G, gpn = prob.L, prob.P, prob.G, prob.gpus_per_node
    edges = graph_edges(prob, degree)
    allv = np.arange(L * P)
    N = G // gpn
    if not (N > 1 and gpn > 1):
        return _metis(allv, edges, L, P, G, seed).reshape(L, P)
    node = _metis(allv, edges, L, P, N, seed).reshape(L, P)
    node_hop = prob.move_hop.reshape(N, gpn, N, gpn).mean(axis=(1, 3))
    np.fill_diagonal(node_hop, 0.0)
    nprob = coarsened(prob, N, node_hop)
    for l in range(L):
        repair_counts(nprob, node, l)
    gpu = np.empty((L, P), np.int64)
    flat_node = node.ravel()
    for k in range(N):
        verts = np.flatnonzero(flat_node == k)
        part = _metis(verts, edges, L, P, gpn, seed + k + 1)
        gpu.ravel()[verts] = k * gpn + part
    return gpu


def random_start(prob: Problem, seed: int, k: int) -> np.ndarray:
    """``[L, P]`` GPUs: a uniformly random balanced assignment per layer (start ``k`` of ``seed``)."""
    rng = np.random.default_rng([int(seed), int(k)])
    gpu = np.empty((prob.L, prob.P), np.int64)
    slots = np.arange(prob.P) // prob.S
    for l in range(prob.L):
        gpu[l, rng.permutation(prob.P)] = slots
    return gpu


def replica_free_start(prob: Problem, profile: Profile, topology: Topology, constraints: Constraints,
                       deadline: float, replica_imbalance: float = DEFAULT_REPLICA_IMBALANCE) -> np.ndarray | None:
    """``[L, P]`` start for a replicated problem: solve without replicas first (one random start,
    refined), keep every expert's first copy where that put it, and pack the redundant copies
    onto the free slots (heaviest copy first, lightest GPU without that expert). None when G
    does not divide E (the first copies would not fill whole GPUs)."""
    if not prob.replicated or prob.E % prob.G:
        return None
    base = build_problem(profile, topology, dataclasses.replace(constraints, replicas=0, max_imbalance=None),
                         replica_imbalance)
    gpu0 = random_start(base, constraints.seed, 0)
    refine(base, gpu0, deadline)
    out = np.empty((prob.L, prob.P), np.int64)
    for l in range(prob.L):
        ie, ld = prob.inst_expert[l], prob.inst_load[l]
        first = np.r_[0, np.cumsum(prob.cnt[l])[:-1]]
        out[l, first] = gpu0[l]
        loads = np.bincount(gpu0[l], weights=ld[first], minlength=prob.G)
        free = np.full(prob.G, prob.S - prob.E // prob.G)
        has = np.zeros((prob.E, prob.G), bool)
        has[np.arange(prob.E), gpu0[l]] = True
        extra = np.setdiff1d(np.arange(prob.P), first)
        for x in extra[np.argsort(-ld[extra], kind="stable")]:
            ok = (free > 0) & ~has[ie[x]]
            g = int(np.argmin(np.where(ok if ok.any() else free > 0, loads, np.inf)))
            out[l, x] = g
            loads[g] += ld[x]
            free[g] -= 1
            has[ie[x], g] = True
    return out
