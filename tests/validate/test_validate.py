"""moe-place validate: the torch.distributed replay on gloo, checked against plain per-token truths.

Expected bytes are counted here token by token with plain loops (brute-force minimum covers for
replicas), independently of placer.validate.routing; outputs are checked against a numpy
re-implementation of one MoE block. Ranks are started by the code under test; failure tests
check that no process of the run survives it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from placer import Placement, Trace
from placer.errors import PlacerError
from placer.model.topology import Topology
from support import REPO
from support.cli import assert_user_error, run_cli, run_python
from support.generate import contiguous, random_placement, random_trace
from support.truths import coherent_by_token, ep_by_token, holding, home_gpus

torch = pytest.importorskip("torch")

H = 16
ROW = H * 4  # fp32 row


# ------------------------------------------------------------------------------ tiny inputs
def make_trace(L=3, T=60, K=2, E=8, seqs=(0, 10, 25, 31, 47, 60), seed=0, weights=True) -> Trace:
    return random_trace(seed, L, E, K, T, seq_offsets=seqs, weights=weights)


def expected_ep(trace: Trace, p: Placement) -> np.ndarray:
    """Bytes ``[G, G]`` of dispatch + combine: one row to every GPU of each token's minimum
    cover (brute force) and one row back, on one node."""
    G = p.num_gpus
    copies = ep_by_token(trace, holding(p), Topology.uniform(G).hop, home_gpus(trace, G))[0].sum(axis=0)
    return (copies + copies.T) * ROW


def expected_coherent(trace: Trace, p: Placement) -> np.ndarray:
    """Bytes ``[G, G]``: one row per (i, j) pick pair of consecutive layers on different ranks."""
    return coherent_by_token(trace, holding(p), Topology.uniform(p.num_gpus).hop)[1].sum(axis=0) * ROW


def run(trace, placement, baseline="contiguous", **kw):
    from placer.validate.api import validate
    kw = {"hidden_size": H, "ffn_size": 24, "iters": 1, "warmup": 0, "tokens": 0, "timeout_s": 120, **kw}
    return validate(trace, placement, baseline, **kw)


# --------------------------------------------------------------------------- model truths
def test_reference_equals_numpy_moe_block():
    """The reference is x + sum_k g_k W2 (silu(W1 n) * W3 n), n = x / rms(x), layer by layer."""
    from placer.validate.model import ExpertBank, expert_arrays, initial_activations, reference
    tr = make_trace(L=2, T=5, K=2, E=4, seqs=(0, 5))
    x0 = initial_activations(7, 5, H)
    got = reference(np.asarray(tr.expert_ids, np.int64), tr.gate_weights, x0, ExpertBank(7, H, 24, "swiglu"))
    x = x0.astype(np.float64)
    for l in range(2):
        n = x / np.sqrt((x ** 2).mean(axis=1, keepdims=True) + 1e-6)
        new = x.copy()
        for t in range(5):
            for k in range(2):
                w1, w3, w2 = (a.astype(np.float64) for a in expert_arrays(7, l, int(tr.expert_ids[l, t, k]), H, 24, "swiglu"))
                a = n[t] @ w1
                new[t] += tr.gate_weights[l, t, k] * ((a / (1 + np.exp(-a))) * (n[t] @ w3)) @ w2
        x = new
    assert np.allclose(got, x, rtol=1e-5, atol=1e-5)
    assert not np.allclose(got, x0, atol=1e-3)  # the layers do change the state


def test_expert_weights_depend_only_on_seed_layer_expert():
    from placer.validate.model import expert_arrays
    a = expert_arrays(3, 1, 5, H, 24, "gelu")
    b = expert_arrays(3, 1, 5, H, 24, "gelu")
    c = expert_arrays(3, 1, 6, H, 24, "gelu")
    assert len(a) == 2 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


# ------------------------------------------------------------------------- gloo replays
@pytest.mark.slow
@pytest.mark.parametrize("G,mode", [(2, "ep"), (4, "ep"), (2, "coherent"), (4, "coherent")])
def test_replay_lossless_and_bytes_exact(G, mode):
    tr = make_trace(seed=G)
    pl = random_placement(G + 10, tr.num_layers, tr.num_experts, G)
    rep = run(tr, pl, mode=mode, ffn_type="swiglu" if G == 2 else "gelu")
    assert rep["outputs_match"], rep["placement"]["max_abs_error"]
    assert rep["placement"]["max_abs_error"] < 1e-4
    expect = expected_ep if mode == "ep" else expected_coherent
    for name, p in (("placement", pl), ("baseline_detail", contiguous(tr.num_layers, tr.num_experts, G))):
        want = expect(tr, p)
        assert rep[name]["traffic_measured"] == want.tolist()
        assert rep[name]["bytes_measured"] == int(want.sum())
        assert rep[name]["bytes_predicted"] == int(want.sum())   # the cost model agrees
    assert rep["bytes_match"]
    assert sum(r.get("bytes_measured", 0) for r in rep["per_layer"]) == rep["bytes_measured"]
    assert rep["experts_only_local"]
    assert rep["time_placement_s"] > 0 and rep["time_baseline_s"] > 0
    assert len(rep["per_layer"]) == tr.num_layers


@pytest.mark.slow
def test_replicas_ep_follow_brute_force_minimum_cover():
    """Replicated experts: bytes and per-link traffic follow the brute-force minimum cover."""
    tr = make_trace(L=2, T=40, K=3, E=6, seqs=(0, 7, 19, 26, 40), seed=5)
    # 4 ranks x 2 slots = 8 slots for 6 experts: 2 replicas per layer, never twice on one rank
    pl = random_placement(3, 2, 6, 4, replicas=2)
    perm = np.array([2, 0, 3, 1])  # rank g -> perm[g]
    relabelled = Placement(np.concatenate([pl.phy2log[:, 2 * perm.argsort()[g]:2 * perm.argsort()[g] + 2]
                                           for g in range(4)], axis=1), 6, 4).validate()
    rep = run(tr, pl, baseline=relabelled, iters=1)
    assert rep["outputs_match"]
    for name, p in (("placement", pl), ("baseline_detail", relabelled)):
        want = expected_ep(tr, p)
        assert rep[name]["traffic_measured"] == want.tolist()
        assert rep[name]["bytes_measured"] == int(want.sum()) == rep[name]["bytes_predicted"]
    assert rep["bytes_match"]


@pytest.mark.slow
def test_placement_holding_each_tokens_experts_at_home_moves_nothing():
    """Hand-made: sequence s only picks experts on rank s % 2, so ep sends no row off its home."""
    E, G, L = 4, 2, 2
    ids = np.zeros((L, 8, 2), np.uint8)
    ids[:, :4] = [0, 1]    # sequence 0 -> rank 0 holds experts 0, 1
    ids[:, 4:] = [2, 3]    # sequence 1 -> rank 1 holds experts 2, 3
    tr = Trace(expert_ids=ids, num_experts=E, seq_offsets=np.array([0, 4, 8]))
    pl = Placement.from_gpu_of(np.array([[0, 0, 1, 1]] * L), G)
    swapped = Placement.from_gpu_of(np.array([[1, 1, 0, 0]] * L), G)
    rep = run(tr, pl, baseline=swapped, mode="ep")
    assert rep["outputs_match"]
    assert rep["bytes_measured"] == 0 == rep["bytes_predicted"]
    # swapped: every token goes to the other rank and back at every layer: 8 tokens x L x 2 rows
    assert rep["baseline_bytes_measured"] == 8 * L * 2 * ROW == rep["baseline_bytes_predicted"]


# ---------------------------------------------------------------------------- CLI and errors
@pytest.fixture
def files(tmp_path):
    tr = make_trace()
    tr.save(tmp_path / "t.npz")
    random_placement(1, tr.num_layers, tr.num_experts, 4).save(tmp_path / "p4.json")
    random_placement(1, tr.num_layers, tr.num_experts, 2).save(tmp_path / "p2.json")
    return tmp_path


def _alive_with(tag: str) -> list[int]:
    """Pids of live processes whose environment holds ``tag`` (every rank inherits it)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes()
            state = (proc / "stat").read_text().split()[2]
        except OSError:
            continue
        if tag.encode() in env and state != "Z":
            pids.append(int(proc.name))
    return pids


