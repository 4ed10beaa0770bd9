"""The one copy of every objective and load metric, written on aggregate counts.

Every solver, exact model, bound check, cost report and the validator computes these numbers
through this module, so a placement has one objective value wherever it is asked for.

Notation: L MoE layers, E experts, G GPUs. A replica-free placement is ``gpu_of [L, E]`` (GPU
of each expert); a replicated one is ``rg [L, E, R]``, the GPUs of each expert's replicas in
ascending physical slot order, -1 padded (:func:`replica_gpus`). ``hop [G, G]`` is the
topology's unitless hop cost.

- **coherent** (ExFlow's objective): ``sum_l sum_ij W[l,i,j] hop(g(l,i), g(l+1,j))`` with
  ``W = trans / K**2`` (:meth:`Profile.transition_weights`); with replicas each expert pair
  uses its nearest replica pair. Unit: hop-weighted token transitions (expected, over a
  token's K x K pairs).
- **ep-pairwise**: ``sum_l sum_{i<j} C[l,i,j] hop(g(l,i), g(l,j))`` with ``C = coact`` (the
  diagonal, which holds the load, is ignored): co-activated pairs of one token on different
  GPUs. The graph surrogate the solvers minimise for ``--cost ep``; the exact ep cost counts
  distinct GPUs per token (:func:`placer.cost.ep_cost`). Unit: hop-weighted token pairs.
- **load**: ``gpu_load [L, G]`` token picks per GPU (a replicated expert's picks split evenly
  over its replicas); imbalance = max / mean over GPUs per layer (1.0 for a layer without
  picks); the load term of a joint objective is ``sum_l max_g gpu_load[l, g]``.

An :class:`Objective` is a cost model plus a weight on that load term.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COSTS = ("coherent", "ep")


# ---------------------------------------------------------------------------- layout
def replica_gpus(phy2log: np.ndarray, num_experts: int, slots_per_gpu: int) -> np.ndarray:
    """``[L, E, R]`` GPU of each replica of each expert (ascending physical slot), -1 padded.

    ``phy2log [L, P]``: slot p of layer l holds expert ``phy2log[l, p]`` on GPU ``p // S``.
    """
    phy2log = np.asarray(phy2log, dtype=np.int64)
    L, P = phy2log.shape
    cnt = np.zeros((L, num_experts), np.int64)
    np.add.at(cnt, (np.repeat(np.arange(L), P), phy2log.ravel()), 1)
    out = np.full((L, num_experts, int(cnt.max()) if cnt.size else 1), -1, np.int64)
    for l in range(L):
        order = np.argsort(phy2log[l], kind="stable")
        experts = phy2log[l][order]
        starts = np.searchsorted(experts, np.arange(num_experts))
        out[l, experts, np.arange(P) - starts[experts]] = order // slots_per_gpu
    return out


def as_replica_gpus(gpu_of: np.ndarray) -> np.ndarray:
    """``[L, E, 1]``: a replica-free ``gpu_of [L, E]`` in the replicated form."""
    return np.asarray(gpu_of, dtype=np.int64)[:, :, None]


# -------------------------------------------------------------------------- coherent
def nearest_pairs(rg_a: np.ndarray, rg_b: np.ndarray, hop: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every expert pair (i at layer l, j at layer l+1), the nearest replica pair.

    ``rg_a`` ``[E, Ra]`` and ``rg_b`` ``[E, Rb]`` are replica GPUs (-1 padded) of the two layers.
    Returns ``(hop_min, gpu_a, gpu_b)``, each ``[E, E]``: the minimum hop over replica pairs and
    the GPUs achieving it (ties: the lowest physical slots, i.e. the first pair found).
    """
    E = rg_a.shape[0]
    best = np.full((E, rg_b.shape[0]), np.inf)
    ga = np.zeros(best.shape, np.int64)
    gb = np.zeros(best.shape, np.int64)
    for r1 in range(rg_a.shape[1]):
        a = rg_a[:, r1]
        for r2 in range(rg_b.shape[1]):
            b = rg_b[:, r2]
            h = hop[np.maximum(a, 0)[:, None], np.maximum(b, 0)[None, :]]
            h = np.where((a >= 0)[:, None] & (b >= 0)[None, :], h, np.inf)
            better = h < best
            best = np.where(better, h, best)
            ga = np.where(better, a[:, None], ga)
            gb = np.where(better, b[None, :], gb)
    return best, ga, gb


def coherent_per_layer(W: np.ndarray, rg: np.ndarray, hop: np.ndarray) -> np.ndarray:
    """``[L-1]`` coherent cost of each transition l -> l+1 (``W [L-1, E, E]``, ``rg [L, E, R]``)."""
    hop = np.asarray(hop, dtype=np.float64)
    if rg.shape[2] == 1:
        g = rg[:, :, 0]
        return np.array([float((W[l] * hop[np.ix_(g[l], g[l + 1])]).sum()) for l in range(W.shape[0])])
    return np.array([float((W[l] * nearest_pairs(rg[l], rg[l + 1], hop)[0]).sum()) for l in range(W.shape[0])])


