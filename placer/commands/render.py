"""How commands print results: aligned tables and the metric rows of :func:`placer.cost.evaluate`."""

from __future__ import annotations

import math
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
        rows += [(f"coherent: hop cost per token transition ({hop_scale(result.get('topology') or {})})",
                  f"{c['per_transition']:.4f}"),
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


def hop_scale(topology: dict[str, Any]) -> str:
    """What one token transition costs on ``topology`` (:meth:`Topology.describe`): why a
    coherent cost per transition can exceed 1."""
    intra, inter = topology.get("hop_intra_node") or 1.0, topology.get("hop_inter_node")
    if inter is None:
        return f"0 same GPU, {intra:g} another GPU"
    return f"0 same GPU, {intra:g} same node, {inter:g} other node; above {intra:g}: inter-node moves"


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


# ------------------------------------------------------------------ solve's summary
SOLVE_COLUMNS = (("coherent/transition", "coherent_per_transition", "{:.4f}", 1.0),
                 ("ep copies/token-layer", "ep_copies_per_token_layer", "{:.4f}", 1.0),
                 ("max imbalance", "max_imbalance", "{:.3f}", 1.0),
                 ("step ms", "step_s", "{:.4g}", 1e3))
BALANCE_TOLERANCE = 0.02     # imbalance within 2 % of a baseline's counts as as balanced


def solve_summary(report: dict[str, Any], timings: dict[str, float], output: str) -> list[str]:
    """What ``solve`` prints: the result, what each figure means and which way is better, the
    metrics of the solution and the baselines, and one line on load balance."""
    gap = report["gap"]
    lines = [f"solver: {report['chosen']}",
             f"status: {report['status']}  objective ({report['objective_model']}): {_num(report['objective'], '{:.6g}')}  "
             f"bound: {_num(report['bound'], '{:.6g}')}  gap: {'-' if gap is None else f'{100 * gap:.2f}%'}  "
             f"time: {timings.get('command_s', 0.0):.2f} s (search {timings.get('solver_s', 0.0):.2f} s)",
             "  objective: what the solver minimised (lower is better); bound: no placement goes below it; "
             "gap: (objective - bound) / objective"]
    lines += [f"note: {n}" for n in report["notes"]]
    metrics = report["metrics"]
    cols = [c for c in SOLVE_COLUMNS if any(c[1] in m.get("in_sample", {}) for m in metrics.values())]
    rows = []
    for part in ("in_sample", "held_out"):
        if any(part in m for m in metrics.values()):
            rows.append([part.replace("_", " ") + ":"] + [""] * len(cols))
            rows += [[f"  {name}"] + [_num(m[part].get(key), f, scale) for _, key, f, scale in cols]
                     for name, m in metrics.items() if part in m]
    lines.append(format_table(["placement"] + [c[0] for c in cols], rows))
    lines.append("lower is better in every column:")
    legend = {"coherent_per_transition": f"mean hop cost of a token's move to the next layer's GPU "
                                         f"({hop_scale(report['topology'])})",
              "ep_copies_per_token_layer": "remote GPUs a token is sent to per layer in expert parallelism (dispatch; "
                                           "as many return)",
              "max_imbalance": "busiest GPU's load / mean GPU load, worst layer (1 = perfectly balanced)",
              "step_s": "predicted forward-step time: all-to-all plus the busiest GPU's experts"}
    lines += [f"  {c[0]}: {legend[c[1]]}" for c in cols]
    lines.append(balance_line(report))
    lines.append(f"wrote {output}")
    return lines


def balance_line(report: dict[str, Any]) -> str:
    """One line: is the solution less balanced than ``contiguous`` or ``eplb`` (held out when
    scored so), and what to pass then."""
    metrics = report["metrics"]
    part = "held_out" if "held_out" in metrics.get("solution", {}) else "in_sample"
    mine = metrics["solution"][part]["max_imbalance"]
    worse = {n: metrics[n][part]["max_imbalance"] for n in ("contiguous", "eplb") if n in metrics
             and mine > metrics[n][part]["max_imbalance"] * (1 + BALANCE_TOLERANCE)}
    where = part.replace("_", " ")
    if not worse:
        return f"balance: as balanced as contiguous and eplb {where} (max imbalance {mine:.3f})"
    than = " and ".join(f"{n} ({v:.3f})" for n, v in worse.items())
    # a bound the most balanced baseline meets, rounded up to a twentieth
    target = min(worse.values())
    cap = math.ceil(target * 20) / 20 if math.ceil(target * 20) / 20 < mine else target
    cons = report["constraints"]
    copies = "more --replicas" if cons.get("replicas") else "--replicas 1x"
    if cons.get("objective") == "time":
        fix = f"the step-time objective judged it worth the traffic saved; {copies} adds balancing copies"
    elif cons.get("max_imbalance") is None:
        fix = f"pass --max-imbalance {cap:.3g}, {copies}, or --objective time --model M"
    else:
        fix = f"lower --max-imbalance (now {cons['max_imbalance']:g}), pass {copies}, or --objective time --model M"
    return f"balance: less balanced than {than} {where} (max imbalance {mine:.3f}); {fix}"


def _num(v: Any, fmt: str = "{:.4g}", scale: float = 1.0) -> str:
    if v is None:
        return "-"
    return fmt.format(v * scale) if isinstance(v, float) else str(v)