@pytest.mark.slow
def test_cli_json_report(files):
    proc = run_cli("validate", files / "t.npz", files / "p2.json", "--hidden-size", H, "--ffn-size", 24,
                "--iters", 1, "--warmup", 0, "--json", "--baseline", files / "p2.json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    for key in ("outputs_match", "bytes_measured", "bytes_predicted", "time_placement_s", "time_baseline_s", "per_layer"):
        assert key in rep
    assert rep["outputs_match"] and rep["bytes_match"]
    assert rep["bytes_measured"] == rep["baseline_bytes_measured"]  # baseline is the same placement
    tr = Trace.load(files / "t.npz")
    assert rep["bytes_measured"] == int(expected_ep(tr, Placement.load(files / "p2.json")).sum())


@pytest.mark.slow
def test_dying_rank_ends_cleanly_without_hung_processes(files):
    tag = f"MOE_PLACE_TEST_{uuid.uuid4().hex}"
    proc = run_cli("validate", files / "t.npz", files / "p4.json", "--hidden-size", H, "--iters", 1,
                "--timeout", 120, env={"MOE_PLACE_VALIDATE_FAIL_RANK": "2:1", tag: "1"}, timeout=150)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "rank 2 died" in lines[0] and "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert _alive_with(tag) == []


@pytest.mark.slow
def test_dying_rank_through_the_api_raises_replay_failed(monkeypatch):
    """The hook reaches ranks started by an already-running fork server (it travels in the config)."""
    from placer.validate.launch import ReplayFailed
    tr = make_trace()
    run(tr, random_placement(1, 3, 8, 2))          # make sure a fork server is already running
    monkeypatch.setenv("MOE_PLACE_VALIDATE_FAIL_RANK", "1:0")
    with pytest.raises(ReplayFailed, match="rank 1 died") as exc:
        run(tr, random_placement(1, 3, 8, 2))
    assert exc.value.exit_code == 1


def test_world_size_mismatch_is_a_user_error(files):
    assert_user_error(run_cli("validate", files / "t.npz", files / "p4.json", "--world-size", 2),
                      "4 GPUs", "--world-size")


@pytest.mark.slow
def test_bad_inputs_are_user_errors(files, tmp_path):
    tr = make_trace(L=2)
    tr.save(tmp_path / "t2.npz")
    assert_user_error(run_cli("validate", tmp_path / "t2.npz", files / "p4.json"), "layers")
    # rank g holds experts 2g, 2g+1 and a replica of 2g+2
    with_replicas = Placement(np.tile([[2 * g + i if i < 2 else (2 * g + 2) % 8 for g in range(4) for i in range(3)]],
                                      (3, 1)), 8, 4)
    with_replicas.save(tmp_path / "rep.json")
    assert_user_error(run_cli("validate", files / "t.npz", tmp_path / "rep.json", "--mode", "coherent"),
                      "--mode ep")
    assert_user_error(run_cli("validate", files / "t.npz", files / "p4.json", "--baseline", files / "p2.json"),
                      "baseline")


def test_python_api_rejects_mismatch_before_starting_ranks():
    tr = make_trace()
    with pytest.raises(PlacerError, match="--world-size"):
        run(tr, random_placement(1, 3, 8, 4), world_size=8)
    dropped = np.zeros((tr.num_layers, tr.num_tokens), bool)
    dropped[1, 5] = True
    tr.dropped = dropped
    with pytest.raises(PlacerError, match="dropped"):
        run(tr, random_placement(1, 3, 8, 4))


def test_import_placer_validate_does_not_import_torch():
    code = ("import sys, placer, placer.validate.api, placer.commands.validate, placer.validate.predict; "
            "print('torch' in sys.modules)")
    assert run_python(code).strip() == "False"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_torchrun_standalone(files):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "placer.validate",
                           files / "t.npz", files / "p2.json", "--hidden-size", str(H), "--iters", "1",
                           "--warmup", "0", "--json"], capture_output=True, text=True, timeout=240, env=env,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rep = json.loads(proc.stdout)
    assert rep["outputs_match"] and rep["bytes_match"] and rep["world_size"] == 2