def coherent(W: np.ndarray, gpu_of: np.ndarray, hop: np.ndarray) -> float:
    """``sum_l sum_ij W[l,i,j] hop(gpu_of[l,i], gpu_of[l+1,j])`` (units of ``W``)."""
    return _total(coherent_per_layer(W, as_replica_gpus(gpu_of), hop))


# ---------------------------------------------------------------------- ep-pairwise
def pair_cut_per_layer(C: np.ndarray, rg: np.ndarray, hop: np.ndarray) -> np.ndarray:
    """``[L]`` co-activation cut ``sum_{i<j} C[l,i,j] hop(g(l,i), g(l,j))`` per layer (diagonal
    ignored; with replicas each pair uses its nearest replica pair)."""
    hop = np.asarray(hop, dtype=np.float64)
    out = np.zeros(C.shape[0])
    for l in range(C.shape[0]):
        M = np.array(C[l], dtype=np.float64)
        np.fill_diagonal(M, 0.0)
        if rg.shape[2] == 1:
            d = hop[np.ix_(rg[l, :, 0], rg[l, :, 0])]
        else:
            d = nearest_pairs(rg[l], rg[l], hop)[0]
        out[l] = float((M * d).sum()) / 2.0
    return out


def pair_cut(C: np.ndarray, gpu_of: np.ndarray, hop: np.ndarray) -> float:
    """``sum_l sum_{i<j} C[l,i,j] hop(gpu_of[l,i], gpu_of[l,j])`` (diagonal ignored)."""
    return _total(pair_cut_per_layer(C, as_replica_gpus(gpu_of), hop))


# ----------------------------------------------------------------------------- load
def gpu_loads(load: np.ndarray, rg: np.ndarray, num_gpus: int) -> np.ndarray:
    """``[L, G]`` token picks per GPU: ``load [L, E]`` split evenly over each expert's replicas."""
    load = np.asarray(load, dtype=np.float64)
    L = load.shape[0]
    valid = rg >= 0
    share = load / valid.sum(axis=2)
    out = np.zeros((L, num_gpus))
    for l in range(L):
        r = valid[l]
        out[l] = np.bincount(rg[l][r], weights=np.broadcast_to(share[l][:, None], r.shape)[r], minlength=num_gpus)
    return out


def imbalance(gpu_load: np.ndarray) -> np.ndarray:
    """``[L]`` max / mean GPU load per layer; 1.0 for a layer with no load."""
    gpu_load = np.asarray(gpu_load, dtype=np.float64)
    mean = gpu_load.mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mean > 0, gpu_load.max(axis=1) / np.where(mean > 0, mean, 1.0), 1.0)


def imbalance_floor(load: np.ndarray, num_gpus: int) -> tuple[float, int]:
    """``(floor, layer)``: no replica-free placement has a worst-layer max/mean GPU load below
    ``max_e load[l, e] * G / sum_e load[l, e]`` (the GPU holding the hottest expert)."""
    load = np.asarray(load, dtype=np.float64)
    tot = load.sum(axis=1)
    ratio = np.where(tot > 0, load.max(axis=1) * num_gpus / np.where(tot > 0, tot, 1.0), 1.0)
    l = int(np.argmax(ratio))
    return float(max(1.0, ratio[l])), l


def max_load_sum(gpu_load: np.ndarray) -> float:
    """``sum_l max_g gpu_load[l, g]``: the load term of a joint objective (token picks)."""
    return float(np.asarray(gpu_load).max(axis=1).sum())


# ------------------------------------------------------------------------ objective
@dataclass(frozen=True)
class Objective:
    """What a solver minimises: ``cost`` (``coherent`` or ``ep``, meaning ep-pairwise) plus
    ``load_weight`` x ``sum_l max_g gpu_load[l, g]``."""

    cost: str = "coherent"
    load_weight: float = 0.0

    @property
    def name(self) -> str:
        """The objective as reports print it, e.g. ``coherent`` or ``ep-pairwise + 0.5 x max GPU load``."""
        base = "ep-pairwise" if self.cost == "ep" else self.cost
        return base if not self.load_weight else f"{base} + {self.load_weight:g} x max GPU load"

    def value(self, profile, hop: np.ndarray, rg: np.ndarray) -> float:
        """The objective of the placement ``rg [L, E, R]`` (or ``gpu_of [L, E]``) on ``profile``."""
        if rg.ndim == 2:
            rg = as_replica_gpus(rg)
        if self.cost == "coherent":
            val = _total(coherent_per_layer(profile.transition_weights(), rg, hop)) if profile.num_layers > 1 else 0.0
        else:
            val = _total(pair_cut_per_layer(profile.coact, rg, hop))
        if self.load_weight:
            val += self.load_weight * max_load_sum(gpu_loads(profile.load, rg, np.asarray(hop).shape[0]))
        return float(val)

    def of_placement(self, profile, topology, placement) -> float:
        """:meth:`value` of a :class:`~placer.model.placement.Placement`."""
        rg = replica_gpus(placement.phy2log, placement.num_experts, placement.slots_per_gpu)
        return self.value(profile, topology.hop, rg)


def _total(per_layer: np.ndarray) -> float:
    """Layers summed in order (one summation order everywhere, so values agree to the bit)."""
    total = 0.0
    for v in per_layer:
        total += float(v)
    return total
