"""The placement MILP, built term by term as a backend-neutral :class:`~.milp.LinearModel`.

Variables: binary ``x[l, e, g]`` (expert e of layer l on GPU g), exactly one GPU per expert and
S experts per GPU per layer. The objective is minimised as ``(h + extra) W_tot - h sum z - extra
sum zN`` on integer counts (``trans`` for coherent, ``coact`` with a zero diagonal for ep), where
``z`` is the weight kept on one GPU and ``zN`` on one node (two-level hops, see
:func:`placer.solvers.bounds.hop_levels`); dividing by ``unit`` (K^2 for coherent, 2 for the
ordered pairs of ep) gives the objective in the units of :mod:`placer.cost.objectives`.

Formulations of the kept weight, per expert i of the first layer of a pair and group (GPU or
node) k:

- ``compact`` (Glover-style): one ``z[i, k] <= U_i x[i, k]``, ``z[i, k] <= sum_j W[i, j]
  x'[j, k]``, ``U_i`` the weight of i's d strongest partners (a tighter big-M than the row sum).
  Optional ``two_sided``: the same kept weight seen from the second layer's experts, no larger.
  Optional ``cuts``: the bound's b-matching value caps the kept weight of the pair, which lifts
  the LP bound to at least :func:`placer.solvers.bounds.lower_bound`.
- ``naive``: ``y[i, j, k] <= x[i, k], y <= x'[j, k]`` per affinity edge and group.

Symmetry breaking: GPUs of a node, and nodes, are interchangeable, so on layer 0 GPU g may take
expert e only if its predecessor holds a smaller expert. Load: ``caps`` bound every GPU's token
picks per layer; ``load_weight`` adds ``load_weight x sum_l max_g load`` through one variable per
layer. Every term registers how to fill its variables from a placement, so a warm start
(:meth:`Formulation.hint`) is consistent with the model by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from placer.errors import PlacerError
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.bounds import keep_upper_bound
from placer.solvers.exact.milp import LinearModel

FORMULATIONS = ("compact", "naive")
Fill = Callable[[np.ndarray, np.ndarray], None]      # (gpu_of [L, E], values [n]) -> None, in place


@dataclass
class Formulation:
    """A built model: ``x [L, E, G]`` variable ids, ``unit`` (model objective / unit = cost units)."""

    model: LinearModel
    x: np.ndarray
    unit: float
    fills: list[Fill] = field(default_factory=list)

    def hint(self, gpu_of: np.ndarray) -> np.ndarray:
        """The variable values of placement ``gpu_of [L, E]`` (a feasible warm start)."""
        v = np.zeros(self.model.num_vars)
        for fill in self.fills:
            fill(gpu_of, v)
        return v

    def decode(self, values: np.ndarray) -> np.ndarray:
        """``gpu_of [L, E]`` from a solution vector."""
        return np.argmax(values[self.x], axis=2).astype(np.int64)


def integer_counts(a: np.ndarray) -> np.ndarray:
    """``a`` as int64 when its values are whole numbers (CP-SAT then needs no scaling), else float64."""
    a = np.asarray(a)
    if np.issubdtype(a.dtype, np.integer) or np.all(a == np.round(a)):
        return a.astype(np.int64)
    return a.astype(np.float64)


def _top_sum(row: np.ndarray, k: int) -> float:
    if k <= 0:
        return 0.0
    k = min(k, len(row))
    return float(np.sort(row)[::-1][:k].sum())


def build_model(profile: Profile, topology: Topology, cost: str, S: int, hops: tuple[float, float],
                load_weight: float = 0.0, caps: np.ndarray | None = None, formulation: str = "compact",
                symmetry: bool = True, cuts: bool = True, two_sided: bool = False) -> Formulation:
    """The placement MILP for ``cost`` (see the module docstring); ``hops = (h, extra)``."""
    if formulation not in FORMULATIONS:  # (auto/dp are handled before a MILP is built)
        raise PlacerError(f"unknown formulation '{formulation}'; use compact or naive")
    L, E, G = profile.num_layers, profile.num_experts, topology.num_gpus
    m = LinearModel()
    x = _assignment(m, L, E, G, S)
    if symmetry and G > 1:
        _break_symmetry(m, x, E, topology.num_nodes, topology.gpus_per_node)
    f = Formulation(m, x, float(profile.top_k ** 2) if cost == "coherent" else 2.0)
    f.fills.append(lambda g, v: v.__setitem__(x[np.arange(L)[:, None], np.arange(E)[None, :], g], 1.0))
    if G > 1:
        for la, lb, W, deg, ndeg in _pairs(profile, cost, S, topology.gpus_per_node):
            _pair_terms(f, topology, S, hops, la, lb, W, deg, ndeg, formulation, cuts, two_sided)
    _load_terms(f, profile.load.astype(np.float64), caps, load_weight)
    return f


def _assignment(m: LinearModel, L: int, E: int, G: int, S: int) -> np.ndarray:
    x = m.add_vars((L, E, G))
    for l in range(L):
        for e in range(E):
            m.add_row(x[l, e], 1.0, 1.0, 1.0)
        for g in range(G):
            m.add_row(x[l, :, g], 1.0, S, S)
    return x


def _break_symmetry(m: LinearModel, x: np.ndarray, E: int, N: int, gpn: int) -> None:
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


def _pairs(profile: Profile, cost: str, S: int, gpn: int) -> list[tuple[int, int, np.ndarray, int, int]]:
    """``(layer a, layer b, W, partners per GPU, partners per node)`` of every coupled layer pair."""
    L = profile.num_layers
    if cost == "coherent":
        return [(l, l + 1, integer_counts(profile.trans[l]), S, gpn * S) for l in range(L - 1)]
    out = []
    for l in range(L):
        C = integer_counts(profile.coact[l]).copy()
        np.fill_diagonal(C, 0)
        out.append((l, l, C, S - 1, gpn * S - 1))
    return out


def _pair_terms(f: Formulation, topology: Topology, S: int, hops: tuple[float, float], la: int, lb: int,
                W: np.ndarray, deg: int, ndeg: int, formulation: str, cuts: bool, two_sided: bool) -> None:
    h, extra = hops
    G, gpn, N = topology.num_gpus, topology.gpus_per_node, topology.num_nodes
    m = f.model
    m.offset += (h + extra) * float(W.sum())
    levels = (("gpu", h, [[g] for g in range(G)], deg),
              ("node", extra, [list(range(n * gpn, (n + 1) * gpn)) for n in range(N)], ndeg))
    for level, coef, groups, d in levels:
        if coef <= 0 or (level == "node" and N == 1):
            continue
        if formulation == "naive":
            _naive_terms(f, la, lb, W, groups, coef)
            continue
        kept = _compact_terms(f, la, lb, W, groups, coef, d)
        if two_sided and kept:
            _two_sided_terms(f, la, lb, W, groups, d, kept)
        if cuts and kept:
            # the bound's b-matching caps the weight kept on GPUs (nodes) of this layer pair:
            # a valid cut that lifts the LP bound to at least lower_bound's
            size = len(groups[0]) * S
            E = W.shape[0]
            cap = keep_upper_bound(W, min(E - (la == lb), d), len(groups) * size * (size - (la == lb)),
                                   diagonal=la != lb)
            m.add_row(np.concatenate(kept), 1.0, hi=math.floor(cap + 1e-9) if W.dtype.kind == "i" else cap)


def _compact_terms(f: Formulation, la: int, lb: int, W: np.ndarray, groups: list[list[int]], coef: float,
                   d: int) -> list[np.ndarray]:
    """One ``z`` per (expert of layer la, group) bounded by its big-M and by its partners' weight."""
    m, x = f.model, f.x
    kept: list[np.ndarray] = []
    for i in range(W.shape[0]):
        nz = np.flatnonzero(W[i])
        if len(nz) == 0:
            continue
        U = _top_sum(W[i, nz], d)
        z = m.add_vars(len(groups), 0.0, U, integer=False)
        for k, grp in enumerate(groups):
            m.add_row(np.concatenate([[z[k]], x[la, i, grp]]), np.concatenate([[1.0], -U * np.ones(len(grp))]), hi=0.0)
            cols = x[lb][np.ix_(nz, grp)].ravel()
            m.add_row(np.concatenate([[z[k]], cols]),
                      np.concatenate([[1.0], -np.repeat(W[i, nz].astype(np.float64), len(grp))]), hi=0.0)
        m.add_obj(z, -coef)
        kept.append(z)
        f.fills.append(_kept_fill(z, groups, la, i, lb, W[i]))
    return kept


