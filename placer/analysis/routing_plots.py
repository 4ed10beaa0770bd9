"""The figures of ``moe-place inspect --plots``: load per layer, layer transitions, and a summary.

- ``load.png``: every MoE layer's expert loads ``load [L, E]`` as a share of the layer's mean
  (a heatmap with its colour bar), beside each layer's skew (max / mean).
- ``transitions.png``: ``P(expert j at layer l+1 | expert i at layer l)`` of each layer
  transition (top-1 counts ``trans_top1`` when the profile has them, else all K x K pairs), one
  shared colour bar. Experts are ordered so affinity shows: by the GPU of ``placement`` (lines
  mark GPUs: the mass inside the diagonal blocks is what it keeps on one GPU), else each row by
  its most likely successor (a hot staircase means strong affinity, a grey field none). At most
  :data:`MAX_PANELS` transitions; more are shown as an evenly spaced subset, and the title says so.
- ``summary.png``: per transition, the share of token transitions kept on one GPU: the upper
  bound any placement of ``gpus`` GPUs can reach (:mod:`placer.analysis.stats`), what the
  contiguous default and ``placement`` keep, and random's 1/G; below it the affinity (NMI, mean
  max P(next | current)).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from placer.analysis import stats

MAX_PANELS = 36
COLUMNS = 6


def inspect_plots(profile, directory: Path, placement: Any = None, gpus: int | None = None,
                  name: str = "") -> list[str]:
    """Write the three figures into ``directory``; returns their file names. ``name``: what the
    figures' titles call the input (default: the profile's model)."""
    from placer.analysis.plots import pyplot, save_png

    plt = pyplot()
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file, draw in (("load.png", _load), ("transitions.png", _transitions), ("summary.png", _summary)):
        fig = draw(plt, profile, placement, gpus)
        if fig is not None:
            fig.suptitle(f"{name or profile.model or 'trace'}: {fig.get_suptitle()}" if fig.get_suptitle()
                         else name or profile.model or "trace", fontsize=10)
            save_png(plt, fig, directory / file)
            written.append(file)
    return written


def _layer_labels(profile) -> list[str]:
    return [str(n) for n in profile.moe_layers]


def _load(plt, profile, _placement, _gpus):
    L, E = profile.load.shape
    load = profile.load.astype(np.float64)
    mean = load.mean(axis=1, keepdims=True)
    share = np.divide(load, mean, out=np.zeros_like(load), where=mean > 0)
    fig, (ax, ax_skew) = plt.subplots(1, 2, figsize=(11, 0.22 * L + 2.2), width_ratios=(5, 1), sharey=True,
                                      layout="constrained")
    im = ax.imshow(share, aspect="auto", cmap="magma", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="expert load / layer mean", pad=0.01)
    ax.set_xlabel(f"expert id (0..{E - 1})")
    ax.set_ylabel("MoE layer (model layer number)")
    _layer_ticks(ax, profile, L)
    ax.set_title(f"tokens routed to each expert, all {L} MoE layers (top-{profile.top_k} picks)")
    skew = stats.load_skew(profile.load)
    ax_skew.barh(np.arange(L), skew, color="tab:red")
    ax_skew.axvline(1.0, color="grey", linestyle=":")
    ax_skew.set_xlabel("max / mean expert load")
    ax_skew.set_title("skew per layer (1 = even)")
    return fig


def _layer_ticks(ax, profile, L: int) -> None:
    step = max(1, -(-L // 32))
    ax.set_yticks(np.arange(0, L, step))
    ax.set_yticklabels(_layer_labels(profile)[::step], fontsize=7)


def _transition_counts(profile) -> tuple[np.ndarray | None, str]:
    if profile.trans_top1 is not None and profile.trans_top1.shape[0] > 0:
        return profile.trans_top1.astype(np.float64), "top-1"
    if profile.trans is not None and profile.trans.shape[0] > 0:
        return profile.trans.astype(np.float64), f"all {profile.top_k} x {profile.top_k} pairs"
    return None, ""


def shown_transitions(n: int, max_panels: int = MAX_PANELS) -> np.ndarray:
    """Indices of the transitions drawn: all of them, or ``max_panels`` evenly spaced."""
    if n <= max_panels:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_panels).round().astype(int))


def _order(placement, layer: int, E: int, cond: np.ndarray | None = None) -> tuple[np.ndarray, list[int]]:
    """Experts of ``layer`` in display order, and where GPU blocks start (placement order)."""
    if placement is not None:
        gpu = placement.expert_gpus[layer].argmax(axis=1)      # first GPU that holds each expert
        order = np.argsort(gpu, kind="stable")
        return order, list(np.flatnonzero(np.diff(gpu[order])) + 1)
    if cond is None:
        return np.arange(E), []
    best = cond.argmax(axis=1)
    return np.lexsort((-cond.max(axis=1), best)), []


def _transitions(plt, profile, placement, _gpus):
    counts, kind = _transition_counts(profile)
    if counts is None:
        return None
    n, E = counts.shape[0], counts.shape[-1]
    pick = shown_transitions(n)
    cols = min(COLUMNS, len(pick))
    rows = -(-len(pick) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols + 1.2, 2.3 * rows + 0.8), squeeze=False,
                             layout="constrained")
    conds = []
    for l in pick:
        m = counts[l]
        tot = m.sum(axis=1, keepdims=True)
        conds.append(np.divide(m, tot, out=np.zeros_like(m), where=tot > 0))
    vmax = max(float(np.percentile(np.concatenate([c.ravel() for c in conds]), 99.5)), 1e-9)
    names = _layer_labels(profile)
    im = None
    for ax, l, cond in zip(axes.ravel(), pick, conds):
        r, r_cuts = _order(placement, l, E, cond)
        c, c_cuts = _order(placement, l + 1, E) if placement is not None else (np.arange(E), [])
        im = ax.imshow(cond[np.ix_(r, c)], cmap="viridis", vmin=0, vmax=vmax, aspect="auto", interpolation="nearest")
        for cut in r_cuts:
            ax.axhline(cut - 0.5, color="white", linewidth=0.6)
        for cut in c_cuts:
            ax.axvline(cut - 0.5, color="white", linewidth=0.6)
        ax.set_title(f"layer {names[l]} -> {names[l + 1]}", fontsize=8)
        _expert_ticks(ax, r, c)
    for ax in axes.ravel()[len(pick):]:
        ax.axis("off")
    for k, ax in enumerate(axes.ravel()[:len(pick)]):
        if k + cols >= len(pick):        # the lowest panel of its column
            ax.set_xlabel("expert at l+1", fontsize=7)
        if k % cols == 0:
            ax.set_ylabel("expert at l", fontsize=7)
    how = ("experts grouped by the placement's GPU (white lines)" if placement is not None
           else "rows sorted by their most likely next expert, columns by id")
    shown = f"all {n} layer transitions" if len(pick) == n else f"{len(pick)} of {n} layer transitions, evenly spaced"
    fig.suptitle(f"P(next expert | current expert), {kind} picks; {shown}; {how}", fontsize=10)
    fig.colorbar(im, ax=axes.ravel().tolist(), label="P(expert at l+1 | expert at l)", shrink=0.8, pad=0.02)
    return fig


def _expert_ticks(ax, rows: np.ndarray, cols: np.ndarray) -> None:
    """Expert ids in display order when few enough to read, else none."""
    if len(rows) > 16:
        ax.set_xticks([])
        ax.set_yticks([])
        return
    ax.set_xticks(np.arange(len(cols)), [str(e) for e in cols], fontsize=6)
    ax.set_yticks(np.arange(len(rows)), [str(e) for e in rows], fontsize=6)


def _kept_share(counts: np.ndarray, placement) -> np.ndarray:
    """``[L-1]`` share of the transition weight ``counts`` kept on one GPU by ``placement``
    (with replicas: the pair shares some GPU)."""
    h = placement.expert_gpus.astype(np.float64)          # [L, E, G]
    shared = np.einsum("lig,ljg->lij", h[:-1], h[1:]) > 0  # [L-1, E, E]
    return (counts * shared).sum(axis=(1, 2)) / np.maximum(counts.sum(axis=(1, 2)), 1e-12)


def _summary(plt, profile, placement, gpus):
    counts, kind = _transition_counts(profile)
    if counts is None:
        return None
    G = gpus or (placement.num_gpus if placement is not None else None)
    n = counts.shape[0]
    x = np.arange(n)
    names = _layer_labels(profile)
    fig, (ax, ax_aff) = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True, height_ratios=(3, 2))
    total = np.maximum(counts.sum(axis=(1, 2)), 1e-12)
    if G is not None:
        S = stats.slots_per_gpu(profile.num_experts, G)
        ax.plot(x, stats.locality_kept_bound(counts, S) / total, "k-", marker=".", label=f"upper bound, any placement ({kind})")
        if profile.num_experts % G == 0:
            from placer.solvers.baselines import baseline_placement
            ax.plot(x, _kept_share(counts, baseline_placement("contiguous", profile.load, G)), color="tab:blue",
                    marker=".", label="contiguous (expert e on GPU e // (E/G))")
        if placement is not None and placement.num_gpus == G:
            ax.plot(x, _kept_share(counts, placement), color="tab:green", marker="o", label="the placement (--placement)")
        ax.axhline(1.0 / G, color="grey", linestyle=":", label=f"random placement: 1/G = {1 / G:.3f}")
        ax.set_title(f"share of token transitions kept on one GPU, {G} GPUs x {S} experts per layer (higher is better)")
        ax.set_ylim(0, 1.25)
        ax.legend(fontsize=8, loc="upper center", ncol=2)
    else:
        ax.text(0.5, 0.5, "give --gpus G (or --placement) for the locality bound", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_ylabel("kept on one GPU (share)")
    ax.grid(True, alpha=0.3)
    t1 = profile.trans_top1 if profile.trans_top1 is not None and profile.trans_top1.shape[0] > 0 else counts
    ax_aff.plot(x, [stats.nmi(m) for m in t1], marker=".", label="NMI of consecutive top-1 choices")
    ax_aff.plot(x, [stats.max_conditional_probability(m) for m in t1], marker=".",
                label="mean max P(next | current), top-1")
    ax_aff.set_ylim(0, 1.25)
    ax_aff.set_ylabel("affinity (0 = none, 1 = determined)")
    ax_aff.legend(fontsize=8, loc="upper center", ncol=2)
    ax_aff.grid(True, alpha=0.3)
    step = max(1, -(-n // 32))
    ax_aff.set_xticks(x[::step])
    ax_aff.set_xticklabels([f"{names[l]}->{names[l + 1]}" for l in x[::step]], rotation=60, fontsize=7)
    ax_aff.set_xlabel("layer transition (model layer numbers)")
    fig.suptitle(f"{profile.num_layers} MoE layers, {profile.num_experts} experts, top-{profile.top_k}, "
                 f"{profile.num_tokens} tokens")
    for a in (ax, ax_aff):
        a.set_yticks(np.linspace(0, 1, 6))
    return fig
