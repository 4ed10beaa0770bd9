"""``moe-place evaluate`` and ``compare`` as a user runs them: hand-made answers, splits, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.model.trace import Trace
from support.cli import assert_user_error, run_python
from support.generate import contiguous as contiguous_placement


def hand_trace(tmp_path):
    """2 layers, top-1, 4 experts, 2 GPUs (experts 0,1 on GPU 0; 2,3 on GPU 1 in layer 0 and 1).

    Sequence 0 (tokens 0-2): 0->1 (stays), 0->2 (moves), 3->0 (moves).
    Sequence 1 (tokens 3-4): 2->3 (stays), 1->1 (stays).
    """
    ids = np.array([[[0], [0], [3], [2], [1]],
                    [[1], [2], [0], [3], [1]]], np.uint8)
    path = tmp_path / "t.npz"
    Trace(ids, 4, seq_offsets=np.array([0, 3, 5])).save(path)
    return path


def contiguous(tmp_path, gpn=None, name="p.json"):
    """The contiguous placement of the hand trace's 4 experts on 2 GPUs, saved."""
    path = tmp_path / name
    contiguous_placement(2, 4, 2, gpn).save(path)
    return path


def test_evaluate_hand_made_answers(cli, tmp_path):
    trace, pl = hand_trace(tmp_path), contiguous(tmp_path)
    proc = cli("evaluate", trace, pl, "--json", "--hidden-size", "10", "--dtype-bytes", "2")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    # coherent: 2 of 5 transitions change GPU (one node: hop 1)
    assert out["coherent"]["per_transition"] == pytest.approx(2 / 5)
    assert out["coherent"]["total"] == pytest.approx(2)
    assert out["coherent"]["traffic"] == [[0, 1], [1, 0]]
    # ep: homes: sequence 0 -> GPU 0, sequence 1 -> GPU 1. Remote picks:
    # layer 0: token 2 (expert 3 on GPU 1, home 0), token 4 (expert 1 on GPU 0, home 1) -> 2
    # layer 1: token 1 (expert 2, home 0), token 4 (expert 1, home 1) -> 2
    assert out["ep"]["copies"] == 4
    assert out["ep"]["per_layer"] == [2, 2]
    assert out["ep"]["traffic"] == [[0, 2], [2, 0]]
    assert out["ep"]["bytes"] == 4 * 2 * 10 * 2
    assert out["ep"]["mean_gpus_spanned"] == 1.0
    # load: layer 0 picks: GPU 0 {0,0,1} = 3, GPU 1 {3,2} = 2; layer 1: GPU 0 {1,0,1} = 3, GPU 1 {2,3} = 2
    assert out["load"]["gpu_load"] == [[3, 2], [3, 2]]
    assert out["load"]["imbalance"] == pytest.approx([3 / 2.5, 3 / 2.5])
    proc = cli("evaluate", trace, pl)
    assert proc.returncode == 0 and "hop cost per token transition" in proc.stdout and "0.4000" in proc.stdout


def test_split_scores_the_second_half_of_the_sequences(cli, tmp_path):
    trace, pl = hand_trace(tmp_path), contiguous(tmp_path)
    out = json.loads(cli("evaluate", trace, pl, "--split", "test", "--json").stdout)
    assert out["data"]["num_tokens"] == 2            # sequence 1 only
    assert out["coherent"]["total"] == 0             # both of its transitions stay
    out = json.loads(cli("evaluate", trace, pl, "--split", "train", "--json", "--cost", "coherent").stdout)
    assert out["data"]["num_tokens"] == 3 and out["coherent"]["total"] == pytest.approx(2)
    assert "ep" not in out and "load" not in out


def test_two_nodes_and_inter_node_cost(cli, tmp_path):
    trace = hand_trace(tmp_path)
    pl = contiguous(tmp_path, gpn=1)
    out = json.loads(cli("evaluate", trace, pl, "--json", "--inter-node-cost", "5").stdout)
    assert out["coherent"]["total"] == pytest.approx(2 * 5)
    assert out["coherent"]["inter_node_share"] == 1.0
    assert out["ep"]["inter_node_share"] == 1.0
    # the placement's own gpus_per_node can be overridden: one node of 2 again
    out = json.loads(cli("evaluate", trace, pl, "--json", "--gpus-per-node", "2", "--inter-node-cost", "5").stdout)
    assert out["coherent"]["total"] == pytest.approx(2)


def test_bandwidth_matrix_topology(cli, tmp_path):
    trace, pl = hand_trace(tmp_path), contiguous(tmp_path)
    bw = tmp_path / "bw.txt"
    bw.write_text("0 1e9\n1e9 0\n")
    out = json.loads(cli("evaluate", trace, pl, "--json", "--topology", bw, "--hidden-size", "1000").stdout)
    # 2 layers; each layer: GPU 0 sends 1 copy of 2000 B, GPU 1 sends 1; dispatch + combine
    per_layer = 2 * (5e-6 + 2000 / 1e9)
    assert out["ep"]["time_s"] == pytest.approx(2 * per_layer)
    bad = tmp_path / "bw3.txt"
    bad.write_text("0 1 1\n1 0 1\n1 1 0\n")
    assert_user_error(cli("evaluate", trace, pl, "--topology", bad), "3 GPUs")


