"""Exact placement models on aggregated statistics (never a variable per token).

Registered solvers (``constraints.backend`` picks cpsat / highs / cbc / any PuLP solver):

- ``exflow``: ExFlow's objective, the weighted cut of the layered affinity graph
  ``sum_l sum_ij trans[l,i,j]/K^2 hop(g(l,i), g(l+1,j))`` with exactly S experts per GPU per
  layer and two-level hop costs (1 within a node, ``inter_node_cost`` across), optionally under
  ``max_imbalance``.
- ``joint``: the same communication term (or, with ``cost="ep"``, the within-layer co-activation
  cut ``sum_l sum_{i<j} coact[l,i,j] hop(g(l,i), g(l,j))``) plus ``options["load_weight"]`` x
  ``sum_l max_g load(l, g)`` (token picks), under ``max_imbalance``.
- ``moetuner``: MoETuner's two ILPs. Stage 1, per layer: experts into G clusters of S, each
  expert in exactly one cluster (the constraint the paper leaves out), minimising the largest
  cluster load. Stage 2, layer by layer: map layer l's clusters onto GPUs minimising the worst
  bandwidth-normalised GPU-pair traffic from layer l-1 (a bottleneck assignment, solved as an
  ILP; ties broken by the most traffic kept local). Each stage is exact; the two-stage result
  is not proven optimal for the coherent cost.
- ``layer_descent``: the exact-per-layer local search of :mod:`.local`, then load-keeping swaps
  (a heuristic; also for ``cost="ep"`` and ``max_imbalance``).

Formulations (``options["formulation"]``):

- ``auto`` (default): ``dp`` when it applies, else ``compact``.
- ``dp``: the layer-chain dynamic programme of :mod:`.chain` (exact, any hop matrix, load limits
  and weights, ep), when a layer has at most ``chain.MAX_STATES`` balanced assignments; with one
  expert per GPU and uniform hops, chained maximum-weight matchings (exact for any E).

- ``compact`` (default, Glover-style): binary ``x[l,e,g]``; for each expert i of layer l and
  GPU g one variable ``z[l,i,g] <= U_i x[l,i,g]``, ``z[l,i,g] <= sum_j W[l,i,j] x[l+1,j,g]``
  whose sum is the weight kept on GPUs; ``U_i`` is the weight of i's S strongest partners
  (a tighter big-M than the row sum). Node level the same with node indicators. ``L E G``
  auxiliary variables instead of one per affinity edge and GPU.
- ``naive``: ``y[l,i,j,g] <= x[l,i,g], y <= x[l+1,j,g]`` per affinity edge and GPU.

The objective is minimised as ``(h + extra) W_tot - h sum z - extra sum zN`` on the integer
counts ``trans`` (the coherent units times ``K^2``), so CP-SAT needs no scaling for integer hops.
Every compact model also gets, per layer pair (and node level), the row "kept weight <= the
b-matching value of :mod:`placer.solvers.bounds`": it lifts the LP bound to at least the
combinatorial bound (docs/benchmarks.md: from 2-95% to 98% of the optimum on Mixtral layers).
Symmetry breaking: GPUs of a node and nodes are interchangeable, so on layer 0 the GPUs of each
node are ordered by their smallest expert, and nodes likewise (expert e may sit on GPU m of a
node only if GPU m-1 holds a smaller expert). Warm start: the best layer descent, relabelled to
satisfy those orderings (plus load-keeping swaps under ``max_imbalance`` or for ``ep``). The reported bound is the max of the backend's proven bound and
:func:`placer.solvers.bounds.lower_bound`.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np

from placer.errors import PlacerError
from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.solvers.base import Constraints, SolveResult, register
from placer.solvers.bounds import hop_levels, keep_upper_bound, lower_bound
from placer.solvers.local_search import (balanced_gpu_of, best_descent, coherent_objective,
                                        contiguous_gpu_of, pair_cut_objective, swap_descent)
from placer.solvers.exact.milp import LinearModel, backend_name, solve_model
from placer.model.topology import Topology


# ------------------------------------------------------------------ checks
def check_exact_input(profile: Profile, topology: Topology, constraints: Constraints, solver: str) -> int:
    """S, or a :class:`PlacerError` for what the exact models cannot take."""
    S = constraints.slots_per_gpu(profile.num_experts, topology.num_gpus)
    if constraints.replicas:
        raise PlacerError(f"the {solver} model places every expert exactly once; for --replicas use "
                          f"--solver eplb or partition")
    if constraints.cost not in ("coherent", "ep"):
        raise PlacerError(f"unknown cost model '{constraints.cost}'; use coherent or ep")
    if constraints.cost == "coherent" and profile.trans is None:
        raise PlacerError("the coherent cost needs inter-layer transition counts, which this input lacks; "
                          "give a per-token trace, or use --cost ep")
    return S


def two_level_hops(topology: Topology) -> tuple[float, float]:
    """``(h, extra)`` with ``hop = h [a != b] + extra [other node]`` exactly, else a PlacerError."""
    h, extra = hop_levels(topology)
    G = topology.num_gpus
    model = h * (1 - np.eye(G)) + extra * topology.inter_node
    if not np.allclose(model, topology.hop, rtol=1e-9, atol=1e-12):
        raise PlacerError("the exact models need one hop cost within nodes and one across nodes; this topology "
                          "has more levels: use --solver partition or layer_descent")
    return h, extra


def imbalance_floor(profile: Profile, num_gpus: int) -> tuple[float, int]:
    """``(floor, layer)``: no replica-free placement has max/mean GPU load below
    ``max_e load[l, e] * G / sum_e load[l, e]`` in layer l (the GPU holding the hottest expert)."""
    load = profile.load.astype(np.float64)
    tot = load.sum(axis=1)
    ratio = np.where(tot > 0, load.max(axis=1) * num_gpus / np.where(tot > 0, tot, 1), 1.0)
    l = int(np.argmax(ratio))
    return float(max(1.0, ratio[l])), l


def gpu_load_caps(profile: Profile, num_gpus: int, max_imbalance: float | None) -> np.ndarray | None:
    """``[L]`` largest allowed GPU load per layer for ``max_imbalance`` (None: no limit)."""
    if max_imbalance is None:
        return None
    if max_imbalance < 1.0:
        raise PlacerError(f"--max-imbalance {max_imbalance} is below 1, which no placement reaches (max/mean >= 1)")
    floor, l = imbalance_floor(profile, num_gpus)
    if max_imbalance < floor - 1e-12:
        raise PlacerError(f"--max-imbalance {max_imbalance:g} is infeasible: without replicas no placement beats the "
                          f"hottest expert's load x G / total = {floor:.4f} (layer {l}); raise it to >= {floor:.4f} "
                          f"or use --replicas with --solver eplb/partition")
    tot = profile.load.astype(np.float64).sum(axis=1)
    cap = max_imbalance * tot / num_gpus
    if np.issubdtype(profile.load.dtype, np.integer):
        cap = np.floor(cap + 1e-9)
    return cap


# ----------------------------------------------------------- relabelling
def canonical_relabel(gpu_of: np.ndarray, num_gpus: int, gpus_per_node: int) -> np.ndarray:
    """Relabel GPUs (within nodes, and whole nodes) so layer 0 meets the symmetry-breaking order:
    nodes by their smallest layer-0 expert, GPUs of a node likewise. Costs are unchanged."""
    G, gpn = num_gpus, gpus_per_node
    N = G // gpn
    first = np.array([np.flatnonzero(gpu_of[0] == g).min() if np.any(gpu_of[0] == g) else 10 ** 9 for g in range(G)])
    node_min = first.reshape(N, gpn).min(axis=1)
    node_order = np.argsort(node_min, kind="stable")
    new_label = np.empty(G, np.int64)
    for new_n, old_n in enumerate(node_order):
        gpus = np.arange(old_n * gpn, (old_n + 1) * gpn)
        for k, old_g in enumerate(gpus[np.argsort(first[gpus], kind="stable")]):
            new_label[old_g] = new_n * gpn + k
    return new_label[gpu_of]


# ------------------------------------------------------------ the models
def _integer_counts(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if np.issubdtype(a.dtype, np.integer) or np.all(a == np.round(a)):
        return a.astype(np.int64)
    return a.astype(np.float64)


def _top_sum(row: np.ndarray, k: int) -> float:
    if k <= 0:
        return 0.0
    k = min(k, len(row))
    return float(np.sort(row)[::-1][:k].sum())


def build_model(profile: Profile, topology: Topology, constraints: Constraints, S: int,
                load_weight: float = 0.0, caps: np.ndarray | None = None,
                formulation: str = "compact", symmetry: bool = True, cuts: bool = True, two_sided: bool = False) -> tuple[LinearModel, np.ndarray, Callable, float]:
    """The placement MILP; returns ``(model, x [L,E,G] var ids, hint(gpu_of) -> vector, unit)``.

    ``model`` objective / ``unit`` = the cost model's value (+ ``load_weight`` x sum of max loads).
    """
    if formulation not in ("compact", "naive"):  # (auto/dp are handled before a MILP is built)
        raise PlacerError(f"unknown formulation '{formulation}'; use compact or naive")
    L, E, G = profile.num_layers, profile.num_experts, topology.num_gpus
    gpn, N = topology.gpus_per_node, topology.num_nodes
    h, extra = two_level_hops(topology)
    m = LinearModel()
    x = m.add_vars((L, E, G))
    for l in range(L):
        for e in range(E):
            m.add_row(x[l, e], 1.0, 1.0, 1.0)
        for g in range(G):
            m.add_row(x[l, :, g], 1.0, S, S)
    if symmetry and G > 1:
        for n in range(N):
            for k in range(gpn):
                g = n * gpn + k
                prev = g - 1 if k > 0 else (g - gpn if n > 0 else None)
                if prev is None:
                    continue
                # GPU g may take expert e only if its predecessor holds a smaller one; for k == 0
                # the predecessor is the first GPU of the previous node (nodes ordered by min)
                for e in range(E):
                    if e == 0:
                        m.ub[int(x[0, 0, g])] = 0.0
                    else:
                        m.add_row(np.concatenate([[x[0, e, g]], x[0, :e, prev]]),
                                  np.concatenate([[1.0], -np.ones(e)]), hi=0.0)
    aux: list[tuple[str, Any]] = []
    unit = float(profile.top_k ** 2) if constraints.cost == "coherent" else 2.0
    if G > 1:
        if constraints.cost == "coherent":
            Ws = [_integer_counts(profile.trans[l]) for l in range(L - 1)]
            pairs = [(l, l + 1, Ws[l], S, gpn * S) for l in range(L - 1)]
        else:
            pairs = []
            for l in range(L):
                C = _integer_counts(profile.coact[l]).copy()
                np.fill_diagonal(C, 0)
                pairs.append((l, l, C, S - 1, gpn * S - 1))
        for la, lb_, W, deg, ndeg in pairs:
            m.offset += (h + extra) * float(W.sum())
            for level, coef, groups, d in (("gpu", h, [[g] for g in range(G)], deg),
                                           ("node", extra, [list(range(n * gpn, (n + 1) * gpn)) for n in range(N)], ndeg)):
                if coef <= 0 or (level == "node" and N == 1):
                    continue
                kept: list[np.ndarray] = []
                zs: list[np.ndarray] = []
                for i in range(E):
                    nz = np.flatnonzero(W[i])
                    if len(nz) == 0:
                        continue
                    if formulation == "compact":
                        U = _top_sum(W[i, nz], d)
                        z = m.add_vars(len(groups), 0.0, U, integer=False)
                        for k, grp in enumerate(groups):
                            m.add_row(np.concatenate([[z[k]], x[la, i, grp]]), np.concatenate([[1.0], -U * np.ones(len(grp))]), hi=0.0)
                            cols = x[lb_][np.ix_(nz, grp)].ravel()
                            m.add_row(np.concatenate([[z[k]], cols]),
                                      np.concatenate([[1.0], -np.repeat(W[i, nz].astype(np.float64), len(grp))]), hi=0.0)
                        m.add_obj(z, -coef)
                        kept.append(z)
                        if two_sided:
                            zs.append(z)
                        aux.append(("z", (z, la, lb_, i, W[i], groups)))
                    else:
                        y = m.add_vars((len(nz), len(groups)), 0.0, 1.0, integer=False)
                        for a, j in enumerate(nz):
                            for k, grp in enumerate(groups):
                                m.add_row(np.concatenate([[y[a, k]], x[la, i, grp]]), np.concatenate([[1.0], -np.ones(len(grp))]), hi=0.0)
                                m.add_row(np.concatenate([[y[a, k]], x[lb_, j, grp]]), np.concatenate([[1.0], -np.ones(len(grp))]), hi=0.0)
                            m.add_obj(y[a], -coef * float(W[i, j]))
                        aux.append(("y", (y, la, lb_, i, nz, groups)))
                if two_sided and formulation == "compact" and kept:
                    # the same kept weight seen from layer lb_'s experts: per group, the row-side
                    # sum may not exceed the column-side one (equal at integer points)
                    for k, grp in enumerate(groups):
                        colside = []
                        for j in range(E):
                            nzc = np.flatnonzero(W[:, j])
                            if len(nzc) == 0:
                                continue
                            Uc = _top_sum(W[nzc, j], d)
                            zc = m.add_vars(1, 0.0, Uc, integer=False)[0]
                            m.add_row(np.concatenate([[zc], x[lb_, j, grp]]), np.concatenate([[1.0], -Uc * np.ones(len(grp))]), hi=0.0)
                            rows_ = x[la][np.ix_(nzc, grp)].ravel()
                            m.add_row(np.concatenate([[zc], rows_]),
                                      np.concatenate([[1.0], -np.repeat(W[nzc, j].astype(np.float64), len(grp))]), hi=0.0)
                            colside.append(zc)
                            aux.append(("zc", (zc, la, lb_, j, W[:, j], grp)))
                        rowside = [z[k] for z in zs]
                        m.add_row(np.concatenate([rowside, colside]),
                                  np.concatenate([np.ones(len(rowside)), -np.ones(len(colside))]), hi=0.0)
                    zs.clear()
                if cuts and formulation == "compact" and kept:
                    # the bound's b-matching caps the weight kept on GPUs (nodes) of this layer
                    # pair: a valid cut that lifts the LP bound to at least lower_bound's
                    size = len(groups[0]) * S
                    cap = keep_upper_bound(W, min(E - (la == lb_), d), len(groups) * size * (size - (la == lb_)),
                                           diagonal=la != lb_)
                    m.add_row(np.concatenate(kept), 1.0, hi=math.floor(cap + 1e-9) if W.dtype.kind == "i" else cap)
    load = profile.load.astype(np.float64)
    if caps is not None:
        for l in range(L):
            for g in range(G):
                m.add_row(x[l, :, g], load[l], hi=float(caps[l]))
    mvars = None
    if load_weight > 0:
        mvars = m.add_vars(L, 0.0, float(load.sum(axis=1).max()), integer=False)
        for l in range(L):
            for g in range(G):
                m.add_row(np.concatenate([x[l, :, g], [mvars[l]]]), np.concatenate([load[l], [-1.0]]), hi=0.0)
        m.add_obj(mvars, load_weight * unit)

    def hint(gpu_of: np.ndarray) -> np.ndarray:
        v = np.zeros(m.num_vars)
        Lr = np.arange(L)[:, None]
        v[x[Lr, np.arange(E)[None, :], gpu_of]] = 1.0
        for kind, data in aux:
            if kind == "z":
                z, la, lb_, i, Wi, groups = data
                for k, grp in enumerate(groups):
                    if gpu_of[la, i] in grp:
                        v[z[k]] = float(Wi[np.isin(gpu_of[lb_], grp)].sum())
            elif kind == "zc":
                zc, la, lb_, j, Wc, grp = data
                if gpu_of[lb_, j] in grp:
                    v[zc] = float(Wc[np.isin(gpu_of[la], grp)].sum())
            else:
                y, la, lb_, i, nz, groups = data
                for a, j in enumerate(nz):
                    for k, grp in enumerate(groups):
                        v[y[a, k]] = float(gpu_of[la, i] in grp and gpu_of[lb_, j] in grp)
        if mvars is not None:
            for l in range(L):
                v[mvars[l]] = np.bincount(gpu_of[l], weights=load[l], minlength=G).max()
        return v

    return m, x, hint, unit


def decode(values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``gpu_of [L, E]`` from a solution vector."""
    return np.argmax(values[x], axis=2).astype(np.int64)


