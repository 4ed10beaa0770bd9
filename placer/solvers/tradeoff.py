"""Minimise predicted step time: choose the balance/traffic trade-off by the time model, held out.

A placement's step time (:mod:`placer.cost.time`) is its all-to-all time plus, per layer, the
slowest GPU's experts: moving fewer tokens helps until the busiest GPU becomes the straggler.
Every solver here minimises traffic under a per-layer load cap (``--max-imbalance``); the cap is
the knob of the trade-off, and the time model turns it (docs/time-model.md):

1. Two folds of the training sequences (:func:`folds`; tokens when the trace has one sequence):
   fit on the first two thirds and hold out the last third, then fit on the last two thirds and
   hold out the first. On each fold's fitting part the solver runs once per cap of a grid
   (:data:`CAPS` the instance can meet and the least any placement reaches without replicas; with
   replicas :data:`REPLICA_CAPS`), and ``contiguous`` and ``eplb`` are fitted too.
2. Every candidate is scored by the time model on its fold's held-out window, counted token by
   token: routing drifts between batches, and a cap that only holds in sample shows up here.
   A candidate's score is its **worst case over the two windows** of its step time over the better
   baseline's on that window (:func:`worst_case`). The baselines are scored first; caps are tried
   in the grid's order until half of the time limit is spent (at least one cap).
   With replicas and a per-token trace, each candidate of the solver is then rebalanced against
   drift (:mod:`placer.solvers.drift`: under EPLB's own in-sample balance per layer, swaps that
   lower the busiest GPU over resampled windows of its fitting tokens), as the refit will be, and
   half of each candidate's time goes to that. Other candidates (contiguous; every candidate
   when nothing is rebalanced, as for a Profile of counts) less balanced than EPLB on their worst
   validation window are dropped: a validation window of a few sequences is too noisy to veto a
   rebalanced candidate on (ESFT summary, 16 GPUs: the veto returned EPLB, slower than
   contiguous, where the rebalanced candidate was 13 % faster and held out as balanced).
   Contiguous's layout rebalanced the same way (:data:`REBALANCED`) is one more candidate,
   exempt like the solver's: where contiguous's traffic is already near the best (ESFT intent
   on 2 x 8 GPUs, Mixtral on 4), it keeps that traffic at EPLB's balance. Measured (`python
   benchmarks/bench_step_time.py --replicas 1x`, same session): held-out worst-layer balance no
   worse than EPLB's on 23 of 28 rows against 22 (ESFT 10 of 12 against 8), never slower than
   the better baseline on 24 of 28 both ways (docs/benchmarks.md, fourth session).
3. The least worst case wins (ties: the requested solver) and is refitted on all training tokens:
   the solver with the chosen cap (rebalanced, with replicas), contiguous refitted and
   rebalanced, or the baseline itself when a baseline won. The report's ``details.drift`` says
   what the rebalancing did.

Without per-token data (a Profile of counts) the candidates are scored on the profile in sample.
The time limit is split: half for the grid (evenly over folds and caps), half for the refit.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from placer.cost import load_cost
from placer.cost.objectives import Objective, imbalance_floor
from placer.cost.time import StepSpec, time_cost
from placer.errors import PlacerError
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.model.trace import Trace
from placer.solvers.base import Constraints, SolveResult, Status, solve
from placer.solvers.drift import try_rebalance, windows_of

# in the order they are tried: where the trade-off usually lands first (the grid stops when its
# half of the time limit is spent)
CAPS = (1.05, 1.25, 1.02, 1.5, 1.1, 2.0, None)
# with replicas the rebalancing (drift) moves every candidate off its cap: fewer, wider caps
REPLICA_CAPS = (1.02, 1.01, 1.1, None)
BASELINES = ("contiguous", "eplb")
VALIDATION_SHARE = 1 / 3
SEARCH_SHARE = 0.5      # with replicas, of a candidate's time: the search; the rest rebalances (drift)
REBALANCED = "contiguous, rebalanced"    # contiguous's layout after the drift rebalancing


def objective_name(spec: StepSpec, comm: str) -> str:
    return f"step time ({comm} all-to-all, {spec.hardware.name}, {spec.phase}, {spec.tokens_per_step} tokens), seconds"


def caps_for(profile: Profile, topology: Topology, constraints: Constraints) -> list[float | None]:
    """The grid: :data:`CAPS` the instance can meet, plus its floor without replicas."""
    if constraints.replicas:
        return list(REPLICA_CAPS)
    floor, _ = imbalance_floor(profile.load, topology.num_gpus)
    caps = [c for c in CAPS if c is None or c >= floor * (1 + 1e-6)]
    if floor > 1.05:
        caps.insert(0, round(floor * 1.001 + 5e-4, 3))
    return caps


def folds(train: Trace) -> list[tuple[Trace, Trace]]:
    """``(fit, window)`` pairs: the last third of the sequences held out, then the first third."""
    fit, window = train.split(VALIDATION_SHARE)
    first, rest = train.split(1 - VALIDATION_SHARE)
    return [(fit, window), (rest, first)]


def solve_step_time(name: str, train: Trace | Profile, profile: Profile, topology: Topology,
                    constraints: Constraints, params: Any, spec: StepSpec, comm: str,
                    profile_of=None) -> SolveResult:
    """The placement of solver ``name`` with the least predicted step time (module docstring).

    ``train``: the tokens to fit on (a Trace, or the Profile itself); ``profile``: its Profile;
    ``profile_of``: how to count a part of ``train`` (``placer.traces.load.profile_of``).
    """
    t0 = time.perf_counter()
    tunable = name not in BASELINES and name not in ("round_robin", "random")
    if isinstance(train, Trace) and train.num_tokens >= 3 and tunable:
        parts = [(profile_of(fit), window, windows_of(fit, constraints)) for fit, window in folds(train)]
    else:
        parts = [(profile, None, None)]
    grid = caps_for(parts[0][0], topology, constraints) if tunable else [constraints.max_imbalance]
    share = 0.5 * constraints.time_limit / max(1, len(grid) * len(parts))
    search_share = SEARCH_SHARE if parts[0][2] is not None else 1.0
    grid_until = t0 + 0.5 * constraints.time_limit
    rows: list[dict[str, Any]] = []

    def score(data, placement) -> dict[str, float]:
        return {"step_s": time_cost(data, placement, topology, spec, comm).step_s,
                "window_imbalance": float(load_cost(data, placement).max_imbalance)}

    eplb_cap: list[np.ndarray] = []         # EPLB's layers in each fold's sample: the rebalancing's caps
    for fold, (fit_profile, window, win) in enumerate(parts):
        fitted = {base: solve(base, fit_profile, topology, constraints).placement for base in BASELINES}
        eplb_cap.append(load_cost(fit_profile, fitted["eplb"]).imbalance)
        for base in BASELINES:
            rows.append({"fold": fold, "candidate": base, "max_imbalance": None,
                         **score(window if window is not None else fit_profile, fitted[base])})
        if win is not None:
            # contiguous's layout rebalanced like the solver's candidates, one more candidate (the
            # raw layout stays one too, under the veto: dropping it lost Mixtral rows on 8 GPUs where
            # it was fastest and balanced held out, by 0.01-0.05 %)
            placement, _ = try_rebalance(fitted["contiguous"], fit_profile, topology, constraints, win,
                                         time.perf_counter() + share * (1 - search_share), eplb_cap[fold])
            rows.append({"fold": fold, "candidate": REBALANCED, "max_imbalance": None,
                         **score(window, placement)})
    for i, cap in enumerate(grid):
        if i and time.perf_counter() > grid_until:
            # the grid's half of the budget is spent (a solver may take longer than its share)
            rows.append({"candidate": name, "max_imbalance": cap, "skipped": "the grid's time was spent"})
            continue
        for fold, (fit_profile, window, win) in enumerate(parts):
            began = time.perf_counter()
            search = dataclasses.replace(constraints, max_imbalance=cap, time_limit=share * search_share)
            try:
                res = solve(name, fit_profile, topology, search, params)
            except PlacerError as exc:
                rows.append({"fold": fold, "candidate": name, "max_imbalance": cap, "skipped": str(exc)})
                continue
            # a search that overran its share still gets its rebalancing time: a candidate is
            # scored as the refit will be (the grid's end check then drops later caps)
            until = max(began + share, time.perf_counter() + share * (1 - search_share))
            placement, drift = try_rebalance(res.placement, fit_profile, topology, search, win, until, eplb_cap[fold])
            rows.append({"fold": fold, "candidate": name, "max_imbalance": cap,
                         **score(window if window is not None else fit_profile, placement),
                         "seconds": time.perf_counter() - began,
                         **({"drift_swaps": drift["swaps"]} if drift else {})})
    # rebalanced candidates are held to EPLB's balance by its in-sample caps and the drift windows;
    # a validation window of a few sequences is too noisy to veto them on (drift module).
    # raw contiguous is not rebalanced: it stays vetoed when less balanced than EPLB
    rebalanced = parts[0][2] is not None
    scored = worst_case(rows, len(parts), bool(constraints.replicas), (name, REBALANCED) if rebalanced else ())
    if not scored:
        raise PlacerError(f"no placement of {name} meets the constraints at any load cap; raise --max-imbalance "
                          f"or add --replicas")
    best = min(scored, key=lambda r: (r["worst_ratio"], r["candidate"] != name))
    left = max(0.1, constraints.time_limit - (time.perf_counter() - t0))
    refit = best["candidate"] in (name, REBALANCED)
    final = dataclasses.replace(constraints, max_imbalance=best["max_imbalance"],
                                time_limit=left * search_share if refit else left)
    base = "contiguous" if best["candidate"] == REBALANCED else best["candidate"]
    result = solve(base, profile, topology, final, params if base == name else None)
    drift = None
    if refit:
        win = windows_of(train, constraints) if rebalanced else None
        cap = (load_cost(profile, solve("eplb", profile, topology, constraints).placement).imbalance
               if win is not None else None)
        result.placement, drift = try_rebalance(result.placement, profile, topology, final, win,
                                                t0 + constraints.time_limit, cap)
        if drift is not None:
            # the swaps leave the in-sample cap, which the traffic bound assumed
            result.objective = Objective(constraints.cost).of_placement(profile, topology, result.placement)
            if best["max_imbalance"] is not None:
                result.bound = None
    step = time_cost(profile, result.placement, topology, spec, comm)
    windows = [w.num_tokens for _, w, _ in parts if w is not None]
    details = {"traffic": {"solver": result.solver, "objective_model": result.objective_model,
                           "objective": result.objective, "bound": result.bound, "status": str(result.status)},
               "tradeoff": rows, "candidates": scored,
               "chosen": {"candidate": best["candidate"], "max_imbalance": best["max_imbalance"],
                          "worst_ratio": best["worst_ratio"]},
               "validation_tokens": windows or None, "fit_tokens": [p.num_tokens for p, _, _ in parts],
               "drift": drift,
               "solver_details": result.details}
    where = f"{len(windows)} validation window(s)" if windows else "the profile"
    return SolveResult(result.placement, result.solver, Status.HEURISTIC, objective_name(spec, comm),
                       objective=step.step_s, details=details, notes=result.notes + _drift_note(drift),
                       timings={**result.timings, "tradeoff_s": time.perf_counter() - t0},
                       choice=f"{best['candidate']} with max-imbalance {best['max_imbalance']}: the least worst-case "
                              f"predicted step time against the better baseline on {where}, of {len(scored)} "
                              f"candidates")


def _drift_note(drift: dict | None) -> list[str]:
    if not drift:
        return []
    return [f"rebalanced against drift: {drift['swaps']} swaps lowered the busiest GPU over {drift['windows']} "
            f"resampled windows of the training sequences from {drift['score_before']:.3f} to "
            f"{drift['score_after']:.3f} x the mean (worst layer), "
            + ("keeping each layer at most as imbalanced in sample as EPLB" if drift["cap_met"]
               else "but some layer stayed less balanced in sample than EPLB")]


def worst_case(rows: list[dict[str, Any]], num_folds: int, replicas: bool,
               exempt: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One entry per candidate scored on every fold: ``worst_ratio``, the largest over the folds of
    its window step time over the better baseline's there; with replicas only those no less
    balanced than EPLB on their worst window (worst-layer max/mean), except candidates of
    ``exempt`` (those rebalanced against drift)."""
    by: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        if "step_s" in r:
            by.setdefault((r["candidate"], r["max_imbalance"]), []).append(r)
    best = [min(r["step_s"] for r in rows if r.get("fold") == k and r["candidate"] in BASELINES)
            for k in range(num_folds)]
    out = [{"candidate": c, "max_imbalance": cap,
            "worst_ratio": max(r["step_s"] / best[r["fold"]] for r in rs),
            "worst_imbalance": max(r["window_imbalance"] for r in rs)}
           for (c, cap), rs in by.items() if len(rs) == num_folds]
    if replicas:
        eplb = next(r for r in out if r["candidate"] == "eplb")
        out = [r for r in out if r["candidate"] in exempt or r["worst_imbalance"] <= eplb["worst_imbalance"] * (1 + 1e-9)]
    return out