@pytest.mark.slow
def test_profile_input_gives_coherent_and_load_not_ep(cli, tmp_path):
    trace, pl = hand_trace(tmp_path), contiguous(tmp_path)
    prof = tmp_path / "prof.npz"
    Profile.from_trace(Trace.load(trace)).save(prof)
    a = json.loads(cli("evaluate", trace, pl, "--json").stdout)
    b = json.loads(cli("evaluate", prof, pl, "--json").stdout)
    assert b["coherent"]["total"] == pytest.approx(a["coherent"]["total"])
    assert b["load"]["gpu_load"] == a["load"]["gpu_load"]
    assert "skipped" in b["ep"]
    loads_only = tmp_path / "loads.npz"
    full = Profile.from_trace(Trace.load(trace))
    Profile(load=full.load, num_tokens=full.num_tokens, top_k=1).save(loads_only)
    c = json.loads(cli("evaluate", loads_only, pl, "--json").stdout)
    assert "skipped" in c["coherent"] and c["load"]["gpu_load"] == a["load"]["gpu_load"]
    text = cli("compare", loads_only, pl, "contiguous").stdout
    assert "n/a" in text
    assert_user_error(cli("evaluate", prof, pl, "--split", "test"), "--split all")


@pytest.mark.slow
def test_compare_files_and_solver_names(cli, tmp_path):
    trace = hand_trace(tmp_path)
    pl = contiguous(tmp_path, name="mine.json")
    proc = cli("compare", trace, pl, "contiguous", "round_robin", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    names = [p["name"] for p in out["placements"]]
    assert names == ["mine", "contiguous", "round_robin"]
    mine, cont, rr = out["placements"]
    # the contiguous solver is expert e on GPU e // (E / G): the same placement as mine.json
    assert cont["coherent"] == mine["coherent"] and cont["ep"] == mine["ep"]
    # round robin: experts 0,2 on GPU 0 and 1,3 on GPU 1: transitions 0->1, 0->2 stay... count:
    # 0->1 moves, 0->2 stays, 3->0 moves, 2->3 moves, 1->1 stays
    assert rr["coherent"]["total"] == pytest.approx(3)
    assert "traffic" not in mine["coherent"]
    text = cli("compare", trace, pl, "contiguous").stdout
    assert "mine" in text and "contiguous" in text and "coherent/transition" in text


@pytest.mark.slow
def test_compare_fits_solvers_on_train_when_scoring_test(cli, tmp_path):
    trace = hand_trace(tmp_path)
    out = json.loads(cli("compare", trace, "contiguous", "--gpus", "2", "--split", "test", "--json").stdout)
    assert out["fit"] == "train" and out["split"] == "test"
    assert out["placements"][0]["data"]["num_tokens"] == 2
    assert "fitted on train" in out["placements"][0]["source"]


@pytest.mark.slow
def test_user_errors(cli, tmp_path):
    trace = hand_trace(tmp_path)
    pl3 = tmp_path / "l3.json"
    Placement.from_gpu_of(np.zeros((3, 4), int) + np.arange(4) // 2, 2).save(pl3)
    assert_user_error(cli("evaluate", trace, pl3), "3 layers")
    assert_user_error(cli("evaluate", trace, tmp_path / "missing.json"), "no such file")
    assert_user_error(cli("evaluate", tmp_path / "missing.npz", pl3), "missing.npz")
    assert_user_error(cli("compare", trace, "nonsense"), "neither a placement file nor a solver")
    assert_user_error(cli("compare", trace, "contiguous"), "--gpus")
    single = tmp_path / "one.npz"
    Trace(np.zeros((2, 1, 1), np.uint8), 4).save(single)
    assert_user_error(cli("evaluate", single, contiguous(tmp_path), "--split", "test"), "split")


@pytest.mark.slow
@pytest.mark.shared
def test_real_trace_compare_runs_and_is_sane(cli, shared_traces, tmp_path):
    trace = shared_traces / "esft" / "esft_v2lite_summary.npz"     # imported on the fly
    proc = cli("compare", trace, "contiguous", "eplb", "--gpus", "16", "--gpus-per-node", "8",
               "--replicas", "16", "--split", "test", "--hidden-size", "2048", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for p in out["placements"]:
        ep = p["ep"]
        assert 0 < ep["copies_per_token_layer"] <= 6           # at most top-6 remote GPUs
        assert 1 <= ep["mean_gpus_spanned"] <= 6
        assert 0 <= p["coherent"]["per_transition"] <= 18      # at most the inter-node hop
        assert p["load"]["max_imbalance"] >= p["load"]["mean_imbalance"] >= 1


@pytest.mark.slow
def test_same_inputs_give_byte_identical_output(cli, tmp_path):
    trace, pl = hand_trace(tmp_path), contiguous(tmp_path)
    a = cli("compare", trace, pl, "random", "eplb", "--seed", "3", "--replicas", "2", "--hidden-size", "8", "--json")
    b = cli("compare", trace, pl, "random", "eplb", "--seed", "3", "--replicas", "2", "--hidden-size", "8", "--json")
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout


@pytest.mark.slow
def test_evaluate_and_compare_never_import_torch(tmp_path):
    code = ("import sys; from placer.cli import main\n"
            "sys.argv = ['moe-place']\n"
            f"try:\n    main(['compare', {str(hand_trace(tmp_path))!r}, 'contiguous', 'eplb', '--gpus', '2'])\n"
            "except SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n")
    assert "contiguous" in run_python(code)
