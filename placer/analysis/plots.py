"""Figures a person reads: ``moe-place inspect --plots`` (routing) and ``moe-place plan --plot``.

PNG through matplotlib's Agg backend (imported only here), written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from placer.analysis.plan import GIB
from placer.errors import PlacerError


def inspect_plots(profile, directory: Path, max_panels: int = 16) -> list[str]:
    """PNG heatmaps of transition matrices and per-layer load bars; returns the file names."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from placer.fileio import atomic_path

    directory.mkdir(parents=True, exist_ok=True)
    written = []

    def grid(n: int):
        cols = min(4, n)
        rows = -(-n // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
        for ax in axes.ravel()[n:]:
            ax.axis("off")
        return fig, axes.ravel()

    def save(fig, name: str) -> None:
        fig.tight_layout()
        with atomic_path(directory / name) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        plt.close(fig)
        written.append(name)

    L = profile.num_layers
    pick = np.unique(np.linspace(0, L - 1, min(L, max_panels)).round().astype(int))
    fig, axes = grid(len(pick))
    for ax, l in zip(axes, pick):
        ax.bar(np.arange(profile.num_experts), profile.load[l], width=1.0, color="tab:blue")
        ax.set_title(f"load, layer {profile.moe_layers[l]}", fontsize=8)
        ax.tick_params(labelsize=6)
    save(fig, "load.png")

    mat = profile.trans_top1 if profile.trans_top1 is not None else profile.trans
    if mat is not None and mat.shape[0] > 0:
        pick = np.unique(np.linspace(0, mat.shape[0] - 1, min(mat.shape[0], max_panels)).round().astype(int))
        fig, axes = grid(len(pick))
        for ax, l in zip(axes, pick):
            m = mat[l].astype(float)
            rows = m.sum(axis=1, keepdims=True)
            ax.imshow(np.divide(m, rows, out=np.zeros_like(m), where=rows > 0), cmap="viridis", vmin=0, aspect="auto")
            ax.set_title(f"P(next | cur) {profile.moe_layers[l]}->{profile.moe_layers[l + 1]}", fontsize=8)
            ax.tick_params(labelsize=6)
        save(fig, "transitions.png")
    return written


def plan_plot(table: "pandas.DataFrame", path: str, title: str = "", gpu_memory: float | None = None) -> None:  # noqa: F821
    """Trade-off curves vs GPUs, one line per (solver, replicas): EP bytes (or copies) per step,
    mean per-layer imbalance, expert memory per GPU (with the GPU memory line). PNG via Agg."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from placer.fileio import atomic_path

    ok = table[table["status"].isin(["infeasible", "error"]) == False].copy()  # noqa: E712
    if ok.empty:
        raise PlacerError("nothing to plot: every configuration was infeasible or failed; see the table")
    ok["replica_label"] = ok["replica_spec"].astype(str)
    use_bytes = ok["ep_bytes_per_step"].notna().any()
    fig, grid = plt.subplots(2, 2, figsize=(11, 7.5))
    ax_traffic, ax_time, ax_balance, ax_mem = grid.ravel()
    traffic_col = "ep_bytes_per_step" if use_bytes else "ep_copies_per_token"
    markers = "osd^v<>"
    for i, ((solver, R), grp) in enumerate(ok.groupby(["solver", "replica_label"], sort=True)):
        grp = grp.sort_values("gpus")
        label = f"{solver}, replicas {R}" if ok["replica_label"].nunique() > 1 else solver
        style = dict(marker=markers[i % len(markers)], label=label, linestyle="-" if R == "0" else "--")
        ax_traffic.plot(grp["gpus"], grp[traffic_col] / (2 ** 20 if use_bytes else 1), **style)
        if use_bytes:
            ax_time.plot(grp["gpus"], grp["ep_time_per_step_ms"], **style)
        ax_balance.plot(grp["gpus"], grp["imbalance_mean"], **style)
    if not use_bytes:
        ax_time.text(0.5, 0.5, "give --hidden-size for bytes and time", ha="center", va="center",
                     transform=ax_time.transAxes)
    if ok["expert_mem_gib"].notna().any():
        for R, grp in ok.groupby("replica_label"):
            m = grp.groupby("gpus")["expert_mem_gib"].max()
            ax_mem.plot(m.index, m.values, marker="o", label=f"replicas {R}")
        if gpu_memory:
            ax_mem.axhline(gpu_memory / GIB, color="red", linestyle=":", label="GPU memory")
        ax_mem.legend(fontsize=8)
    else:
        ax_mem.text(0.5, 0.5, "give --expert-bytes or --expert-params\nfor memory per GPU",
                    ha="center", va="center", transform=ax_mem.transAxes)
    ax_traffic.set_ylabel("MiB per step (dispatch + combine)" if use_bytes else "copies per token (all layers)")
    ax_time.set_ylabel("ms per step (alpha-beta estimate)")
    ax_balance.set_ylabel("mean per-layer max/mean GPU load")
    ax_mem.set_ylabel("expert weights per GPU (GiB)")
    titles = ("EP all-to-all traffic (ep model)", "EP all-to-all time (ep model)", "load imbalance (load model)",
              "memory fit")
    for ax, name in zip(grid.ravel(), titles):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(ok["gpus"].unique()))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("GPUs")
        ax.set_title(name)
        ax.grid(True, alpha=0.3)
    ax_traffic.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
