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

from placer.errors import PlacerError
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.base import Constraints
from placer.solvers.partition.metis import csr_from_edges, part_graph_kway
from placer.solvers.search.feasible import make_feasible, repair_counts
from placer.solvers.search.moves import move_costs
from placer.solvers.search.problem import DEFAULT_REPLICA_IMBALANCE, Problem, build_problem, coarsened
from placer.solvers.search.refine import best_assignment, refine


# ----------------------------------------------------------------------------- graph
def _top_mask(w: np.ndarray, degree: int, axis: int) -> np.ndarray:
    """``w``-shaped bool: along ``axis``, the ``degree`` heaviest positive entries of each line,
    ties to the lower index (the order the edges are listed in)."""
    nz = w > 0
    if w.shape[axis] <= degree:
        return nz
    vals = np.where(nz, w, -np.inf)
    kth = np.take(-np.partition(-vals, degree - 1, axis=axis), [degree - 1], axis=axis)
    greater = vals > kth
    tie = (vals == kth) & nz
    need = degree - greater.sum(axis=axis, keepdims=True)
    return greater | (tie & (np.cumsum(tie, axis=axis) <= need))


def graph_edges(prob: Problem, degree: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undirected edges ``(u, v, w)`` of the instance graph (see module docstring), w > 0 ints.

    ``degree``: keep only edges among the ``degree`` heaviest of one of their endpoints (METIS
    time grows with edges; a start does not need the light ones).
    """
    P = prob.P
    us, vs, ws = [], [], []
    pairs = range(prob.L - 1) if prob.W is not None else range(prob.L)
    for l in pairs:
        if prob.W is not None:
            ia, ib = prob.inst_expert[l], prob.inst_expert[l + 1]
            w = prob.W[l][np.ix_(ia, ib)] / np.outer(prob.cnt[l, ia], prob.cnt[l + 1, ib])
            up, vp = l * P, (l + 1) * P
        else:
            ie = prob.inst_expert[l]
            w = np.triu(prob.C[l][np.ix_(ie, ie)] / np.outer(prob.cnt[l, ie], prob.cnt[l, ie]), 1)
            up = vp = l * P
        # a vertex's edges towards each neighbouring layer ranked on the dense block: the same
        # edges as ranking the edge list (lexsort of 15 M edges took 7 s at E = 512)
        keep = (_top_mask(w, degree, 1) | _top_mask(w, degree, 0)) if degree else w > 0
        a, b = np.nonzero(keep)
        us.append(up + a)
        vs.append(vp + b)
        ws.append(w[a, b])
    if not us:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    u, v, w = np.concatenate(us), np.concatenate(vs), np.concatenate(ws)
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
PER_LAYER_MAX = 200_000    # L * L * P up to which METIS balances each layer (one constraint each)


def _metis(vertices: np.ndarray, edges: tuple, L: int, P: int, nparts: int, seed: int,
           per_layer: bool = True) -> np.ndarray:
    """Parts ``[len(vertices)]`` of the subgraph induced by ``vertices``: balanced per layer (one
    constraint each) or, ``per_layer=False``, in vertex count alone."""
    u, v, w = edges
    local = np.full(L * P, -1, np.int64)
    local[vertices] = np.arange(len(vertices))
    keep = (local[u] >= 0) & (local[v] >= 0)
    xadj, adj, adjw = csr_from_edges(len(vertices), local[u[keep]], local[v[keep]], w[keep])
    if per_layer:
        layer = vertices // P
        vwgt = (layer[:, None] == np.unique(layer)[None, :]).astype(np.int64)
    else:
        vwgt = np.ones((len(vertices), 1), np.int64)
    return part_graph_kway(xadj, adj, adjw, vwgt, nparts, seed=seed)


def metis_start(prob: Problem, seed: int, degree: int | None = None) -> np.ndarray:
    """``[L, P]`` GPUs from multi-constraint METIS, hierarchical on multi-node topologies: nodes
    first (inter-node hops cost most; each layer repaired to exact node balance), then the GPUs
    of each node. Not yet exactly balanced per GPU (see module docstring).

    METIS keeps one balance constraint per layer while ``L * L * P`` (vertices times
    constraints) is at most :data:`PER_LAYER_MAX`. Above it, every call balances vertex counts
    alone, and the layers are balanced afterwards: coherent without replicas by
    :func:`balance_by_assignment`, else by :func:`make_feasible`'s repair. Measured on the
    DeepSeek-V3-shape traces (58 layers, coherent, 100k tokens, nodes of 8):

    - with 58 constraints METIS took 1.0-1.4 s a node subgraph at E = 512 on 64 GPUs (10 s for
      the 8 nodes) and 4.3-4.8 s for the node-level split at E = 256 on 128 and 256 GPUs, and
      its cuts were worse: after the same refinement, 17.52 M against 15.68 M (E = 512, 64
      GPUs), and at 256 GPUs the optimum (19,178,741, the bound) either way, but the
      one-constraint start reaches it before any refinement, in 0.3 s instead of 5.3 s;
    - the per-layer repair by single moves took 3.4 s at 256 GPUs, the assignment 0.24 s.

    On small graphs the constraints matter: the planted E = 128 trace, ep on 2 x 8 GPUs, is cut
    to 0 with them and to 7,362 without; ESFT on 2 x 8 GPUs is 4.3e4, under the rule."""
    L, P, G, gpn = prob.L, prob.P, prob.G, prob.gpus_per_node
    edges = graph_edges(prob, degree)
    allv = np.arange(L * P)
    N = G // gpn
    per_layer = L * L * P <= PER_LAYER_MAX
    if not (N > 1 and gpn > 1):
        gpu = _metis(allv, edges, L, P, G, seed, per_layer=per_layer).reshape(L, P)
    else:
        node = _metis(allv, edges, L, P, N, seed, per_layer=per_layer).reshape(L, P)
        node_hop = prob.move_hop.reshape(N, gpn, N, gpn).mean(axis=(1, 3))
        np.fill_diagonal(node_hop, 0.0)
        nprob = coarsened(prob, N, node_hop)
        for l in range(L):
            repair_counts(nprob, node, l)
        gpu = np.empty((L, P), np.int64)
        flat_node = node.ravel()
        for k in range(N):
            verts = np.flatnonzero(flat_node == k)
            part = _metis(verts, edges, L, P, gpn, seed + k + 1, per_layer=per_layer)
            gpu.ravel()[verts] = k * gpn + part
    if not per_layer and prob.W is not None and not prob.replicated:
        balance_by_assignment(prob, gpu)
    return gpu


def balance_by_assignment(prob: Problem, gpu: np.ndarray) -> None:
    """Every layer exactly balanced (S instances per GPU), in place: layer by layer, the
    assignment of least cost given its neighbours as they stand (coherent without replicas:
    expert e on GPU g costs ``move_costs[e, g]`` exactly; :func:`best_assignment`). The load
    cap, if any, is left to the repair."""
    for l in range(prob.L):
        gpu[l] = best_assignment(prob, move_costs(prob, gpu, l))


def random_start(prob: Problem, seed: int, k: int) -> np.ndarray:
    """``[L, P]`` GPUs: a uniformly random balanced assignment per layer (start ``k`` of ``seed``)."""
    rng = np.random.default_rng([int(seed), int(k)])
    gpu = np.empty((prob.L, prob.P), np.int64)
    slots = np.arange(prob.P) // prob.S
    for l in range(prob.L):
        gpu[l, rng.permutation(prob.P)] = slots
    return gpu


def replica_free_start(prob: Problem, profile: Profile, topology: Topology, constraints: Constraints,
                       deadline: float, replica_imbalance: float = DEFAULT_REPLICA_IMBALANCE,
                       capped: bool = False) -> np.ndarray | None:
    """``[L, P]`` start for a replicated problem: solve without replicas first (one random start,
    refined until ``deadline``), keep every expert's first copy where that put it, and pack the
    redundant copies onto the free slots (:func:`_pack_copies`). None when G does not divide E
    (the first copies would not fill whole GPUs), or when ``capped`` and the first copies alone
    cannot meet the cap.

    ``capped``: the solution without replicas is refined under the cap its first copies must
    meet (:func:`_first_copies`), else with no cap at all. Uncapped, the packed layout went over
    the cap at DeepSeek-V3 shape and the repair took it from 15.3 M to 29.2 M (64 GPUs, 64
    replicas, 100k tokens); capped, 25.1 M, and after the whole 20 s solve 19.3-19.9 M against
    21.3-21.9 M (128 GPUs: 25.3-29.8 M against 36.5 M; docs/benchmarks.md, seventh session)."""
    if not prob.replicated or prob.E % prob.G:
        return None
    base = build_problem(profile, topology, dataclasses.replace(constraints, replicas=0, max_imbalance=None),
                         replica_imbalance)
    gpu0 = random_start(base, constraints.seed, 0)
    if capped:
        base = _first_copies(prob, base)
        try:
            make_feasible(base, gpu0)
        except PlacerError:
            return None
    refine(base, gpu0, deadline)
    return _pack_copies(prob, gpu0)


def _pack_copies(prob: Problem, gpu0: np.ndarray) -> np.ndarray:
    """``[L, P]``: every expert's first copy on its GPU in ``gpu0 [L, E]``, the redundant copies
    packed onto the free slots, heaviest first, each on the lightest GPU without that expert."""
    out = np.empty((prob.L, prob.P), np.int64)
    for l in range(prob.L):
        ie, ld = prob.inst_expert[l], prob.inst_load[l]
        first = prob.first_inst[l]
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


def _first_copies(prob: Problem, base: Problem) -> Problem:
    """``base`` (the problem without replicas) loaded as the first copies of ``prob`` will be:
    every expert carries ``load / count``, and each layer's cap is ``prob``'s less the mean load
    the redundant copies will add to a GPU, so that packing them afterwards lands near the cap."""
    share = np.take_along_axis(prob.inst_load, prob.first_inst, axis=1)     # [L, E]
    extra = (prob.inst_load.sum(axis=1) - share.sum(axis=1)) / prob.G
    return dataclasses.replace(base, inst_load=share, cap=prob.cap - extra)
