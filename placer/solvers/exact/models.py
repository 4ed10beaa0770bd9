"""The exact models ``exflow`` and ``joint``, on aggregated statistics (never a variable per token).

- ``exflow``: ExFlow's objective, the weighted cut of the layered affinity graph
  ``sum_l sum_ij trans[l,i,j]/K^2 hop(g(l,i), g(l+1,j))`` with exactly S experts per GPU per
  layer and two-level hop costs (1 within a node, ``inter_node_cost`` across), optionally under
  ``max_imbalance``.
- ``joint``: the same communication term (or, with ``cost="ep"``, the within-layer co-activation
  cut ``sum_l sum_{i<j} coact[l,i,j] hop(g(l,i), g(l,j))``) plus ``load_weight`` x
  ``sum_l max_g load(l, g)`` (token picks), under ``max_imbalance``.

Formulations (parameter ``formulation``):

- ``auto`` (default): ``dp`` when it applies, else ``compact``.
- ``dp``: the layer-chain dynamic programme of :mod:`.chain` (exact, any hop matrix, load limits
  and weights, ep), when a layer has at most ``chain.MAX_STATES`` balanced assignments; with one
  expert per GPU and uniform hops, chained maximum-weight matchings (exact for any E).
- ``compact`` and ``naive``: the MILP of :mod:`.formulation`, solved by ``constraints.backend``
  (cpsat / highs / cbc / any PuLP solver, :mod:`.milp`).

Warm start: the best layer descent (:func:`placer.solvers.layer_descent.descent_start`),
relabelled to satisfy the model's symmetry-breaking order. The reported bound is the max of the
backend's proven bound and :func:`placer.solvers.bounds.lower_bound`; objectives and bounds are in
the units of :mod:`placer.cost.objectives` (``Objective(cost, load_weight)``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from placer.cost.objectives import Objective, imbalance_floor
from placer.errors import PlacerError
from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.base import Constraints, SolveResult, Status, param, register
from placer.solvers.bounds import hop_levels, lower_bound
from placer.solvers.exact.formulation import build_model
from placer.solvers.exact.milp import backend_name, solve_model
from placer.solvers.layer_descent import descent_start


@dataclass(frozen=True)
class ExactParams:
    formulation: str = param("auto", "auto (dp when a layer has few balanced assignments, else compact), "
                                     "dp, compact or naive", choices=("auto", "dp", "compact", "naive"))
    symmetry: bool = param(True, "order GPUs and nodes on layer 0 (symmetry breaking)")
    cuts: bool = param(True, "add the bound's b-matching value as a cut per layer pair")
    two_sided: bool = param(False, "also bound the kept weight from the second layer's side")
    warm_start: bool = param(True, "hand the layer-descent placement to the backend")


@dataclass(frozen=True)
class JointParams(ExactParams):
    load_weight: float = param(0.0, "weight of sum over layers of the busiest GPU's token picks", min=0.0)


# ------------------------------------------------------------------ checks
def check_exact_input(profile: Profile, topology: Topology, constraints: Constraints, solver: str) -> int:
    """S, or a :class:`PlacerError` for what the exact models cannot take."""
    S = constraints.slots_per_gpu(profile.num_experts, topology.num_gpus)
    if constraints.replicas:
        raise PlacerError(f"the {solver} model places every expert exactly once; for --replicas use "
                          f"--solver eplb or partition")
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


def gpu_load_caps(profile: Profile, num_gpus: int, max_imbalance: float | None) -> np.ndarray | None:
    """``[L]`` largest allowed GPU load per layer for ``max_imbalance`` (None: no limit)."""
    if max_imbalance is None:
        return None
    floor, l = imbalance_floor(profile.load, num_gpus)
    if max_imbalance < floor - 1e-12:
        raise PlacerError(f"--max-imbalance {max_imbalance:g} is infeasible: without replicas no placement beats the "
                          f"hottest expert's load x G / total = {floor:.4f} (layer {l}); raise it to >= {floor:.4f} "
                          f"or use --replicas with --solver eplb/partition")
    tot = profile.load.astype(np.float64).sum(axis=1)
    cap = max_imbalance * tot / num_gpus
    if np.issubdtype(profile.load.dtype, np.integer):
        cap = np.floor(cap + 1e-9)
    return cap


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


# ---------------------------------------------------------------- solving
def solve_exact(profile: Profile, topology: Topology, constraints: Constraints, params: ExactParams, solver: str,
                load_weight: float = 0.0) -> SolveResult:
    """Warm start, bound, MILP with the chosen backend, best of both (see module docstring)."""
    t0 = time.perf_counter()
    S = check_exact_input(profile, topology, constraints, solver)
    objective = Objective(constraints.cost, load_weight)
    caps = gpu_load_caps(profile, topology.num_gpus, constraints.max_imbalance)
    lb, lb_name = lower_bound(profile, topology, constraints)
    if params.formulation in ("auto", "dp"):
        done = _solve_chain(profile, topology, constraints, params.formulation, solver, S, caps, objective, lb)
        if done is not None:
            return done
    hops = two_level_hops(topology)
    warm, warm_name = descent_start(profile, topology, constraints, caps)
    notes: list[str] = []
    details: dict[str, Any] = {"backend": backend_name(constraints.backend),
                               "formulation": "compact" if params.formulation in ("auto", "dp") else params.formulation,
                               "lower_bound": lb}
    if warm is not None:
        warm = canonical_relabel(warm, topology.num_gpus, topology.gpus_per_node)
        warm_val = objective.value(profile, topology.hop, warm)
        details["warm_start"] = {"from": warm_name, "objective": warm_val}
        if load_weight == 0 and warm_val <= lb + 1e-9 * max(1.0, abs(lb)):
            notes.append("the warm start meets the lower bound: optimal without the MILP")
            return _result(solver, objective, topology, warm, Status.OPTIMAL, warm_val, lb, lb_name, details, notes)
    form = build_model(profile, topology, constraints.cost, S, hops, load_weight, caps, details["formulation"],
                       params.symmetry, params.cuts, params.two_sided)
    details["model_size"] = form.model.size()
    if warm is not None and params.warm_start:
        form.model.hint = form.hint(warm)
    remaining = constraints.time_limit - (time.perf_counter() - t0)
    res = solve_model(form.model, constraints.backend, remaining, constraints.seed, constraints.threads)
    notes.extend(res.notes)
    details["backend_status"] = res.status
    if res.status == "infeasible":
        if caps is not None:
            raise PlacerError(f"no placement meets --max-imbalance {constraints.max_imbalance:g} with {S} experts per GPU "
                              f"(the backend proved it infeasible); raise --max-imbalance or add --replicas")
        raise PlacerError("the placement model is infeasible; this is a bug, please report it")
    backend_bound = None if res.bound is None else res.bound / form.unit
    details["backend_bound"] = backend_bound
    bound = lb if backend_bound is None else max(lb, backend_bound)
    method = lb_name if backend_bound is None or backend_bound <= lb else f"{details['backend']} backend's proven bound"
    if res.values is None:
        if warm is None:
            raise PlacerError(f"the time limit ({constraints.time_limit:g} s) ran out before the {details['backend']} backend "
                              f"found any placement and no warm start meets the constraints; raise --time-limit")
        notes.append(f"time limit hit before the {details['backend']} backend found a solution: "
                     f"fell back to the {warm_name} warm start")
        gpu_of, status = warm, Status.FEASIBLE
    else:
        gpu_of = form.decode(res.values)
        status = Status.OPTIMAL if res.status == "optimal" else Status.FEASIBLE
        if warm is not None and objective.value(profile, topology.hop, gpu_of) > warm_val + 1e-9:
            gpu_of = warm
            notes.append("the backend's incumbent was worse than the warm start; kept the warm start")
        elif warm is not None and status != Status.OPTIMAL and np.array_equal(gpu_of, warm):
            # the backend handed back the hint it was given: no better placement in the time limit
            notes.append(f"the {details['backend']} backend found nothing better than the {warm_name} warm start "
                         f"within the time limit: the placement is that warm start")
    obj = objective.value(profile, topology.hop, gpu_of)
    if status == Status.OPTIMAL and res.status == "optimal":
        bound, method = max(bound, obj), f"{details['backend']} backend proved optimality"
    if obj <= bound + 1e-9 * max(1.0, abs(obj)):
        status = Status.OPTIMAL
    result = _result(solver, objective, topology, gpu_of, status, obj, min(bound, obj), method, details, notes)
    result.timings["backend_s"] = res.time_s
    return result


def _solve_chain(profile: Profile, topology: Topology, constraints: Constraints, form: str, solver: str, S: int,
                 caps: np.ndarray | None, objective: Objective, lb: float) -> SolveResult | None:
    """The exact chain methods of :mod:`.chain` when they apply (else None, or an error for ``dp``)."""
    from placer.solvers.exact import chain

    L, E, G = profile.num_layers, profile.num_experts, topology.num_gpus
    off = topology.hop[~np.eye(G, dtype=bool)]
    if constraints.cost == "coherent" and S == 1 and G > 1 and np.allclose(off, off[0]):
        g = chain.chain_assignment(profile.transition_weights(), E)
        how = "chain of assignments (S = 1: layer pairs are independent matchings)"
    elif chain.num_states(E, G) <= chain.MAX_STATES:
        states = chain.balanced_assignments(E, G)
        sc = np.zeros((L, len(states)))
        allowed = None
        if caps is not None or objective.load_weight > 0:
            sl = chain.state_loads(profile.load.astype(np.float64), states, G)
            if caps is not None:
                allowed = sl <= caps[:, None] + 1e-9
                if not allowed.any(axis=1).all():
                    l = int(np.flatnonzero(~allowed.any(axis=1))[0])
                    raise PlacerError(f"no placement meets --max-imbalance {constraints.max_imbalance:g} in layer {l} "
                                      f"with {S} experts per GPU; raise --max-imbalance or add --replicas")
            sc += objective.load_weight * sl
        if constraints.cost == "ep":
            sc += chain.pair_cut_state_cost(profile.coact, topology.hop, states)
            W = np.zeros((max(L - 1, 0), E, E))
        else:
            W = profile.transition_weights()
        g, _ = chain.chain_dp(W, topology.hop, E, L, sc, allowed, states)
        how = f"layer-chain dynamic programme over {len(states)} states per layer"
    else:
        if form == "dp":
            raise PlacerError(f"{E} experts on {G} GPUs have {chain.num_states(E, G)} assignments per layer, too many "
                              f"for the dp formulation (at most {chain.MAX_STATES}); use --param formulation=compact")
        return None
    obj = objective.value(profile, topology.hop, g)
    return _result(solver, objective, topology, g, Status.OPTIMAL, obj, obj, f"exact: {how}",
                   {"formulation": how, "lower_bound": lb}, [])


def _result(solver: str, objective: Objective, topology: Topology, gpu_of: np.ndarray, status: Status, obj: float,
            bound: float, method: str, details: dict, notes: list[str]) -> SolveResult:
    placement = Placement.from_gpu_of(gpu_of, topology.num_gpus, topology.gpus_per_node)
    return SolveResult(placement, solver, status, objective.name, obj, bound, method, details=details, notes=notes)


@register("exflow", "exact: ExFlow's layered weighted cut (coherent cost), S experts per GPU per layer", ExactParams)
def solve_exflow(profile: Profile, topology: Topology, constraints: Constraints, params: ExactParams) -> SolveResult:
    if constraints.cost != "coherent":
        raise PlacerError("the exflow model minimises the coherent cost; use --solver joint for --cost ep")
    return solve_exact(profile, topology, constraints, params, "exflow")


@register("joint", "exact: communication (coherent or ep co-activation) + weighted max GPU load, bounded imbalance",
          JointParams)
def solve_joint(profile: Profile, topology: Topology, constraints: Constraints, params: JointParams) -> SolveResult:
    return solve_exact(profile, topology, constraints, params, "joint", load_weight=params.load_weight)