def test_torchrun_rank_with_wrong_world_size_errors_before_joining(monkeypatch):
    """Under torchrun (RANK/WORLD_SIZE set) a placement for another G fails before any rendezvous."""
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    tr = make_trace()
    with pytest.raises(PlacerError, match="torchrun started 2 ranks"):
        run(tr, random_placement(1, 3, 8, 4))


@pytest.mark.slow
def test_real_mixtral_trace_replays_exactly(shared_traces):
    """Mixtral-8x7B MT-Bench routing (imported from its per-layer JSON), first 128 tokens, 4 ranks."""
    from placer.traces.load import load_trace
    full = load_trace(shared_traces / "mixtral_mtbench" / "math.json")
    tr = full._token_range(0, 128, with_offsets=True)
    tr.seq_offsets = np.array([0, 40, 64, 100, 128])   # four homes instead of one
    pl = random_placement(4, tr.num_layers, 8, 4)
    for mode, expect in (("ep", expected_ep), ("coherent", expected_coherent)):
        rep = run(tr, pl, mode=mode)
        assert rep["outputs_match"] and rep["bytes_match"]
        assert rep["bytes_measured"] == int(expect(tr, pl).sum()) == rep["bytes_predicted"]
        assert rep["baseline_bytes_measured"] == int(expect(tr, contiguous(tr.num_layers, tr.num_experts, 4)).sum())
