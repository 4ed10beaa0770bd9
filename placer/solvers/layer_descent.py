"""``layer_descent``: the local search of :mod:`placer.solvers.search` from fixed starts, no kicks.

The cheap deterministic heuristic that also gives the exact models their warm start
(:func:`descent_start`). Starts: contiguous, load-balanced packing and two seeded random
placements; each is repaired to the load cap where one applies (skipped if that fails), then
refined by :func:`placer.solvers.search.refine.refine` (coherent: exact per-layer assignment,
swaps and suffix relabelling; ep: swaps), and the best (objective of
:mod:`placer.cost.objectives`) is kept.

Before, this module ran its own copy of the per-layer assignment descent and a separate swap
descent (``local_search.py``); the shared search is the same descent plus the moves ``partition``
has, so it reaches the same optima or better and there is one search to maintain. No wall-clock
cut (``deadline = inf``): the sweep caps bound the work, so the placement does not depend on the
machine's speed; the lower bound (:mod:`placer.solvers.bounds`) gets what is left of the time limit.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from placer.cost.objectives import Objective
from placer.errors import PlacerError
from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.base import Constraints, NoParams, SolveResult, Status, register
from placer.solvers.baselines import first_copy_gpus
from placer.solvers.bounds import lower_bound
from placer.solvers.packing import balanced_packing
from placer.solvers.search.feasible import meet_cap
from placer.solvers.search.problem import REL_TOL, build_problem, objective
from placer.solvers.search.refine import refine, single_thread_blas


def start_points(profile: Profile, num_gpus: int, seed: int) -> list[np.ndarray]:
    """Deterministic starts ``gpu_of [L, E]``: contiguous, load-balanced (LPT) and two seeded random."""
    L, E = profile.num_layers, profile.num_experts
    rng = np.random.default_rng(seed)
    contiguous = first_copy_gpus("contiguous", L, E, num_gpus)
    starts = [contiguous, balanced_packing(profile.load.astype(np.float64), num_gpus)[0]]
    for _ in range(2):
        starts.append(np.stack([rng.permutation(contiguous[0]) for _ in range(L)]))
    return starts


def descent_start(profile: Profile, topology: Topology, constraints: Constraints,
                  caps: np.ndarray | None) -> tuple[np.ndarray | None, str | None]:
    """``(gpu_of [L, E], how it was made)`` with every layer's GPU loads within ``caps [L]``
    (token picks; None: no limit), or ``(None, None)`` when no start can be repaired to them."""
    prob = build_problem(profile, topology, dataclasses.replace(constraints, replicas=0, max_imbalance=None),
                         caps=caps)
    best, best_obj = None, math.inf
    with single_thread_blas():
        for start in start_points(profile, topology.num_gpus, constraints.seed):
            gpu = np.array(start, dtype=np.int64)
            if not all(meet_cap(prob, gpu, l) for l in range(prob.L)):
                continue
            refine(prob, gpu, math.inf)
            obj = objective(prob, gpu)
            if obj < best_obj - REL_TOL * max(1.0, abs(best_obj) if math.isfinite(best_obj) else 1.0):
                best, best_obj = gpu, obj
    return (best, "layer_descent") if best is not None else (None, None)


@register("layer_descent", "heuristic: the partition local search (per-layer assignment, swaps, relabelling) "
                           "from four fixed starts, no kicks (coherent or ep)")
def solve_layer_descent(profile: Profile, topology: Topology, constraints: Constraints, params: NoParams) -> SolveResult:
    from placer.solvers.exact.models import check_exact_input, gpu_load_caps

    t0 = time.perf_counter()
    check_exact_input(profile, topology, constraints, "layer_descent")
    caps = gpu_load_caps(profile, topology.num_gpus, constraints.max_imbalance)
    g, start = descent_start(profile, topology, constraints, caps)
    if g is None:
        raise PlacerError(f"no start point meets --max-imbalance {constraints.max_imbalance:g}; "
                          f"use --solver joint, which searches under the limit")
    # the bound gets what the descent leaves of the time limit (its ascents are also capped by
    # evaluation counts, so on a fast machine it does not depend on timing)
    lb, method = lower_bound(profile, topology, constraints, t0 + float(constraints.time_limit))
    goal = Objective(constraints.cost)
    return SolveResult(Placement.from_gpu_of(g, topology.num_gpus, topology.gpus_per_node), "layer_descent",
                       Status.HEURISTIC, goal.name, goal.value(profile, topology.hop, g), lb, method,
                       details={"start": start})
