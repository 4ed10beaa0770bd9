"""``moe-place solve``: compute a placement, prove a bound, compare with the baselines.

TRACE is a native trace, a saved Profile, or anything ``moe-place import`` reads
(:func:`placer.traces.load.load_input`). With
``--holdout F`` the last share F of sequences is held out: the solver sees only the rest, and
every placement is scored on both parts. The placement JSON carries the report
(:mod:`placer.analysis.report`; no wall-clock timings, so the same input and ``--seed`` give the
same bytes).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click

from placer.analysis.report import (SCORE_SHARE, fitted_on, input_summary, metrics_table, scoring_parts, scoring_seconds,
                                    solve_report)
from placer.commands.render import solve_summary
from placer.commands.options import bytes_options, constraint_options, holdout_option, json_option, output_option, param_option, params_dict, step_options, step_spec, topology_options
from placer.commands.types import POSITIVE_INT
from placer.errors import PlacerError
from placer.fileio import to_jsonable
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.model.trace import Trace
from placer.progress import progress
from placer.solvers.base import Constraints, SolveResult, describe_params, get_solver, has_pairs, make_params, solve
from placer.solvers.base import SOLVERS
from placer.solvers.replicate import replicas_for

WRITE_MARGIN_S = 0.3       # the report and the file, after the search and scoring
MIN_SEARCH_S = 0.2         # a search always runs, even when reading took the whole budget


def _list_solvers(ctx: click.Context, _param: Any, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    for name, spec in SOLVERS.items().items():
        click.echo(f"{name}: {spec.description}{' (places replicas)' if spec.replicas else ''}")
        for p in describe_params(spec.params):
            click.echo(f"    {p['name']} ({p['type']}, default {p['default']}): {p['help']}")
    ctx.exit(0)


@click.command("solve")
@click.argument("trace", type=click.Path(path_type=Path))
@click.option("--gpus", type=POSITIVE_INT, required=True, help="Number of GPUs (G).")
@topology_options
@click.option("--solver", default="auto", show_default=True, help="Solver name (see --list-solvers).")
@click.option("--list-solvers", is_flag=True, is_eager=True, expose_value=False, callback=_list_solvers,
              help="List the solvers with their parameters and defaults, and exit.")
@param_option
@constraint_options
@click.option("--objective", type=click.Choice(["time", "traffic"]), default=None,
              help="time: least predicted step time (the all-to-all of --cost plus the busiest GPU's experts; needs "
                   "the expert shape, --model); traffic: least --cost traffic [default: time when the expert shape "
                   "is known, else traffic].")
@step_options
@bytes_options
@holdout_option(None, "Hold out this share of sequences: solve on the rest, score on both.")
@output_option("Placement JSON to write.")
@json_option
def command(trace: Path, gpus: int, gpus_per_node: int | None, inter_node_cost: float | None,
            topology_file: str | None, solver: str, params: tuple, cost: str, replicas: str,
            max_imbalance: float | None, time_limit: float, seed: int, backend: str | None, threads: int,
            objective: str | None, hardware: str, model_shape: str | None, expert_intermediate_size: int | None,
            phase: str, tokens_per_step: int | None, hidden_size: int | None, dtype_bytes: int,
            holdout: float | None, output: Path, as_json: bool) -> None:
    """Solve an expert placement for TRACE on --gpus GPUs and write it to -o.

    --time-limit is the wall-clock budget of the whole command, from its start to the file
    written: the search gets what reading, profiling and scoring leave.
    """
    from placer.budget import Budget
    from placer.solvers.exact.models import gpu_load_caps
    from placer.traces.load import load_input, profile_of, top1_fallback

    budget = Budget.since_start(time_limit)
    constraints = Constraints(replicas=replicas_for(replicas, gpus), max_imbalance=max_imbalance, cost=cost,
                              time_limit=time_limit, seed=seed, backend=backend, threads=threads)
    # an unknown solver or parameter fails before the trace is read
    solver_params = make_params(get_solver(solver).params, params_dict(params), solver)
    step = step_spec(hardware, model_shape, hidden_size, expert_intermediate_size, dtype_bytes, phase,
                     tokens_per_step)
    notes = []
    if objective == "time" and step is None:
        raise PlacerError("--objective time needs the model's expert shape: pass --model NAME or its config.json "
                          "(or --hidden-size and --expert-intermediate-size)")
    if objective is None:
        objective = "time" if step is not None else "traffic"
        if step is None:
            notes.append("minimised traffic: the step-time objective needs the model's expert shape (--model)")
    topology = Topology.for_cluster(gpus, gpus_per_node, inter_node_cost, topology_file)
    data, top1 = top1_fallback(load_input(trace))
    if top1 is not None:
        notes.append(top1)
    train, test = data, None
    if holdout is not None:
        if not isinstance(data, Trace):
            raise PlacerError(f"{trace}: --holdout needs a per-token trace, not aggregate counts; drop --holdout")
        train, test = data.split(holdout)
    # the statistics the solvers use (co-activation only for ep), from a sample of a trace too
    # long to count in its share of the budget
    profile = profile_of(train, coact=cost == "ep", seconds=SCORE_SHARE * time_limit)
    constraints.slots_per_gpu(profile.num_experts, gpus)
    if not constraints.replicas:
        gpu_load_caps(profile, gpus, max_imbalance)
    if objective == "time" and not has_pairs(profile, cost):
        if cost == "coherent":
            raise PlacerError(f"{trace}: the step time with --cost coherent needs inter-layer transition counts, which "
                              f"this input lacks; use --cost ep (estimated from the loads) or give a per-token trace")
        notes.append("step time from loads only: each GPU's expert time is scored from the loads, the ep all-to-all "
                     "is estimated as if a token's picks were independent (no co-activation counts); traffic "
                     "metrics are not scored")
    # the baselines before the search, so that their time (EPLB at 128 GPUs with 128 replicas:
    # 1.4 s, contiguous's replica layout 0.8 s) comes out of the search's share, not past the limit
    baselines, eplb_policy = {}, None
    for name in ("contiguous", "eplb"):
        baseline = solve(name, profile, topology, constraints)
        baselines[name] = baseline.placement
        if "policies" in baseline.details:
            eplb_policy = {k: baseline.details[k] for k in ("policy", "eplb_rule", "policies")}
    score_train, score_test, scored = scoring_parts(train, test, SCORE_SHARE * time_limit, constraints.replicas,
                                                    step is not None, gpus)
    reserve = scoring_seconds(score_train, score_test, constraints.replicas, step is not None, gpus) + WRITE_MARGIN_S
    search = dataclasses.replace(constraints, time_limit=max(MIN_SEARCH_S, budget.left(reserve)))
    with progress(f"solving ({solver})"):
        if objective == "time":
            from placer.solvers.tradeoff import solve_step_time
            result = solve_step_time(solver, train, profile, topology, search, solver_params, step, cost,
                                     lambda part: profile_of(part, coact=cost == "ep"))
        else:
            result = solve(solver, profile, topology, search, solver_params)
    result.notes = notes + result.notes
    placements = {"solution": result.placement, **baselines}
    exact_loads = _exact_loads(profile, scored)
    if exact_loads is not None:
        scored["load_imbalance_on"] = "every training token (held out: the sample)"
    report = solve_report(result, solver, topology, constraints, holdout, input_summary(trace.name, profile, test, fitted_on(data, train)),
                          metrics_table(placements, topology, score_train, score_test, step, cost, exact_loads), scored,
                          objective, step)
    if eplb_policy is not None:
        # on several nodes the eplb baseline is the better of EPLB's two policies: say which
        report["baselines"] = {"eplb": eplb_policy}
    placement = result.placement
    placement.report = report
    placement.save(output)
    result.timings["command_s"] = budget.elapsed()
    if as_json:
        click.echo(json.dumps({**report, "timing": to_jsonable(result.timings), "output": str(output)}, indent=1))
        return
    click.echo("\n".join(solve_summary(report, result.timings, str(output))))


def _exact_loads(profile: Profile, scored: dict[str, Any] | None) -> tuple[Profile, None] | None:
    """What :func:`metrics_table` scores the in-sample load imbalance on when the metrics are on
    a sample: the solver's profile of every training token (its loads cost nothing to score),
    unless it is a sample itself; the held-out part keeps the sample (a pass over its tokens
    would come out of no reserve)."""
    if scored is None or "sampled_from" in profile.extra:
        return None
    return profile, None
