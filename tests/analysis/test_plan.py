"""moe-place plan: table shape, truths (memory formula, one GPU moves nothing), outputs, a real trace."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from placer.analysis import plan as pl
from placer.errors import PlacerError
from placer.solvers.base import available_solvers
from placer.model.trace import Trace
from support.cli import assert_user_error
from support.generate import zipf_trace

MIB = 2 ** 20


def load_esft(path: Path) -> Trace:
    """The ESFT .npz (not the native format) through the project's importer."""
    from placer.traces.load import load_any
    return load_any(path)


def baseline_solvers() -> list[str]:
    have = available_solvers()
    names = [s for s in ("contiguous", "eplb", "partition") if s in have]
    if not names:
        pytest.fail(f"no comparison solver is registered (have {sorted(have)})")
    return names


OPTS = pl.PlanOptions(gpus_per_node=4, hidden_size=1024, expert_bytes=8 * MIB, gpu_memory=40 * MIB,
                      tokens_per_step=1000, time_limit=1)


@pytest.mark.slow
def test_plan_table_columns_rows_and_memory_truth():
    solvers = baseline_solvers()
    table = pl.plan(zipf_trace(), [1, 2, 4, 8], ["0", "1x"], solvers, OPTS)
    assert list(table.columns) == pl.COLUMNS
    assert len(table) == 4 * 2 * len(solvers)
    assert not (table.status == "error").any(), table[["gpus", "replicas", "solver", "note"]]
    infeasible = table[table.status == "infeasible"]
    assert set(zip(infeasible.gpus, infeasible.replicas)) == {(1, 1)}  # one GPU has no room for a replica
    ok = table[table.status != "infeasible"]
    for _, row in ok.iterrows():
        # S = (E + R) / G slots per GPU, L = 4 layers, 8 MiB per expert
        R = row.replicas
        assert R == (row.gpus if R else 0)
        assert row.slots_per_gpu == (16 + R) // row.gpus
        assert row.expert_mem_gib == pytest.approx(row.slots_per_gpu * 4 * 8 * MIB / 2**30)
        assert row.fits == (row.slots_per_gpu * 4 * 8 <= 40)
    # memory per GPU falls as GPUs grow, for each replica budget
    for _, grp in ok[ok.solver == solvers[0]].groupby(table.replicas > 0):
        mem = grp.sort_values("gpus").expert_mem_gib.to_numpy()
        assert np.all(np.diff(mem) < 0), mem


def test_one_gpu_moves_nothing_and_is_balanced():
    table = pl.plan(zipf_trace(), [1], ["0"], baseline_solvers(), OPTS)
    for _, row in table.iterrows():
        assert row.status not in ("error", "infeasible"), row.note
        assert row.ep_copies_per_token == 0
        assert row.ep_bytes_per_step == 0
        assert row.coherent_per_transition == 0
        assert row.imbalance_mean == pytest.approx(1.0)


def test_contiguous_bytes_per_step_match_hand_count():
    """Top-1 routing on 2 GPUs, E=4, one sequence (home GPU 0): contiguous puts experts 0,1 on
    GPU 0 and 2,3 on GPU 1, so each token of layer l crosses iff its expert is >= 2; dispatch +
    combine is 2 copies of hidden_size * dtype_bytes each."""
    if "contiguous" not in available_solvers():
        pytest.fail("the contiguous baseline is not registered")
    ids = np.array([[[0], [2], [3], [1], [2], [0]],
                    [[1], [1], [2], [0], [3], [3]]], dtype=np.uint8)
    trace = Trace(expert_ids=ids, num_experts=4)
    opts = pl.PlanOptions(gpus_per_node=2, hidden_size=10, dtype_bytes=2, tokens_per_step=6, holdout=0)
    row = pl.plan(trace, [2], ["0"], ["contiguous"], opts).iloc[0]
    remote = 3 + 3  # layer 0: tokens with experts 2,3,2; layer 1: 2,3,3
    assert row.ep_copies_per_token == pytest.approx(remote / 6)
    assert row.ep_bytes_per_step == pytest.approx(remote * 2 * 10 * 2)


@pytest.mark.slow
def test_plan_is_deterministic_except_timings():
    # the baselines only: a time-limited search may legitimately stop at different points
    solvers = [s for s in baseline_solvers() if s != "partition"]
    a = pl.plan(zipf_trace(), [2, 4], ["0", "1x"], solvers, OPTS).drop(columns=["solve_s"])
    b = pl.plan(zipf_trace(), [2, 4], ["0", "1x"], solvers, OPTS).drop(columns=["solve_s"])
    assert a.to_csv() == b.to_csv()


