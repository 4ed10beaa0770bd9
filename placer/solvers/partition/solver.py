"""``partition``: the scalable heuristic, multi-constraint graph partitioning plus the
constraint-keeping local search of :mod:`placer.solvers.search`.

Objective: the coherent cost or the ep-pairwise cut of :mod:`placer.cost.objectives` (the
search computes it there, so the reported objective is the one every command computes for the
placement). Every step keeps exactly S slots per GPU per layer, no two replicas of an expert on
one GPU, and the per-layer load cap when one applies.

1. Replica counts: EPLB's rule, the next redundant slot goes to the expert with the largest load
   per replica, at most one replica per GPU (:mod:`placer.solvers.replicate`).
2. Starts (:mod:`.starts`): hierarchical METIS with one balance constraint per layer, then
   random balanced starts; with replicas the replica-free solution with its copies packed onto
   the free slots comes first (refined under the cap its first copies must meet, then again
   without a cap when the limit allows a second start), METIS next. Each is repaired to exact
   balance and the load cap (:mod:`placer.solvers.search.feasible`) and refined
   (:func:`placer.solvers.search.refine.refine`).
3. The best start is improved until the time limit or until it converges:
   iterated local search (:func:`placer.solvers.search.refine.perturb_and_refine`), then exact
   window moves between two GPUs (:mod:`placer.solvers.search.lns`), and again while the window
   moves gain. An anytime search: the best placement so far is what a deadline returns.
   Coherent cost without replicas: every ``crossover_every`` kicks (the first after at most half
   of them) the chain crossover (:mod:`placer.solvers.search.crossover`) combines an elite of
   layouts (the starts' and the best met at each crossover) and the best so far layer by layer
   (with greedy chains grown from them) by dynamic programming; its refined result replaces the
   best when better. One crossover at half time made more time worse (ESFT intent top-1 on 4
   GPUs: 38,057 at 10 s, 38,956 at 30 s, mean of seeds); repeated, 37,701 and 36,935
   (docs/benchmarks.md, sixth session).
4. The lower bound (:mod:`placer.solvers.bounds`): its b-matching flows run before the search
   (within a quarter of the limit; 1.3 s at DeepSeek-V3 shape on a quiet machine), its
   eigenvalue ascents until the limit, and they stop on their own caps too
   (:class:`placer.solvers.bounds.decomposition.Effort`). With two cores or more the ascents
   run in a forked process beside the search for the whole limit
   (:mod:`placer.solvers.bounds.background`) and the search stops at ``BESIDE_SEARCH_SHARE``
   of it; on one core (or ``bound_beside=false``) they run after the search, which stops at
   ``1 - bound_share`` of the limit (default 0.1 kept for the bound) or earlier when it converges.
   Beside the search, 10 s: ESFT intent on 2 x 8 GPUs gap 42.8 % -> 13.1 %, synthetic E = 256
   on 2 GPUs 89.9 % -> 19.3 %, objectives as before (docs/benchmarks.md, sixth session).

Deterministic for a given ``seed`` when the search converges or spends a given count of kicks
(``--param kicks=N``); when the time limit stops it (``details["stopped_by"] == "time limit"``)
the result depends on the machine's speed, and the report says so. Load cap: ``--max-imbalance`` bounds each layer's max/mean GPU load (a replica
carries ``load / count``); with replicas and no ``--max-imbalance`` the cap defaults to
``max(replica_imbalance, what balanced packing reaches)``: replicas exist to balance load.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from placer.cost.objectives import Objective
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.progress import progress
from placer.solvers.base import Constraints, SolveResult, Status, param, register
from placer.solvers.bounds import background, begin_bound, finish_bound, proven_floor
from placer.solvers.partition.starts import metis_degree, metis_start, random_start, replica_free_start
from placer.solvers.search import crossover as chain
from placer.solvers.search.feasible import check_cap_feasible, make_feasible
from placer.solvers.search.lns import LnsStats, lns_round
from placer.solvers.search.problem import (DEFAULT_REPLICA_IMBALANCE, REL_TOL, Problem, build_problem,
                                           max_imbalance, objective, to_placement)
from placer.solvers.search.refine import perturb_and_refine, refine, single_thread_blas

DEFAULT_STARTS = 4
FLOW_SHARE = 0.25     # most of the time limit the bound's flows take before the search
BESIDE_SEARCH_SHARE = 0.97    # of the time limit, for the search when the bound's ascents run beside it


@dataclass(frozen=True)
class PartitionParams:
    starts: int = param(DEFAULT_STARTS, "starts refined (METIS first, then random; with replicas the replica-free "
                                        "solutions first, under the load cap and without it)", min=1)
    kicks: int | None = param(None, "iterated-local-search perturbations after the starts (none: until the time "
                                    "limit or the search converges)", min=0)
    metis: bool = param(True, "use METIS for a start (False: random starts only)")
    metis_degree: int | None = param(None, "edges kept per vertex for METIS (none: automatic, 8 from 10^6 edges "
                                           "on; 0: all)", min=0)
    lns_rounds: int | None = param(None, "window moves per phase (none: until they stop gaining)", min=0)
    lns_size: int = param(4, "experts per GPU and layer a window move may re-split (C(2m, m) states a layer)",
                          min=1, max=6)
    lns_window: int = param(3, "layers per window move (coherent; ep moves one layer)", min=1)
    patience: int = param(0, "kicks (and window moves) in a row without gain that end a phase "
                             "(0: 300 kicks, 50 + 4 G window moves)", min=0)
    bound: bool = param(True, "compute the lower bound (inside the time limit, after the search or beside it)")
    bound_beside: bool = param(True, "with two cores or more, the bound's ascents run in a second process beside "
                                     "the search for the whole limit (bound_share then goes to the search)")
    crossover: bool = param(True, "chain crossovers between blocks of kicks: the best layer-by-layer combination of "
                                  "the starts' layouts, the best ones met so far and greedy chains grown from them, "
                                  "by dynamic programming (coherent, no replicas)")
    crossover_every: int = param(200, "kicks between chain crossovers, the first after at most half the kicks "
                                      "(0: one crossover, after half the kicks)", min=0)
    semidefinite: bool = param(False, "on the time the bound's ascents leave, the eigenvalue bound with the pair "
                                      "weights of a semidefinite relaxation (coherent, chains of at most 192 "
                                      "experts; about 5 s a chain: useful from 60 s limits, and the command "
                                      "then runs to its limit)")
    bound_share: float = param(0.1, "share of the time limit kept for the lower bound after the search (it also "
                                    "gets what the search leaves when it converges early)", min=0.0, max=0.9)
    replica_imbalance: float = param(DEFAULT_REPLICA_IMBALANCE, "load cap (max/mean) with replicas when "
                                                                "--max-imbalance is not given", min=1.0)


@register("partition", "multi-constraint METIS + constraint-keeping swap refinement, best of several starts",
          PartitionParams, replicas=True)
def solve(profile: Profile, topology: Topology, constraints: Constraints, params: PartitionParams) -> SolveResult:
    """Scalable heuristic: hierarchical METIS and random starts, layer re-assignment and swaps."""
    with single_thread_blas():
        return _solve(profile, topology, constraints, params)


def _solve(profile: Profile, topology: Topology, constraints: Constraints, params: PartitionParams) -> SolveResult:
    t0 = time.perf_counter()
    prob = build_problem(profile, topology, constraints, params.replica_imbalance)
    check_cap_feasible(prob)
    deadline = t0 + float(constraints.time_limit)
    # the b-matching flows before the search (main computed them first, whatever the limit), so a
    # search that overruns its share still leaves them; at most FLOW_SHARE of the limit, past
    # which the remaining pairs keep their degree bound
    tb = time.perf_counter()
    pending = begin_bound(profile, topology, constraints, t0 + FLOW_SHARE * constraints.time_limit,
                          params.semidefinite) if params.bound else None
    timings = {"flows_s": time.perf_counter() - tb}
    beside = background.start(pending, deadline) if params.bound and params.bound_beside else None
    # the search stops at its share of the limit, the bound's ascents get the rest (all of it when
    # the search converges early); with the ascents beside, the search takes the bound's share
    # less a margin for its last step's overrun (the ascents' own share absorbed it before). The
    # bound never changes the placement
    share = 1.0 if not params.bound else BESIDE_SEARCH_SHARE if beside is not None else 1.0 - params.bound_share
    search_deadline = t0 + share * float(constraints.time_limit)
    try:
        found = _search(prob, profile, topology, constraints, params, search_deadline, pending, timings)
        tb = time.perf_counter()
        bound, bound_name = (None, None) if not params.bound else \
            _bound(pending, beside, deadline if found[2]["stopped_by"] != "bound met" else tb)
    finally:
        if beside is not None:
            background.stop(beside)
    timings["bound_s"] = time.perf_counter() - tb
    starts, best_gpu, search = found
    best_obj = search.pop("objective")
    ratios = prob.cap / np.where(prob.load.sum(1) > 0, prob.load.sum(1) / prob.G, np.inf)
    details = {"starts": starts, "best_start": int(np.argmin([s["objective"] for s in starts])),
               "max_imbalance": max_imbalance(prob, best_gpu),
               "load_cap": float(ratios[np.isfinite(ratios)].max()) if np.isfinite(ratios).any() else None,
               "bound_beside": beside is not None, **search}
    return SolveResult(to_placement(prob, best_gpu), "partition", Status.HEURISTIC, Objective(constraints.cost).name,
                       objective=float(best_obj), bound=bound, bound_method=bound_name, details=details,
                       timings=timings, notes=[TIME_LIMIT_NOTE.format(**search)] if search["stopped_by"] == "time limit" else [])


def _bound(pending, beside, until: float) -> tuple[float, str]:
    """The bound: the child's (:mod:`placer.solvers.bounds.background`) when one runs and
    answers by ``until`` (plus its grace), else the ascents here until ``until``."""
    if beside is not None:
        found = background.collect(beside, until + background.GRACE_S) if until > time.perf_counter() else None
        if found is not None:
            return found
        until = time.perf_counter()         # no time is left for ascents here
    return finish_bound(pending, until)


def _search(prob: Problem, profile: Profile, topology: Topology, constraints: Constraints, params: PartitionParams,
            search_deadline: float, pending, timings: dict) -> tuple[list[dict], np.ndarray, dict]:
    """Starts and improvement (items 2-3 of the module docstring): (starts' records, best ``gpu``,
    the search's record with its ``objective``)."""
    with progress("partition: starts", total=params.starts, unit="starts") as advance:
        starts, best_gpu, best_obj, pool = _run_starts(prob, profile, topology, constraints, params,
                                                       search_deadline, advance)
    timings["starts_s"] = [s.pop("time_s") for s in starts]
    if pending is not None and best_obj <= proven_floor(pending) * (1 + 1e-12):
        # a start met the bound: it is optimal, and kicks until the limit would only make the
        # result depend on the machine's speed
        search = {"kicks": 0, "kicks_accepted": 0, "window_moves": 0, "window_moves_kept": 0, "crossover": None,
                  "crossovers": 0, "crossovers_kept": 0, "stopped_by": "bound met", "objective": best_obj}
    else:
        search = _improve(prob, best_gpu, best_obj, params, constraints.seed, search_deadline,
                          pool if params.crossover and chain.applies(prob) else None)
        if "crossover_s" in search:
            timings["crossover_s"] = search.pop("crossover_s")
    return starts, best_gpu, search


CROSSOVER_SHARE = 0.25     # of the search's time left, at most, for the chain crossover (it stops on it)


def _crossover(prob: Problem, pool: list[np.ndarray], gpu: np.ndarray, obj: float, deadline: float) -> tuple[dict, float]:
    """The chain crossover (:mod:`placer.solvers.search.crossover`) of the starts' layouts and the
    best so far ``gpu``, refined; it replaces ``gpu`` (in place) when better. Returns (record, objective)."""
    now = time.perf_counter()
    found = chain.crossover(prob, pool + [gpu], now + CROSSOVER_SHARE * max(0.0, deadline - now))
    if found is None:
        return {"stopped_by": "it would not finish in its share of the time (a quarter of what is left)",
                "kept": False}, obj
    new, dp_cost, count = found
    refine(prob, new, deadline)
    new_obj = objective(prob, new)
    kept = new_obj < obj - REL_TOL * max(1.0, abs(obj))
    if kept:
        gpu[:] = new
    return {"candidates": count, "programme": dp_cost, "before": obj, "objective": new_obj, "kept": bool(kept)}, \
        (new_obj if kept else obj)


ELITE = 6      # layouts the repeated crossover keeps (the best distinct ones met)


def _kicks_crossing(prob: Problem, gpu: np.ndarray, obj: float, count: int | None, rng, deadline: float,
                    patience: int, advance, pool: list[np.ndarray], every: int, record: dict) -> tuple[float, int, int]:
    """Iterated local search in blocks of ``every`` kicks, each block followed by a chain crossover
    of the elite (the starts' layouts and the best so far after each crossover, the ``ELITE``
    cheapest distinct ones) with the best so far ``gpu`` (updated in place). The first block ends
    at half of ``count`` (or of the time left) if that comes first. Stops on ``count`` kicks,
    ``patience`` kicks in a row without gain (a kept crossover counts as one), or ``deadline``.
    Returns ``(objective, kicks accepted, kicks done)``."""
    elite = [(objective(prob, g), g) for g in pool]
    done = accepted = stall = 0
    record["crossover_s"] = 0.0
    # the first crossover comes after ``every`` kicks or half of them (half of ``count``, or of the
    # time left), whichever is first
    half = time.perf_counter() + 0.5 * max(0.0, deadline - time.perf_counter())
    first = True
    while (count is None or done < count) and stall < patience and time.perf_counter() < deadline:
        block = every if count is None else min(every, count - done, max(1, count // 2) if first else every)
        before = obj
        obj, acc, n = perturb_and_refine(prob, gpu, obj, block, rng, half if first else deadline, patience - stall,
                                         advance)
        first = False
        done, accepted = done + n, accepted + acc
        stall = 0 if obj < before else stall + n
        if time.perf_counter() >= deadline or stall >= patience:
            break
        tc = time.perf_counter()
        rec, obj = _crossover(prob, [g for _, g in elite], gpu, obj, deadline)
        record["crossover_s"] += time.perf_counter() - tc
        record["crossovers"] += 1
        record["crossover"] = rec
        if rec.get("kept"):
            record["crossovers_kept"] += 1
            stall = 0
        if not any(np.array_equal(gpu, g) for _, g in elite):
            elite = sorted(elite + [(obj, gpu.copy())], key=lambda e: e[0])[:ELITE]
    return obj, accepted, done


REPLICA_FREE_SHARE = 0.4    # of the search's time left, for the replica-free start's own refinement

TIME_LIMIT_NOTE = ("the time limit stopped the search (after {kicks} kicks): the result depends on this machine's speed; "
                   "--param kicks=N stops on a count instead, the same for a given --seed on any machine")


def _improve(prob: Problem, gpu: np.ndarray, obj: float, params: PartitionParams, seed: int,
             deadline: float, pool: list[np.ndarray] | None = None) -> dict:
    """Iterated local search, then window moves (:mod:`placer.solvers.search.lns`), and again
    while the window moves find something: until both stop gaining (``patience``), the counts
    ``kicks`` / ``lns_rounds`` are spent, or the deadline. Returns the objective and a record of
    the work (``stopped_by`` says whether the time limit decided the result, which then depends
    on the machine's speed; a count or convergence does not).

    ``pool``: the starts' layouts for the chain crossover. With ``crossover_every`` > 0 it comes
    after every block of that many kicks, the first block at most half of them
    (:func:`_kicks_crossing`); with 0, once, after the first half of the kicks (half of
    ``kicks``, or of the time left) or when they stop gaining earlier. Right after the starts it
    led the search into worse basins (ESFT summary top-1 on 2 x 8 GPUs: 587k against 571k without
    it); at half time it is as good on the other ESFT rows (docs/benchmarks.md, fifth session)."""
    rng = np.random.default_rng([int(seed), 7919])
    kick_patience = params.patience or 300
    lns_patience = params.patience or 50 + 4 * prob.G
    kicks_left = params.kicks
    record = {"kicks": 0, "kicks_accepted": 0, "window_moves": 0, "window_moves_kept": 0, "crossover": None,
              "crossovers": 0, "crossovers_kept": 0}
    stats = LnsStats()
    while True:
        count, until = kicks_left, deadline
        if pool is not None and params.crossover_every > 0:
            with progress("partition: local search", total=count, unit="kicks") as advance:
                obj, accepted, done = _kicks_crossing(prob, gpu, obj, count, rng, deadline, kick_patience,
                                                      advance, pool, params.crossover_every, record)
            pool = None
        else:
            if pool is not None:
                count = None if kicks_left is None else kicks_left // 2
                until = time.perf_counter() + 0.5 * max(0.0, deadline - time.perf_counter())
            with progress("partition: local search", total=count, unit="kicks") as advance:
                obj, accepted, done = perturb_and_refine(prob, gpu, obj, count, rng, until, kick_patience, advance)
        record["kicks"] += done
        record["kicks_accepted"] += accepted
        if kicks_left is not None:
            kicks_left -= done
        if pool is not None:
            # the kicks stopped gaining before their half: they resume only from a better layout
            # (another phase without gain would take the bound's time)
            converged = time.perf_counter() < until and (count is None or done < count)
            tc = time.perf_counter()
            record["crossover"], obj = _crossover(prob, pool, gpu, obj, deadline)
            record["crossover_s"] = time.perf_counter() - tc
            record["crossovers"], record["crossovers_kept"] = 1, int(record["crossover"]["kept"])
            pool = None
            if record["crossover"]["kept"] or not converged:
                continue        # the second half of the kicks, from the crossover's result
        kept_before = stats.kept
        stall = 0
        while time.perf_counter() < deadline and stall < lns_patience and prob.G > 1:
            if params.lns_rounds is not None and stats.tried - record["window_moves"] >= params.lns_rounds:
                break
            stall = 0 if lns_round(prob, gpu, rng, params.lns_size, params.lns_window, stats) > 0 else stall + 1
        record["window_moves"] = stats.tried
        if stats.kept > kept_before:
            obj = objective(prob, gpu)
        record["window_moves_kept"] = stats.kept
        if time.perf_counter() >= deadline:
            record["stopped_by"] = "time limit"
            break
        if stats.kept == kept_before or kicks_left == 0:
            record["stopped_by"] = "kicks" if kicks_left == 0 else "converged"
            break
    record["objective"] = obj
    return record


def _kinds(prob: Problem, params: PartitionParams) -> list[str]:
    """The starts before the random ones: with replicas the replica-free solutions (fast), under
    the load cap and then without it, then METIS on the larger instance graph."""
    kinds = []
    if prob.replicated:
        kinds = ["replica-free, capped", "replica-free"] if prob.capped else ["replica-free"]
    return kinds + (["metis"] if params.metis and prob.G > 1 else [])


def _start(prob: Problem, profile: Profile, topology: Topology, constraints: Constraints, params: PartitionParams,
           kind: str, k: int, deadline: float) -> tuple[str, np.ndarray] | None:
    """``(kind, gpu [L, P])`` of start k of ``kind`` (:func:`_kinds`, else random); None for a
    capped replica-free start whose first copies cannot meet the cap (it takes no start's place)."""
    if kind.startswith("replica-free"):
        # its refinement without replicas converges early on small instances; on large ones it
        # would take the whole search (DeepSeek-V3 shape, 64 replicas: 0 sweeps left for the
        # capped refinement after it), so it stops at a share of what is left
        now = time.perf_counter()
        capped = kind.endswith("capped")
        gpu = replica_free_start(prob, profile, topology, constraints, now + REPLICA_FREE_SHARE * max(0.0, deadline - now),
                                 params.replica_imbalance, capped=capped)
        if gpu is not None:
            return kind, gpu
        if capped:
            return None
        kind = "random"
    if kind == "metis":
        return kind, metis_start(prob, constraints.seed, metis_degree(prob, params.metis_degree))
    return "random", random_start(prob, constraints.seed, k)


def _run_starts(prob: Problem, profile: Profile, topology: Topology, constraints: Constraints,
                params: PartitionParams, deadline: float, advance) -> tuple[list[dict], np.ndarray, float, list]:
    """Each start made feasible and refined; returns (per-start records, best ``gpu``, its objective,
    every start's refined ``gpu``)."""
    starts: list[dict] = []
    pool: list[np.ndarray] = []
    best_gpu, best_obj = None, np.inf
    kinds = _kinds(prob, params)
    k = 0
    while len(starts) < params.starts:
        # a start cannot be interrupted before its refinement: skip one that would not fit,
        # judging by the previous start's time
        if starts and time.perf_counter() + starts[-1]["time_s"] > deadline:
            break
        ts = time.perf_counter()
        found = _start(prob, profile, topology, constraints, params, kinds[k] if k < len(kinds) else "random",
                       len(starts), deadline)
        k += 1
        if found is None:
            continue
        kind, gpu = found
        make_feasible(prob, gpu)
        start_obj = objective(prob, gpu)
        sweeps = refine(prob, gpu, deadline)
        obj = objective(prob, gpu)
        starts.append({"start": kind, "initial": start_obj, "objective": obj, "sweeps": sweeps,
                       "time_s": time.perf_counter() - ts})
        pool.append(gpu)
        if obj < best_obj - REL_TOL * max(1.0, abs(best_obj) if np.isfinite(best_obj) else 1.0):
            best_gpu, best_obj = gpu.copy(), obj
        advance(1)
    return starts, best_gpu, best_obj, pool
