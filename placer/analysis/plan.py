"""Offline capacity planning: sweep cluster shapes, solve each, predict traffic, balance and memory.

For every configuration (G GPUs in nodes of ``gpus_per_node``, R redundant experts per layer)
and every solver, :func:`plan` solves a placement on the training part of a trace and scores it
on the held-out part (or in-sample with ``holdout=0``) with :mod:`placer.cost`:

- ``ep_*``: the **ep** model (standard expert parallelism, two all-to-alls per layer, one copy
  per distinct remote GPU, sequences' home GPUs round-robin): copies per token, bytes and
  all-to-all time per step of ``tokens_per_step`` tokens (the trace's per-token figures scaled
  linearly), share of copies that cross nodes.
- ``coherent_per_transition``: the **coherent** model's hop-weighted mean cost of a token's layer
  transition (ExFlow's metric with top-1 and one node).
- ``imbalance_*``: the **load** model, per-layer max/mean GPU load, mean and worst over layers.
- ``expert_mem_gib``: expert weights per GPU, ``S * L * expert_bytes`` (S slots per GPU per
  layer, L MoE layers), and ``fits`` against ``gpu_memory``.
- with a step spec (``--model``): ``step_ms``, the **time** model's predicted step time
  (``docs/time-model.md``; the all-to-alls of ``cost``), and ``step_vs_baselines``, its ratio to
  the faster of the ``contiguous`` and ``eplb`` rows of the same configuration (when swept).

A configuration that cannot hold the experts (E + R not divisible by G, ...) or a solver that
fails gives a row with ``status`` ``infeasible`` or ``error`` and the reason, not an abort.

``time_limit`` is the budget of the whole sweep (:class:`placer.budget.Budget`): each searching
solve gets an equal share of what is left after the scoring still to come; the baselines
(:data:`INSTANT_SOLVERS`) take no share.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence


from placer.budget import Budget
from placer.errors import PlacerError
from placer.model.profile import Profile
from placer.solvers.base import Constraints, get_solver, solve
from placer.solvers.replicate import replicas_for
from placer.model.topology import NIC_BYTES_PER_S, NVLINK_BYTES_PER_S, Topology
from placer.model.trace import Trace

GIB = 2 ** 30
INSTANT_SOLVERS = frozenset({"contiguous", "round_robin", "random", "eplb"})   # closed forms: no search budget
SCORE_MARGIN_S = 0.3                # the table, CSV and plot after the last row
DEFAULT_TOKENS_PER_STEP = 8192
COLUMNS = ["gpus", "nodes", "replica_spec", "replicas", "slots_per_gpu", "solver", "status", "solve_s",
           "ep_copies_per_token", "ep_bytes_per_step", "ep_time_per_step_ms", "ep_inter_node_share",
           "coherent_per_transition", "imbalance_mean", "imbalance_max", "expert_mem_gib", "fits", "note"]
TIME_COLUMNS = ["step_ms", "step_vs_baselines"]

@dataclass(frozen=True)
class PlanOptions:
    """Units: bytes, bytes/s, tokens. ``expert_bytes`` is one expert's weights in one layer.

    ``gpus_per_node``, ``inter_node_cost``, ``topology_file``: as every command's topology options
    (:meth:`Topology.for_cluster`: nodes of 8 GPUs when G is a multiple of 8, else one node).
    ``holdout``: the share of sequences scored (0: score in-sample).
    """

    gpus_per_node: int | None = None
    inter_node_cost: float | None = None
    topology_file: str | None = None
    hidden_size: int | None = None
    dtype_bytes: int = 2
    expert_bytes: float | None = None
    gpu_memory: float | None = None
    intra_bandwidth: float = NVLINK_BYTES_PER_S
    inter_bandwidth: float = NIC_BYTES_PER_S
    tokens_per_step: int = DEFAULT_TOKENS_PER_STEP
    holdout: float = 0.5
    cost: str = "ep"
    max_imbalance: float | None = None
    time_limit: float = 60.0
    seed: int = 0
    step: Any = None                 # placer.cost.time.StepSpec: adds the time columns


def plan(trace: Trace, gpus: Sequence[int], replicas: Sequence[str], solvers: Sequence[str],
         options: PlanOptions = PlanOptions(),
         advance: Callable[[float], None] | None = None, budget: Budget | None = None) -> "pandas.DataFrame":  # noqa: F821
    """One row per (GPUs, replicas, solver); columns :data:`COLUMNS` (see the module docstring).
    ``budget``: the command's (default: ``options.time_limit`` from now)."""
    import pandas as pd

    from placer import cost
    from placer.analysis.report import SCORE_PICKS_PER_S

    for name in solvers:
        get_solver(name)  # unknown names fail before any work
    if options.holdout > 0:
        train, test = trace.split(options.holdout)
    else:
        train = test = trace
    profile = Profile.from_trace(train)
    E, L = trace.num_experts, trace.num_layers
    budget = budget or Budget(options.time_limit, time.perf_counter())
    # seconds to score one row: the constant's estimate until rows were timed, then the slowest timed
    row_score_s = test.num_tokens * L * test.top_k / SCORE_PICKS_PER_S
    rows_left = len(gpus) * len(replicas) * len(solvers)
    searches_left = len(gpus) * len(replicas) * sum(n not in INSTANT_SOLVERS for n in solvers)
    rows: list[dict[str, Any]] = []
    for G in gpus:
        for spec in replicas:
            R = replicas_for(spec, G)
            base = {"gpus": G, "replica_spec": str(spec), "replicas": R, "solver": None}
            try:
                topo = Topology.for_cluster(G, options.gpus_per_node, options.inter_node_cost, options.topology_file,
                                            options.intra_bandwidth, options.inter_bandwidth)
                constraints = Constraints(replicas=R, cost=options.cost, time_limit=options.time_limit,
                                          seed=options.seed, max_imbalance=options.max_imbalance)
                S = constraints.slots_per_gpu(E, G)
            except PlacerError as exc:
                for name in solvers:
                    rows.append({**base, "solver": name, "status": "infeasible", "note": str(exc)})
                    if advance:
                        advance(1)
                rows_left -= len(solvers)
                searches_left -= sum(n not in INSTANT_SOLVERS for n in solvers)
                continue
            base.update(nodes=topo.num_nodes, slots_per_gpu=S)
            mem = S * L * options.expert_bytes / GIB if options.expert_bytes else None
            base.update(expert_mem_gib=mem,
                        fits=None if mem is None or options.gpu_memory is None else bool(mem * GIB <= options.gpu_memory))
            for name in solvers:
                row = {**base, "solver": name}
                share = budget.left(rows_left * row_score_s + SCORE_MARGIN_S) / max(1, searches_left)
                rows_left -= 1
                searches_left -= name not in INSTANT_SOLVERS
                t0 = time.perf_counter()
                try:
                    result = solve(name, profile, topo, dataclasses.replace(constraints, time_limit=max(0.1, share)))
                    row["solve_s"] = time.perf_counter() - t0
                    t1 = time.perf_counter()
                    row.update(_score(cost, test, result.placement, topo, options))
                    row_score_s = max(row_score_s, time.perf_counter() - t1) if rows else time.perf_counter() - t1
                    row["status"] = result.status
                except PlacerError as exc:
                    row.update(status="error", note=str(exc), solve_s=time.perf_counter() - t0)
                rows.append(row)
                if advance:
                    advance(1)
    if options.step is None:
        return pd.DataFrame(rows, columns=COLUMNS)
    _against_baselines(rows)
    return pd.DataFrame(rows, columns=COLUMNS[:-1] + TIME_COLUMNS + COLUMNS[-1:])


