"""The placements every solver must beat: contiguous, round-robin and random.

Without replicas (P = E, G divides E):
- ``contiguous``: expert e on GPU ``e // (E / G)``, the Megatron-LM / DeepSpeed default.
- ``round_robin``: expert e on GPU ``e % G``.
- ``random``: per layer a seeded random permutation of the experts, dealt contiguously, so every
  GPU gets E / G experts (``Constraints.seed``; same seed, same placement).

With ``constraints.replicas = R > 0`` (P = E + R slots, S = P / G per GPU) the rule above places
each expert's first copy, generalised to ``e * G // E`` for contiguous when G does not divide E
(every GPU gets floor or ceil of E / G first copies, at most S). The R redundant slots then go
to the hottest experts by load per replica, EPLB's rule
(:func:`placer.solvers.replicate.replicate`, at most one copy per GPU), in the order they were
handed out; each copy goes to the GPU with the most free slots among those that do not hold
that expert yet (ties: lowest GPU id). If every GPU with room already holds the expert, one swap
makes room (:class:`placer.solvers.packing.DistinctBins`). Within a GPU, slots hold experts
in ascending id order.

Baselines ignore communication, but they are scored like any solver: their objective is the
requested cost model's (``coherent`` or ``ep-pairwise``, :mod:`placer.cost.objectives`), None when
the profile lacks the counts it needs (a loads-only input). They have no balance knob:
``--max-imbalance`` is checked and reported (``max_imbalance_met``), not enforced.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from placer.cost import load_cost
from placer.cost.objectives import Objective
from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.base import Constraints, NoParams, SolveResult, Status, has_pairs, register
from placer.solvers.packing import DistinctBins
from placer.solvers.replicate import replicate


def first_copy_gpus(kind: str, num_layers: int, num_experts: int, num_gpus: int, seed: int = 0) -> np.ndarray:
    """``[L, E]`` GPU of each expert's first copy under baseline ``kind``.

    ``contiguous``: ``e * G // E``; ``round_robin``: ``e % G``; ``random``: a per-layer seeded
    permutation dealt as contiguous. Each GPU gets floor or ceil of E / G experts.
    """
    L, E, G = num_layers, num_experts, num_gpus
    dealt = np.arange(E) * G // E
    if kind == "contiguous":
        return np.broadcast_to(dealt, (L, E)).copy()
    if kind == "round_robin":
        return np.broadcast_to(np.arange(E) % G, (L, E)).copy()
    if kind == "random":
        rng = np.random.default_rng(seed)
        out = np.empty((L, E), np.int64)
        for l in range(L):
            out[l, rng.permutation(E)] = dealt
        return out
    raise ValueError(f"unknown baseline {kind!r}")


def add_replicas(first_gpu: np.ndarray, load: np.ndarray, num_gpus: int, slots_per_gpu: int) -> np.ndarray:
    """``phy2log [L, G*S]`` from first copies ``first_gpu [L, E]`` plus replicas for ``load [L, E]``.

    The G*S - E redundant slots follow the module docstring's rule; with none, this only lays
    each GPU's experts out in ascending id order.
    """
    L, E = first_gpu.shape
    G, S = num_gpus, slots_per_gpu
    P = G * S
    order, _, _ = replicate(load, P, max_count=G)
    out = np.empty((L, P), np.int64)
    for l in range(L):
        bins = DistinctBins(G, S, order[l])
        for e in range(E):
            bins.add(int(first_gpu[l, e]), e)
        most_room = lambda cand: min(cand, key=lambda b: len(bins.items[b]))  # noqa: E731  first on ties
        for item in range(E, P):
            bins.put(item, most_room)
        out[l] = np.concatenate([np.sort(order[l][its]) for its in bins.items])
    return out


def baseline_placement(kind: str, load: np.ndarray, num_gpus: int, gpus_per_node: int | None = None,
                       replicas: int = 0, seed: int = 0) -> Placement:
    """The ``kind`` baseline for ``load [L, E]`` token picks (loads matter only for replicas)."""
    load = np.asarray(load)
    L, E = load.shape
    S = Constraints(replicas=replicas).slots_per_gpu(E, num_gpus)
    first = first_copy_gpus(kind, L, E, num_gpus, seed)
    return Placement(add_replicas(first, load, num_gpus, S), E, num_gpus, gpus_per_node)


def load_summary(profile: Profile, placement: Placement, max_imbalance: float | None = None) -> dict:
    """Per-layer max/mean GPU load of ``placement`` on ``profile`` (the load model), mean and
    worst over layers; with ``max_imbalance``, whether the worst layer stays within it
    (``max_imbalance_met``: fixed rules check the cap, they do not enforce it)."""
    cost = load_cost(profile, placement)
    out: dict[str, Any] = {"mean_imbalance": cost.mean_imbalance, "max_imbalance": cost.max_imbalance}
    if max_imbalance is not None:
        out["max_imbalance_met"] = bool(cost.max_imbalance <= max_imbalance + 1e-12)
    return out


def objective_of(profile: Profile, topology: Topology, cost: str, placement: Placement) -> float | None:
    """The ``cost`` objective of a fixed placement, or None when ``profile`` lacks its counts."""
    if not has_pairs(profile, cost):
        return None
    return Objective(cost).of_placement(profile, topology, placement)


def fixed_result(solver: str, status: Status, placement: Placement, profile: Profile, topology: Topology,
                 constraints: Constraints, details: dict | None = None) -> SolveResult:
    """The result of a rule that fixes a placement without searching (baselines, EPLB)."""
    return SolveResult(placement, solver, status, Objective(constraints.cost).name,
                       objective=objective_of(profile, topology, constraints.cost, placement),
                       details={**(details or {}), **load_summary(profile, placement, constraints.max_imbalance)})


def _solve(kind: str, profile: Profile, topology: Topology, constraints: Constraints) -> SolveResult:
    placement = baseline_placement(kind, profile.load, topology.num_gpus, topology.gpus_per_node,
                                   constraints.replicas, constraints.seed)
    return fixed_result(kind, Status.BASELINE, placement, profile, topology, constraints)


@register("contiguous", "Baseline: expert e on GPU e // (E/G), the Megatron/DeepSpeed default", replicas=True, needs=())
def solve_contiguous(profile: Profile, topology: Topology, constraints: Constraints, params: NoParams) -> SolveResult:
    """Baseline: expert e on GPU e // (E/G) (replicas: see module docstring)."""
    return _solve("contiguous", profile, topology, constraints)


@register("round_robin", "Baseline: expert e on GPU e % G", replicas=True, needs=())
def solve_round_robin(profile: Profile, topology: Topology, constraints: Constraints, params: NoParams) -> SolveResult:
    """Baseline: expert e on GPU e % G (replicas: see module docstring)."""
    return _solve("round_robin", profile, topology, constraints)


@register("random", "Baseline: seeded random balanced permutation per layer", replicas=True, needs=())
def solve_random(profile: Profile, topology: Topology, constraints: Constraints, params: NoParams) -> SolveResult:
    """Baseline: per-layer seeded random balanced permutation (replicas: see module docstring)."""
    return _solve("random", profile, topology, constraints)
