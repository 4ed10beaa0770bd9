"""Extension points: a new solver, cost model or export format is one module plus one registration,
and every command then treats it like the built-in ones (docs/design.md, "Where new code goes").

The plug-ins here are defined in this test module and registered by one call each, as a user's
own module would."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
from click.testing import CliRunner

from placer.cli import cli, main
from placer.cost.objectives import Objective
from placer.errors import PlacerError
from placer.model.placement import Placement
from placer.solvers.base import SOLVERS, NoParams, SolveResult, Status, param, register, solve


# ------------------------------------------------------------------ a toy solver, as a user writes it
@dataclass(frozen=True)
class MirrorParams:
    flip: bool = param(True, "place expert e on GPU G-1-e//S instead of e//S")


def solve_mirror(profile, topology, constraints, params: MirrorParams) -> SolveResult:
    E, G = profile.num_experts, topology.num_gpus
    S = constraints.slots_per_gpu(E, G)
    gpu = np.arange(E) // S
    gpu_of = np.tile(G - 1 - gpu if params.flip else gpu, (profile.num_layers, 1))
    objective = Objective(constraints.cost)
    return SolveResult(Placement.from_gpu_of(gpu_of, G, topology.gpus_per_node), "mirror", Status.HEURISTIC,
                       objective.name, objective.value(profile, topology.hop, gpu_of))


@pytest.fixture
def mirror():
    register("mirror", "test: contiguous, GPUs in reverse order", MirrorParams)(solve_mirror)   # the one line
    yield "mirror"
    SOLVERS.remove("mirror")


def test_a_registered_solver_runs_everywhere(mirror, tmp_path):
    trace = "traces/sample.npz"
    out = tmp_path / "m.json"
    runner = CliRunner()
    res = runner.invoke(cli, ["solve", trace, "--gpus", "4", "--solver", mirror, "--param", "flip=false",
                              "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["solver"] == "mirror" and report["params"] == {"flip": False}
    assert report["chosen"] == "mirror (requested)"
    # flip=false is the contiguous layout: the same placement as the built-in baseline
    contiguous = runner.invoke(cli, ["solve", trace, "--gpus", "4", "--solver", "contiguous",
                                     "-o", str(tmp_path / "c.json")])
    assert contiguous.exit_code == 0, contiguous.output
    assert Placement.load(out).phy2log.tolist() == Placement.load(tmp_path / "c.json").phy2log.tolist()
    listed = runner.invoke(cli, ["solve", "--list-solvers"])
    assert "mirror: test: contiguous, GPUs in reverse order" in listed.output
    assert "flip (bool, default True)" in listed.output
    compared = runner.invoke(cli, ["compare", trace, "contiguous", mirror, "--gpus", "4", "--json"])
    assert compared.exit_code == 0, compared.output
    names = [p["name"] for p in json.loads(compared.output)["placements"]]
    assert names == ["contiguous", "mirror"]


def test_parameters_are_typed_and_checked(mirror, capsys):
    from placer.model.profile import Profile
    from placer.model.topology import Topology
    from placer.solvers.base import Constraints
    prof = Profile(load=np.ones((2, 8)), num_tokens=1, top_k=1, trans=np.ones((1, 8, 8), np.int64))
    with pytest.raises(PlacerError, match="solver 'mirror' has no parameter 'flop'; its parameters: flip"):
        solve(mirror, prof, Topology.uniform(2), Constraints(), {"flop": "true"})
    with pytest.raises(PlacerError, match="mirror parameter flip must be bool"):
        solve(mirror, prof, Topology.uniform(2), Constraints(), {"flip": "maybe"})
    with pytest.raises(PlacerError, match="partition parameter starts must be >= 1"):
        solve("partition", prof, Topology.uniform(2), Constraints(), {"starts": "0"})
    with pytest.raises(SystemExit) as exit_:
        main(["solve", "traces/sample.npz", "--gpus", "4", "--solver", "partition", "--param", "kicks=-3",
              "-o", "never.json"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["moe-place: error: partition parameter kicks must be >= 0, got -3"]


# --------------------------------------------------------------- a toy cost model, registered by one call
def test_a_registered_cost_model_is_reported_by_evaluate(tmp_path):
    from placer.cost.registry import COST_MODELS, CostModel, register as register_cost

    def busiest(data, placement, topology, options):
        from placer.cost import load_cost
        return {"model": "busiest", "unit": "token picks", "worst": float(load_cost(data, placement).gpu_load.max())}

    register_cost(CostModel("busiest", busiest, lambda data: None, reads_trace=True))     # the one line
    try:
        runner = CliRunner()
        pl = tmp_path / "p.json"
        assert runner.invoke(cli, ["solve", "traces/sample.npz", "--gpus", "4", "--solver", "contiguous",
                                   "-o", str(pl)]).exit_code == 0
        res = runner.invoke(cli, ["evaluate", "traces/sample.npz", str(pl), "--cost", "busiest", "--json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.output)["busiest"]["worst"] > 0
    finally:
        COST_MODELS.remove("busiest")


# -------------------------------------------------------------- a toy export format, registered by one call
def test_a_registered_export_format_is_written_by_export(tmp_path):
    from placer.export.registry import EXPORTERS, Exporter, Written, register as register_format

    def write(placement, path, options):
        path.write_text(" ".join(map(str, placement.phy2log.ravel())) + "\n")
        return Written({}, f"wrote {path}")

    register_format(Exporter("flat", "test: phy2log as one line of ids", (".flat",), write, None, None))
    try:
        runner = CliRunner()
        pl = tmp_path / "p.json"
        assert runner.invoke(cli, ["solve", "traces/sample.npz", "--gpus", "4", "--solver", "eplb",
                                   "-o", str(pl)]).exit_code == 0
        out = tmp_path / "x.flat"
        res = runner.invoke(cli, ["export", str(pl), "--format", "flat", "-o", str(out)])
        assert res.exit_code == 0, res.output
        assert out.read_text().split() == [str(x) for x in Placement.load(pl).phy2log.ravel()]
    finally:
        EXPORTERS.remove("flat")