def objective_value(profile: Profile, topology: Topology, cost: str, gpu_of: np.ndarray,
                    load_weight: float = 0.0) -> float:
    """The model objective recomputed exactly in cost-model units."""
    if cost == "coherent":
        val = coherent_objective(profile.transition_weights(), gpu_of, topology.hop)
    else:
        val = pair_cut_objective(profile.coact, gpu_of, topology.hop)
    if load_weight > 0:
        load = profile.load.astype(np.float64)
        G = topology.num_gpus
        val += load_weight * sum(np.bincount(gpu_of[l], weights=load[l], minlength=G).max() for l in range(len(load)))
    return float(val)


# ---------------------------------------------------------------- solving
def _warm_start(profile: Profile, topology: Topology, constraints: Constraints, caps, seconds: float):
    """A feasible start: layer descent (coherent), then load-keeping swaps where limits or the
    ep cut make the per-layer assignment inexact."""
    G = topology.num_gpus
    load = profile.load.astype(np.float64)
    start, name = None, None
    if constraints.cost == "coherent":
        start, _ = best_descent(profile, topology, constraints.seed, seconds, caps)
        name = "layer_descent"
    if start is None:
        for cand_name, cand in (("contiguous", contiguous_gpu_of(profile.num_layers, profile.num_experts, G)),
                                ("balanced", balanced_gpu_of(load, G))):
            if caps is None or all(np.bincount(cand[l], weights=load[l], minlength=G).max() <= caps[l] + 1e-9
                                   for l in range(profile.num_layers)):
                start, name = cand, cand_name
                break
    if start is None:
        return None, None
    if constraints.cost == "ep" or caps is not None:
        W = profile.transition_weights() if constraints.cost == "coherent" else None
        C = profile.coact if constraints.cost == "ep" else None
        start = swap_descent(start, topology.hop, W, C, load, caps)
        name += " + swaps"
    return start, name


