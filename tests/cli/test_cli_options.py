"""The commands agree with each other: one name, one type and one default per option, and every
registered solver (``auto`` too) usable wherever a solver name is."""

from __future__ import annotations

import json

import numpy as np
import pytest

from support.cli import assert_user_error, run_cli

SAMPLE = "traces/sample.npz"


@pytest.fixture(scope="module")
def placement(tmp_path_factory):
    out = tmp_path_factory.mktemp("p") / "contiguous.json"
    proc = run_cli("solve", "--cost", "coherent", SAMPLE, "--gpus", 4, "--solver", "contiguous", "-o", out)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    ["solve", SAMPLE, "--gpus", "4", "-o", "{out}"],
    ["compare", SAMPLE, "contiguous", "--gpus", "4"],
    ["plan", SAMPLE, "--gpus", "4", "--solvers", "contiguous"],
])
@pytest.mark.parametrize("bad, says", [("0", "seconds > 0"), ("-5", "seconds > 0"), ("nan", "finite"),
                                       ("inf", "finite"), ("soon", "not a number")])
def test_time_limit_is_checked_alike_everywhere(cli, tmp_path, command, bad, says):
    out = tmp_path / "never.json"
    args = [a.replace("{out}", str(out)) for a in command]
    assert_user_error(cli(*args, "--time-limit", bad), "--time-limit", says)
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("option, bad, says", [
    ("--replicas", "many", "per-GPU multiple"), ("--replicas", "-2", "per-GPU multiple"),
    ("--gpus-per-node", "0", "integer >= 1"), ("--inter-node-cost", "-1", "number >= 0"),
    ("--holdout", "1.5", "between 0 and 1"), ("--seed", "x", "integer"),
])
def test_shared_options_refuse_the_same_bad_values(cli, tmp_path, option, bad, says):
    out = tmp_path / "never.json"
    for args in (["solve", SAMPLE, "--gpus", "4", "-o", out], ["plan", SAMPLE, "--gpus", "4"]):
        assert_user_error(cli(*args, option, bad), option, says)
    assert not out.exists()


@pytest.mark.slow
def test_auto_is_a_solver_like_any_other(cli, tmp_path):
    proc = cli("compare", SAMPLE, "contiguous", "auto", "--gpus", 4, "--time-limit", 5, "--json")
    assert proc.returncode == 0, proc.stderr
    entries = json.loads(proc.stdout)["placements"]
    assert [e["name"] for e in entries] == ["contiguous", "auto"]
    proc = cli("plan", SAMPLE, "--gpus", 4, "--solvers", "auto,contiguous", "--time-limit", 5, "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert [r["solver"] for r in rows] == ["auto", "contiguous"] and all(r["status"] != "error" for r in rows)


@pytest.mark.slow
def test_replicas_per_gpu_and_holdout_read_the_same_in_solve_and_plan(cli, tmp_path):
    out = tmp_path / "p.json"
    proc = cli("solve", "--cost", "coherent", SAMPLE, "--gpus", 4, "--replicas", "1x", "--solver", "eplb", "--holdout", "0.25", "-o", out,
               "--json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["constraints"]["replicas"] == 4 and rep["constraints"]["holdout"] == 0.25
    proc = cli("plan", SAMPLE, "--gpus", 4, "--replicas", "1x", "--solvers", "eplb", "--holdout", "0.25", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["holdout"] == 0.25 and plan["rows"][0]["replicas"] == 4


@pytest.mark.slow
def test_solve_takes_a_bandwidth_matrix_like_evaluate(cli, tmp_path, placement):
    bw = np.full((4, 4), 100e9)
    bw[:2, 2:] = bw[2:, :2] = 10e9        # two pairs of GPUs, slow between the pairs
    path = tmp_path / "bw.txt"
    np.savetxt(path, bw)
    out = tmp_path / "p.json"
    proc = cli("solve", "--cost", "coherent", SAMPLE, "--gpus", 4, "--topology", path, "--solver", "partition", "--gpus-per-node", 2,
               "--time-limit", 30, "-o", out, "--json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["topology"]["hop_inter_node"] == pytest.approx(10.0)
    # the objective is the coherent cost under that matrix, as evaluate scores it
    proc = cli("evaluate", SAMPLE, out, "--topology", path, "--gpus-per-node", 2, "--cost", "coherent", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["coherent"]["total"] == pytest.approx(rep["objective"], rel=1e-9)
    assert_user_error(cli("solve", "--cost", "coherent", SAMPLE, "--gpus", 8, "--topology", path, "-o", tmp_path / "q.json"),
                      "bandwidth matrix is for 4 GPUs")


def test_usage_errors_are_one_line(cli, tmp_path):
    for args in (["solve", SAMPLE, "--gpus", "4", "--bogus", "-o", tmp_path / "x.json"],
                 ["evaluate", SAMPLE], ["export", "p.json", "--format", "nope", "-o", "x"]):
        proc = cli(*args)
        assert_user_error(proc)
