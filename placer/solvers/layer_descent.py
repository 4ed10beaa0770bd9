"""``layer_descent``: exact per-layer re-assignment sweeps from fixed starts, then load-keeping swaps.

The cheap deterministic heuristic that also gives the exact models their warm start
(:func:`descent_start`). Starts: contiguous, load-balanced packing and two seeded random
placements; each is improved by :func:`placer.solvers.local_search.layer_descent` (coherent),
then by load-keeping swaps where a balance cap or the ep cut makes the per-layer assignment
inexact. No wall-clock cut: its sweep cap bounds the work, so the result does not depend on the
machine's speed.
"""

from __future__ import annotations

import numpy as np

from placer.cost.objectives import Objective, gpu_loads, as_replica_gpus
from placer.errors import PlacerError
from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.base import Constraints, NoParams, SolveResult, Status, register
from placer.solvers.baselines import first_copy_gpus
from placer.solvers.bounds import lower_bound
from placer.solvers.local_search import best_descent, swap_descent
from placer.solvers.packing import balanced_packing


def within_caps(gpu_of: np.ndarray, load: np.ndarray, caps: np.ndarray | None) -> bool:
    """Every layer's largest GPU load of ``gpu_of [L, E]`` is within ``caps [L]`` (None: no caps)."""
    if caps is None:
        return True
    loads = gpu_loads(load, as_replica_gpus(gpu_of), int(gpu_of.max()) + 1 if gpu_of.size else 1)
    return bool(np.all(loads.max(axis=1) <= caps + 1e-9))


def descent_start(profile: Profile, topology: Topology, constraints: Constraints,
                  caps: np.ndarray | None) -> tuple[np.ndarray | None, str | None]:
    """``(gpu_of [L, E], how it was made)`` meeting ``caps``, or ``(None, None)`` when no start does."""
    G = topology.num_gpus
    L, E = profile.num_layers, profile.num_experts
    load = profile.load.astype(np.float64)
    start, name = None, None
    if constraints.cost == "coherent":
        start, _ = best_descent(profile, topology, constraints.seed, caps)
        name = "layer_descent"
    if start is None:
        for cand_name, cand in (("contiguous", first_copy_gpus("contiguous", L, E, G)),
                                ("balanced", balanced_packing(load, G)[0])):
            if within_caps(cand, load, caps):
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


@register("layer_descent", "heuristic: exact per-layer reassignment sweeps, then load-keeping swaps (coherent or ep)")
def solve_layer_descent(profile: Profile, topology: Topology, constraints: Constraints, params: NoParams) -> SolveResult:
    from placer.solvers.exact.models import check_exact_input, gpu_load_caps

    check_exact_input(profile, topology, constraints, "layer_descent")
    caps = gpu_load_caps(profile, topology.num_gpus, constraints.max_imbalance)
    g, start = descent_start(profile, topology, constraints, caps)
    if g is None:
        raise PlacerError(f"no start point meets --max-imbalance {constraints.max_imbalance:g}; "
                          f"use --solver joint, which searches under the limit")
    lb, method = lower_bound(profile, topology, constraints)
    objective = Objective(constraints.cost)
    return SolveResult(Placement.from_gpu_of(g, topology.num_gpus, topology.gpus_per_node), "layer_descent",
                       Status.HEURISTIC, objective.name, objective.value(profile, topology.hop, g), lb, method,
                       details={"start": start})