def solve_exact(profile: Profile, topology: Topology, constraints: Constraints, solver: str,
                load_weight: float = 0.0) -> SolveResult:
    """Warm start, bound, MILP with the chosen backend, best of both (see module docstring)."""
    t0 = time.perf_counter()
    S = check_exact_input(profile, topology, constraints, solver)
    opts = constraints.options or {}
    caps = gpu_load_caps(profile, topology.num_gpus, constraints.max_imbalance)
    lb, lb_name = lower_bound(profile, topology, constraints)
    form = opts.get("formulation", "auto")
    if form in ("auto", "dp"):
        done = _solve_chain(profile, topology, constraints, solver, S, caps, load_weight, lb, lb_name, t0, form)
        if done is not None:
            return done
    two_level_hops(topology)
    warm, warm_name = _warm_start(profile, topology, constraints, caps, min(5.0, 0.1 * constraints.time_limit))
    notes: list[str] = []
    details: dict[str, Any] = {"backend": backend_name(constraints.backend),
                               "formulation": "compact" if form in ("auto", "dp") else form,
                               "lower_bound": lb, "lower_bound_name": lb_name}
    if warm is not None:
        warm = canonical_relabel(warm, topology.num_gpus, topology.gpus_per_node)
        warm_val = objective_value(profile, topology, constraints.cost, warm, load_weight)
        details["warm_start"] = {"from": warm_name, "objective": warm_val}
        if load_weight == 0 and warm_val <= lb + 1e-9 * max(1.0, abs(lb)):
            notes.append("the warm start meets the lower bound: optimal without the MILP")
            return _result(profile, topology, constraints, solver, warm, "optimal", warm_val, lb, t0, details, notes)
    model, x, hint, unit = build_model(profile, topology, constraints, S, load_weight, caps,
                                       details["formulation"], bool(opts.get("symmetry", True)),
                                       bool(opts.get("cuts", True)), bool(opts.get("two_sided", False)))
    details["model_size"] = model.size()
    if warm is not None and opts.get("warm_start", True):
        model.hint = hint(warm)
    remaining = constraints.time_limit - (time.perf_counter() - t0)
    res = solve_model(model, constraints.backend, remaining, constraints.seed, constraints.threads)
    notes.extend(res.notes)
    details.update({"backend_status": res.status, "backend_time_s": res.time_s})
    if res.status == "infeasible":
        if caps is not None:
            raise PlacerError(f"no placement meets --max-imbalance {constraints.max_imbalance:g} with {S} experts per GPU "
                              f"(the backend proved it infeasible); raise --max-imbalance or add --replicas")
        raise PlacerError("the placement model is infeasible; this is a bug, please report it")
    backend_bound = None if res.bound is None else res.bound / unit
    details["backend_bound"] = backend_bound
    bound = lb if backend_bound is None else max(lb, backend_bound)
    if res.values is None:
        if warm is None:
            raise PlacerError(f"the time limit ({constraints.time_limit:g} s) ran out before the {details['backend']} backend "
                              f"found any placement and no warm start meets the constraints; raise --time-limit")
        notes.append(f"time limit hit before the {details['backend']} backend found a solution: "
                     f"fell back to the {warm_name} warm start")
        gpu_of, status = warm, "feasible"
    else:
        gpu_of = decode(res.values, x)
        status = "optimal" if res.status == "optimal" else "feasible"
        if warm is not None:
            if objective_value(profile, topology, constraints.cost, gpu_of, load_weight) > warm_val + 1e-9:
                gpu_of = warm
                notes.append("the backend's incumbent was worse than the warm start; kept the warm start")
    obj = objective_value(profile, topology, constraints.cost, gpu_of, load_weight)
    if status == "optimal":
        bound = max(bound, obj) if res.status == "optimal" else bound
    if obj <= bound + 1e-9 * max(1.0, abs(obj)):
        status = "optimal"
    return _result(profile, topology, constraints, solver, gpu_of, status, obj, min(bound, obj), t0, details, notes)


