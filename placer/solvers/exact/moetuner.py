"""``moetuner``: MoETuner's two ILPs, each solved exactly.

Stage 1, per layer: experts into G clusters of S, each expert in exactly one cluster (the
constraint the paper leaves out), minimising the largest cluster load. Stage 2, layer by layer:
map layer l's clusters onto GPUs minimising the worst bandwidth-normalised GPU-pair traffic from
layer l-1 (a bottleneck assignment, solved as an ILP; ties broken by the most traffic kept local).
Each stage is exact; the two-stage result is not proven optimal for the coherent cost, which is
the objective reported (:mod:`placer.cost.objectives`).
"""

from __future__ import annotations

import numpy as np

from placer.cost.objectives import Objective
from placer.errors import PlacerError
from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.base import Constraints, NoParams, SolveResult, Status, register
from placer.solvers.bounds import lower_bound
from placer.solvers.exact.milp import LinearModel, backend_name, solve_model
from placer.solvers.exact.models import check_exact_input, gpu_load_caps
from placer.solvers.packing import balanced_packing

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
def solve_moetuner(profile: Profile, topology: Topology, constraints: Constraints, params: NoParams) -> SolveResult:
    from scipy.optimize import linear_sum_assignment

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
            cluster[l] = balanced_packing(load[l:l + 1], G)[0][0]
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
    objective = Objective("coherent")
    obj = objective.value(profile, hop, gpu_of)
    details = {"backend": backend_name(constraints.backend), "lower_bound": lb,
               "stages_optimal": all(s == "optimal" for s in statuses),
               "stage_statuses": sorted(set(statuses)),
               "worst_pair_traffic": max(worst) if worst else 0.0}
    notes = ["two-stage model: each ILP is solved exactly, the placement is not proven optimal for the coherent cost"]
    placement = Placement.from_gpu_of(gpu_of, G, topology.gpus_per_node)
    return SolveResult(placement, "moetuner", Status.FEASIBLE, objective.name, obj, lb, lb_name,
                       details=details, notes=notes)