def _against_baselines(rows: list[dict[str, Any]]) -> None:
    """``step_vs_baselines``: each row's step time over the faster baseline row of its configuration."""
    best: dict[tuple, float] = {}
    for r in rows:
        if r.get("solver") in ("contiguous", "eplb") and r.get("step_ms") is not None:
            key = (r["gpus"], r["replica_spec"])
            best[key] = min(best.get(key, float("inf")), r["step_ms"])
    for r in rows:
        base = best.get((r["gpus"], r["replica_spec"]))
        if r.get("step_ms") is not None and base:
            r["step_vs_baselines"] = r["step_ms"] / base


def _score(cost: Any, test: Trace, placement: Any, topo: Topology, options: PlanOptions) -> dict[str, Any]:
    """The table's metric columns for one placement, scored on ``test``."""
    T = test.num_tokens
    scale = options.tokens_per_step / T
    ep = cost.ep_cost(test, placement, topo, hidden_size=options.hidden_size, dtype_bytes=options.dtype_bytes)
    load = cost.load_cost(test, placement)
    out = {"ep_copies_per_token": float(ep.copies) / T,
           "ep_inter_node_share": _float(ep.inter_node_share),
           "imbalance_mean": float(load.mean_imbalance), "imbalance_max": float(load.max_imbalance)}
    if options.hidden_size:
        out["ep_bytes_per_step"] = float(ep.bytes) * scale
        out["ep_time_per_step_ms"] = _float(ep.time_s) * scale * 1e3 if ep.time_s is not None else None
    if test.num_layers > 1:
        out["coherent_per_transition"] = float(cost.coherent_cost(test, placement, topo).per_transition)
    if options.step is not None:
        from placer.cost.time import time_cost
        out["step_ms"] = time_cost(test, placement, topo, options.step, options.cost).step_s * 1e3
    return out


def _float(x: Any) -> float | None:
    return None if x is None else float(x)