def _solve_chain(profile, topology, constraints, solver, S, caps, load_weight, lb, lb_name, t0, form):
    """The exact chain methods of :mod:`.chain` when they apply (else None, or an error for ``dp``)."""
    from placer.solvers.exact import chain

    L, E, G = profile.num_layers, profile.num_experts, topology.num_gpus
    details: dict[str, Any] = {"lower_bound": lb, "lower_bound_name": lb_name}
    off = topology.hop[~np.eye(G, dtype=bool)]
    if constraints.cost == "coherent" and S == 1 and G > 1 and np.allclose(off, off[0]):
        g = chain.chain_assignment(profile.transition_weights(), E)
        details["formulation"] = "chain of assignments (S = 1: layer pairs are independent matchings)"
    elif chain.num_states(E, G) <= chain.MAX_STATES:
        states = chain.balanced_assignments(E, G)
        load = profile.load.astype(np.float64)
        sc = np.zeros((L, len(states)))
        allowed = None
        if caps is not None or load_weight > 0:
            sl = chain.state_loads(load, states, G)
            if caps is not None:
                allowed = sl <= caps[:, None] + 1e-9
                if not allowed.any(axis=1).all():
                    l = int(np.flatnonzero(~allowed.any(axis=1))[0])
                    raise PlacerError(f"no placement meets --max-imbalance {constraints.max_imbalance:g} in layer {l} "
                                      f"with {S} experts per GPU; raise --max-imbalance or add --replicas")
            sc += load_weight * sl
        W = None
        if constraints.cost == "ep":
            sc += chain.pair_cut_state_cost(profile.coact, topology.hop, states)
            W = np.zeros((max(L - 1, 0), E, E))
        else:
            W = profile.transition_weights()
        g, _ = chain.chain_dp(W, topology.hop, E, L, sc, allowed, states)
        details["formulation"] = f"layer-chain dynamic programme over {len(states)} states per layer"
    else:
        if form == "dp":
            raise PlacerError(f"{E} experts on {G} GPUs have {chain.num_states(E, G)} assignments per layer, too many "
                              f"for the dp formulation (at most {chain.MAX_STATES}); use --formulation compact")
        return None
    obj = objective_value(profile, topology, constraints.cost, g, load_weight)
    return _result(profile, topology, constraints, solver, g, "optimal", obj, obj, t0, details, [])


