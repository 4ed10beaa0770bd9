"""The instance the local search works on, its objective, and the placement it stands for.

Shapes: L MoE layers, E experts, G GPUs, S slots per GPU, P = G x S instances per layer. A
layout is ``gpu [L, P]`` int, the GPU of every instance; instances of one layer are numbered
expert by expert (``inst_expert[l] = repeat(arange(E), cnt[l])``), so without replicas instance
x is expert x and ``gpu`` is a ``gpu_of [L, E]`` table.

The objective (coherent, or the ep-pairwise cut, see :mod:`placer.cost.objectives`) is never
written here: :func:`objective`, :func:`layer_costs` and :func:`window_cost` turn the layout
into replica GPUs ``rg [L, E, R]`` (:func:`replica_gpus_of`, the same array
:func:`placer.cost.objectives.replica_gpus` gives for :func:`to_placement`'s placement) and call
that module, so the search reports, to the bit, the value every other command computes for its
placement. The search's move costs (:mod:`.moves`) are incremental formulas of the same
objective; the tests check them against it.

Loads: a replica carries ``load / count`` of its expert's token picks. :func:`layer_loads` is the
per-layer count the moves update; :func:`max_imbalance` goes through ``cost.objectives``.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

from placer.cost.objectives import (Objective, coherent_per_layer, gpu_loads, imbalance,
                                    pair_cut_per_layer)
from placer.errors import PlacerError
from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.base import Constraints
from placer.solvers.packing import balanced_packing
from placer.solvers.replicate import replica_counts_batched

DEFAULT_REPLICA_IMBALANCE = 1.10
REL_TOL = 1e-10          # relative change below which a move does not count as an improvement


@dataclass
class Problem:
    """The instance the search works on (L layers, E experts, G GPUs, S slots, P = G*S instances).

    - ``cost``: ``coherent`` or ``ep``; ``profile``: what the objective is computed on.
    - ``hop``: ``[G, G]`` the topology's hop costs (the objective's).
    - ``move_hop``: ``[G, G]`` the hop costs the move formulas use: ``hop`` for coherent, its
      symmetric part for ep (the pairwise cut sees both directions of a pair, so it is exact
      without replicas; with replicas on an asymmetric topology only a guide, and ep moves are
      accepted on :func:`window_cost`).
    - ``W``: ``[L-1, E, E]`` transition weights (coherent) or None.
    - ``C``: ``[L, E, E]`` co-activation counts with a zero diagonal (ep) or None.
    - ``cnt``: ``[L, E]`` instances per expert; ``inst_expert`` ``[L, P]`` expert of each
      instance; ``inst_load`` ``[L, P]`` load per instance (load / count, token picks).
    - ``cap``: ``[L]`` maximum GPU load (token picks) per layer, inf when unconstrained.
    """

    L: int
    E: int
    G: int
    S: int
    gpus_per_node: int
    cost: str
    profile: Profile
    hop: np.ndarray
    move_hop: np.ndarray
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

    @functools.cached_property
    def first_inst(self) -> np.ndarray:
        """``[L, E]`` the instance of each expert's first copy (instances are numbered expert by
        expert)."""
        return np.cumsum(self.cnt, axis=1) - self.cnt

    @functools.cached_property
    def inst_rank(self) -> np.ndarray:
        """``[L, P]`` which copy of its expert each instance is (0 .. cnt - 1)."""
        return np.arange(self.P)[None, :] - np.take_along_axis(self.first_inst, self.inst_expert, axis=1)


def build_problem(profile: Profile, topology: Topology, constraints: Constraints,
                  replica_imbalance: float = DEFAULT_REPLICA_IMBALANCE,
                  caps: np.ndarray | None = None) -> Problem:
    """Check the inputs against the constraints and lay out the instance arrays.

    Replica counts follow EPLB's rule (:mod:`placer.solvers.replicate`). The load cap:
    ``caps [L]`` (token picks per GPU, accepted up to 1e-9 above, as the exact models do) when
    given; else ``constraints.max_imbalance`` x mean GPU load; else, with replicas, the larger
    of ``replica_imbalance`` and what balanced packing reaches (replicas exist to balance load).
    """
    L, E, G = profile.num_layers, profile.num_experts, topology.num_gpus
    S = constraints.slots_per_gpu(E, G)
    hop = np.asarray(topology.hop, np.float64)
    move_hop, W, C = hop, None, None
    if constraints.cost == "coherent":
        W = profile.transition_weights()
    else:
        if profile.coact is None:
            raise PlacerError("the ep cost needs co-activation counts, which this profile lacks; "
                              "profile a per-token trace or use --cost coherent")
        C = profile.coact.astype(np.float64).copy()
        idx = np.arange(E)
        C[:, idx, idx] = 0.0
        move_hop = (hop + hop.T) / 2.0
    load = profile.load.astype(np.float64)
    cnt = replica_counts_batched(load, E + constraints.replicas, max_count=G)
    inst_expert = np.stack([np.repeat(np.arange(E), cnt[l]) for l in range(L)])
    inst_load = np.stack([load[l, inst_expert[l]] / cnt[l, inst_expert[l]] for l in range(L)])
    mean = load.sum(1) / G
    prob = Problem(L, E, G, S, topology.gpus_per_node, constraints.cost, profile, hop, move_hop, W, C, load, cnt,
                   inst_expert, inst_load, np.full(L, np.inf))
    target = constraints.max_imbalance
    if caps is not None:
        prob.cap = np.asarray(caps, np.float64) + 1e-9
    elif target is None and constraints.replicas > 0 and G > 1:
        packed = imbalance(np.stack([layer_loads(prob, l, packed_layer(prob, l)) for l in range(L)]))
        prob.cap = np.maximum(float(replica_imbalance), packed * (1 + 1e-9)) * mean
    elif target is not None and G > 1:
        prob.cap = target * mean * (1 + 1e-12)
    prob.cap = np.where(mean > 0, prob.cap, np.inf)
    return prob


def coarsened(prob: Problem, num_groups: int, group_hop: np.ndarray) -> Problem:
    """The problem on ``num_groups`` groups of GPUs (nodes) with ``group_hop`` between them and
    no cap: the first level of a hierarchical start."""
    group = prob.G // num_groups
    return dataclasses.replace(prob, G=num_groups, S=prob.S * group, gpus_per_node=1, hop=group_hop,
                               move_hop=group_hop, cap=np.full(prob.L, np.inf))


# ----------------------------------------------------------------------------- loads
def layer_loads(prob: Problem, l: int, gpu_l: np.ndarray) -> np.ndarray:
    """``[G]`` token picks per GPU at layer l for the layer's layout ``gpu_l [P]``."""
    return np.bincount(gpu_l, weights=prob.inst_load[l], minlength=prob.G)


