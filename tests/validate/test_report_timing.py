"""validate's timing lines come from one consistent sample (a collective time never exceeds the
iteration it is part of), and the gloo caveat is printed once."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from placer.validate.report import GLOO_NOTE, median_sample


def test_the_median_sample_keeps_its_collectives_inside_its_iteration():
    rng = np.random.default_rng(0)
    L, G = 4, 3
    samples = []
    for _ in range(7):
        layer = rng.uniform(0.01, 0.1, (G, L))
        comm = layer * rng.uniform(0.2, 1.0, (G, L))
        samples.append(np.concatenate([layer.sum(axis=1, keepdims=True), layer, comm], axis=1))
    s = median_sample(samples)
    assert s[1 + L:].sum() <= s[0] + 1e-12 and np.all(s[1 + L:] <= s[1:1 + L] + 1e-12)


def test_the_gloo_note_is_printed_once():
    import click

    from placer.commands.validate import _print

    report = {"mode": "ep", "world_size": 2, "backend": "gloo", "tokens": 8, "layers": 2, "top_k": 2, "hidden_size": 4,
              "outputs_match": True, "outputs_match_unit_weights": True, "picks_served_once": True,
              "experts_only_local": True, "bytes_measured": 10, "bytes_predicted": 10, "bytes_match": True,
              "baseline": "contiguous", "baseline_bytes_measured": 20, "bytes_ratio": 0.5,
              "time_placement_s": 0.2, "comm_time_placement_s": 0.1, "time_baseline_s": 0.3,
              "comm_time_baseline_s": 0.2, "time_ratio": 0.667, "notes": [GLOO_NOTE],
              "placement": {"max_abs_error": 0.0, "max_abs_error_unit_weights": 0.0, "predicted_by": "ep"}}
    out = CliRunner().invoke(click.command()(lambda: _print(report))).output
    assert out.count("do not predict NCCL times on GPUs") == 1
