"""``moe-place solve`` end to end: optimal on tiny instances, held-out scoring, determinism, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.model.topology import Topology
from support.brute import optimum
from support.cli import assert_user_error
from support.generate import random_trace
from support.truths import coherent_by_token, holding


@pytest.fixture
def tiny(tmp_path):
    trace = random_trace(21, 3, 4, 2, 60, affinity=0.6, seq_offsets=6)
    path = tmp_path / "tiny.npz"
    trace.save(path)
    return trace, path


def test_solve_is_optimal_and_writes_report(cli, tiny, tmp_path):
    trace, path = tiny
    out = tmp_path / "p.json"
    proc = cli("solve", "--cost", "coherent", path, "--gpus", 2, "-o", out, "--json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    topo = Topology.uniform(2)
    best = optimum(trace, topo)
    assert rep["status"] == "optimal"
    assert rep["objective"] == pytest.approx(best)
    assert rep["bound"] == pytest.approx(best)
    pl = Placement.load(out)
    assert coherent_by_token(trace, holding(pl), topo.hop)[0].sum() == pytest.approx(best)
    assert pl.report["objective"] == pytest.approx(best)
    # the optimum can be no worse than the contiguous baseline on the data it was solved on
    m = rep["metrics"]
    assert m["solution"]["in_sample"]["coherent_total"] <= m["contiguous"]["in_sample"]["coherent_total"] + 1e-9
    assert "auto" not in rep["chosen"] and "exflow" in rep["chosen"]


@pytest.mark.slow
def test_holdout_scores_on_unseen_sequences(cli, tiny, tmp_path):
    trace, path = tiny
    out = tmp_path / "p.json"
    proc = cli("solve", "--cost", "coherent", path, "--gpus", 2, "--holdout", "0.5", "-o", out, "--json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["input"]["train_tokens"] == 30 and rep["input"]["held_out_tokens"] == 30
    train = trace.select_sequences(np.arange(3))
    test = trace.select_sequences(np.arange(3, 6))
    topo = Topology.uniform(2)
    assert rep["objective"] == pytest.approx(optimum(train, topo))  # solved on the first half only
    per_tr = coherent_by_token(test, holding(Placement.load(out)), topo.hop)[0].sum() / (30 * 2)
    assert rep["metrics"]["solution"]["held_out"]["coherent_per_transition"] == pytest.approx(per_tr)
    assert "held_out" in rep["metrics"]["contiguous"]


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--param", "formulation=compact", "--backend", "cpsat"],
                                   ["--solver", "moetuner", "--backend", "cbc"],
                                   ["--solver", "partition", "--replicas", "4"]])
def test_same_seed_gives_identical_bytes(cli, tmp_path, extra):
    trace = random_trace(5, 2, 8, 2, 80, affinity=0.4)
    path = tmp_path / "t.npz"
    trace.save(path)
    outs = []
    for k in range(2):
        out = tmp_path / f"p{k}.json"
        # a generous limit: a run stopped by the wall clock (a starved CPU) need not repeat
        proc = cli("solve", "--cost", "coherent", path, "--gpus", 4, "--seed", 7, "--time-limit", 120, "-o", out, *extra)
        assert proc.returncode == 0, proc.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


@pytest.mark.slow
def test_profile_input(cli, tiny, tmp_path):
    trace, _ = tiny
    prof_path = tmp_path / "prof.npz"
    Profile.from_trace(trace).save(prof_path)
    out = tmp_path / "p.json"
    proc = cli("solve", "--cost", "coherent", prof_path, "--gpus", 2, "-o", out, "--json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["status"] == "optimal" and "ep_copies" not in rep["metrics"]["solution"]["in_sample"]
    proc = cli("solve", "--cost", "coherent", prof_path, "--gpus", 2, "--holdout", "0.5", "-o", tmp_path / "q.json")
    assert_user_error(proc, "--holdout needs a per-token trace")
    assert not (tmp_path / "q.json").exists()


@pytest.mark.slow
def test_max_imbalance_is_honoured(cli, tiny, tmp_path):
    _, path = tiny
    out = tmp_path / "p.json"
    proc = cli("solve", "--cost", "coherent", path, "--gpus", 2, "--solver", "joint", "--max-imbalance", "1.25", "-o", out, "--json")
    if proc.returncode == 2:  # infeasible for this trace: the message must say so
        assert_user_error(proc, "max-imbalance")
        return
    rep = json.loads(proc.stdout)
    assert rep["metrics"]["solution"]["in_sample"]["max_imbalance"] <= 1.25 + 1e-9


def bad(cli, tmp_path, path, *args):
    out = tmp_path / "never.json"
    proc = cli("solve", "--cost", "coherent", path, *args, "-o", out)
    assert not out.exists()
    return proc


@pytest.mark.slow
def test_bad_inputs(cli, tiny, tmp_path):
    trace, path = tiny
    # 4 experts on 3 GPUs: say which --gpus or --replicas work
    assert_user_error(bad(cli, tmp_path, path, "--gpus", "3"), "--gpus in [1, 2, 4]", "--replicas 2")
    # replicas that cannot fit (one per GPU at most)
    assert_user_error(bad(cli, tmp_path, path, "--gpus", "2", "--replicas", "6"), "cannot fit")
    # missing backend names its pip package
    assert_user_error(bad(cli, tmp_path, path, "--gpus", "2", "--solver", "exflow", "--param", "formulation=compact",
                          "--backend", "GUROBI"), "pip install gurobipy")
    assert_user_error(bad(cli, tmp_path, path, "--gpus", "2", "--solver", "nope"), "unknown solver")
    assert_user_error(bad(cli, tmp_path, tmp_path / "missing.npz", "--gpus", "2"), "no such file")
    assert_user_error(bad(cli, tmp_path, path, "--gpus", "2", "--holdout", "1.5"), "between 0 and 1")


@pytest.mark.slow
def test_infeasible_max_imbalance_reports_the_floor(cli, tmp_path):
    trace = random_trace(1, 2, 4, 1, 40, affinity=0.6)
    ids = np.asarray(trace.expert_ids).copy()
    ids[1, :20, 0] = 3  # layer 1: expert 3 takes >= 20 of 40 picks: floor >= 20 * 2 / 40 = 1
    ids[1, 20:30, 0] = 3
    trace.expert_ids = ids
    path = tmp_path / "t.npz"
    trace.save(path)
    load = np.bincount(ids[1, :, 0], minlength=4)
    floor = load.max() * 2 / load.sum()
    assert_user_error(bad(cli, tmp_path, path, "--gpus", "2", "--max-imbalance", "1.1"),
                      f"{floor:.4f}", "layer 1")


def test_time_limit_without_solution_falls_back(monkeypatch):
    # the backend finds nothing in time: the exact solver keeps the heuristic warm start and says so
    from placer.solvers.base import Constraints, solve
    from placer.solvers.exact import models
    from placer.solvers.exact.milp import ModelResult
    monkeypatch.setattr(models, "solve_model", lambda *a, **k: ModelResult("no_solution", None, None, None, 0.1, "cpsat"))
    trace = random_trace(3, 3, 8, 2, 60, affinity=0.3)
    res = solve("exflow", Profile.from_trace(trace), Topology.uniform(4), Constraints(), {"formulation": "compact"})
    assert any("fell back" in n for n in res.notes) or res.status == "optimal"
    assert res.bound <= res.objective


@pytest.mark.slow
def test_real_mixtral_trace_solves_to_optimality(cli, shared_traces, tmp_path):
    from placer.model.trace import Trace
    raw = json.loads((shared_traces / "mixtral_mtbench" / "math.json").read_text())
    ids = np.stack([np.asarray(raw[str(l)], np.uint8) for l in range(len(raw))])[:4, :2000]
    path = tmp_path / "m.npz"
    Trace(expert_ids=ids, num_experts=8).save(path)
    out = tmp_path / "p.json"
    proc = cli("solve", "--cost", "coherent", path, "--gpus", 4, "--holdout", "0.5", "-o", out, "--json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["status"] == "optimal" and rep["gap"] == 0.0
    m = rep["metrics"]
    assert m["solution"]["in_sample"]["coherent_total"] <= m["contiguous"]["in_sample"]["coherent_total"]


@pytest.mark.slow
def test_real_mixtral_json_through_the_importers(cli, shared_traces, tmp_path):
    # one expert per GPU: the chained matchings prove the optimum on the whole trace at once
    out = tmp_path / "p.json"
    proc = cli("solve", "--cost", "coherent", shared_traces / "mixtral_mtbench" / "math.json", "--gpus", 8, "--holdout", "0.5",
               "-o", out, "--json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["status"] == "optimal" and rep["bound"] == pytest.approx(rep["objective"])
    assert rep["input"]["num_layers"] == 32 and rep["input"]["num_experts"] == 8
    m = rep["metrics"]
    for name in ("contiguous", "eplb"):
        assert m["solution"]["in_sample"]["coherent_total"] <= m[name]["in_sample"]["coherent_total"] + 1e-6