def test_infeasible_configuration_is_a_row_not_an_abort():
    table = pl.plan(zipf_trace(), [3, 4], ["0"], baseline_solvers()[:1], OPTS)
    assert table.status.tolist()[0] == "infeasible"
    assert "cannot be split evenly" in table.note.tolist()[0]
    assert table.status.tolist()[1] not in ("infeasible", "error")


def test_unknown_solver_fails_before_work():
    with pytest.raises(PlacerError, match="unknown solver"):
        pl.plan(zipf_trace(), [2], ["0"], ["no-such-solver"], OPTS)


def test_option_types():
    import click

    from placer.commands.types import Bandwidth, ReplicasList, Size
    from placer.solvers.replicate import replicas_for

    size = Size()
    assert size.convert("80GiB", None, None) == 80 * 2**30
    assert size.convert("900GB/s", None, None) == 900e9
    assert size.convert("1.5e9", None, None) == 1.5e9
    assert Bandwidth().convert("inter=25GB/s", None, None) == (900e9, 25e9)
    assert ReplicasList().convert("0,1x,16", None, None) == ["0", "1x", "16"]
    assert replicas_for("1x", 8) == 8 and replicas_for("2x", 4) == 8 and replicas_for("3", 8) == 3
    for bad in ("80 parsecs", "-1GB", "x", "nan", "0"):
        with pytest.raises(click.BadParameter):
            size.convert(bad, None, None)
    with pytest.raises(click.BadParameter):
        Bandwidth().convert("intra:900GB/s", None, None)
    with pytest.raises(click.BadParameter):
        ReplicasList().convert("many", None, None)
    with pytest.raises(PlacerError):
        replicas_for("many", 4)


@pytest.mark.slow
def test_cli_plan_json_csv_plot(cli, tmp_path):
    trace = tmp_path / "t.npz"
    zipf_trace().save(trace)
    solvers = ",".join(baseline_solvers())
    csv = tmp_path / "plan.csv"
    png = tmp_path / "plan.png"
    proc = cli("plan", trace, "--gpus", "2,4", "--replicas", "0,1x", "--solvers", solvers, "--hidden-size", 512,
               "--expert-bytes", "8MiB", "--gpu-memory", "80GiB", "--json", "--csv", csv, "--plot", png,
               "--time-limit", 1)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out["rows"]) == 2 * 2 * len(solvers.split(","))
    assert set(out["rows"][0]) == set(pl.COLUMNS)
    table = pd.read_csv(csv)
    assert list(table.columns) == pl.COLUMNS and len(table) == len(out["rows"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    proc = cli("plan", trace, "--gpus", "2,4", "--solvers", solvers, "--time-limit", 1)
    assert proc.returncode == 0, proc.stderr
    assert "imbalance_mean" in proc.stdout and "contiguous" in proc.stdout + solvers


@pytest.mark.slow
def test_cli_plan_user_errors(cli, tmp_path):
    trace = tmp_path / "t.npz"
    zipf_trace().save(trace)
    assert_user_error(cli("plan", trace, "--gpus", "2,x"), "--gpus")
    assert_user_error(cli("plan", trace, "--gpu-memory", "lots"), "--gpu-memory")
    assert_user_error(cli("plan", trace, "--expert-bytes", "1GB", "--expert-params", "10"), "not both")
    assert_user_error(cli("plan", trace, "--solvers", "nope"), "unknown solver")
    png = tmp_path / "p.png"
    assert_user_error(cli("plan", tmp_path / "missing.npz", "--plot", png), "no such file")
    assert not png.exists()


@pytest.mark.slow
def test_plan_esft_five_configurations(shared_traces):
    trace = load_esft(shared_traces / "esft" / "esft_v2lite_intent.npz")
    opts = pl.PlanOptions(gpus_per_node=8, hidden_size=2048,
                          expert_bytes=3 * 2048 * 1408 * 2, tokens_per_step=8192, time_limit=1)
    table = pl.plan(trace, [2, 4, 8, 16, 32], ["0"], baseline_solvers(), opts)
    assert len(table) == 5 * len(baseline_solvers())
    assert not table.status.isin(["error", "infeasible"]).any(), table[["gpus", "solver", "note"]]
    # more GPUs: each holds fewer experts, and with more of a token's experts remote, more copies
    cont = table[table.solver == baseline_solvers()[0]].sort_values("gpus")
    assert np.all(np.diff(cont.expert_mem_gib) < 0)
    assert np.all(np.diff(cont.ep_copies_per_token) > 0)


@pytest.mark.slow
def test_cli_plan_refuses_counts_only_input(cli, tmp_path):
    from placer.model.profile import Profile
    prof = tmp_path / "counts.npz"
    Profile.from_trace(zipf_trace(), trans=False, coact=False).save(prof)
    assert_user_error(cli("plan", prof, "--solvers", "contiguous"), "aggregate counts only")
