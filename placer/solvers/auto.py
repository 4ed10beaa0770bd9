"""``auto``: an exact model when a proof is within reach, else the scalable heuristic.

The size model, stated: an exact proof is within reach when the layer-chain programme applies
(:mod:`placer.solvers.exact.chain`): one expert per GPU on one node (chained matchings, any E),
or at most ``chain.MAX_STATES`` balanced assignments per layer (8 experts on 4 GPUs: 2,520; 16 on
2: 12,870); it proves the optimum in seconds (Mixtral, 32 x 8, on 2 to 8 GPUs: under 4 s). The
MILP is not: with the bound cuts it stayed at 13-31% gap after 30 s already at 256-512 binaries
(L x E x G; random affinity traces, 4 x 16 x 4 to 2 x 32 x 4, docs/benchmarks.md), so ``auto``
gives it the budget only when ``exact_max_vars`` (default 0) admits it, and never spends the
time limit on a model that cannot prove. Otherwise, and with replicas, ``partition`` gets the
whole budget. When an admitted MILP stops without proving optimality, ``partition`` gets the time
left and the better placement is kept, compared on the same objective
(:class:`placer.cost.objectives.Objective`). The result names the solver that produced the
placement; ``choice`` says why it was chosen.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from placer.cost.objectives import Objective
from placer.errors import PlacerError
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.base import Constraints, SolveResult, Status, param, register, solve


@dataclass(frozen=True)
class AutoParams:
    exact_max_vars: int = param(0, "largest MILP (L x E x G binaries) auto hands to an exact model when the "
                                   "layer-chain programme does not apply (0: never)", min=0)
    formulation: str = param("auto", "formulation for the exact model (see exflow)",
                             choices=("auto", "dp", "compact", "naive"))


def chain_applies(profile: Profile, topology: Topology) -> bool:
    """The layer-chain programme proves the optimum: S = 1 with uniform hops, or few balanced
    assignments per layer (:func:`placer.solvers.exact.models.solve_exact`'s first path)."""
    from placer.solvers.exact.chain import MAX_STATES, num_states
    E, G = profile.num_experts, topology.num_gpus
    if E % G:
        return False
    off = topology.hop[~np.eye(G, dtype=bool)]
    if E == G and G > 1 and np.allclose(off, off[0]):
        return True
    return num_states(E, G) <= MAX_STATES


def exact_is_small(profile: Profile, topology: Topology, max_vars: int) -> bool:
    """An exact proof is within reach (module docstring)."""
    if chain_applies(profile, topology):
        return True
    return profile.num_layers * profile.num_experts * topology.num_gpus <= max_vars


@register("auto", "exact model when small enough to prove (says which), else partition; replicas: partition",
          AutoParams, replicas=True)
def solve_auto(profile: Profile, topology: Topology, constraints: Constraints, params: AutoParams) -> SolveResult:
    t0 = time.perf_counter()
    heur = "partition"
    exact = "joint" if constraints.cost == "ep" else "exflow"
    size = profile.num_layers * profile.num_experts * topology.num_gpus
    if constraints.replicas or not exact_is_small(profile, topology, params.exact_max_vars):
        why = ("replicas need a heuristic" if constraints.replicas else
               "no exact proof within reach: the layer-chain programme does not apply and the MILP "
               f"({size} binaries) would not prove in the time limit")
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
    left = max(0.1, constraints.time_limit - (time.perf_counter() - t0))
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

