"""What ``evaluate`` and ``compare`` share: the split, the topology, options, tables."""

from __future__ import annotations

from typing import Any, Callable

import click

from placer.cost import COST_MODELS
from placer.errors import PlacerError
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.model.trace import Trace

SPLITS = ("all", "train", "test")


def select_split(data: Trace | Profile, split: str, name: str) -> Trace | Profile:
    """``all``, or the first (``train``) / second (``test``) half of the sequences."""
    if split == "all":
        return data
    if not isinstance(data, Trace):
        raise PlacerError(f"{name}: aggregate counts have no sequences to split; use --split all")
    train, test = data.split(0.5)
    return train if split == "train" else test


def make_topology(num_gpus: int, gpus_per_node: int | None, inter_node_cost: float | None,
                  topology_file: str | None) -> Topology:
    if topology_file:
        topo = Topology.from_file(topology_file, gpus_per_node)
        if topo.num_gpus != num_gpus:
            raise PlacerError(f"{topology_file}: the bandwidth matrix is for {topo.num_gpus} GPUs but the placement "
                              f"uses {num_gpus}; give a {num_gpus} x {num_gpus} matrix")
        return topo
    return Topology.uniform(num_gpus, gpus_per_node, inter_node_cost)


def cost_list(cost: str) -> tuple[str, ...]:
    return COST_MODELS if cost == "all" else (cost,)


def common_options(fn: Callable) -> Callable:
    """Options shared by ``evaluate`` and ``compare``."""
    options = [
        click.option("--cost", "cost", type=click.Choice(["all", *COST_MODELS]), default="all", show_default=True,
                     help="Cost model(s) to report: coherent (ExFlow), ep (two all-to-alls with dedup), load."),
        click.option("--gpus-per-node", type=int, default=None,
                     help="GPUs per node (default: the placement's own value)."),
        click.option("--inter-node-cost", type=float, default=None,
                     help="Hop cost of a cross-node transfer, same-node = 1 (default: NVLink/NIC bandwidth ratio, 18)."),
        click.option("--topology", "topology_file", type=click.Path(dir_okay=False), default=None,
                     help="G x G bandwidth matrix in bytes/s (.npy or text) instead of uniform nodes."),
        click.option("--split", type=click.Choice(SPLITS), default="all", show_default=True,
                     help="Score on all sequences, the first half (train) or the second half (test)."),
        click.option("--hidden-size", type=click.IntRange(min=1), default=None,
                     help="Model hidden size: gives ep bytes and the estimated all-to-all time."),
        click.option("--dtype-bytes", type=click.IntRange(min=1), default=2, show_default=True,
                     help="Bytes per activation element (2 for bf16)."),
        click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON to stdout."),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def metric_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, formatted value) pairs of an :func:`placer.cost.evaluate` summary."""
    rows: list[tuple[str, str]] = []
    c = result.get("coherent")
    if c and "skipped" in c:
        rows.append(("coherent", f"skipped: {c['skipped']}"))
    elif c:
        rows += [("coherent: hop cost per token transition", f"{c['per_transition']:.4f}"),
                 ("coherent: total (hop-weighted transitions)", f"{c['total']:.6g}"),
                 ("coherent: inter-node share of moves", _pct(c["inter_node_share"])),
                 ("coherent: busiest GPU pair (token moves)", f"{c['max_link']:.6g}")]
        if c.get("time_s") is not None:
            rows.append(("coherent: est. all-to-all time, all layers", f"{c['time_s'] * 1e3:.4g} ms"))
    e = result.get("ep")
    if e and "skipped" in e:
        rows.append(("ep", f"skipped: {e['skipped']}"))
    elif e:
        rows += [("ep: remote copies per token per layer", f"{e['copies_per_token_layer']:.4f}"),
                 ("ep: dispatch copies (total)", f"{e['copies']}"),
                 ("ep: GPUs spanned by a token's top-K", f"{e['mean_gpus_spanned']:.3f}"),
                 ("ep: inter-node share of copies", _pct(e["inter_node_share"])),
                 ("ep: busiest GPU pair (copies)", f"{e['max_link']}")]
        if e.get("bytes") is not None:
            rows += [("ep: dispatch + combine bytes", _bytes(e["bytes"])),
                     ("ep: est. all-to-all time, all layers", f"{e['time_s'] * 1e3:.4g} ms")]
    lo = result.get("load")
    if lo:
        rows += [("load: imbalance max/mean, mean over layers", f"{lo['mean_imbalance']:.4f}"),
                 ("load: imbalance, worst layer", f"{lo['max_imbalance']:.4f}")]
    return rows


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _bytes(x: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(x) < 1000 or unit == "TB":
            return f"{x:.4g} {unit}"
        x /= 1000
    return f"{x:.4g} TB"


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """Plain aligned text: first column left-aligned, the rest right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [str(r[0]).ljust(widths[0])] + [str(v).rjust(w) for v, w in zip(r[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def describe_data(data: Trace | Profile, split: str) -> str:
    kind = "trace" if isinstance(data, Trace) else "profile"
    return (f"{kind}: {data.num_layers} MoE layers x {data.num_tokens} tokens x top-{data.top_k} "
            f"of {data.num_experts} experts (split: {split})")


def describe_topology(topo: Topology) -> str:
    d = topo.describe()
    text = f"{d['num_gpus']} GPUs, {d['num_nodes']} node(s) x {d['gpus_per_node']}"
    if d["hop_inter_node"] is not None:
        text += f", inter-node hop cost {d['hop_inter_node']:g}"
    return text