def _kept_fill(z: np.ndarray, groups: list[list[int]], la: int, i: int, lb: int, w: np.ndarray) -> Fill:
    """``z[k]`` = the weight of row ``w`` kept with expert i of layer la in group k."""
    def fill(gpu_of: np.ndarray, v: np.ndarray) -> None:
        for k, grp in enumerate(groups):
            if gpu_of[la, i] in grp:
                v[z[k]] = float(w[np.isin(gpu_of[lb], grp)].sum())
    return fill


def _two_sided_terms(f: Formulation, la: int, lb: int, W: np.ndarray, groups: list[list[int]], d: int,
                     kept: list[np.ndarray]) -> None:
    """Per group: the kept weight summed over layer la's experts may not exceed the same weight
    summed over layer lb's (equal at integer points)."""
    m, x = f.model, f.x
    for k, grp in enumerate(groups):
        colside = []
        for j in range(W.shape[1]):
            nzc = np.flatnonzero(W[:, j])
            if len(nzc) == 0:
                continue
            Uc = _top_sum(W[nzc, j], d)
            zc = m.add_vars(1, 0.0, Uc, integer=False)
            m.add_row(np.concatenate([zc, x[lb, j, grp]]), np.concatenate([[1.0], -Uc * np.ones(len(grp))]), hi=0.0)
            rows_ = x[la][np.ix_(nzc, grp)].ravel()
            m.add_row(np.concatenate([zc, rows_]),
                      np.concatenate([[1.0], -np.repeat(W[nzc, j].astype(np.float64), len(grp))]), hi=0.0)
            colside.append(zc[0])
            f.fills.append(_kept_fill(zc, [grp], lb, j, la, W[:, j]))
        rowside = [z[k] for z in kept]
        m.add_row(np.concatenate([rowside, colside]),
                  np.concatenate([np.ones(len(rowside)), -np.ones(len(colside))]), hi=0.0)


