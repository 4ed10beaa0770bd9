"""How commands print results: aligned tables and the metric rows of :func:`placer.cost.evaluate`."""

from __future__ import annotations

from typing import Any

from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.model.trace import Trace


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
    tm = result.get("time")
    if tm and "skipped" in tm:
        rows.append(("time", f"skipped: {tm['skipped']}"))
    elif tm:
        head = f"time ({tm['hardware']}, {tm['phase']}, {tm['tokens_per_step']} tokens)"
        rows += [(f"{head}: step", f"{tm['step_s'] * 1e3:.4g} ms"),
                 ("time: all-to-all / experts / shared", f"{tm['comm_s'] * 1e3:.4g} / {tm['compute_s'] * 1e3:.4g} / "
                                                         f"{tm['shared_s'] * 1e3:.4g} ms")]
        for name, b in (tm.get("baselines") or {}).items():
            rows.append((f"time: vs {name} ({b['step_s'] * 1e3:.4g} ms)", f"{b['ratio']:.3f}x"))
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
