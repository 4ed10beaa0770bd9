"""``moe-place plan TRACE --gpus 4,8,16``: sweep cluster shapes and predict traffic, balance, memory."""

from __future__ import annotations

import json
from pathlib import Path

import click

from placer.analysis import plan as pl
from placer.commands.options import bytes_options, holdout_option, import_options, json_option, load_kwargs, step_options, step_spec, topology_options
from placer.commands.types import IMBALANCE, OUTPUT_FILE, POSITIVE_FLOAT, SECONDS, Bandwidth, IntList, ReplicasList, Size
from placer.errors import PlacerError
from placer.fileio import atomic_path, to_jsonable
from placer.progress import progress


TERMINAL_COLUMNS = 120
# (table column, header, format of a value, what it means) in display order; "" formats: as is
DISPLAY = (("gpus", "GPUs", "{:d}", ""), ("nodes", "nodes", "{:d}", ""),
           ("replicas", "replicas", "", "redundant expert slots per layer (per-GPU multiple)"),
           ("slots_per_gpu", "slots", "{:d}", "expert slots per GPU per layer"), ("solver", "solver", "", ""),
           ("status", "status", "", ""), ("solve_s", "solve s", "{:.2f}", "seconds the solver ran"),
           ("ep_copies_per_token", "copies/tok", "{:.2f}", "ep: remote copies a token is dispatched as, all layers"),
           ("ep_bytes_per_step", "MiB/step", "{:.1f}", "ep: dispatch + combine MiB per step"),
           ("ep_time_per_step_ms", "a2a ms", "{:.3f}", "ep: all-to-all ms per step (alpha-beta estimate)"),
           ("ep_inter_node_share", "x-node", "{:.0%}", "ep: share of copies that cross nodes"),
           ("coherent_per_transition", "coh/trans", "{:.3f}", "coherent: hop cost per layer transition (above 1: inter-node hops)"),
           ("imbalance_mean", "imb mean", "{:.2f}", "per-layer max/mean GPU load, mean over layers (1 = even)"),
           ("imbalance_max", "imb max", "{:.2f}", "the same, worst layer"),
           ("expert_mem_gib", "GiB/GPU", "{:.2f}", "expert weights per GPU"), ("fits", "fits", "", "in --gpu-memory"),
           ("note", "note", "", ""))


def _cell(v, fmt: str) -> str:
    if v is None or v != v:
        return ""
    if fmt == "{:d}":
        return str(int(v))
    return fmt.format(v) if fmt else str(v)


def _fmt_table(table) -> str:
    """The sweep for a terminal of :data:`TERMINAL_COLUMNS`: short headers, empty columns left
    out (and inter-node on one node), then what each column means; lower is better from
    ``ep copies/token`` on."""
    import pandas as pd

    show = pd.DataFrame()
    for col, head, fmt, _ in DISPLAY:
        if col not in table:  # the step-time columns exist only with --model
            continue
        if col == "replicas":
            show[head] = [f"{r} ({s})" if str(s).endswith("x") else str(r) for r, s in zip(table["replicas"], table["replica_spec"])]
        elif col == "ep_bytes_per_step":
            show[head] = table[col].map(lambda v: _cell(v / 2 ** 20 if v == v and v is not None else v, fmt))
        elif col == "fits":
            show[head] = table[col].map(lambda v: "" if v is None or v != v else ("yes" if v else "NO"))
        elif col == "note":
            show[head] = table[col].map(lambda v: "" if v is None or v != v else str(v)[:60])
        else:
            show[head] = table[col].map(lambda v, f=fmt: _cell(v, f))
    single_node = (table["nodes"].fillna(1) == 1).all()
    keep = [h for h in show.columns if (show[h] != "").any() and not (h == "x-node" and single_node)]
    show = show[keep]
    text = show.to_string(index=False, line_width=TERMINAL_COLUMNS)
    legend = [f"  {head}: {what}" for _, head, _, what in DISPLAY if what and head in keep]
    return "\n".join([text, "columns (lower is better from copies/tok on):", *legend])


@click.command("plan")
@click.argument("trace_path", metavar="TRACE", type=click.Path(dir_okay=False))
@click.option("--gpus", "gpus", type=IntList(), default="4,8,16,32,64", show_default=True,
              help="GPU counts to try, comma list.")
@topology_options
@click.option("--replicas", type=ReplicasList(), default="0", show_default=True,
              help="Redundant experts per layer to try: counts (16) or per-GPU multiples (1x = one per GPU).")
@click.option("--solvers", default="partition,contiguous,eplb", show_default=True, help="Solvers to compare.")
@click.option("--cost", type=click.Choice(["coherent", "ep"]), default="ep", show_default=True,
              help="Cost model the solvers minimise (the table reports both).")
@click.option("--max-imbalance", type=IMBALANCE, default=None,
              help="Per-layer max/mean GPU load bound passed to the solvers (partition enforces it).")
