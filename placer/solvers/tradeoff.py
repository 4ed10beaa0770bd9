"""Minimise predicted step time: choose the balance/traffic trade-off by the time model, held out.

A placement's step time (:mod:`placer.cost.time`) is its all-to-all time plus, per layer, the
slowest GPU's experts: moving fewer tokens helps until the busiest GPU becomes the straggler.
Every solver here minimises traffic under a per-layer load cap (``--max-imbalance``); the cap is
the knob of the trade-off, and the time model turns it:

1. The training sequences are split into a fitting part and the last third, consecutive
   sequences the solver does not see (a validation window; tokens when the trace has one
   sequence). On the fitting part the solver runs once per cap of a grid (no cap, 2.0, 1.5, 1.25,
   1.1, 1.05, and the least any placement reaches without replicas), and ``contiguous`` and
   ``eplb`` are fitted too.
2. Every candidate is scored by the time model on the validation window, counted token by token
   (so the choice rests on tokens the placements were not fitted on: routing drifts between
   batches, and a cap that only holds in sample shows up here).
3. The winner is refitted on all training tokens: the solver with the chosen cap, or the baseline
   itself when a baseline won, so the result is never slower on the window than the better of
   ``contiguous`` and ``eplb``.

Without per-token data (a Profile of counts) the candidates are scored on the profile in sample.
The time limit is split: half for the grid (evenly), half for the refit.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from placer.cost import load_cost
from placer.cost.objectives import imbalance_floor
from placer.cost.time import StepSpec, time_cost
from placer.errors import PlacerError
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.model.trace import Trace
from placer.solvers.base import Constraints, SolveResult, Status, solve

CAPS = (None, 2.0, 1.5, 1.25, 1.1, 1.05)
REPLICA_CAPS = (None, 1.5, 1.25, 1.1, 1.05, 1.02)
BASELINES = ("contiguous", "eplb")
VALIDATION_SHARE = 1 / 3


def _window(scores: dict[str, float]) -> dict[str, float]:
    return {"step_s": scores["step_s"], "window_imbalance": scores["max_imbalance"]}


def objective_name(spec: StepSpec, comm: str) -> str:
    return f"step time ({comm} all-to-all, {spec.hardware.name}, {spec.phase}, {spec.tokens_per_step} tokens), seconds"


def caps_for(profile: Profile, topology: Topology, constraints: Constraints) -> list[float | None]:
    """The grid: :data:`CAPS` the instance can meet, plus its floor without replicas."""
    if constraints.replicas:
        return list(REPLICA_CAPS)
    floor, _ = imbalance_floor(profile.load, topology.num_gpus)
    caps = [c for c in CAPS if c is None or c >= floor * (1 + 1e-6)]
    if floor > 1.05:
        caps.append(round(floor * 1.001 + 5e-4, 3))
    return caps


def solve_step_time(name: str, train: Trace | Profile, profile: Profile, topology: Topology,
                    constraints: Constraints, params: Any, spec: StepSpec, comm: str,
                    profile_of=None) -> SolveResult:
    """The placement of solver ``name`` with the least predicted step time (module docstring).

    ``train``: the tokens to fit on (a Trace, or the Profile itself); ``profile``: its Profile;
    ``profile_of``: how to count a part of ``train`` (``placer.traces.load.profile_of``).
    """
    t0 = time.perf_counter()
    tunable = name not in BASELINES and name not in ("round_robin", "random")
    if isinstance(train, Trace) and train.num_tokens >= 2 and tunable:
        fit, window = train.split(VALIDATION_SHARE)
        fit_profile = profile_of(fit)
    else:
        fit, window, fit_profile = profile, None, profile
    grid = caps_for(fit_profile, topology, constraints) if tunable else [constraints.max_imbalance]
    share = 0.5 * constraints.time_limit / max(1, len(grid))
    rows: list[dict[str, Any]] = []

    data = window if window is not None else fit_profile

    def score(placement) -> dict[str, float]:
        return {"step_s": time_cost(data, placement, topology, spec, comm).step_s,
                "max_imbalance": float(load_cost(data, placement).max_imbalance)}

    for cap in grid:
        try:
            res = solve(name, fit_profile, topology, dataclasses.replace(constraints, max_imbalance=cap,
                                                                         time_limit=share), params)
        except PlacerError as exc:
            rows.append({"candidate": name, "max_imbalance": cap, "skipped": str(exc)})
            continue
        rows.append({"candidate": name, "max_imbalance": cap, **_window(score(res.placement))})
    for base in BASELINES:
        res = solve(base, fit_profile, topology, constraints)
        rows.append({"candidate": base, "max_imbalance": None, **_window(score(res.placement))})
    scored = [r for r in rows if "step_s" in r]
    if constraints.replicas:
        eplb = next(r for r in scored if r["candidate"] == "eplb")
        scored = [r for r in scored if r["window_imbalance"] <= eplb["window_imbalance"] * (1 + 1e-9)]
    if not scored:
        raise PlacerError(f"no placement of {name} meets the constraints at any load cap; raise --max-imbalance "
                          f"or add --replicas")
    best = min(scored, key=lambda r: (r["step_s"], r["candidate"] != name))
    left = max(0.1, constraints.time_limit - (time.perf_counter() - t0))
    final = dataclasses.replace(constraints, max_imbalance=best["max_imbalance"], time_limit=left)
    result = solve(best["candidate"], profile, topology, final, params if best["candidate"] == name else None)
    step = time_cost(profile, result.placement, topology, spec, comm)
    details = {"traffic": {"solver": result.solver, "objective_model": result.objective_model,
                           "objective": result.objective, "bound": result.bound, "status": str(result.status)},
               "tradeoff": rows, "chosen": {"candidate": best["candidate"], "max_imbalance": best["max_imbalance"]},
               "validation_tokens": None if window is None else window.num_tokens,
               "fit_tokens": fit_profile.num_tokens, "solver_details": result.details}
    return SolveResult(result.placement, result.solver, Status.HEURISTIC, objective_name(spec, comm),
                       objective=step.step_s, details=details, notes=result.notes,
                       timings={**result.timings, "tradeoff_s": time.perf_counter() - t0},
                       choice=f"{best['candidate']} with max-imbalance {best['max_imbalance']}: the least predicted "
                              f"step time on {'a validation window' if window is not None else 'the profile'} of "
                              f"{len(scored)} candidates")