def _result(profile, topology, constraints, solver, gpu_of, status, obj, bound, t0, details, notes) -> SolveResult:
    if notes:
        details["notes"] = notes
    placement = Placement.from_gpu_of(gpu_of, topology.num_gpus, topology.gpus_per_node)
    return SolveResult(placement=placement, solver=solver, status=status, cost_model=constraints.cost,
                       objective=obj, bound=bound, time_s=time.perf_counter() - t0, details=details)


@register("exflow", "exact: ExFlow's layered weighted cut (coherent cost), S experts per GPU per layer")
def solve_exflow(profile: Profile, topology: Topology, constraints: Constraints) -> SolveResult:
    if constraints.cost != "coherent":
        raise PlacerError("the exflow model minimises the coherent cost; use --solver joint for --cost ep")
    return solve_exact(profile, topology, constraints, "exflow")


@register("joint", "exact: communication (coherent or ep co-activation) + weighted max GPU load, bounded imbalance")
def solve_joint(profile: Profile, topology: Topology, constraints: Constraints) -> SolveResult:
    w = float((constraints.options or {}).get("load_weight", 0.0))
    if w < 0:
        raise PlacerError(f"load_weight must be >= 0, got {w}")
    return solve_exact(profile, topology, constraints, "joint", load_weight=w)