@bytes_options
@click.option("--expert-bytes", type=Size(), default=None, help="Bytes of one expert in one layer, e.g. 88MiB.")
@click.option("--expert-params", type=POSITIVE_FLOAT, default=None,
              help="Parameters of one expert (times --dtype-bytes).")
@click.option("--gpu-memory", type=Size(), default=None, help="Memory per GPU for the fit check, e.g. 80GiB.")
@click.option("--bandwidth", type=Bandwidth(), default="intra=900GB/s,inter=50GB/s", show_default=True,
              help="Link bandwidths per direction.")
@step_options
@holdout_option(0.5, "Share of sequences held out for scoring (0: score in-sample).")
@click.option("--time-limit", type=SECONDS, default=60.0, show_default=True,
              help="Seconds for the whole command; the searching solves share what scoring leaves.")
@click.option("--seed", type=int, default=0, show_default=True)
@import_options
@json_option
@click.option("--csv", "csv_path", type=OUTPUT_FILE, default=None, help="Also write the table as CSV.")
@click.option("--plot", "plot_path", type=OUTPUT_FILE, default=None, help="Write trade-off curves (PNG).")
def command(trace_path: str, gpus: list[int], gpus_per_node: int | None, inter_node_cost: float | None,
            topology_file: str | None, replicas: list[str], solvers: str, cost: str, max_imbalance: float | None,
            hidden_size: int | None, dtype_bytes: int, expert_bytes: float | None, expert_params: float | None,
            gpu_memory: float | None, bandwidth: tuple[float, float], hardware: str, model_shape: str | None,
            expert_intermediate_size: int | None, phase: str, tokens_per_step: int | None, holdout: float,
            time_limit: float, seed: int, as_json: bool, csv_path: str | None, plot_path: str | None, **kw) -> None:
    """Sweep GPU counts and replica budgets on TRACE: solve each, predict traffic, balance and memory.

    TRACE is a native trace or any format ``moe-place import`` reads (per-token data: the ep
    cost needs each token's experts).
    """
    from placer.budget import Budget
    from placer.traces.load import load_trace

    budget = Budget.since_start(time_limit)

    if expert_bytes is not None and expert_params is not None:
        raise PlacerError("give --expert-bytes or --expert-params, not both")
    ebytes = expert_bytes if expert_bytes is not None else (
        expert_params * dtype_bytes if expert_params is not None else None)
    from placer.cost.time import PHASES

    step = step_spec(hardware, model_shape, hidden_size, expert_intermediate_size, dtype_bytes, phase, tokens_per_step)
    tokens_per_step = tokens_per_step or PHASES[phase]
    solver_list = [s.strip() for s in solvers.split(",") if s.strip()]
    if not solver_list:
        raise PlacerError("--solvers is empty; name at least one solver")
    options = pl.PlanOptions(gpus_per_node=gpus_per_node, inter_node_cost=inter_node_cost,
                             topology_file=topology_file, hidden_size=hidden_size, dtype_bytes=dtype_bytes,
                             expert_bytes=ebytes, gpu_memory=gpu_memory, intra_bandwidth=bandwidth[0],
                             inter_bandwidth=bandwidth[1], tokens_per_step=tokens_per_step, holdout=holdout,
                             cost=cost, time_limit=time_limit, seed=seed, max_imbalance=max_imbalance, step=step)
    trace = load_trace(trace_path, "plan (the ep cost depends on each token's experts)", **load_kwargs(kw))
    total = len(gpus) * len(replicas) * len(solver_list)
    with progress("planning", total=total, unit="solves") as advance:
        table = pl.plan(trace, gpus, replicas, solver_list, options, advance, budget)
    if budget.left() < -max(0.05 * time_limit, 0.5):
        # scoring every row and each search's minimum work are not cut short
        click.echo(f"moe-place: warning: the sweep took {budget.elapsed():.1f} s of its --time-limit {time_limit:g} s: "
                   f"its {total} solves and their scoring need more; raise --time-limit or sweep fewer "
                   f"configurations", err=True)
    if csv_path:
        with atomic_path(csv_path) as tmp:
            table.to_csv(tmp, index=False)
    if plot_path:
        from placer.analysis.plots import plan_plot
        plan_plot(table, plot_path, title=f"{trace.model or Path(trace_path).name}: {trace.describe()}",
                gpu_memory=options.gpu_memory)
    if as_json:
        records = to_jsonable(table.astype(object).where(table.notna(), None).to_dict(orient="records"))
        click.echo(json.dumps({"trace": trace_path, "tokens_per_step": tokens_per_step,
                               "holdout": holdout, "rows": records}))
    else:
        click.echo(f"{trace_path}: {trace.describe()}")
        click.echo(f"scored on {'held-out ' + str(int(holdout * 100)) + '% of sequences' if holdout else 'all tokens'}, "
                   f"{tokens_per_step} tokens per step")
        click.echo(_fmt_table(table))