def _naive_terms(f: Formulation, la: int, lb: int, W: np.ndarray, groups: list[list[int]], coef: float) -> None:
    """One ``y`` per affinity edge (i, j) and group: both endpoints in the group."""
    m, x = f.model, f.x
    for i in range(W.shape[0]):
        nz = np.flatnonzero(W[i])
        if len(nz) == 0:
            continue
        y = m.add_vars((len(nz), len(groups)), 0.0, 1.0, integer=False)
        for a, j in enumerate(nz):
            for k, grp in enumerate(groups):
                m.add_row(np.concatenate([[y[a, k]], x[la, i, grp]]), np.concatenate([[1.0], -np.ones(len(grp))]), hi=0.0)
                m.add_row(np.concatenate([[y[a, k]], x[lb, j, grp]]), np.concatenate([[1.0], -np.ones(len(grp))]), hi=0.0)
            m.add_obj(y[a], -coef * float(W[i, j]))

        def fill(gpu_of: np.ndarray, v: np.ndarray, y=y, i=i, nz=nz) -> None:
            for a, j in enumerate(nz):
                for k, grp in enumerate(groups):
                    v[y[a, k]] = float(gpu_of[la, i] in grp and gpu_of[lb, j] in grp)
        f.fills.append(fill)


def _load_terms(f: Formulation, load: np.ndarray, caps: np.ndarray | None, load_weight: float) -> None:
    """GPU load caps per layer, and the weighted sum of each layer's largest GPU load."""
    m, x = f.model, f.x
    L, E, G = x.shape
    if caps is not None:
        for l in range(L):
            for g in range(G):
                m.add_row(x[l, :, g], load[l], hi=float(caps[l]))
    if load_weight <= 0:
        return
    mvars = m.add_vars(L, 0.0, float(load.sum(axis=1).max()), integer=False)
    for l in range(L):
        for g in range(G):
            m.add_row(np.concatenate([x[l, :, g], [mvars[l]]]), np.concatenate([load[l], [-1.0]]), hi=0.0)
    m.add_obj(mvars, load_weight * f.unit)

    def fill(gpu_of: np.ndarray, v: np.ndarray) -> None:
        for l in range(L):
            v[mvars[l]] = np.bincount(gpu_of[l], weights=load[l], minlength=G).max()
    f.fills.append(fill)