@register("layer_descent", "heuristic: exact per-layer reassignment sweeps, then load-keeping swaps (coherent or ep)")
def solve_layer_descent(profile: Profile, topology: Topology, constraints: Constraints) -> SolveResult:
    t0 = time.perf_counter()
    check_exact_input(profile, topology, constraints, "layer_descent")
    caps = gpu_load_caps(profile, topology.num_gpus, constraints.max_imbalance)
    g, start = _warm_start(profile, topology, constraints, caps, constraints.time_limit)
    if g is None:
        raise PlacerError(f"no start point meets --max-imbalance {constraints.max_imbalance:g}; "
                          f"use --solver joint, which searches under the limit")
    lb, name = lower_bound(profile, topology, constraints)
    obj = objective_value(profile, topology, constraints.cost, g)
    status = "optimal" if obj <= lb + 1e-9 * max(1.0, obj) else "heuristic"
    return _result(profile, topology, constraints, "layer_descent", g, status, obj, lb, t0,
                   {"lower_bound_name": name, "start": start}, [])


# --------------------------------------------------------------- MoETuner
def _cluster_model(load: np.ndarray, G: int, S: int, cap: float | None) -> tuple[LinearModel, np.ndarray, np.ndarray]:
    E = len(load)
    m = LinearModel()
    x = m.add_vars((E, G))
    t = m.add_vars(1, 0.0, float(load.sum()), integer=False)[0]
    for e in range(E):
        m.add_row(x[e], 1.0, 1.0, 1.0)
    for c in range(G):
        m.add_row(x[:, c], 1.0, S, S)
        m.add_row(np.concatenate([x[:, c], [t]]), np.concatenate([load, [-1.0]]), hi=0.0)
        if cap is not None:
            m.add_row(x[:, c], load, hi=float(cap))
    # clusters are interchangeable: order them by smallest expert
    for c in range(1, G):
        m.ub[int(x[0, c])] = 0.0
        for e in range(1, E):
            m.add_row(np.concatenate([[x[e, c]], x[:e, c - 1]]), np.concatenate([[1.0], -np.ones(e)]), hi=0.0)
    m.add_obj([t], 1.0)
    return m, x, t


