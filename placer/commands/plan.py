"""``moe-place plan TRACE --gpus 4,8,16``: sweep cluster shapes and predict traffic, balance, memory."""

from __future__ import annotations

import json
from pathlib import Path

import click

from placer.analysis import plan as pl
from placer.commands.options import bytes_options, holdout_option, import_options, json_option, load_kwargs, topology_options
from placer.commands.types import IMBALANCE, OUTPUT_FILE, POSITIVE_FLOAT, POSITIVE_INT, SECONDS, Bandwidth, IntList, ReplicasList, Size
from placer.errors import PlacerError
from placer.fileio import atomic_path, to_jsonable
from placer.progress import progress


def _fmt_table(table) -> str:
    show = table.copy()
    for col in ("ep_bytes_per_step",):
        show[col] = show[col].map(lambda v: "" if v != v or v is None else f"{v / 2**20:.1f} MiB")
    floats = {"solve_s": "{:.2f}", "ep_copies_per_token": "{:.2f}", "ep_time_per_step_ms": "{:.3f}",
              "ep_inter_node_share": "{:.2f}", "coherent_per_transition": "{:.3f}", "imbalance_mean": "{:.2f}",
              "imbalance_max": "{:.2f}", "expert_mem_gib": "{:.2f}"}
    for col, f in floats.items():
        show[col] = show[col].map(lambda v, f=f: "" if v is None or v != v else f.format(v))
    for col in ("nodes", "slots_per_gpu"):
        show[col] = show[col].map(lambda v: "" if v is None or v != v else str(int(v)))
    show["fits"] = show["fits"].map(lambda v: "" if v is None or v != v else ("yes" if v else "NO"))
    show["note"] = show["note"].map(lambda v: "" if v is None or v != v else str(v)[:60])
    if (show["note"] == "").all():
        show = show.drop(columns=["note"])
    return show.to_string(index=False)


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
@click.option("--tokens-per-step", type=POSITIVE_INT, default=pl.DEFAULT_TOKENS_PER_STEP, show_default=True,
              help="Tokens in one forward step (per-token figures are scaled to it).")
@holdout_option(0.5, "Share of sequences held out for scoring (0: score in-sample).")
@click.option("--time-limit", type=SECONDS, default=10.0, show_default=True, help="Seconds per solve.")
@click.option("--seed", type=int, default=0, show_default=True)
@import_options
@json_option
@click.option("--csv", "csv_path", type=OUTPUT_FILE, default=None, help="Also write the table as CSV.")
@click.option("--plot", "plot_path", type=OUTPUT_FILE, default=None, help="Write trade-off curves (PNG).")
def command(trace_path: str, gpus: list[int], gpus_per_node: int | None, inter_node_cost: float | None,
            topology_file: str | None, replicas: list[str], solvers: str, cost: str, max_imbalance: float | None,
            hidden_size: int | None, dtype_bytes: int, expert_bytes: float | None, expert_params: float | None,
            gpu_memory: float | None, bandwidth: tuple[float, float], tokens_per_step: int, holdout: float,
            time_limit: float, seed: int, as_json: bool, csv_path: str | None, plot_path: str | None, **kw) -> None:
    """Sweep GPU counts and replica budgets on TRACE: solve each, predict traffic, balance and memory.

    TRACE is a native trace or any format ``moe-place import`` reads (per-token data: the ep
    cost needs each token's experts).
    """
    from placer.traces.load import load_trace

    if expert_bytes is not None and expert_params is not None:
        raise PlacerError("give --expert-bytes or --expert-params, not both")
    ebytes = expert_bytes if expert_bytes is not None else (
        expert_params * dtype_bytes if expert_params is not None else None)
    solver_list = [s.strip() for s in solvers.split(",") if s.strip()]
    if not solver_list:
        raise PlacerError("--solvers is empty; name at least one solver")
    options = pl.PlanOptions(gpus_per_node=gpus_per_node, inter_node_cost=inter_node_cost,
                             topology_file=topology_file, hidden_size=hidden_size, dtype_bytes=dtype_bytes,
                             expert_bytes=ebytes, gpu_memory=gpu_memory, intra_bandwidth=bandwidth[0],
                             inter_bandwidth=bandwidth[1], tokens_per_step=tokens_per_step, holdout=holdout,
                             cost=cost, time_limit=time_limit, seed=seed, max_imbalance=max_imbalance)
    trace = load_trace(trace_path, "plan (the ep cost depends on each token's experts)", **load_kwargs(kw))
    total = len(gpus) * len(replicas) * len(solver_list)
    with progress("planning", total=total, unit="solves") as advance:
        table = pl.plan(trace, gpus, replicas, solver_list, options, advance)
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
        click.echo(f"{trace_path}: {trace.describe()}; scored on "
                   f"{'held-out ' + str(int(holdout * 100)) + '% of sequences' if holdout else 'all tokens'}, "
                   f"{tokens_per_step} tokens per step")
        click.echo(_fmt_table(table))