def packed_layer(prob: Problem, l: int) -> np.ndarray:
    """``[P]`` GPUs from EPLB's balanced packing (heaviest instance first onto the lightest GPU
    with a free slot and no copy of the same expert). Ignores traffic."""
    pack, _ = balanced_packing(prob.inst_load[l][None], prob.G, labels=prob.inst_expert[l][None])
    return pack[0]


def max_imbalance(prob: Problem, gpu: np.ndarray) -> float:
    """Largest per-layer max/mean GPU load of the layout (the load cost model)."""
    return float(imbalance(gpu_loads(prob.load, replica_gpus_of(prob, gpu), prob.G)).max())


# ----------------------------------------------------------------------------- objective
def replica_gpus_of(prob: Problem, gpu: np.ndarray, lo: int = 0, hi: int | None = None) -> np.ndarray:
    """``rg [n, E, R]`` of layers ``lo .. hi-1``: each expert's replica GPUs, ascending, -1 padded.

    Ascending GPU is ascending physical slot in :func:`to_placement`'s placement, so this is
    ``replica_gpus(to_placement(prob, gpu).phy2log)`` without building the placement.
    """
    g = gpu[lo:hi]
    if not prob.replicated:
        return g[:, :, None]
    n, R = len(g), int(prob.cnt.max())
    rg = np.full((n, prob.E, R), prob.G, np.int64)            # G sorts after every GPU, then becomes -1
    rg[np.arange(n)[:, None], prob.inst_expert[lo:hi], prob.inst_rank[lo:hi]] = g
    rg.sort(axis=2)
    rg[rg == prob.G] = -1
    return rg


def objective(prob: Problem, gpu: np.ndarray) -> float:
    """The layout's objective: :meth:`Objective.value` of its placement (coherent or ep-pairwise)."""
    return Objective(prob.cost).value(prob.profile, prob.hop, replica_gpus_of(prob, gpu))


def layer_costs(prob: Problem, gpu: np.ndarray) -> np.ndarray:
    """``[L-1]`` (coherent) or ``[L]`` (ep-pairwise) cost of each layer transition / layer."""
    rg = replica_gpus_of(prob, gpu)
    if prob.W is not None:
        return coherent_per_layer(prob.W, rg, prob.hop)
    return pair_cut_per_layer(prob.C, rg, prob.hop)


def window_cost(prob: Problem, gpu: np.ndarray, lo: int, hi: int) -> float:
    """Cost of every edge that touches layers ``lo .. hi-1`` (all a change there can alter)."""
    if prob.W is not None:
        a, b = max(0, lo - 1), min(prob.L - 1, hi)             # transitions a .. b-1
        if a >= b:
            return 0.0
        return float(coherent_per_layer(prob.W[a:b], replica_gpus_of(prob, gpu, a, b + 1), prob.hop).sum())
    return float(pair_cut_per_layer(prob.C[lo:hi], replica_gpus_of(prob, gpu, lo, hi), prob.hop).sum())


def from_placement(prob: Problem, placement: Placement) -> np.ndarray:
    """``gpu [L, P]``: the layout of ``placement`` (the inverse of :func:`to_placement`); its
    copies per expert must be the problem's ``cnt``."""
    slot_gpu = np.arange(prob.P) // prob.S
    gpu = np.empty((prob.L, prob.P), np.int64)
    for l in range(prob.L):
        order = np.lexsort((slot_gpu, placement.phy2log[l]))
        if not np.array_equal(placement.phy2log[l][order], prob.inst_expert[l]):
            raise PlacerError(f"the placement's copies per expert at MoE layer {l} are not the ones the search "
                              f"derives from the loads")
        gpu[l] = slot_gpu[order]
    return gpu


def to_placement(prob: Problem, gpu: np.ndarray) -> Placement:
    """Slots of each GPU hold its instances in ascending expert id (deterministic phy2log)."""
    phy = np.stack([prob.inst_expert[l][np.lexsort((prob.inst_expert[l], gpu[l]))] for l in range(prob.L)])
    return Placement(phy, prob.E, prob.G, prob.gpus_per_node)
