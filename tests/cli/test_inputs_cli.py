"""The inputs people have, end to end: fiddler and OLMoE counts (loads only, top-1 transitions)."""

from __future__ import annotations

import json

import pytest

from placer.model.placement import Placement
from support.cli import assert_user_error


@pytest.fixture
def fiddler(shared_traces, tmp_path):
    """What ``moe-place import ... --key Mixtral-8x7B-v0.1__all -o fid.npz`` writes (in process)."""
    from placer.traces.load import load_input
    out = tmp_path / "fid.npz"
    load_input(shared_traces / "fiddler" / "mixtral_mmlu_expert_counts.npz", key="Mixtral-8x7B-v0.1__all").save(out)
    return out


@pytest.mark.parametrize("solver", ["eplb", "contiguous", "auto"])
def test_loads_only_solve(cli, fiddler, tmp_path, solver):
    out = tmp_path / "p.json"
    proc = cli("solve", fiddler, "--gpus", 4, "--replicas", 4, "--solver", solver, "-o", out, "--time-limit", 5)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    pl = Placement.load(out)
    assert (pl.num_layers, pl.num_slots) == (32, 12)
    if solver == "auto":
        assert pl.report["chosen"].startswith("eplb") and "load balance alone" in proc.stdout


def test_loads_only_refusal_names_a_solver(cli, fiddler, tmp_path):
    proc = cli("solve", fiddler, "--gpus", 4, "--solver", "partition", "-o", tmp_path / "p.json")
    assert_user_error(proc, "--solver eplb", "loads only")


def test_loads_only_step_time_says_what_is_scored(cli, fiddler, tmp_path):
    proc = cli("solve", fiddler, "--gpus", 4, "--model", "mixtral-8x7b", "-o", tmp_path / "p.json", "--json",
               "--time-limit", 5)
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["objective"] > 0 and any("step time from loads only" in n for n in rep["notes"])


def test_olmoe_top1_transitions(cli, shared_traces, tmp_path):
    prof = tmp_path / "ol.npz"
    proc = cli("import", shared_traces / "olmoe" / "olmoe_mixtral_routing_counts.npz", "--key", "olmoe__arxiv",
               "-o", prof)
    assert proc.returncode == 0, proc.stderr
    proc = cli("solve", prof, "--gpus", 4, "--cost", "coherent", "-o", tmp_path / "p.json", "--time-limit", 4)
    assert proc.returncode == 0, proc.stderr
    assert "top-1 transitions only" in proc.stdout
    rep = Placement.load(tmp_path / "p.json").report
    assert any("top-1 transitions only" in n for n in rep["notes"]) and rep["objective"] is not None
