"""``moe-place compare TRACE P1.json P2.json contiguous eplb ...``: placements side by side.

Each item is a placement file or a solver name (``moe-place solve --list-solvers``). A solver is
fitted on the Profile of the ``--fit`` part (default: ``train`` when scoring on ``--split test``,
else the scored part) and placed on the GPU count of the placement files or ``--gpus``. Every
placement is then scored on the ``--split`` tokens under the chosen cost models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from placer.commands.options import SPLITS, import_options, load_kwargs, scoring_options, split_part
from placer.commands.types import POSITIVE_INT, SECONDS, Replicas
from placer.commands.render import describe_data, describe_topology, format_table
from placer.errors import PlacerError


@click.command("compare")
@click.argument("trace", type=click.Path(dir_okay=False))
@click.argument("items", nargs=-1, required=True)
@click.option("--gpus", type=POSITIVE_INT, default=None,
              help="GPUs for solver names (default: those of the placement files).")
@click.option("--replicas", type=Replicas(), default="0", show_default=True,
              help="Redundant slots per layer for solver names: a count (16) or per GPU (1x).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for randomised solvers.")
@click.option("--time-limit", type=SECONDS, default=60.0, show_default=True, help="Seconds per solver name.")
@click.option("--fit", type=click.Choice(SPLITS), default=None,
              help="Tokens solver names are fitted on (default: train with --split test, else the --split tokens).")
@scoring_options
@import_options
def command(trace: str, items: tuple[str, ...], gpus: int | None, replicas: str, seed: int, time_limit: float,
            fit: str | None, cost: str, gpus_per_node: int | None, inter_node_cost: float | None,
            topology_file: str | None, split: str, holdout: float, hidden_size: int | None, dtype_bytes: int,
            as_json: bool, **kw) -> None:
    """Compare placement files and solver names (ITEMS) on the routing of TRACE."""
    from placer.cost import default_costs, evaluate, passes_over_trace
    from placer.fileio import to_jsonable
    from placer.model.placement import Placement
    from placer.model.profile import Profile
    from placer.model.topology import Topology
    from placer.progress import progress
    from placer.solvers.base import Constraints, available_solvers, solve
    from placer.solvers.replicate import replicas_for
    from placer.traces.load import load_input, profile_of

    full = load_input([trace], **load_kwargs(kw))
    data = split_part(full, split, holdout, trace)
    fit = fit or ("train" if split == "test" else split)
    files: dict[str, Placement] = {}
    for item in items:
        if Path(item).is_file():
            files[item] = Placement.load(item)
        elif item not in available_solvers():
            raise PlacerError(f"{item}: neither a placement file nor a solver name; "
                              f"give a placement .json or one of: {', '.join(available_solvers())}")
    first = next(iter(files.values()), None)
    G = gpus or (first.num_gpus if first else None)
    if G is None:
        raise PlacerError("no placement file gives the GPU count; pass --gpus N for the solver names")
    gpn = gpus_per_node if gpus_per_node is not None else (first.gpus_per_node if first else None)
    topo = Topology.for_cluster(G, gpn, inter_node_cost, topology_file)
    costs = default_costs() if cost == "all" else (cost,)
    constraints = Constraints(replicas=replicas_for(replicas, G), seed=seed, time_limit=time_limit)

    entries: list[dict[str, Any]] = []
    profile: Profile | None = None
    for item in items:
        if item in files:
            entries.append({"name": Path(item).stem, "source": item, "placement": files[item]})
            continue
        if profile is None:
            profile = profile_of(split_part(full, fit, holdout, trace), coact=False)
        res = solve(item, profile, topo, constraints)
        entries.append({"name": item, "source": f"solver {item} (fitted on {fit})",
                        "placement": res.placement, "solver": res.summary()})

    names = _unique([e["name"] for e in entries])
    total = data.num_tokens * passes_over_trace(data, costs) * len(entries)
    with progress("evaluating", total=total or None, unit="tokens") as advance:
        for e, name in zip(entries, names):
            e["name"] = name
            e["result"] = evaluate(data, e["placement"], topo, costs=costs, hidden_size=hidden_size,
                                   dtype_bytes=dtype_bytes, matrices=False, progress=advance)
    if as_json:
        out = {"trace_file": trace, "split": split, "fit": fit, "topology": topo.describe(),
               "placements": [{"name": e["name"], "source": e["source"], **({"solver": e["solver"]} if "solver" in e else {}),
                               **e["result"]} for e in entries]}
        click.echo(json.dumps(to_jsonable(out)))
        return
    click.echo(describe_data(data, split) + ("" if fit == split else f"; solvers fitted on {fit}"))
    click.echo(f"topology: {describe_topology(topo)}")
    header, rows = _table(entries, costs, hidden_size is not None)
    click.echo(format_table(header, rows))


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 and names.count(n) == 1 else f"{n}#{seen[n]}")
    return out


def _table(entries: list[dict[str, Any]], costs: tuple[str, ...], with_time: bool) -> tuple[list[str], list[list[str]]]:
    header = ["placement"]
    if "coherent" in costs:
        header += ["coherent/transition", "coh. inter-node"]
    if "ep" in costs:
        header += ["ep copies/token-layer", "GPUs spanned", "ep inter-node"]
        if with_time:
            header += ["a2a time ms"]
    if "load" in costs:
        header += ["imbalance mean", "imbalance max"]
    rows = []
    for e in entries:
        r = e["result"]
        row = [e["name"]]
        if "coherent" in costs:
            c = r["coherent"]
            row += (["n/a", "n/a"] if "skipped" in c
                    else [f"{c['per_transition']:.4f}", f"{100 * c['inter_node_share']:.1f}%"])
        if "ep" in costs:
            ep = r["ep"]
            if "skipped" in ep:
                row += ["n/a"] * (4 if with_time else 3)
            else:
                row += [f"{ep['copies_per_token_layer']:.4f}", f"{ep['mean_gpus_spanned']:.3f}",
                        f"{100 * ep['inter_node_share']:.1f}%"]
                if with_time:
                    row += [f"{ep['time_s'] * 1e3:.4g}"]
        if "load" in costs:
            lo = r["load"]
            row += [f"{lo['mean_imbalance']:.4f}", f"{lo['max_imbalance']:.4f}"]
        rows.append(row)
    return header, rows
