"""``auto``: an exact model when the instance is small enough to prove, else the scalable heuristic.

The size rule (``docs/benchmarks.md``, "Exact solvers"): the exact models are tried when the
layer-chain programme applies (S = 1 on one node, or at most ``chain.MAX_STATES`` balanced
assignments per layer) or the MILP has at most ``exact_max_vars`` binaries (L x E x G); with
replicas, or above that size, ``partition`` runs. When the exact model stops without proving
optimality, ``partition`` gets the time left and the better of the two placements is kept,
compared on the same objective (:class:`placer.cost.objectives.Objective`). The result names
the solver that produced the placement; ``choice`` says why it was chosen.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from placer.cost.objectives import Objective
from placer.errors import PlacerError
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.base import Constraints, SolveResult, Status, param, register, solve


@dataclass(frozen=True)
class AutoParams:
    exact_max_vars: int = param(2048, "largest MILP (L x E x G binaries) auto hands to an exact model", min=0)
    formulation: str = param("auto", "formulation for the exact model (see exflow)",
                             choices=("auto", "dp", "compact", "naive"))


def exact_is_small(profile: Profile, topology: Topology, max_vars: int) -> bool:
    """The chain programme applies, or the MILP has at most ``max_vars`` binaries."""
    from placer.solvers.exact.chain import MAX_STATES, num_states
    E, G = profile.num_experts, topology.num_gpus
    if E % G == 0 and (E == G or num_states(E, G) <= MAX_STATES):
        return True
    return profile.num_layers * E * G <= max_vars


@register("auto", "exact model when small enough to prove (says which), else partition; replicas: partition",
          AutoParams, replicas=True)
def solve_auto(profile: Profile, topology: Topology, constraints: Constraints, params: AutoParams) -> SolveResult:
    t0 = time.perf_counter()
    heur = "partition"
    exact = "joint" if constraints.cost == "ep" else "exflow"
    size = profile.num_layers * profile.num_experts * topology.num_gpus
    if constraints.replicas or not exact_is_small(profile, topology, params.exact_max_vars):
        why = ("replicas need a heuristic" if constraints.replicas else
               f"L x E x G = {size} > {params.exact_max_vars}: too large to prove optimal")
        return _chosen(solve(heur, profile, topology, constraints), f"{heur} ({why})", t0)
    try:
        res = solve(exact, profile, topology, constraints, {"formulation": params.formulation})
    except PlacerError as exc:
        if "time limit" not in str(exc):
            raise
        return _chosen(solve(heur, profile, topology, constraints),
                       f"{heur} (the exact model found nothing in time: {exc})", t0)
    if res.status == Status.OPTIMAL:
        return _chosen(res, f"{exact} (small instance: exact model, status {res.status})", t0)
    left = max(1.0, constraints.time_limit - (time.perf_counter() - t0))
    other = solve(heur, profile, topology, dataclasses.replace(constraints, time_limit=left))
    value = Objective(constraints.cost).of_placement(profile, topology, other.placement)
    if res.objective is not None and value < res.objective - 1e-9:
        other.objective, other.bound, other.bound_method = value, max(res.bound or 0.0, other.bound or 0.0), \
            res.bound_method if (res.bound or 0.0) >= (other.bound or 0.0) else other.bound_method
        if other.gap == 0.0:
            other.status = Status.OPTIMAL
        return _chosen(other, f"{heur} (exact model not proven optimal in time; the heuristic was better)", t0)
    return _chosen(res, f"{exact} (not proven optimal in time; better than the {heur} heuristic)", t0)


def _chosen(result: SolveResult, choice: str, t0: float) -> SolveResult:
    result.choice = choice
    result.timings["solver_s"] = time.perf_counter() - t0
    return result