def _bottleneck_model(cost: np.ndarray) -> tuple[LinearModel, np.ndarray]:
    G = cost.shape[0]
    m = LinearModel()
    y = m.add_vars((G, G))
    t = m.add_vars(1, 0.0, float(cost.max()) if cost.size else 0.0, integer=False)[0]
    for c in range(G):
        m.add_row(y[c], 1.0, 1.0, 1.0)
        m.add_row(y[:, c], 1.0, 1.0, 1.0)
    for c in range(G):
        for b in range(G):
            if cost[c, b] > 0:
                m.add_row([y[c, b], t], [float(cost[c, b]), -1.0], hi=0.0)
    m.add_obj([t], 1.0)
    return m, y


@register("moetuner", "exact stages: MoETuner's balanced clustering ILP, then cluster-to-GPU bottleneck ILP")
def solve_moetuner(profile: Profile, topology: Topology, constraints: Constraints) -> SolveResult:
    from scipy.optimize import linear_sum_assignment

    t0 = time.perf_counter()
    S = check_exact_input(profile, topology, constraints, "moetuner")
    if constraints.cost != "coherent":
        raise PlacerError("the moetuner model maps clusters by inter-layer traffic (coherent cost); use --solver joint for --cost ep")
    L, E, G = profile.num_layers, profile.num_experts, topology.num_gpus
    caps = gpu_load_caps(profile, G, constraints.max_imbalance)
    per = max(0.5, constraints.time_limit / max(1, 2 * L - 1))
    load = profile.load.astype(np.float64)
    statuses: list[str] = []
    cluster = np.empty((L, E), np.int64)
    for l in range(L):
        m, x, _ = _cluster_model(load[l], G, S, None if caps is None else caps[l])
        m.hint = None
        res = solve_model(m, constraints.backend, per, constraints.seed, constraints.threads)
        if res.status == "infeasible":
            raise PlacerError(f"no clustering of layer {l} meets --max-imbalance {constraints.max_imbalance:g}; raise it")
        if res.values is None:
            cluster[l] = balanced_gpu_of(load[l:l + 1], G)[0]
            statuses.append("fallback")
            continue
        cluster[l] = np.argmax(res.values[x], axis=1)
        statuses.append(res.status)
    W = profile.transition_weights()
    hop = topology.hop
    gpu_of = np.empty((L, E), np.int64)
    gpu_of[0] = cluster[0]
    worst = []
    for l in range(1, L):
        # C[a, c]: traffic from GPU a (layer l-1) into cluster c of layer l
        Cm = np.zeros((G, G))
        np.add.at(Cm, (gpu_of[l - 1][:, None].repeat(E, 1), cluster[l][None, :].repeat(E, 0)), W[l - 1])
        cost = np.zeros((G, G))  # cost[c, b]: worst normalised pair traffic if cluster c goes to GPU b
        for b in range(G):
            others = np.arange(G) != b
            cost[:, b] = (Cm[others, :] * hop[others, b][:, None]).max(axis=0) if G > 1 else 0.0
        m, y = _bottleneck_model(cost)
        res = solve_model(m, constraints.backend, per, constraints.seed, constraints.threads)
        statuses.append(res.status if res.values is not None else "fallback")
        tstar = float(cost.max()) if res.values is None else \
            float(cost[np.arange(G), np.argmax(res.values[y], axis=1)].max())
        # ties: among assignments within the bottleneck value keep the most traffic local
        allowed = cost <= tstar + 1e-9 * max(1.0, tstar)
        local = -Cm.T  # [c, b]: traffic that stays if cluster c sits on GPU b
        big = float(np.abs(local).sum() + 1.0)
        rows, cols = linear_sum_assignment(np.where(allowed, local, big))
        to_gpu = np.empty(G, np.int64)
        to_gpu[rows] = cols
        gpu_of[l] = to_gpu[cluster[l]]
        worst.append(float(cost[rows, cols].max()))
    lb, lb_name = lower_bound(profile, topology, constraints)
    obj = objective_value(profile, topology, "coherent", gpu_of)
    status = "optimal" if obj <= lb + 1e-9 * max(1.0, obj) else "feasible"
    details = {"backend": backend_name(constraints.backend), "lower_bound": lb, "lower_bound_name": lb_name,
               "stages_optimal": all(s == "optimal" for s in statuses),
               "stage_statuses": sorted(set(statuses)),
               "worst_pair_traffic": max(worst) if worst else 0.0,
               "notes": ["two-stage model: each ILP is solved exactly, the placement is not proven optimal "
                         "for the coherent cost"]}
    placement = Placement.from_gpu_of(gpu_of, G, topology.gpus_per_node)
    return SolveResult(placement=placement, solver="moetuner", status=status, cost_model="coherent",
                       objective=obj, bound=lb, time_s=time.perf_counter() - t0, details=details)
