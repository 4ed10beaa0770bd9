"""The report ``moe-place solve`` writes into the placement file and prints.

Deterministic by construction: it holds the solver's :meth:`~placer.solvers.base.SolveResult.summary`
(no wall-clock figures; those stay in ``SolveResult.timings`` and are only printed), the
topology, constraints and parameters, the input's shape and layer numbering (export reads
``input.moe_layers``), and the metrics of the solution and the baselines in sample and held out.
"""

from __future__ import annotations

from typing import Any

from placer.fileio import to_jsonable
from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.model.trace import Trace
from placer.solvers.base import Constraints, SolveResult


def placement_metrics(data: Trace | Profile, placement: Placement, topology: Topology) -> dict[str, Any]:
    """Coherent cost per transition and total, load imbalance, ep copies (traces only)."""
    from placer.cost import evaluate

    ev = evaluate(data, placement, topology, matrices=False)
    out = {"coherent_per_transition": ev["coherent"].get("per_transition"),
           "coherent_total": ev["coherent"].get("total"),
           "max_imbalance": ev["load"]["max_imbalance"], "mean_imbalance": ev["load"]["mean_imbalance"]}
    if "copies" in ev.get("ep", {}):
        out["ep_copies_per_token_layer"] = ev["ep"]["copies_per_token_layer"]
        out["ep_copies"] = ev["ep"]["copies"]
    return out


def metrics_table(placements: dict[str, Placement], topology: Topology, train: Trace | Profile,
                  test: Trace | None) -> dict[str, dict[str, Any]]:
    """``{name: {"in_sample": metrics, "held_out": metrics}}`` (held out only with a test part)."""
    table = {}
    for name, pl in placements.items():
        table[name] = {"in_sample": placement_metrics(train, pl, topology)}
        if test is not None:
            table[name]["held_out"] = placement_metrics(test, pl, topology)
    return table


def input_summary(path: str, profile: Profile, test: Trace | None) -> dict[str, Any]:
    return {"path": path, "num_layers": profile.num_layers, "num_experts": profile.num_experts,
            "top_k": profile.top_k, "train_tokens": profile.num_tokens,
            "moe_layers": list(profile.moe_layers), "num_hidden_layers": profile.num_hidden_layers,
            "model": profile.model, "held_out_tokens": None if test is None else test.num_tokens}


def solve_report(result: SolveResult, requested: str, topology: Topology, constraints: Constraints,
                 holdout: float | None, inputs: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """The placement file's ``report`` (plain JSON data)."""
    summary = result.summary()
    report = {"solver": result.solver, "chosen": result.choice or f"{requested} (requested)",
              "status": summary["status"], "objective_model": summary["objective_model"],
              "objective": summary["objective"], "bound": summary["bound"], "bound_method": summary["bound_method"],
              "gap": summary["gap"], "notes": summary["notes"], "details": summary["details"],
              "params": result.params, "topology": topology.describe(),
              "constraints": {"replicas": constraints.replicas, "max_imbalance": constraints.max_imbalance,
                              "cost": constraints.cost, "time_limit": constraints.time_limit,
                              "seed": constraints.seed, "backend": constraints.backend,
                              "threads": constraints.threads, "holdout": holdout},
              "input": inputs, "metrics": metrics}
    return to_jsonable(report)
