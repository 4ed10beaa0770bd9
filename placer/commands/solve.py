"""``moe-place solve``: compute a placement, prove a bound, compare with the baselines.

TRACE is a native trace, a saved Profile, or anything ``placer.traces.importers.load_any``
reads. With ``--holdout F`` the last share F of sequences is held out: the solver sees only the
rest, and every placement is scored on both parts. The placement JSON carries the report
(without wall-clock timings, so the same input and ``--seed`` give the same bytes).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from placer.errors import PlacerError
from placer.fileio import to_jsonable
from placer.model.profile import Profile
from placer.progress import progress
from placer.solvers.base import Constraints, SolveResult, available_solvers, get_solver
from placer.model.topology import Topology
from placer.model.trace import Trace

# ``auto`` tries the MILP when L x E x G (its binary variables) is at most this (and the exact
# layer-chain dp whenever it applies); larger instances go to the heuristic (docs/benchmarks.md).
AUTO_EXACT_MAX_VARS = 2048


def load_input(path: Path) -> tuple[Trace | None, Profile]:
    """``(trace or None, profile)`` from a native trace, a saved profile or an importable dump."""
    from placer.traces.load import load_input as read_routing

    data = read_routing(path)
    if isinstance(data, Profile):
        return None, data
    return data, profile_of(data)


def profile_of(trace: Trace) -> Profile:
    with progress("profiling", total=trace.num_tokens, unit="tokens") as advance:
        return Profile.from_trace(trace, progress=advance)


def exact_is_small(profile: Profile, num_gpus: int) -> bool:
    """Size test for ``auto``: the chain dp applies, or the MILP has few binaries."""
    from placer.solvers.exact.chain import MAX_STATES, num_states
    E = profile.num_experts
    if E % num_gpus == 0 and (E == num_gpus or num_states(E, num_gpus) <= MAX_STATES):
        return True
    return profile.num_layers * E * num_gpus <= AUTO_EXACT_MAX_VARS


def heuristic_name(constraints: Constraints) -> str:
    """The scalable heuristic: ``partition`` when installed, else the built-in layer descent."""
    solvers = available_solvers()
    if "partition" in solvers:
        return "partition"
    if constraints.replicas:
        if "eplb" in solvers:
            return "eplb"
        raise PlacerError("--replicas needs the partition or eplb solver, neither of which is installed here")
    return "layer_descent"


def run_auto(profile: Profile, topology: Topology, constraints: Constraints) -> tuple[SolveResult, str]:
    """Exact model when small (decided by size, then by result), else the heuristic; says which."""
    heur = heuristic_name(constraints)
    exact = "joint" if constraints.cost == "ep" else "exflow"
    if constraints.replicas or not exact_is_small(profile, topology.num_gpus):
        why = ("replicas need a heuristic" if constraints.replicas else
               f"L x E x G = {profile.num_layers * profile.num_experts * topology.num_gpus} > {AUTO_EXACT_MAX_VARS}: "
               f"too large to prove optimal")
        return get_solver(heur)(profile, topology, constraints), f"{heur} ({why})"
    t0 = time.perf_counter()
    try:
        res = get_solver(exact)(profile, topology, constraints)
    except PlacerError as exc:
        if "time limit" not in str(exc):
            raise
        return get_solver(heur)(profile, topology, constraints), f"{heur} (the exact model found nothing in time: {exc})"
    if res.status == "optimal" or heur == exact:
        return res, f"{exact} (small instance: exact model, status {res.status})"
    left = max(1.0, constraints.time_limit - (time.perf_counter() - t0))
    other = get_solver(heur)(profile, topology, replace(constraints, time_limit=left))
    # compare in the exact model's units (a heuristic may report another objective)
    from placer.solvers.exact.models import objective_value
    value = objective_value(profile, topology, constraints.cost, other.placement.gpu_of,
                            float(constraints.options.get("load_weight", 0.0)))
    if res.objective is not None and value < res.objective - 1e-9:
        other.objective, other.bound, other.cost_model = value, res.bound, res.cost_model
        return other, f"{heur} (exact model not proven optimal in time; the heuristic was better)"
    return res, f"{exact} (not proven optimal in time; better than the {heur} heuristic)"


def baseline(name: str, profile: Profile, topology: Topology, constraints: Constraints):
    """A baseline placement under the same constraints, or None when that solver is not installed."""
    if name not in available_solvers():
        return None
    return get_solver(name)(profile, topology, constraints).placement


def metrics(data: Trace | Profile, placement, topology: Topology) -> dict[str, Any]:
    from placer.cost import evaluate
    ev = evaluate(data, placement, topology, matrices=False)
    out = {"coherent_per_transition": ev["coherent"]["per_transition"], "coherent_total": ev["coherent"]["total"],
           "max_imbalance": ev["load"]["max_imbalance"], "mean_imbalance": ev["load"]["mean_imbalance"]}
    if "copies" in ev.get("ep", {}):
        out["ep_copies_per_token_layer"] = ev["ep"]["copies_per_token_layer"]
        out["ep_copies"] = ev["ep"]["copies"]
    return out


@click.command("solve")
@click.argument("trace", type=click.Path(path_type=Path))
@click.option("--gpus", type=int, required=True, help="Number of GPUs (G).")
@click.option("--gpus-per-node", type=int, default=None, help="GPUs per node (default: all in one node).")
@click.option("--inter-node-cost", type=float, default=None,
              help="Hop cost across nodes (within a node 1); default NVLink/NIC bandwidth ratio 18.")
@click.option("--solver", default="auto", show_default=True,
              help="auto, exflow, joint, moetuner, layer_descent, partition, contiguous, eplb, ...")
@click.option("--cost", type=click.Choice(["coherent", "ep"]), default="coherent", show_default=True,
              help="Communication model to minimise (ep: within-layer co-activation cut).")
@click.option("--replicas", type=int, default=0, show_default=True, help="Redundant expert slots per layer.")
@click.option("--max-imbalance", type=float, default=None, help="Bound on per-layer max/mean GPU load.")
@click.option("--load-weight", type=float, default=0.0, show_default=True,
              help="joint: weight of the sum over layers of the max GPU load (token picks).")
@click.option("--time-limit", type=float, default=60.0, show_default=True, help="Seconds for the search.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--backend", default=None, help="Exact backend: cpsat (default), highs, cbc, or a PuLP solver name.")
@click.option("--threads", type=int, default=1, show_default=True, help="Backend threads (1 is deterministic).")
@click.option("--formulation", type=click.Choice(["auto", "dp", "compact", "naive"]), default="auto", show_default=True,
              help="Exact models: auto (layer-chain dp when a layer has few assignments, else the compact MILP).")
@click.option("--holdout", type=float, default=None,
              help="Hold out this share of sequences: solve on the rest, score on both.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Placement JSON to write.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def command(trace: Path, gpus: int, gpus_per_node: int | None, inter_node_cost: float | None, solver: str,
            cost: str, replicas: int, max_imbalance: float | None, load_weight: float, time_limit: float,
            seed: int, backend: str | None, threads: int, formulation: str, holdout: float | None,
            output: Path, as_json: bool) -> None:
    """Solve an expert placement for TRACE on --gpus GPUs and write it to -o."""
    if time_limit <= 0:
        raise PlacerError(f"--time-limit must be positive, got {time_limit:g}")
    topology = Topology.uniform(gpus, gpus_per_node, inter_node_cost)
    constraints = Constraints(replicas=replicas, max_imbalance=max_imbalance, cost=cost, time_limit=time_limit,
                              seed=seed, backend=backend, threads=threads,
                              options={"formulation": formulation, "load_weight": load_weight})
    if solver != "auto":
        get_solver(solver)  # an unknown name fails before the trace is read
    data, profile = load_input(trace)
    E = profile.num_experts
    constraints.slots_per_gpu(E, gpus)
    if not replicas:
        from placer.solvers.exact.models import gpu_load_caps
        gpu_load_caps(profile, gpus, max_imbalance)
    train_data: Trace | Profile = data if data is not None else profile
    test_data = None
    if holdout is not None:
        if data is None:
            raise PlacerError(f"{trace}: --holdout needs a per-token trace, not aggregate counts; drop --holdout")
        train_data, test_data = data.split(holdout)
        profile = profile_of(train_data)
    t0 = time.perf_counter()
    with progress(f"solving ({solver})") as _:
        if solver == "auto":
            result, choice = run_auto(profile, topology, constraints)
        else:
            result, choice = get_solver(solver)(profile, topology, constraints), f"{solver} (requested)"
    solve_s = time.perf_counter() - t0
    placements = {"solution": result.placement}
    for name in ("contiguous", "eplb"):
        pl = baseline(name, profile, topology, constraints)
        if pl is not None:
            placements[name] = pl
    table = {}
    for name, pl in placements.items():
        table[name] = {"in_sample": metrics(train_data, pl, topology)}
        if test_data is not None:
            table[name]["held_out"] = metrics(test_data, pl, topology)
    summary = result.summary()
    timing = {"solve_s": solve_s, "solver_s": summary.pop("time_s", None),
              "backend_s": summary.pop("backend_time_s", None)}
    # Wall-clock figures anywhere in a solver's details would make the placement file differ
    # between runs; they go to the printed timing only.
    summary = _drop_timings(summary, timing.setdefault("details", {}))
    report = {"solver": result.solver, "chosen": choice, "status": result.status, "cost_model": result.cost_model,
              "objective": result.objective, "bound": result.bound, "gap": summary.get("gap"),
              "details": {k: v for k, v in summary.items()
                          if k not in ("solver", "status", "cost_model", "objective", "bound", "gap")},
              "topology": topology.describe(),
              "constraints": {"replicas": replicas, "max_imbalance": max_imbalance, "cost": cost,
                              "time_limit": time_limit, "seed": seed, "backend": backend, "threads": threads,
                              "formulation": formulation, "load_weight": load_weight, "holdout": holdout},
              "input": {"path": trace.name, "num_layers": profile.num_layers, "num_experts": E,
                        "top_k": profile.top_k, "train_tokens": profile.num_tokens,
                        "moe_layers": list(profile.moe_layers), "num_hidden_layers": profile.num_hidden_layers,
                        "model": profile.model,
                        "held_out_tokens": None if test_data is None else test_data.num_tokens},
              "metrics": table}
    report = to_jsonable(report)
    placement = result.placement
    placement.report = report
    placement.save(output)
    if as_json:
        click.echo(json.dumps({**report, "timing": to_jsonable(timing), "output": str(output)}, indent=1))
        return
    _print_summary(report, timing, output)


def _drop_timings(obj: Any, sink: dict, path: str = "") -> Any:
    """Copy of ``obj`` without keys ending in ``time_s``; removed values go to ``sink`` by path."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            key = f"{path}.{k}" if path else str(k)
            if str(k).endswith("time_s"):
                sink[key] = v
            else:
                out[k] = _drop_timings(v, sink, key)
        return out
    if isinstance(obj, list):
        return [_drop_timings(v, sink, f"{path}[{i}]") for i, v in enumerate(obj)]
    return obj


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _print_summary(report: dict[str, Any], timing: dict[str, Any], output: Path) -> None:
    gap = report["gap"]
    click.echo(f"solver: {report['chosen']}")
    click.echo(f"status: {report['status']}  objective ({report['cost_model']}): {_fmt(report['objective'], 6)}  "
               f"bound: {_fmt(report['bound'], 6)}  gap: {'-' if gap is None else f'{100 * gap:.2f}%'}  "
               f"time: {timing['solve_s']:.2f} s")
    for note in report["details"].get("notes", []) or []:
        click.echo(f"note: {note}")
    cols = ["coherent_per_transition", "ep_copies_per_token_layer", "max_imbalance"]
    head = "  ".join(f"{c:>26}" for c in cols)
    for part in ("in_sample", "held_out"):
        rows = [(n, m[part]) for n, m in report["metrics"].items() if part in m]
        if not rows:
            continue
        click.echo(f"{part.replace('_', ' ')}:{'':<8}{head}")
        for name, m in rows:
            click.echo(f"  {name:<16}" + "  ".join(f"{_fmt(m.get(c)):>26}" for c in cols))
    click.echo(f"wrote {output}")
