"""Determinism of ``solve --seed`` when a limit decides (issue 15: two runs that hit the time limit
wrote different placements).

The partition search stops on a count (``--param kicks=N``), on convergence or at the time
limit. A count gives byte-identical outputs for a seed, however fast the machine; the time limit
does not, and the report then says that it decided (a note, and ``details.stopped_by``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from placer.model.trace import Trace
from support.inproc import run_cli_inprocess


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    L, T, K, E = 4, 4000, 2, 16
    ids = np.argsort(np.random.default_rng(1).random((L, T, E)), axis=-1)[..., :K].astype(np.uint8)
    path = tmp_path_factory.mktemp("det") / "t.npz"
    Trace(ids, E, seq_offsets=np.linspace(0, T, 5).astype(np.int64)).save(path)
    return path


def solve(trace, out, *extra) -> dict:
    run = run_cli_inprocess(["solve", str(trace), "--gpus", "4", "--solver", "partition", "--seed", "5",
                             "--time-limit", "600", "-o", str(out), *extra])
    assert run.code == 0, run.stderr or run.exception
    return json.loads(out.read_text())


@pytest.mark.slow
def test_a_count_of_kicks_gives_byte_identical_outputs(trace, tmp_path):
    a = solve(trace, tmp_path / "a.json", "--param", "kicks=25", "--param", "lns_rounds=5")
    b = solve(trace, tmp_path / "b.json", "--param", "kicks=25", "--param", "lns_rounds=5")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert a["report"]["details"]["stopped_by"] in ("kicks", "converged")
    assert not any("time limit" in n for n in a["report"]["notes"])


def test_the_report_says_when_the_time_limit_decided(trace, tmp_path):
    run = run_cli_inprocess(["solve", str(trace), "--gpus", "4", "--solver", "partition", "--time-limit", "0.3",
                             "--param", "patience=100000", "-o", str(tmp_path / "p.json")])
    assert run.code == 0, run.stderr or run.exception
    report = json.loads((tmp_path / "p.json").read_text())["report"]
    assert report["details"]["stopped_by"] == "time limit"
    assert any("the time limit stopped the search" in n and "--param kicks=N" in n for n in report["notes"])
    assert "the time limit stopped the search" in run.stdout
