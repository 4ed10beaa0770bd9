"""The figures: every layer (or a labelled subset), colour bars, axis labels, the placement's
GPU order, the summary's bound; plan's plot without empty panels and with the swept GPU counts."""

from __future__ import annotations

import numpy as np
import pytest

from placer.analysis import plan as pl
from placer.analysis import routing_plots as rp
from placer.model.placement import Placement
from placer.model.profile import Profile
from support.generate import random_trace, zipf_trace

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def figures(monkeypatch):
    """The figures drawn, kept open for inspection (saving is replaced)."""
    import placer.analysis.plots as plots

    drawn = {}
    monkeypatch.setattr(plots, "save_png", lambda plt, fig, path, dpi=80: drawn.__setitem__(path.name if hasattr(path, "name") else str(path), fig))
    yield drawn
    import matplotlib.pyplot as plt
    plt.close("all")


def test_subset_of_transitions_is_even_and_complete_when_small():
    assert list(rp.shown_transitions(31)) == list(range(31))
    shown = rp.shown_transitions(60)
    assert len(shown) == rp.MAX_PANELS and shown[0] == 0 and shown[-1] == 59


def test_inspect_figures_show_every_layer_with_labels_and_colour_bars(tmp_path, figures):
    trace = random_trace(1, 6, 8, 2, 600, affinity=0.7, seq_offsets=6)
    profile = Profile.from_trace(trace)
    placement = Placement.from_gpu_of(np.tile(np.arange(8) % 2, (6, 1)), 2)
    names = rp.inspect_plots(profile, tmp_path, placement, 2, "t.npz")
    assert all(figures[n].get_suptitle().startswith("t.npz") for n in names)
    assert names == ["load.png", "transitions.png", "summary.png"]
    load, trans, summary = (figures[n] for n in names)
    assert load.axes[0].get_xlabel().startswith("expert id") and len(load.axes[0].get_yticks()) == 6
    assert any(ax.get_label() == "<colorbar>" for ax in load.axes)
    panels = [ax for ax in trans.axes if ax.get_title().startswith("layer ")]
    assert [ax.get_title() for ax in panels] == [f"layer {l} -> {l + 1}" for l in range(5)]
    assert any(ax.get_label() == "<colorbar>" for ax in trans.axes)
    assert "all 5 layer transitions" in trans.get_suptitle() and "placement's GPU" in trans.get_suptitle()
    # experts grouped by GPU: the even experts (GPU 0) first
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["0", "2", "4", "6", "1", "3", "5", "7"]
    labels = [t.get_text() for t in summary.axes[0].get_legend().get_texts()]
    assert any(s.startswith("upper bound") for s in labels) and any("placement" in s for s in labels)
    assert summary.axes[0].get_ylabel() and summary.axes[1].get_xlabel().startswith("layer transition")


def test_plan_plot_has_no_empty_panel_and_ticks_at_the_gpu_counts(tmp_path, figures):
    from placer.analysis.plots import plan_plot

    table = pl.plan(zipf_trace(), [2, 4, 8], ["0"], ["contiguous", "eplb"], pl.PlanOptions(time_limit=1))
    plan_plot(table, str(tmp_path / "p.png"))
    fig = next(iter(figures.values()))
    shown = [ax for ax in fig.axes if ax.axison]
    assert len(shown) == 2          # traffic and balance: no --hidden-size, no expert size
    for ax in shown:
        assert ax.lines and [t.get_text() for t in ax.get_xticklabels()] == ["2", "4", "8"]
        assert ax.get_xlabel() == "GPUs" and ax.get_ylabel()
