"""``moe-place evaluate TRACE PLACEMENT.json``: score one placement under the cost models.

Cost models (``docs/cost-models.md``): ``coherent`` (ExFlow: hop-weighted layer transitions),
``ep`` (two all-to-alls per layer with dedup; copies, bytes, estimated time), ``load`` (token
picks per GPU; max/mean imbalance). ``--split test`` scores on the held-out sequences (the last
``--holdout`` share), tokens a placement fitted on the rest has not seen.
"""

from __future__ import annotations

import json

import click

from placer.commands.options import import_options, load_kwargs, scoring_options, split_part, step_options, step_spec
from placer.commands.render import describe_data, describe_topology, format_table, metric_rows


@click.command("evaluate")
@click.argument("trace", type=click.Path(dir_okay=False))
@click.argument("placement", type=click.Path(dir_okay=False))
@scoring_options
@step_options
@import_options
def command(trace: str, placement: str, cost: str, gpus_per_node: int | None, inter_node_cost: float | None,
            topology_file: str | None, split: str, holdout: float, hidden_size: int | None, dtype_bytes: int,
            as_json: bool, hardware: str, model_shape: str | None, expert_intermediate_size: int | None,
            phase: str, tokens_per_step: int | None, **kw) -> None:
    """Score PLACEMENT on the routing of TRACE (a trace, any importable file, or a profile of counts)."""
    from placer.cost import default_costs, evaluate, passes_over_trace
    from placer.model.placement import Placement
    from placer.model.topology import Topology
    from placer.progress import progress
    from placer.traces.load import load_input

    pl = Placement.load(placement)
    data = split_part(load_input([trace], **load_kwargs(kw)), split, holdout, trace)
    topo = Topology.for_cluster(pl.num_gpus, gpus_per_node if gpus_per_node is not None else pl.gpus_per_node,
                                inter_node_cost, topology_file)
    step = step_spec(hardware, model_shape, hidden_size, expert_intermediate_size, dtype_bytes, phase,
                     tokens_per_step)
    costs = default_costs(step) if cost == "all" else [cost]
    total = data.num_tokens * passes_over_trace(data, costs)
    with progress("evaluating", total=total or None, unit="tokens") as advance:
        result = evaluate(data, pl, topo, costs=costs, hidden_size=hidden_size, dtype_bytes=dtype_bytes,
                          progress=advance, step=step)
    if "step_s" in result.get("time", {}):
        from placer.analysis.report import time_against_baselines
        from placer.fileio import to_jsonable
        result["time"]["baselines"] = to_jsonable(time_against_baselines(data, pl, topo, step,
                                                                         result["time"]["step_s"]))
    result = {"trace_file": trace, "placement_file": placement, "split": split, **result}
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(describe_data(data, split))
    click.echo(f"placement: {placement} ({pl.num_gpus} GPUs, {pl.slots_per_gpu} slots per GPU, "
               f"{pl.num_replicas} replicas per layer); topology: {describe_topology(topo)}")
    click.echo(format_table(["metric", "value"], [list(r) for r in metric_rows(result)]))
