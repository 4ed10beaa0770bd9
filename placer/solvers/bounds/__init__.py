"""Lower bounds on the communication cost of ANY placement, computed within a deadline.

``lower_bound(profile, topology, constraints, deadline=None) -> (value, method)``. ``value`` is in
the units of the objective of ``constraints.cost`` (:mod:`placer.cost.objectives`):

- ``coherent``: ``sum_l sum_ij trans[l,i,j] / K**2 * hop(g(l,i), g(l+1,j))`` (with replicas each
  pair uses its nearest replicas): hop-weighted token transitions;
- ``ep``: ep-pairwise, ``sum_l sum_{i<j} coact[l,i,j] * hop(g(l,i), g(l,j))``: co-activated
  expert pairs of one token on different GPUs (hop weighted), the objective the solvers and exact
  models minimise for ``--cost ep`` (not the ``ep_cost`` copy count).

Proof structure (coherent on the layer pairs ``trans[l]``; ep on each layer's ``coact[l]``):

1. Split the hop cost (:func:`hop_levels`): ``hop(a, b) >= h [a != b] + extra [node(a) != node(b)]``
   for every GPU pair, so ``cost >= sum_pairs h * cut_gpu + extra * cut_node`` where ``cut_gpu``
   (``cut_node``) is the weight of the pair's expert pairs on different GPUs (nodes).
2. The global placement restricted to a segment (one layer pair, a chain of consecutive layers,
   one layer for ep) is a placement of that segment, so lower bounds on disjoint segments' cuts
   add up; ``cut_gpu >= cut_node`` segment by segment.
3. Each segment's cut is bounded by the best of the methods that fit the time, each valid on
   its own: ``top-S degrees`` and ``b-matching`` (:mod:`.combinatorial`: degree caps, one sort /
   a min-cost flow per pair, valid with replicas) and, without replicas, ``eigenvalue`` and the
   ``eigenvalue/degree split`` (:mod:`.decomposition`: the projected Donath-Hoffman eigenvalue
   bound of :mod:`.spectral`, on all the weights or on one part of them with degree potentials
   on the rest, maximised over the split; on chains of :func:`window_for` layers) and, on the
   time those ascents leave, ``eigenvalue with semidefinite pair weights``
   (:mod:`.semidefinite`: the eigenvalue bound with the multipliers of a semidefinite
   relaxation's ``X >= 0`` added as pair weights and paid for; chains of at most 192
   vertices). With replicas
   an expert's copies sit in several parts, which the eigenvalue proof excludes: the pooled
   b-matching alone is used, and the method name says so.

Time: with a ``deadline`` (``time.perf_counter()`` seconds) every pair first gets the one-sort
degree bound, then its flow while time is left (milliseconds a pair at E = 64, ~20 ms at
E = 256: at DeepSeek-V3 shape the flows alone take ~2.6 s on 2 cores), then what is left is shared
over the eigenvalue ascents in proportion to the weight of their terms, each ascent also capped
by :class:`.decomposition.Effort`'s evaluation count, so on a fast machine the value does not
depend on timing; with ``semidefinite`` (partition's ``--param semidefinite=true``) what they
leave goes to the semidefinite stage, heaviest chain first, each capped by its conic solver's
iteration count (:data:`.semidefinite.MAX_ITERS`). It is off by default: where the search
converges early it keeps the command running to its limit (ESFT on 2 x 8 GPUs: about 200 s
more, to prove 1-2 points of gap), which a user who sets a long limit as a ceiling would not
expect.
``deadline=None`` gives the b-matching bound of before (caps of item 1 of
:mod:`.combinatorial`), the same value and name as before: the exact models use it as a cut and
recorded reports keep it. A solver may split the work: :func:`begin_bound` (the checks and the
flows) before its search, :func:`finish_bound` (the ascents) after it or, in a second process,
beside it (:mod:`.background`), each with its deadline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from placer.errors import PlacerError
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.base import Constraints
from placer.solvers.bounds.combinatorial import b_matching_max, cut_bound, degree_cut_bound, keep_upper_bound
from placer.solvers.bounds.decomposition import Effort, split_cut_bound
from placer.solvers.bounds.semidefinite import MIN_SECONDS, semidefinite_cut_bound
from placer.solvers.search.refine import single_thread_blas

__all__ = ["lower_bound", "proven_floor", "begin_bound", "finish_bound", "hop_levels", "keep_upper_bound", "b_matching_max"]

# an ascent is skipped when its time slice cannot pay for this many evaluations
MIN_EVALS = 20


@dataclass(frozen=True)
class Level:
    """``parts`` groups (GPUs or nodes) of ``size`` slots a layer, each cut edge paying ``coef``."""

    name: str
    parts: int
    size: int
    coef: float


@dataclass
class _Tally:
    """Which method gave each (pair, level) its bound, for the method name."""

    won: dict = field(default_factory=dict)

    def add(self, level: str, method: str, pairs: int) -> None:
        self.won[(level, method)] = self.won.get((level, method), 0) + pairs


@dataclass
class Pending:
    """A bound begun by :func:`begin_bound`: every (pair, level) cut bounded by its flow or, past
    the deadline, its degree caps (``cuts [pairs, levels]``, ``flows`` pairs by the flow); or
    ``done`` ``(value, method)`` where there is nothing to improve."""

    done: tuple[float, str] | None = None
    weights: np.ndarray | None = None
    levels: list[Level] = field(default_factory=list)
    within: bool = False
    replicas: int = 0
    unit: float = 1.0
    cuts: np.ndarray | None = None
    flows: int = 0
    semidefinite: bool = False


def lower_bound(profile: Profile, topology: Topology, constraints: Constraints,
                deadline: float | None = None, semidefinite: bool = False) -> tuple[float, str]:
    """A valid lower bound on the ``constraints.cost`` objective of any placement, and its method.

    See the module docstring for units, the proof and how ``deadline`` is spent;
    ``semidefinite``: the semidefinite stage on the time the ascents leave. Raises
    :class:`PlacerError` when the profile lacks the statistics the cost model needs.
    """
    if deadline is None:
        pending = begin_bound(profile, topology, constraints, None)
        if pending.done is not None:
            return pending.done
        return _bound_before(pending)
    return finish_bound(begin_bound(profile, topology, constraints, deadline, semidefinite), deadline)


def begin_bound(profile: Profile, topology: Topology, constraints: Constraints,
                deadline: float | None, semidefinite: bool = False) -> Pending:
    """The checks and the b-matching flows of every pair (item 3) until ``deadline`` (None: all
    of them); :func:`finish_bound` adds the eigenvalue bounds. A solver runs this before its
    search (the flows are what the bound of before cost) and the rest after it."""
    E, G = profile.num_experts, topology.num_gpus
    S = constraints.slots_per_gpu(E, G)
    if constraints.cost not in ("coherent", "ep"):
        raise PlacerError(f"unknown cost model '{constraints.cost}'; use coherent or ep")
    within = constraints.cost == "ep"
    if within and profile.coact is None:
        raise PlacerError("the ep objective needs co-activation counts, which this profile lacks; "
                          "build the profile from a per-token trace")
    if not within and profile.trans is None:
        raise PlacerError("the coherent cost needs inter-layer transition counts, which this profile lacks; "
                          "give a per-token trace or counts with layer-pair matrices, or use --cost ep")
    if within and (G == 1 or profile.top_k < 2):
        return Pending(done=(0.0, "one GPU or top-1: no co-activated pairs to split"))
    if not within and (G == 1 or profile.num_layers < 2):
        return Pending(done=(0.0, "one GPU or one layer: nothing moves"))
    weights = profile.coact if within else profile.trans
    pending = Pending(weights=weights, levels=levels(topology, S), within=within, replicas=constraints.replicas,
                      unit=1.0 if within else float(profile.top_k ** 2), semidefinite=semidefinite)
    if deadline is None:
        return pending
    lv, R = pending.levels, pending.replicas
    # every pair first gets the one-sort degree bound, then the flow while the deadline allows
    pending.cuts = np.array([[degree_cut_bound(w, x.parts, x.size, within, R) for x in lv] for w in weights])
    for p, w in enumerate(weights):
        if time.perf_counter() >= deadline:
            break
        pending.cuts[p] = [cut_bound(w, x.parts, x.size, within, R) for x in lv]
        pending.flows += 1
    return pending


def proven_floor(pending: Pending) -> float:
    """The bound ``pending`` proves already (flows and degree caps, no ascent): a search whose
    objective reaches it has found an optimum and can stop."""
    if pending.done is not None:
        return pending.done[0]
    return _bound_by(pending, -np.inf)[0]


def finish_bound(pending: Pending, deadline: float) -> tuple[float, str]:
    """The bound of ``pending`` raised by the eigenvalue bounds until ``deadline`` (items 2-3)."""
    if pending.done is not None:
        return pending.done
    with single_thread_blas():
        return _bound_by(pending, deadline)


def hop_levels(topology: Topology) -> tuple[float, float]:
    """``(h, extra)``: ``hop(a, b) >= h [a != b] + extra [node(a) != node(b)]`` for all GPU pairs.

    Exact (equality) for :meth:`Topology.uniform`; a valid lower envelope for any hop matrix.
    """
    G, gpn = topology.num_gpus, topology.gpus_per_node
    if G == 1:
        return 0.0, 0.0
    hop = np.asarray(topology.hop, dtype=np.float64)
    off = ~np.eye(G, dtype=bool)
    inter = topology.inter_node
    h1 = float(hop[off & ~inter].min()) if gpn > 1 else np.inf
    h2 = float(hop[inter].min()) if topology.num_nodes > 1 else np.inf
    h = min(h1, h2)
    extra = max(0.0, h2 - h) if np.isfinite(h2) else 0.0
    return h, extra


def levels(topology: Topology, S: int) -> list[Level]:
    """The GPU level and, where crossing nodes costs extra, the node level (item 1)."""
    h, extra = hop_levels(topology)
    out = [Level("GPU", topology.num_gpus, S, h)]
    if extra > 0:
        out.append(Level("node", topology.num_nodes, topology.gpus_per_node * S, extra))
    return out


def window_for(num_experts: int) -> int:
    """Layers per chain of the coherent eigenvalue bounds (2: layer pairs apart). Chains of 3
    gained 1-8 points of gap at E <= 128 in 10 s but lost at E = 256, where the larger
    eigenproblem leaves too few steps (``benchmarks/bench_bounds.py``, budgets of 2 and 10 s)."""
    return 3 if num_experts <= 128 else 2


def _bound_before(p: Pending) -> tuple[float, str]:
    """The bound of before deadlines: the b-matching of item 1 of :mod:`.combinatorial`."""
    lv = p.levels
    total = sum(sum(x.coef * cut_bound(w, x.parts, x.size, p.within, p.replicas, pooled=False) for x in lv)
                for w in p.weights)
    if p.within:
        name = "per-layer b-matching on co-activation (each expert shares its GPU with at most S-1 others)"
        node = " + node-level b-matching"
    else:
        name = "per-layer-pair b-matching (each expert keeps at most S partners on its GPU, both directions)"
        node = " + node-level b-matching for the inter-node part"
    return max(0.0, total / p.unit), name + (node if len(lv) > 1 else "")


def _bound_by(p: Pending, deadline: float, window: int | None = None) -> tuple[float, str]:
    """Items 1-3 of the module docstring within ``deadline``; ``window``: layers per chain."""
    weights, lv, within, cuts = p.weights, p.levels, p.within, p.cuts
    window = window_for(weights.shape[-1]) if window is None else window
    n = len(weights)
    step = 1 if within else max(1, window - 1)
    segments = [(a, min(a + step, n)) for a in range(0, n, step)]
    best = np.array([[cuts[a:b, j].sum() for j in range(len(lv))] for a, b in segments]).reshape(len(segments), len(lv))
    method = np.array([["b-matching" if b <= p.flows else "top-S degrees"] * len(lv) for a, b in segments],
                      dtype=object)
    if not p.replicas:
        _improve(weights, lv, within, segments, best, method, deadline, p.semidefinite)
    tally = _Tally()
    total = 0.0
    for i, (a, b) in enumerate(segments):
        node = best[i, 1] if len(lv) > 1 else 0.0
        gpu = max(best[i, 0], node)
        tally.add("GPU", method[i, 0] if best[i, 0] >= node else f"node-level {method[i, 1]}", b - a)
        if len(lv) > 1:
            tally.add("node", method[i, 1], b - a)
        total += lv[0].coef * gpu + (lv[1].coef * node if len(lv) > 1 else 0.0)
    return max(0.0, total / p.unit), _name(tally, within, p.replicas)


def _improve(weights: np.ndarray, lv: list[Level], within: bool, segments: list[tuple[int, int]],
             best: np.ndarray, method: np.ndarray, deadline: float, semidefinite: bool = False) -> None:
    """Raise ``best`` (per segment and level) by the eigenvalue bounds of :mod:`.decomposition`
    on each segment (a chain of layers, or one layer for ep). The time left is shared over the
    ascents in proportion to what each term weighs in the cost (``coef * weight``), heaviest
    first, so a deadline cuts the least valuable ones."""
    jobs = [(x.coef * float(np.sum(weights[a:b])), i, j) for j, x in enumerate(lv) for i, (a, b) in enumerate(segments)
            if x.size > 1 and x.parts > 1 and x.coef > 0]
    jobs.sort(key=lambda job: -job[0])
    left = sum(job[0] for job in jobs)
    per_eval: dict[int, float] = {}
    for weight, i, j in jobs:
        now = time.perf_counter()
        share = (deadline - now) * weight / left if left > 0 else 0.0
        left -= weight
        if share <= 0 or share < MIN_EVALS * per_eval.get(j, 0.0):
            continue
        a, b = segments[i]
        w = weights[a] if within else weights[a:b]
        value, evals, how = split_cut_bound(w, lv[j].parts, lv[j].size, within, Effort(deadline=now + share),
                                            floor=best[i, j])
        per_eval[j] = (time.perf_counter() - now) / max(1, evals)
        if value > best[i, j]:
            best[i, j], method[i, j] = value, how + (f" on {b - a + 1}-layer chains" if b - a > 1 else "")
    if semidefinite and not within:
        _improve_semidefinite(weights, lv, segments, jobs, best, method, deadline)


def _improve_semidefinite(weights: np.ndarray, lv: list[Level], segments: list[tuple[int, int]],
                          jobs: list[tuple[float, int, int]], best: np.ndarray, method: np.ndarray,
                          deadline: float) -> None:
    """On the time the ascents leave (they stop at their evaluation caps), the pair weights of
    the semidefinite relaxation (:mod:`.semidefinite`) on each chain, heaviest first, each with
    all the time left: its conic solver stops at an iteration cap, and multipliers cut short
    are worth little, so the heaviest chains get theirs whole rather than all of them a part;
    no chain starts with less time left than the longest one so far took."""
    took = MIN_SECONDS
    for _, i, j in jobs:
        began = time.perf_counter()
        if deadline - began < took:
            # a chain cut short by the deadline rarely pays, and would make the value timing's
            break
        a, b = segments[i]
        value = semidefinite_cut_bound(weights[a:b], lv[j].parts, lv[j].size, deadline)
        took = max(took, time.perf_counter() - began)
        if value is not None and value > best[i, j]:
            best[i, j] = value
            chains = f" on {b - a + 1}-layer chains" if b - a > 1 else ""
            method[i, j] = "eigenvalue with semidefinite pair weights" + chains


def _name(tally: _Tally, within: bool, replicas: int) -> str:
    """The method: what bounded each level, in how many pairs."""
    what = "layers" if within else "layer pairs"
    parts = []
    for level in ("GPU", "node"):
        wins = sorted((k[1], c) for k, c in tally.won.items() if k[0] == level)
        if wins:
            parts.append(f"{level} cut: " + ", ".join(f"{m} {c}" for m, c in wins))
    head = "ep-pairwise" if within else "coherent"
    name = f"{head} hop-weighted GPU and node cuts, per {what} the best of: " + "; ".join(parts)
    if replicas:
        name += " (pooled-replica b-matching only: the eigenvalue bound assumes one copy per expert)"
    return name
