"""Figures a person reads: ``moe-place plan --plot`` here, ``inspect --plots`` in
:mod:`placer.analysis.routing_plots`; the matplotlib set-up both share.

PNG through matplotlib's Agg backend (imported only here), written atomically.
"""

from __future__ import annotations

from pathlib import Path

from placer.analysis.plan import GIB
from placer.errors import PlacerError


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_png(plt, fig, path: Path | str, dpi: int = 80) -> None:
    """Write ``fig`` to ``path`` atomically and close it."""
    from placer.fileio import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
    plt.close(fig)


def plan_plot(table: "pandas.DataFrame", path: str, title: str = "", gpu_memory: float | None = None) -> None:  # noqa: F821
    """Trade-off curves against the GPU count, one line per (solver, replicas): EP traffic per
    step (MiB with ``--hidden-size``, else copies per token), its time, the mean per-layer
    imbalance, and expert memory per GPU against the GPU memory. Panels without data (no
    ``--hidden-size``, no expert size) are left out; the x ticks are the GPU counts swept."""
    import matplotlib

    plt = pyplot()
    ok = table[table["status"].isin(["infeasible", "error"]) == False].copy()  # noqa: E712
    if ok.empty:
        raise PlacerError("nothing to plot: every configuration was infeasible or failed; see the table")
    ok["replica_label"] = ok["replica_spec"].astype(str)
    use_bytes = ok["ep_bytes_per_step"].notna().any()
    panels = [("traffic", f"EP all-to-all traffic{' per step' if use_bytes else ''} (ep model, lower is better)",
               "MiB per step (dispatch + combine)" if use_bytes else "remote copies per token (all layers)")]
    if use_bytes and ok["ep_time_per_step_ms"].notna().any():
        panels.append(("time", "EP all-to-all time per step (alpha-beta estimate)", "ms per step"))
    panels.append(("balance", "load imbalance (load model, 1 = even)", "mean per-layer max / mean GPU load"))
    if ok["expert_mem_gib"].notna().any():
        panels.append(("memory", "expert weights per GPU", "GiB per GPU"))
    cols = 2 if len(panels) > 2 else len(panels)
    rows = -(-len(panels) // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.8 * rows + 0.8), squeeze=False)
    axes = dict(zip([p[0] for p in panels], grid.ravel()))
    for ax in grid.ravel()[len(panels):]:
        ax.axis("off")
    markers = "osd^v<>"
    several = ok["replica_label"].nunique() > 1
    for i, ((solver, R), grp) in enumerate(ok.groupby(["solver", "replica_label"], sort=True)):
        grp = grp.sort_values("gpus")
        style = dict(marker=markers[i % len(markers)], label=f"{solver}, replicas {R}" if several else solver,
                     linestyle="-" if R == "0" else "--")
        axes["traffic"].plot(grp["gpus"], grp["ep_bytes_per_step"] / 2 ** 20 if use_bytes else grp["ep_copies_per_token"],
                             **style)
        if "time" in axes:
            axes["time"].plot(grp["gpus"], grp["ep_time_per_step_ms"], **style)
        axes["balance"].plot(grp["gpus"], grp["imbalance_mean"], **style)
    if "memory" in axes:
        for R, grp in ok.groupby("replica_label"):
            m = grp.groupby("gpus")["expert_mem_gib"].max()
            axes["memory"].plot(m.index, m.values, marker="o", label=f"replicas {R}")
        if gpu_memory:
            axes["memory"].axhline(gpu_memory / GIB, color="red", linestyle=":", label="GPU memory (--gpu-memory)")
        axes["memory"].legend(fontsize=8)
    gpus = sorted(int(g) for g in ok["gpus"].unique())
    for (key, name, ylabel), ax in zip(panels, grid.ravel()):
        ax.set_xscale("log", base=2)
        ax.set_xticks(gpus)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FixedFormatter([str(g) for g in gpus]))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlim(gpus[0] / 1.25, gpus[-1] * 1.25)
        ax.set_xlabel("GPUs")
        ax.set_ylabel(ylabel)
        ax.set_title(name, fontsize=10)
        ax.grid(True, alpha=0.3)
    handles, labels = axes["traffic"].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, bbox_to_anchor=(0.5, 0.0))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(labels) > 4), 1, 1))
    save_png(plt, fig, path)
