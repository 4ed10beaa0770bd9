"""The report ``moe-place solve`` writes into the placement file and prints.

Deterministic by construction: it holds the solver's :meth:`~placer.solvers.base.SolveResult.summary`
(no wall-clock figures; those stay in ``SolveResult.timings`` and are only printed), the
topology, constraints and parameters, the input's shape and layer numbering (export reads
``input.moe_layers``), and the metrics of the solution and the baselines in sample and held out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from placer.fileio import to_jsonable
from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.model.trace import Trace
from placer.solvers.base import Constraints, SolveResult


def placement_metrics(data: Trace | Profile, placement: Placement, topology: Topology, step: Any = None,
                      comm: str = "ep") -> dict[str, Any]:
    """Coherent cost per transition and total, load imbalance, ep copies (traces only), and with
    a step spec the predicted step time (``step_s``, seconds; ``comm`` all-to-alls)."""
    from placer.cost import evaluate

    ev = evaluate(data, placement, topology, matrices=False, step=step, time_comm=comm)
    out = {"coherent_per_transition": ev["coherent"].get("per_transition"),
           "coherent_total": ev["coherent"].get("total"),
           "max_imbalance": ev["load"]["max_imbalance"], "mean_imbalance": ev["load"]["mean_imbalance"]}
    if "copies" in ev.get("ep", {}):
        out["ep_copies_per_token_layer"] = ev["ep"]["copies_per_token_layer"]
        out["ep_copies"] = ev["ep"]["copies"]
    if "step_s" in ev.get("time", {}):
        out.update(step_s=ev["time"]["step_s"], comm_s=ev["time"]["comm_s"], compute_s=ev["time"]["compute_s"])
    return out


# Token picks (tokens x layers x top-K) the three cost models score per second for one placement,
# a conservative figure: 9-16 M/s were measured on ESFT on the 2-core machine (replicas: the
# lower end). A constant, not a timing, so that whether scoring is sampled depends only on the
# inputs and the time limit, never on the machine's load.
SCORE_PICKS_PER_S = 5e6
PLAIN_FACTOR = 0.6           # of SCORE_PICKS_PER_S's time, without replicas or the step time
SCORE_SHARE = 0.25          # of --time-limit that scoring the solution and two baselines may take


def scoring_seconds(train: Trace | Profile, test: Trace | None, replicas: int = 0, step: bool = False,
                    num_gpus: int = 1) -> float:
    """Predicted seconds to score three placements on ``train`` and ``test`` (all tokens), with
    ``replicas`` redundant experts a layer, on ``num_gpus`` GPUs, and (``step``) the step time.

    The step-time model with replicas counts each token's traffic matrix over the GPUs: on ESFT
    (2 cores) it took 0.85x, 1.4x and 5.3x of :data:`SCORE_PICKS_PER_S` at 4, 8 and 16 GPUs with
    one replica per GPU, hence ``1.4 (G / 8)^2``. Without the step time the rate holds within
    2x up to 64 GPUs (ESFT, 16 GPUs, 1x: 1.9x; DeepSeek-V3 shape, 64 GPUs, 64 replicas: 0.7x);
    beyond, each token's cover searches more GPUs, most for the solution's copies (DeepSeek-V3
    shape with G replicas, the three placements on the sample the limit of 20 s allowed: 128
    GPUs 2.7x, 256 GPUs 3.8x), hence ``(G / 64) ** 1.5`` up to 128 GPUs and in proportion to G
    beyond (G / 64 left 128 GPUs at 6.9 s of scoring against 5.1 s predicted, 1.2-1.6 s past the
    limit; the power alone at 256 GPUs scored in 2.4 s of the 5 s it reserved).
    Without replicas or the step time, every token's cost is a lookup: scoring took 0.21-0.30 of
    :data:`SCORE_PICKS_PER_S`'s time (ESFT on 4, 8 and 16 GPUs, ep and coherent; DeepSeek-V3
    shape on 64 GPUs), hence a factor of :data:`PLAIN_FACTOR`, still about 2x conservative.
    """
    picks = sum(d.num_tokens * d.num_layers * d.top_k for d in (train, test) if isinstance(d, Trace))
    factor = 1.0 if step else PLAIN_FACTOR
    if replicas:
        covers = (min(num_gpus, 128) / 64) ** 1.5 * max(1.0, num_gpus / 128)
        factor = max(1.0, 1.4 * (num_gpus / 8) ** 2) if step else max(1.0, covers)
    return 3 * picks * factor / SCORE_PICKS_PER_S


def scoring_parts(train: Trace | Profile, test: Trace | None, seconds: float, replicas: int = 0, step: bool = False,
                  num_gpus: int = 1) -> tuple[Trace | Profile, Trace | None, dict[str, Any] | None]:
    """The parts to score within ``seconds``: all tokens when that fits, else the same share of
    each part's sequences, evenly spread (deterministic), and a note of what was scored
    (``replicas``, ``step``, ``num_gpus``: as :func:`scoring_seconds`)."""
    need = scoring_seconds(train, test, replicas, step, num_gpus)
    if need <= seconds:
        return train, test, None
    share = max(seconds, 0.0) / need
    parts = [d.sample(share) if isinstance(d, Trace) else d for d in (train, test)]
    note = {"sampled": True, "share": share,
            "in_sample_tokens": parts[0].num_tokens, "held_out_tokens": None if test is None else parts[1].num_tokens,
            "why": f"scoring every token would take about {need:.1f} s of the time limit; metrics are on a sample"}
    return parts[0], parts[1], note


def metrics_table(placements: dict[str, Placement], topology: Topology, train: Trace | Profile,
                  test: Trace | None, step: Any = None, comm: str = "ep",
                  loads_on: tuple[Trace | Profile, Trace | None] | None = None) -> dict[str, dict[str, Any]]:
    """``{name: {"in_sample": metrics, "held_out": metrics}}`` (held out only with a test part).

    ``loads_on``: ``(train, test)`` data (a Profile costs nothing: its ``load [L, E]`` is all the
    load model reads; a Trace costs a pass) to score the load model's ``max_imbalance`` and
    ``mean_imbalance`` on, where ``train`` and ``test`` are samples (:func:`scoring_parts`) and
    a part is not None. On a sample they can be far off: a DeepSeek-V3-shape solve with 64
    replicas and a 1.10 cap, scored on 18 % of its sequences, reported a worst layer of 1.77
    where all tokens give 1.10."""
    table = {}
    for name, pl in placements.items():
        table[name] = {"in_sample": placement_metrics(train, pl, topology, step, comm)}
        if test is not None:
            table[name]["held_out"] = placement_metrics(test, pl, topology, step, comm)
        if loads_on is not None:
            for part, data in zip(("in_sample", "held_out"), loads_on):
                if data is not None and part in table[name]:
                    table[name][part].update(load_metrics(data, pl, topology))
    return table


def load_metrics(data: Trace | Profile, placement: Placement, topology: Topology) -> dict[str, float]:
    """``max_imbalance`` and ``mean_imbalance`` of the load model on ``data`` (every token)."""
    from placer.cost import evaluate

    load = evaluate(data, placement, topology, costs=("load",), matrices=False)["load"]
    return {"max_imbalance": load["max_imbalance"], "mean_imbalance": load["mean_imbalance"]}


def trace_digest(trace: Trace) -> str:
    """A short SHA-256 of a trace's routing (``expert_ids [L, T, K]`` and the sequence offsets):
    the same tokens give the same digest, whatever file or format held them.

    The ids are hashed in the smallest dtype that holds ``num_experts`` (the one the trace files
    store), a layer at a time and without a copy where the file already holds that dtype: as
    int64 a million DeepSeek-V3-shape tokens took 6.8 s of a 20 s budget (3.7 GB hashed).
    """
    import hashlib

    from placer.model.trace import id_dtype

    dt = id_dtype(trace.num_experts)
    h = hashlib.sha256(str(trace.expert_ids.shape).encode())
    for layer in trace.expert_ids:      # a layer at a time: no copy of the whole array
        h.update(memoryview(np.ascontiguousarray(layer, dtype=dt)).cast("B"))
    h.update(np.asarray(trace.offsets, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def fitted_on(data: Trace | Profile, train: Trace | Profile) -> dict[str, Any] | None:
    """What a placement was fitted on: the trace's digest and the token range ``[start, end)`` of
    the fitting part (:meth:`Trace.split` keeps the first sequences), for ``compare`` to check."""
    if not isinstance(data, Trace) or not isinstance(train, Trace):
        return None
    return {"trace_digest": trace_digest(data), "tokens": [0, int(train.num_tokens)], "of_tokens": int(data.num_tokens)}


def tokens_fitted_and_scored(report: Any, full: Trace, scored: tuple[int, int]) -> int | None:
    """How many of the scored tokens ``[start, end)`` of ``full`` the placement whose report is
    ``report`` was fitted on; None when the report does not say or names another trace."""
    fit = (report.get("input") or {}).get("fitted_on") if isinstance(report, dict) else None
    if not isinstance(fit, dict) or fit.get("of_tokens") != full.num_tokens or fit.get("trace_digest") != trace_digest(full):
        return None
    lo, hi = fit["tokens"]
    return max(0, min(hi, scored[1]) - max(lo, scored[0]))


def input_summary(path: str, profile: Profile, test: Trace | None,
                  fitted: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {"path": path, "num_layers": profile.num_layers, "num_experts": profile.num_experts,
           "top_k": profile.top_k, "train_tokens": profile.num_tokens,
           "moe_layers": list(profile.moe_layers), "num_hidden_layers": profile.num_hidden_layers,
           "model": profile.model, "held_out_tokens": None if test is None else test.num_tokens}
    if fitted is not None:
        out["fitted_on"] = fitted
    if "sampled_from" in profile.extra:
        # the solver saw a sample of the training tokens (the profile's share of the budget)
        out["train_tokens"] = profile.extra["sampled_from"]["tokens"]
        out["profiled_tokens"] = profile.num_tokens
    return out


def solve_report(result: SolveResult, requested: str, topology: Topology, constraints: Constraints,
                 holdout: float | None, inputs: dict[str, Any], metrics: dict[str, Any],
                 scored: dict[str, Any] | None = None, objective: str = "traffic",
                 step: Any = None) -> dict[str, Any]:
    """The placement file's ``report`` (plain JSON data); ``scored``: the sampling note of
    :func:`scoring_parts` when the metrics are on a sample."""
    summary = result.summary()
    report = {"solver": result.solver, "chosen": result.choice or f"{requested} (requested)",
              "status": summary["status"], "objective_model": summary["objective_model"],
              "objective": summary["objective"], "bound": summary["bound"], "bound_method": summary["bound_method"],
              "gap": summary["gap"], "notes": summary["notes"], "details": summary["details"],
              "params": result.params, "topology": topology.describe(),
              "constraints": {"replicas": constraints.replicas, "max_imbalance": constraints.max_imbalance,
                              "cost": constraints.cost, "time_limit": constraints.time_limit,
                              "seed": constraints.seed, "backend": constraints.backend,
                              "threads": constraints.threads, "holdout": holdout, "objective": objective},
              "input": inputs, "metrics": metrics}
    if step is not None:
        report["step"] = {**step.describe(), "hardware_figures": step.hardware.describe(),
                          "expert_shape": step.shape.describe()}
    if scored is not None:
        report["metrics_scored_on"] = scored
    return to_jsonable(report)


def time_against_baselines(data: Trace | Profile, placement: Placement, topology: Topology, spec: Any,
                           step_s: float, comm: str = "ep", fit: Profile | None = None,
                           cache: dict[tuple[int, str], float] | None = None) -> dict[str, Any]:
    """The step time of ``placement`` (``step_s``) beside the ``contiguous`` and ``eplb``
    placements of the same slots, scored on ``data``: seconds and ratios. EPLB is fitted on
    ``fit``'s loads (default: ``data``'s); ``cache`` keeps the baselines' step times by
    (replicas, name) across several placements scored alike."""
    from placer.cost.time import time_cost
    from placer.solvers.base import Constraints, solve
    from placer.traces.load import profile_of

    R = placement.num_replicas
    cache = {} if cache is None else cache
    out: dict[str, Any] = {}
    for name in ("contiguous", "eplb"):
        if (R, name) not in cache:
            if fit is None:
                fit = profile_of(data, coact=False, trans=False)
            base = solve(name, fit, topology, Constraints(replicas=R)).placement
            cache[R, name] = time_cost(data, base, topology, spec, comm).step_s
        t = cache[R, name]
        out[name] = {"step_s": t, "ratio": step_s / t if t > 0 else None}
    return out
