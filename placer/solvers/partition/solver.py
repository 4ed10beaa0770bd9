"""Scalable placement heuristic: multi-constraint graph partitioning plus constraint-keeping swaps.

The layered expert graph has one vertex per (MoE layer, expert instance) (an instance is an
expert or one of its replicas) and edges weighted by the cost model:

- ``coherent``: ``trans[l, i, j] / K**2`` between layer l and layer l+1 (``transition_weights``);
  the objective is ``sum_l sum_ij W[l,i,j] * hop(g(l,i), g(l+1,j))`` with the nearest replica
  pair (min hop) when experts are replicated. Same units as ``placer.cost.coherent_cost().total``.
- ``ep``: co-activation ``coact[l, i, j]`` (i != j) inside layer l; the objective is the
  **ep-pairwise** cut ``sum_l sum_{i<j} coact[l,i,j] * hop(g(l,i), g(l,j))``: co-activated
  experts on one GPU save dispatch copies. (The exact ep cost counts distinct GPUs per token;
  the pairwise cut is the graph surrogate this solver minimises.)

Algorithm (every step keeps: exactly S slots per GPU per layer, no two replicas of an expert on
one GPU, and the per-layer load cap when one applies):

1. Replica counts: EPLB's rule, the next redundant slot goes to the expert with the largest load
   per replica, at most one replica per GPU (``placer.solvers.replicate``).
2. Starts: (a) METIS ``PartGraphKway`` with one balance constraint per layer, hierarchical:
   nodes first (inter-node hops cost most), then GPUs within each node; METIS is only
   approximately balanced, so each layer is repaired to exact balance with minimum-loss moves;
   (b) random balanced starts. Starts that break the load cap are fixed by load-reducing swaps
   (balanced packing, EPLB-style, when swaps get stuck).
3. Refinement, sweeping layers forward and backward until no gain: for the coherent model
   without load cap or replicas a layer's best re-assignment given its neighbours is a linear
   assignment problem, solved exactly (``scipy.optimize.linear_sum_assignment``); otherwise, and
   in addition, Kernighan-Lin style pairwise swaps inside the layer with all swap gains computed
   at once with numpy (``gain[a, b] = D[a, g_b] + D[b, g_a]``), applying the best disjoint
   improving swaps; swaps that would break the load cap or duplicate a replica are rejected.
   After each sweep, a multi-layer move: rename the GPUs of every layer from l on (a topology
   automorphism chosen by linear assignment), which joins runs of layers that agree on groups
   but not on GPU labels.
4. The best start (lowest objective) is kept, then improved by iterated local search: shuffle
   part of two adjacent layers, re-descend on a window around them, keep it if the objective
   drops. Deterministic for a given ``seed``; a time-limit stop (``details["hit_time_limit"]``)
   can depend on machine speed.

Parameters (:class:`PartitionParams`): ``starts`` (default 4: METIS, then random; with replicas
the replica-free solution with copies packed onto free slots first, then METIS, then random),
``kicks`` (ILS perturbations, default 200), ``bound`` (False: skip the lower bound), ``metis``
(False: random starts only), ``metis_degree`` (edges kept per vertex for METIS),
``replica_imbalance`` (default cap with replicas, 1.10).

Load cap: ``--max-imbalance`` bounds each layer's max/mean GPU load (a replica carries
``load / count``). With replicas and no ``--max-imbalance`` the cap defaults to
``max(1.10, what balanced packing reaches)``: replicas exist to balance load.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from placer.errors import PlacerError
from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.progress import progress
from placer.cost.objectives import Objective
from placer.solvers.base import Constraints, SolveResult, Status, param, register
from placer.solvers.packing import balanced_packing
from placer.solvers.replicate import replica_counts_batched
from placer.model.topology import Topology

DEFAULT_STARTS = 4
DEFAULT_KICKS = 200
DEFAULT_REPLICA_IMBALANCE = 1.10
_REL_TOL = 1e-10


@dataclass
class Problem:
    """The instance the search works on (L layers, E experts, G GPUs, S slots, P = G*S instances).

    - ``W``: ``[L-1, E, E]`` transition weights (coherent) or None.
    - ``C``: ``[L, E, E]`` co-activation counts with a zero diagonal (ep) or None.
    - ``hop``: ``[G, G]`` hop costs (symmetrised for ep).
    - ``cnt``: ``[L, E]`` instances per expert; ``inst_expert`` ``[L, P]`` expert of each
      instance; ``inst_load`` ``[L, P]`` load per instance (load / count).
    - ``cap``: ``[L]`` maximum GPU load (token picks) per layer, inf when unconstrained.
    """

    L: int
    E: int
    G: int
    S: int
    gpus_per_node: int
    hop: np.ndarray
    W: np.ndarray | None
    C: np.ndarray | None
    load: np.ndarray
    cnt: np.ndarray
    inst_expert: np.ndarray
    inst_load: np.ndarray
    cap: np.ndarray

    @property
    def P(self) -> int:
        return self.G * self.S

    @functools.cached_property
    def replicated(self) -> bool:
        """Some expert has more than one instance (``cnt`` never changes after construction)."""
        return bool(np.any(self.cnt > 1))

    @property
    def capped(self) -> bool:
        return bool(np.any(np.isfinite(self.cap)))


# ----------------------------------------------------------------------------- problem
def build_problem(profile: Profile, topology: Topology, constraints: Constraints,
                  replica_imbalance: float = DEFAULT_REPLICA_IMBALANCE) -> Problem:
    """Check the inputs against the constraints and lay out the instance arrays.

    ``replica_imbalance``: the load cap with replicas when ``constraints.max_imbalance`` is None.
    """
    L, E, G = profile.num_layers, profile.num_experts, topology.num_gpus
    S = constraints.slots_per_gpu(E, G)
    hop = np.asarray(topology.hop, np.float64)
    W = C = None
    if constraints.cost == "coherent":
        W = profile.transition_weights()
    elif constraints.cost == "ep":
        if profile.coact is None:
            raise PlacerError("the ep cost needs co-activation counts, which this profile lacks; "
                              "profile a per-token trace or use --cost coherent")
        C = profile.coact.astype(np.float64).copy()
        idx = np.arange(E)
        C[:, idx, idx] = 0.0
        hop = (hop + hop.T) / 2.0
    else:
        raise PlacerError(f"unknown cost model '{constraints.cost}'; use --cost coherent or --cost ep")
    load = profile.load.astype(np.float64)
    cnt = replica_counts_batched(load, E + constraints.replicas, max_count=G)
    inst_expert = np.stack([np.repeat(np.arange(E), cnt[l]) for l in range(L)])
    inst_load = np.stack([load[l, inst_expert[l]] / cnt[l, inst_expert[l]] for l in range(L)])
    mean = load.sum(1) / G
    cap = np.full(L, np.inf)
    prob = Problem(L, E, G, S, topology.gpus_per_node, hop, W, C, load, cnt, inst_expert, inst_load, cap)
    target = constraints.max_imbalance
    if target is not None and target < 1.0:
        raise PlacerError(f"--max-imbalance must be >= 1.0 (max/mean load), got {target}")
    if target is None and constraints.replicas > 0 and G > 1:
        target = float(replica_imbalance)
        packed = np.array([_imbalance(prob, l, _packing(prob, l)) for l in range(L)])
        prob.cap = np.maximum(target, packed * (1 + 1e-9)) * mean
    elif target is not None and G > 1:
        prob.cap = target * mean * (1 + 1e-12)
    prob.cap = np.where(mean > 0, prob.cap, np.inf)
    return prob


def _gpu_loads(prob: Problem, l: int, gpu_l: np.ndarray) -> np.ndarray:
    """``[G]`` token picks per GPU at layer l (a replica carries load / count)."""
    return np.bincount(gpu_l, weights=prob.inst_load[l], minlength=prob.G)


def _imbalance(prob: Problem, l: int, gpu_l: np.ndarray) -> float:
    """Max/mean GPU load of layer l (the load cost model's imbalance)."""
    loads = _gpu_loads(prob, l, gpu_l)
    mean = loads.mean()
    return float(loads.max() / mean) if mean > 0 else 1.0


# ----------------------------------------------------------------------------- costs
def _set_dist(ie: np.ndarray, gpu_l: np.ndarray, E: int, hop: np.ndarray) -> np.ndarray:
    """``[E, G]``: ``min over GPUs g' holding expert n of hop[g', g]`` (distance from a replica set)."""
    out = np.full((E, hop.shape[1]), np.inf)
    np.minimum.at(out, ie, hop[gpu_l])
    return out


def _pair_dist(prob: Problem, a: int, b: int, gpu: np.ndarray, hop: np.ndarray) -> np.ndarray:
    """``[E, E]``: nearest-replica hop from expert i at layer a to expert j at layer b."""
    ie_a, ie_b = prob.inst_expert[a], prob.inst_expert[b]
    if not prob.replicated:
        return hop[np.ix_(gpu[a], gpu[b])][np.argsort(ie_a)][:, np.argsort(ie_b)]
    m = _set_dist(ie_a, gpu[a], prob.E, hop)          # [i, g'] = min_{g in S_i} hop[g, g']
    out = np.full((prob.E, prob.E), np.inf)
    np.minimum.at(out, ie_b, m.T[gpu[b]])              # [j, i]
    return out.T


def layer_costs(prob: Problem, gpu: np.ndarray) -> np.ndarray:
    """``[L-1]`` (coherent) or ``[L]`` (ep-pairwise) cost of each layer transition / layer."""
    if prob.W is not None:
        return np.array([float(np.sum(prob.W[l] * _pair_dist(prob, l, l + 1, gpu, prob.hop)))
                         for l in range(prob.L - 1)])
    return np.array([0.5 * float(np.sum(prob.C[l] * _pair_dist(prob, l, l, gpu, prob.hop)))
                     for l in range(prob.L)])


def objective(prob: Problem, gpu: np.ndarray) -> float:
    """The solver's objective (coherent or ep-pairwise units, see the module docstring)."""
    return float(layer_costs(prob, gpu).sum())


def _window_cost(prob: Problem, gpu: np.ndarray, lo: int, hi: int) -> float:
    """Cost of every edge that touches layers ``lo .. hi-1`` (all a change there can alter)."""
    if prob.W is not None:
        return float(sum(np.sum(prob.W[t] * _pair_dist(prob, t, t + 1, gpu, prob.hop))
                         for t in range(max(0, lo - 1), min(prob.L - 1, hi))))
    return float(sum(0.5 * np.sum(prob.C[l] * _pair_dist(prob, l, l, gpu, prob.hop)) for l in range(lo, hi)))


def _blocks(prob: Problem, l: int) -> list[tuple[np.ndarray, int, np.ndarray]]:
    """Edge blocks touching layer l: ``(w [E, E], neighbour layer, hop_from_l [G, G])`` where
    ``w[e, n]`` weighs layer-l expert e against expert n of the neighbour layer."""
    if prob.W is None:
        return [(prob.C[l], l, prob.hop)]
    out = []
    if l > 0:
        out.append((prob.W[l - 1].T, l - 1, prob.hop.T))     # hop(g(l-1, n), g(l, e))
    if l + 1 < prob.L:
        out.append((prob.W[l], l + 1, prob.hop))             # hop(g(l, e), g(l+1, n))
    return out


def move_costs(prob: Problem, gpu: np.ndarray, l: int) -> np.ndarray:
    """``[P, G]``: cost of the edges of instance x's expert if x alone moved to GPU g.

    Exact for the coherent model (no edges inside a layer); for ep the edge between two swapped
    experts needs the correction in :func:`_swap_gains`.
    """
    lin, Wn, Mn = _linear_costs(prob, gpu, l)
    cost = lin[prob.inst_expert[l]]
    if Wn is not None:
        rep = np.flatnonzero(prob.cnt[l, prob.inst_expert[l]] > 1)
        _replica_rows(prob, gpu, l, rep, Wn, Mn, cost)
    return cost


def _linear_costs(prob: Problem, gpu: np.ndarray, l: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
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
            m = _set_dist(prob.inst_expert[nl], gpu[nl], E, hop_l.T)
            m = np.where(np.isfinite(m), m, 0.0)
            lin += w @ m
            rep_terms.append((w, m))
    if not rep_terms:
        return lin, None, None
    return (lin, np.concatenate([w for w, _ in rep_terms], axis=1),
            np.concatenate([m for _, m in rep_terms], axis=0))


def _replica_rows(prob: Problem, gpu: np.ndarray, l: int, rows: np.ndarray, Wn: np.ndarray,
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
    for k0 in range(0, len(rows), 32):           # bounded memory: 32 x N x G
        sl = slice(k0, k0 + 32)
        r = np.where(others[sl][:, None, :], Mn[None], np.inf).min(2)   # [x, N]
        near = np.minimum(r[:, :, None], Mn[None])                        # [x, N, G]
        cost[rows[sl]] = np.einsum("xn,xng->xg", Wn[ie[rows[sl]]], near)


def _swap_gains(prob: Problem, gpu: np.ndarray, l: int, cost: np.ndarray) -> np.ndarray:
    """``[P, P]`` objective change of swapping instances a and b (inf where not allowed)."""
    g = gpu[l]
    ie = prob.inst_expert[l]
    cur = cost[np.arange(len(g)), g]
    D = cost - cur[:, None]
    M = D[:, g]
    delta = M + M.T
    if prob.C is not None:
        delta += 2.0 * prob.C[l][np.ix_(ie, ie)] * prob.hop[np.ix_(g, g)]
    bad = (g[:, None] == g[None, :]) | (ie[:, None] == ie[None, :])
    if prob.replicated:
        has = np.zeros((prob.E, prob.G), bool)
        has[ie, g] = True
        hb = has[ie][:, g]                       # [a, b]: expert(a) already on gpu(b)
        bad |= hb | hb.T
    if np.isfinite(prob.cap[l]):
        loads = _gpu_loads(prob, l, g)
        ld = prob.inst_load[l]
        diff = ld[None, :] - ld[:, None]          # [a, b]: load_b - load_a
        new_a = loads[g][:, None] + diff           # GPU of a after the swap
        new_b = loads[g][None, :] - diff
        cap = prob.cap[l]
        bad |= (new_a > cap) | (new_b > cap)
    delta[bad] = np.inf
    return delta


# ----------------------------------------------------------------------------- refinement
def _lsa_layer(prob: Problem, gpu: np.ndarray, l: int) -> bool:
    """Re-assign layer l optimally given its neighbours (coherent, no replicas). True if better."""
    cost = move_costs(prob, gpu, l)                     # [E, G]
    old = float(cost[np.arange(prob.P), gpu[l]].sum())
    rows, cols = linear_sum_assignment(np.repeat(cost, prob.S, axis=1))
    new_g = np.empty(prob.P, np.int64)
    new_g[rows] = cols // prob.S
    if np.isfinite(prob.cap[l]) and _gpu_loads(prob, l, new_g).max() > prob.cap[l]:
        return False
    new = float(cost[np.arange(prob.P), new_g].sum())
    if new < old - _REL_TOL * max(1.0, abs(old)):
        gpu[l] = new_g
        return True
    return False


def _swap_layer(prob: Problem, gpu: np.ndarray, l: int, max_rounds: int = 200) -> bool:
    """KL/FM-style improving swaps inside layer l until none improves. True if anything changed."""
    changed = False
    # coherent: disjoint swaps' gains add up exactly; ep: swaps interact through intra-layer
    # edges, so a batch is checked on the true layer cost and falls back to the single best swap
    exact_batches = prob.C is None
    # coherent: a layer's move costs depend on its neighbours only, except the copies of an
    # expert whose other copies moved; those rows alone are recomputed after each batch
    _, Wn, Mn = _linear_costs(prob, gpu, l) if exact_batches else (None, None, None)
    cost = None
    ie = prob.inst_expert[l]
    for _ in range(max_rounds):
        if cost is None or not exact_batches:
            cost = move_costs(prob, gpu, l)
        delta = _swap_gains(prob, gpu, l, cost)
        scale = max(1.0, float(np.abs(cost).max()))
        a_idx, b_idx = np.nonzero(np.triu(delta < -_REL_TOL * scale * 10, 1))
        if len(a_idx) == 0:
            break
        vals = delta[a_idx, b_idx]
        order = np.lexsort((b_idx, a_idx, vals))
        chosen = _disjoint(prob, gpu[l], prob.inst_expert[l], a_idx[order], b_idx[order])
        before = _window_cost(prob, gpu, l, l + 1) if not exact_batches else None
        old_l = gpu[l].copy()
        for a, b in chosen:
            gpu[l, a], gpu[l, b] = old_l[b], old_l[a]
        if exact_batches and Wn is not None:
            moved = np.unique(ie[np.array(chosen).ravel()])
            rows = np.flatnonzero(np.isin(ie, moved) & (prob.cnt[l, ie] > 1))
            _replica_rows(prob, gpu, l, rows, Wn, Mn, cost)
        if before is not None:
            after = _window_cost(prob, gpu, l, l + 1)
            if not after < before - _REL_TOL * max(1.0, before):
                gpu[l] = old_l
                if len(chosen) == 1:
                    break
                a, b = chosen[0]
                gpu[l, a], gpu[l, b] = old_l[b], old_l[a]
                if not _window_cost(prob, gpu, l, l + 1) < before - _REL_TOL * max(1.0, before):
                    gpu[l] = old_l
                    break
        changed = True
    return changed


def _disjoint(prob: Problem, g: np.ndarray, ie: np.ndarray, a_idx: np.ndarray,
              b_idx: np.ndarray) -> list[tuple[int, int]]:
    """Greedy set of swaps (best first) whose gains stay valid together.

    Without a cap or replicas, instance-disjoint swaps are independent; with a cap the GPUs must
    be disjoint (loads), with replicas the GPUs (duplicate checks) and the experts
    (nearest-replica sets) too. ``g``, ``ie``: ``[P]`` GPU and expert of each instance.
    """
    strict = prob.capped or prob.replicated
    used_i: set[int] = set()
    used_g: set[int] = set()
    used_e: set[int] = set()
    out = []
    for a, b in zip(a_idx[:8 * prob.P].tolist(), b_idx[:8 * prob.P].tolist()):
        if a in used_i or b in used_i:
            continue
        ga, gb, ea, eb = int(g[a]), int(g[b]), int(ie[a]), int(ie[b])
        if strict and (ga in used_g or gb in used_g):
            continue
        if prob.replicated and (ea in used_e or eb in used_e):
            continue
        used_i.update((a, b))
        used_g.update((ga, gb))
        used_e.update((ea, eb))
        out.append((a, b))
    return out


def _renaming(prob: Problem, M: np.ndarray) -> np.ndarray | None:
    """Best GPU renaming ``perm [G]`` for cost ``M[b, c]`` among topology automorphisms, or None.

    Renaming must keep every hop (else the suffix's own transitions would change): nodes map to
    nodes as blocks, then GPUs within the node pair; checked against ``hop`` at the end.
    """
    G, gpn = prob.G, prob.gpus_per_node
    N = G // gpn
    if N > 1 and gpn > 1:
        Mn = M.reshape(N, gpn, N, gpn)
        # node-level cost: best within-node matching for every node pair
        node_cost = np.empty((N, N))
        inner = {}
        for k in range(N):
            for q in range(N):
                r, c = linear_sum_assignment(Mn[k, :, q, :])
                node_cost[k, q] = Mn[k, r, q, c].sum()
                inner[k, q] = c
        _, sigma = linear_sum_assignment(node_cost)
        perm = np.concatenate([sigma[k] * gpn + inner[k, sigma[k]] for k in range(N)])
    else:
        _, perm = linear_sum_assignment(M)
    if np.array_equal(perm, np.arange(G)) or not np.array_equal(prob.hop[np.ix_(perm, perm)], prob.hop):
        return None
    return perm


def _relabel_suffixes(prob: Problem, gpu: np.ndarray, deadline: float) -> bool:
    """Multi-layer move (coherent): rename the GPUs of all layers from l on by a permutation.

    Layer-by-layer descent gets stuck when two runs of layers use different GPU labels for the
    same groups; renaming a suffix changes only the l-1 -> l transition, and the best renaming
    is a linear assignment on the G x G traffic matrix: ``M[b, c] = sum_a T[a, b] hop[a, c]``.
    Loads, counts and replica rules are invariant under renaming. True if anything improved.
    """
    if prob.W is None or prob.G == 1:
        return False
    changed = False
    for l in range(1, prob.L):
        if time.perf_counter() >= deadline:
            break
        ia, ib = prob.inst_expert[l - 1], prob.inst_expert[l]
        w = prob.W[l - 1][np.ix_(ia, ib)] / np.outer(prob.cnt[l - 1, ia], prob.cnt[l, ib])
        T = np.zeros((prob.G, prob.G))
        np.add.at(T, (gpu[l - 1][:, None], gpu[l][None, :]), w)
        M = T.T @ prob.hop                      # [b, c]
        perm = _renaming(prob, M)
        if perm is None:
            continue
        old = float(np.trace(M))
        if not M[np.arange(prob.G), perm].sum() < old - _REL_TOL * max(1.0, abs(old)) * 10:
            continue
        if prob.replicated:
            before = _window_cost(prob, gpu, l, l + 1)
            saved = gpu[l:].copy()
            gpu[l:] = perm[gpu[l:]]
            after = _window_cost(prob, gpu, l, l + 1)
            if not after < before - _REL_TOL * max(1.0, before):
                gpu[l:] = saved
                continue
        else:
            gpu[l:] = perm[gpu[l:]]
        changed = True
    return changed


def refine(prob: Problem, gpu: np.ndarray, deadline: float, layers: range | None = None) -> int:
    """Sweep layers (forward, then backward, ...) until a sweep changes nothing; returns sweeps.

    ``layers``: only these layers (a window around a perturbation); the whole model otherwise,
    with the suffix renaming move after each sweep.
    """
    use_lsa = prob.W is not None and not prob.replicated
    order = list(layers if layers is not None else range(prob.L))
    sweeps = 0
    while time.perf_counter() < deadline:
        sweeps += 1
        changed = False
        for l in order:
            if time.perf_counter() >= deadline:
                break
            if use_lsa:
                changed |= _lsa_layer(prob, gpu, l)
            changed |= _swap_layer(prob, gpu, l)
        if layers is None:
            changed |= _relabel_suffixes(prob, gpu, deadline)
        order.reverse()
        if not changed or sweeps >= 100:
            break
    return sweeps


def perturb_and_refine(prob: Problem, gpu: np.ndarray, best_obj: float, kicks: int, seed: int,
                       deadline: float, advance=lambda n=1: None) -> tuple[float, int]:
    """Iterated local search: shuffle part of two adjacent layers, re-descend on a window around
    them, keep the result only if the whole objective drops. Escapes the local optima of
    one-layer moves (a pair of experts that should move together across layers).

    Returns ``(objective, accepted kicks)``; ``gpu`` is updated in place.
    """
    rng = np.random.default_rng([int(seed), 7919])
    accepted = 0
    for _ in range(kicks):
        if time.perf_counter() >= deadline or prob.G == 1:
            break
        advance(1)
        l = int(rng.integers(0, prob.L))
        hi = min(prob.L, l + 2)
        lo_w, hi_w = max(0, l - 1), min(prob.L, hi + 1)     # the window refine may change
        saved = gpu[lo_w:hi_w].copy()
        ok = True
        for m in range(l, hi):
            size = int(rng.integers(2, max(3, prob.P // 4) + 1))
            pick = rng.choice(prob.P, size=min(size, prob.P), replace=False)
            gpu[m, pick] = gpu[m, rng.permutation(pick)]
            if prob.replicated:
                try:
                    _fix_duplicates(prob, gpu, m)
                except PlacerError:
                    ok = False
            ok = ok and _fix_cap(prob, gpu, m)
        if ok:
            refine(prob, gpu, deadline, range(lo_w, hi_w))
            after = _window_cost(prob, gpu, lo_w, hi_w)
            gpu_new = gpu[lo_w:hi_w].copy()
            gpu[lo_w:hi_w] = saved
            before = _window_cost(prob, gpu, lo_w, hi_w)
            if after < before - _REL_TOL * max(1.0, abs(best_obj)):
                gpu[lo_w:hi_w] = gpu_new
                best_obj -= before - after
                accepted += 1
            continue
        gpu[lo_w:hi_w] = saved
    if accepted:
        best_obj = objective(prob, gpu)     # exact again, free of summed rounding
    return best_obj, accepted


# ----------------------------------------------------------------------------- feasibility
def _packing(prob: Problem, l: int) -> np.ndarray:
    """``[P]`` GPUs from EPLB's balanced packing (heaviest instance first onto the lightest GPU
    with a free slot and no copy of the same expert). Ignores traffic."""
    pack, _ = balanced_packing(prob.inst_load[l][None], prob.G, labels=prob.inst_expert[l][None])
    return pack[0]


def _repair_counts(prob: Problem, gpu: np.ndarray, l: int) -> int:
    """Exact balance (S instances per GPU) by minimum-loss single moves; returns moves made."""
    ie = prob.inst_expert[l]
    moves = 0
    cost = None
    while True:
        counts = np.bincount(gpu[l], minlength=prob.G)
        over, under = counts > prob.S, counts < prob.S
        if not over.any():
            return moves
        if cost is None:
            # computed once: with replicas the costs of a moved expert's other copies go stale,
            # which only guides the choice; balance itself is exact
            cost = move_costs(prob, gpu, l)
        cur = cost[np.arange(prob.P), gpu[l]]
        delta = cost - cur[:, None]
        delta[~over[gpu[l]]] = np.inf
        delta[:, ~under] = np.inf
        if prob.replicated:
            has = np.zeros((prob.E, prob.G), bool)
            has[ie, gpu[l]] = True
            dup = np.where(has[ie], np.inf, 0.0)
            if np.isfinite(delta + dup).any():
                delta = delta + dup
        x, g = np.unravel_index(int(np.argmin(delta)), delta.shape)
        gpu[l, x] = g
        moves += 1


def _fix_duplicates(prob: Problem, gpu: np.ndarray, l: int) -> None:
    """Swap replicas apart until no GPU holds two instances of one expert (cheapest swap first)."""
    if not prob.replicated:
        return
    ie = prob.inst_expert[l]
    cost = None
    for _ in range(prob.P * 2):
        cnt = np.zeros((prob.E, prob.G), np.int64)
        np.add.at(cnt, (ie, gpu[l]), 1)
        dups = np.argwhere(cnt > 1)
        if not len(dups):
            return
        e, g = dups[0]
        x = int(np.flatnonzero((ie == e) & (gpu[l] == g))[-1])
        if cost is None:
            cost = move_costs(prob, gpu, l)   # once per layer: it only ranks candidate swaps
        cur = cost[np.arange(prob.P), gpu[l]]
        h = gpu[l]
        ok = (h != g) & (cnt[e, h] == 0) & (cnt[ie, g] == 0) & (ie != e)
        if not ok.any():
            break
        delta = (cost[x, h] - cur[x]) + (cost[:, g] - cur)
        y = int(np.argmin(np.where(ok, delta, np.inf)))
        gpu[l, x], gpu[l, y] = h[y], g
    gpu[l] = _dealt(prob, l)     # single swaps got stuck: a construction that always works


def _dealt(prob: Problem, l: int) -> np.ndarray:
    """``[P]`` a duplicate-free balanced assignment: instances grouped by expert, dealt to GPUs
    in turn (an expert's <= G instances sit in consecutive positions, so on distinct GPUs)."""
    out = np.empty(prob.P, np.int64)
    out[np.argsort(prob.inst_expert[l], kind="stable")] = np.arange(prob.P) % prob.G
    return out


def _fix_cap(prob: Problem, gpu: np.ndarray, l: int) -> bool:
    """Swaps that cut the load above the cap (cheapest in traffic among the best); True if met."""
    cap = prob.cap[l]
    if not np.isfinite(cap):
        return True
    ie, ld = prob.inst_expert[l], prob.inst_load[l]
    cost = None
    for _ in range(prob.P * 4):
        g = gpu[l]
        loads = _gpu_loads(prob, l, g)
        if loads.max() <= cap:
            return True
        diff = ld[None, :] - ld[:, None]
        new_a = loads[g][:, None] + diff
        new_b = loads[g][None, :] - diff
        exc = np.maximum(loads - cap, 0.0)
        change = (np.maximum(new_a - cap, 0) + np.maximum(new_b - cap, 0)
                  - exc[g][:, None] - exc[g][None, :])
        bad = (g[:, None] == g[None, :]) | (ie[:, None] == ie[None, :])
        if prob.replicated:
            has = np.zeros((prob.E, prob.G), bool)
            has[ie, g] = True
            hb = has[ie][:, g]
            bad |= hb | hb.T
        change[bad] = np.inf
        best = change.min()
        if not best < -1e-9 * max(1.0, cap):
            return False
        if cost is None:
            cost = move_costs(prob, gpu, l)   # once per layer: it only breaks ties in traffic
        cur = cost[np.arange(prob.P), g]
        D = cost - cur[:, None]
        M = D[:, g]
        delta = np.where(change <= best + 1e-9 * max(1.0, cap), M + M.T, np.inf)
        a, b = np.unravel_index(int(np.argmin(delta)), delta.shape)
        gpu[l, a], gpu[l, b] = g[b], g[a]
    return bool(_gpu_loads(prob, l, gpu[l]).max() <= cap)


def make_feasible(prob: Problem, gpu: np.ndarray) -> None:
    """Exact balance, distinct replica GPUs and the load cap in every layer, in place."""
    for l in range(prob.L):
        _repair_counts(prob, gpu, l)
        _fix_duplicates(prob, gpu, l)
        if _fix_cap(prob, gpu, l):
            continue
        gpu[l] = _packing(prob, l)
        _fix_duplicates(prob, gpu, l)
        if not _fix_cap(prob, gpu, l):
            mean = prob.load[l].sum() / prob.G
            got = _gpu_loads(prob, l, gpu[l]).max() / mean
            raise PlacerError(f"no placement found with per-layer load max/mean <= {prob.cap[l] / mean:.3f} at MoE layer {l} "
                              f"(best found {got:.3f}); raise --max-imbalance or add --replicas")


def _check_cap_feasible(prob: Problem) -> None:
    """Fail early when one instance alone exceeds the cap (no placement can meet it)."""
    for l in range(prob.L):
        if np.isfinite(prob.cap[l]) and prob.inst_load[l].max() > prob.cap[l]:
            mean = prob.load[l].sum() / prob.G
            need = prob.inst_load[l].max() / mean
            raise PlacerError(f"--max-imbalance {prob.cap[l] / mean:.3f} is impossible at MoE layer {l}: one expert "
                              f"{'replica ' if prob.replicated else ''}alone carries {need:.3f}x the mean GPU load; "
                              f"use --max-imbalance {np.ceil(need * 1000) / 1000:.3f} or more, or add --replicas")


# ----------------------------------------------------------------------------- starts
def _top_edges(u: np.ndarray, v: np.ndarray, w: np.ndarray, n: int, degree: int) -> np.ndarray:
    """``[m]`` bool: edges among the ``degree`` heaviest of either endpoint (sparsifies the graph)."""
    keep = np.zeros(len(w), bool)
    for end in (u, v):
        order = np.lexsort((-w, end))                  # by vertex, heaviest first
        sorted_end = end[order]
        first = np.searchsorted(sorted_end, sorted_end, side="left")
        rank = np.arange(len(order)) - first
        keep[order[rank < degree]] = True
    return keep


def _graph_edges(prob: Problem, degree: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undirected edges ``(u, v, w)`` of the instance graph (vertex ``l * P + x``), w > 0 ints.

    An edge between replicated experts is split over their instance pairs (weight / (c_i c_j)).
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
        keep = _top_edges(u, v, w, prob.L * P, degree)
        u, v, w = u[keep], v[keep], w[keep]
    if len(w) == 0:
        return u.astype(np.int64), v.astype(np.int64), np.zeros(0, np.int64)
    # METIS needs integer weights; 1e6 levels keep the relative error below 1e-6 of the largest.
    wi = np.maximum(1, np.rint(w / w.max() * 1e6)).astype(np.int64)
    return u.astype(np.int64), v.astype(np.int64), wi


def _metis(vertices: np.ndarray, edges: tuple, L: int, P: int, nparts: int, seed: int) -> np.ndarray:
    """Parts ``[len(vertices)]`` of the subgraph induced by ``vertices`` (one constraint per layer)."""
    from placer.solvers.partition.metis import csr_from_edges, part_graph_kway
    u, v, w = edges
    n_all = L * P
    local = np.full(n_all, -1, np.int64)
    local[vertices] = np.arange(len(vertices))
    keep = (local[u] >= 0) & (local[v] >= 0)
    xadj, adj, adjw = csr_from_edges(len(vertices), local[u[keep]], local[v[keep]], w[keep])
    layer = vertices // P
    present = np.unique(layer)
    vwgt = (layer[:, None] == present[None, :]).astype(np.int64)
    return part_graph_kway(xadj, adj, adjw, vwgt, nparts, seed=seed)


def metis_start(prob: Problem, seed: int, degree: int | None = None) -> np.ndarray:
    """``[L, P]`` GPUs from hierarchical multi-constraint METIS, repaired to exact balance."""
    L, P, G, gpn = prob.L, prob.P, prob.G, prob.gpus_per_node
    edges = _graph_edges(prob, degree)
    allv = np.arange(L * P)
    N = G // gpn
    if N > 1 and gpn > 1:
        node = _metis(allv, edges, L, P, N, seed).reshape(L, P)
        node_hop = prob.hop.reshape(N, gpn, N, gpn).mean(axis=(1, 3))
        np.fill_diagonal(node_hop, 0.0)
        nprob = Problem(L, prob.E, N, prob.S * gpn, 1, node_hop, prob.W, prob.C, prob.load, prob.cnt,
                        prob.inst_expert, prob.inst_load, np.full(L, np.inf))
        for l in range(L):
            _repair_counts(nprob, node, l)
        gpu = np.empty((L, P), np.int64)
        flat_node = node.ravel()
        for k in range(N):
            verts = np.flatnonzero(flat_node == k)
            part = _metis(verts, edges, L, P, gpn, seed + k + 1)
            gpu.ravel()[verts] = k * gpn + part
    else:
        gpu = _metis(allv, edges, L, P, G, seed).reshape(L, P)
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


def _metis_degree(prob: Problem, degree: int | None) -> int | None:
    """Edges kept per vertex for METIS: all on small graphs; the 8 heaviest from 10^6 edges on
    (DeepSeek-V3 shape, planted data, loaded 2-core machine: all edges 22 s and a start 9% above
    the planted score; 8 per vertex 7-13 s and 0.1% above)."""
    if degree is not None:
        return degree or None
    n_edges = (prob.L - 1) * prob.P * prob.P if prob.W is not None else prob.L * prob.P * prob.P // 2
    return 8 if n_edges >= 1_000_000 else None


def random_start(prob: Problem, seed: int, k: int) -> np.ndarray:
    """``[L, P]`` GPUs: a uniformly random balanced assignment per layer."""
    rng = np.random.default_rng([int(seed), int(k)])
    gpu = np.empty((prob.L, prob.P), np.int64)
    slots = np.arange(prob.P) // prob.S
    for l in range(prob.L):
        gpu[l, rng.permutation(prob.P)] = slots
    return gpu


def to_placement(prob: Problem, gpu: np.ndarray) -> Placement:
    """Slots of each GPU hold its instances in ascending expert id (deterministic phy2log)."""
    phy = np.stack([prob.inst_expert[l][np.lexsort((prob.inst_expert[l], gpu[l]))] for l in range(prob.L)])
    return Placement(phy, prob.E, prob.G, prob.gpus_per_node)


def max_imbalance(prob: Problem, gpu: np.ndarray) -> float:
    """Largest per-layer max/mean GPU load (replicas carry load / count), the load cost model."""
    return max(_imbalance(prob, l, gpu[l]) for l in range(prob.L))


# ----------------------------------------------------------------------------- solver
@dataclass(frozen=True)
class PartitionParams:
    starts: int = param(DEFAULT_STARTS, "starts refined (METIS first, then random; with replicas the replica-free "
                                        "solution first)", min=1)
    kicks: int = param(DEFAULT_KICKS, "iterated-local-search perturbations after the starts", min=0)
    metis: bool = param(True, "use METIS for a start (False: random starts only)")
    metis_degree: int | None = param(None, "edges kept per vertex for METIS (none: automatic, 8 from 10^6 edges "
                                           "on; 0: all)", min=0)
    bound: bool = param(True, "compute the lower bound (inside the time limit)")
    replica_imbalance: float = param(DEFAULT_REPLICA_IMBALANCE, "load cap (max/mean) with replicas when "
                                                                "--max-imbalance is not given", min=1.0)


@register("partition", "multi-constraint METIS + constraint-keeping swap refinement, best of several starts",
          PartitionParams, replicas=True)
def solve(profile: Profile, topology: Topology, constraints: Constraints, params: PartitionParams) -> SolveResult:
    """Scalable heuristic: hierarchical METIS and random starts, layer re-assignment and swaps."""
    with _single_thread_blas():
        return _solve(profile, topology, constraints, params)


def _single_thread_blas():
    """One BLAS thread: the search multiplies many small matrices, where a threaded BLAS on a
    busy 2-core machine was measured 20-30x slower (threads spin for each 256 x 64 product)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _solve(profile: Profile, topology: Topology, constraints: Constraints, params: PartitionParams) -> SolveResult:
    t0 = time.perf_counter()
    prob = build_problem(profile, topology, constraints, params.replica_imbalance)
    _check_cap_feasible(prob)
    deadline = t0 + float(constraints.time_limit)
    # the bound first: its time comes out of the same limit, so the total stays within it
    tb = time.perf_counter()
    bound, bound_name = _bound(profile, topology, constraints) if params.bound else (None, None)
    timings = {"bound_s": time.perf_counter() - tb}
    use_metis = params.metis and prob.G > 1
    with progress("partition: starts", total=params.starts, unit="starts") as advance:
        starts, best_gpu, best_obj = _run_starts(prob, profile, topology, constraints, params, use_metis,
                                                 deadline, advance)
    timings["starts_s"] = [s.pop("time_s") for s in starts]
    with progress("partition: local search", total=params.kicks, unit="kicks") as advance:
        best_obj, accepted = perturb_and_refine(prob, best_gpu, best_obj, params.kicks, constraints.seed, deadline,
                                                advance)
    ratios = prob.cap / np.where(prob.load.sum(1) > 0, prob.load.sum(1) / prob.G, np.inf)
    details = {"starts": starts, "best_start": int(np.argmin([s["objective"] for s in starts])),
               "hit_time_limit": time.perf_counter() >= deadline,
               "max_imbalance": max_imbalance(prob, best_gpu),
               "load_cap": float(ratios[np.isfinite(ratios)].max()) if np.isfinite(ratios).any() else None,
               "kicks": params.kicks, "kicks_accepted": accepted}
    return SolveResult(to_placement(prob, best_gpu), "partition", Status.HEURISTIC, Objective(constraints.cost).name,
                       objective=float(best_obj), bound=bound, bound_method=bound_name, details=details,
                       timings=timings)


def _run_starts(prob: Problem, profile: Profile, topology: Topology, constraints: Constraints,
                params: PartitionParams, use_metis: bool, deadline: float, advance) -> tuple[list[dict], np.ndarray, float]:
    """Each start made feasible and refined; returns (per-start records, best ``gpu``, its objective)."""
    starts: list[dict] = []
    best_gpu, best_obj = None, np.inf
    for k in range(params.starts):
        # a start cannot be interrupted before its refinement: skip one that would not fit,
        # judging by the previous start's time
        if k > 0 and time.perf_counter() + starts[-1]["time_s"] > deadline:
            break
        ts = time.perf_counter()
        kind, gpu = "random", None
        # with replicas, the replica-free solution (fast) goes first, METIS on the larger
        # instance graph second
        metis_k = 1 if prob.replicated else 0
        if k == 0 and prob.replicated:
            gpu = replica_free_start(prob, profile, topology, constraints, deadline, params.replica_imbalance)
            kind = "replica-free" if gpu is not None else kind
        if k == metis_k and use_metis:
            try:
                kind, gpu = "metis", metis_start(prob, constraints.seed, _metis_degree(prob, params.metis_degree))
            except PlacerError as exc:        # METIS library unusable: the random starts still work
                kind = f"random (METIS unavailable: {exc})"
        if gpu is None:
            gpu = random_start(prob, constraints.seed, k)
        make_feasible(prob, gpu)
        start_obj = objective(prob, gpu)
        sweeps = refine(prob, gpu, deadline)
        obj = objective(prob, gpu)
        starts.append({"start": kind, "initial": start_obj, "objective": obj, "sweeps": sweeps,
                       "time_s": time.perf_counter() - ts})
        if obj < best_obj - _REL_TOL * max(1.0, abs(best_obj) if np.isfinite(best_obj) else 1.0):
            best_gpu, best_obj = gpu.copy(), obj
        advance(1)
    return starts, best_gpu, best_obj


def _bound(profile: Profile, topology: Topology, constraints: Constraints) -> tuple[float | None, str | None]:
    """The lower bound of :mod:`placer.solvers.bounds` (same units as the objective)."""
    from placer.solvers.bounds import lower_bound

    value, name = lower_bound(profile, topology, constraints)
    return (None if value is None else float(value)), name
