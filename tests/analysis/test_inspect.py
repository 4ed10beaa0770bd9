"""Routing statistics against brute force and hand-made answers; the inspect command."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from placer.model.profile import Profile
from placer.analysis.stats import locality_bound, load_skew, max_conditional_probability, nmi, summarize
from placer.model.trace import Trace
from support.brute import assignments


def best_kept_share(trans, G):
    """Brute force over all placements of all layers: the largest share kept on one GPU."""
    Lm1, E, _ = trans.shape
    S = -(-E // G)
    per_layer = assignments(E, G, most=S)
    best = 0.0
    for combo in itertools.product(per_layer, repeat=Lm1 + 1):
        kept = sum(trans[l][combo[l][:, None] == combo[l + 1][None, :]].sum() for l in range(Lm1))
        best = max(best, kept)
    return best / trans.sum()


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([(3, 4, 2), (2, 5, 2), (2, 6, 3)]))
def test_locality_bound_dominates_every_placement(seed, shape):
    L, E, G = shape
    rng = np.random.default_rng(seed)
    # skewed counts so that some placements are much better than others
    trans = (rng.pareto(1.0, size=(L - 1, E, E)) * 10).astype(np.int64) + (rng.random((L - 1, E, E)) < 0.3)
    bound = locality_bound(trans, G)
    best = best_kept_share(trans, G)
    assert bound >= best - 1e-12
    assert 0 <= bound <= 1


def test_contiguous_share_by_hand_and_below_bound():
    from placer.analysis.stats import contiguous_kept_share
    # top-1, 4 experts on 2 GPUs ({0,1}, {2,3}): tokens 0->1 (kept), 0->2 (moved), 3->2 (kept), 1->3 (moved)
    ids = np.array([[0, 0, 3, 1], [1, 2, 2, 3]])[:, :, None]
    prof = Profile.from_trace(Trace(expert_ids=ids, num_experts=4))
    assert contiguous_kept_share(prof, 2) == pytest.approx(0.5)
    planted = Profile.from_trace(planted_trace())
    s = summarize(planted, num_gpus=4)
    assert s["locality"]["contiguous_pairs"] <= s["locality"]["bound_pairs"] + 1e-12
    assert contiguous_kept_share(planted, 3) is None  # 8 experts do not split over 3 GPUs


def test_locality_bound_is_tight_on_planted_blocks_and_below_one_otherwise():
    E, G = 4, 2
    block = np.zeros((2, E, E), np.int64)
    block[:, :2, :2] = 5
    block[:, 2:, 2:] = 3
    assert locality_bound(block, G) == pytest.approx(1.0) == best_kept_share(block, G)
    uniform = np.ones((2, E, E), np.int64)
    assert locality_bound(uniform, G) == pytest.approx(0.5) == best_kept_share(uniform, G)
    # one GPU keeps everything
    assert locality_bound(uniform, 1) == pytest.approx(1.0)


def label_nmi(x, y):
    """NMI from explicit label lists (a second derivation of the definition)."""
    n = len(x)
    def H(labels):
        return -sum(c / n * math.log(c / n) for c in Counter(labels).values())
    pxy, px, py = Counter(zip(x, y)), Counter(x), Counter(y)
    mi = sum(c / n * math.log((c / n) / (px[a] / n * py[b] / n)) for (a, b), c in pxy.items())
    return 0.0 if H(x) + H(y) == 0 else 2 * mi / (H(x) + H(y))


def test_nmi_known_values():
    assert nmi(np.eye(5) * 7) == pytest.approx(1.0)
    assert nmi(np.outer([1, 2, 3], [4, 1, 1])) == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, 300)
    y = (x + (rng.random(300) < 0.3) * rng.integers(0, 4, 300)) % 4
    joint = np.zeros((4, 4))
    np.add.at(joint, (x, y), 1)
    assert nmi(joint) == pytest.approx(label_nmi(x.tolist(), y.tolist()))


def test_max_conditional_probability_and_skew():
    assert max_conditional_probability(np.array([[3, 1], [0, 4]])) == pytest.approx(7 / 8)
    assert load_skew(np.array([[1, 1, 1, 1], [4, 0, 0, 0]])).tolist() == [1.0, 4.0]


def planted_trace(T=2000, L=4, E=8, seed=0):
    """Top-1 trace where expert e at layer l is followed by (e + 1) % E with prob. 0.9."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((L, T), np.int64)
    ids[0] = rng.integers(0, E, T)
    for l in range(1, L):
        stay = rng.random(T) < 0.9
        ids[l] = np.where(stay, (ids[l - 1] + 1) % E, rng.integers(0, E, T))
    return Trace(expert_ids=ids[:, :, None], num_experts=E)


def test_summarize_on_planted_structure():
    prof = Profile.from_trace(planted_trace())
    s = summarize(prof, num_gpus=4)
    # the successor is right 0.9 + 0.1/8 of the time
    assert s["affinity"]["max_cond_prob_top1"]["mean"] == pytest.approx(0.9125, abs=0.02)
    assert s["locality"]["bound_top1"] >= 0.9
    assert s["locality"]["bound_pairs"] == pytest.approx(s["locality"]["bound_top1"])  # top-1: pairs are top-1
    rnd = Profile.from_trace(Trace(expert_ids=np.random.default_rng(1).integers(0, 8, (4, 2000, 1)), num_experts=8))
    r = summarize(rnd, num_gpus=4)
    assert r["affinity"]["nmi_top1"]["mean"] < 0.05 < s["affinity"]["nmi_top1"]["mean"]


@pytest.mark.slow
def test_inspect_cli_trace_profile_and_import_agree(tmp_path, cli):
    t = planted_trace(T=500)
    t.save(tmp_path / "t.npz")
    Profile.from_trace(t).save(tmp_path / "p.npz")
    (tmp_path / "t.json").write_text(json.dumps({str(l): np.asarray(t.expert_ids)[l].tolist() for l in range(4)}))
    outs = []
    for src in ("t.npz", "p.npz", "t.json"):
        proc = cli("inspect", tmp_path / src, "--gpus", "4", "--json")
        assert proc.returncode == 0, proc.stderr
        outs.append(json.loads(proc.stdout))
    for o in outs[1:]:
        for key in ("tokens", "layers", "experts", "top_k", "load_skew", "affinity", "locality"):
            assert o[key] == outs[0][key], key
    assert outs[0]["kind"] == "trace" and outs[1]["kind"] == "profile" and outs[0]["tokens"] == 500


@pytest.mark.slow
def test_inspect_plots_and_table(tmp_path, cli):
    planted_trace(T=300).save(tmp_path / "t.npz")
    proc = cli("inspect", tmp_path / "t.npz", "--gpus", "2", "--plots", tmp_path / "plots")
    assert proc.returncode == 0, proc.stderr
    assert "locality bound, 2 GPUs" in proc.stdout and "NMI" in proc.stdout
    for name in ("load.png", "transitions.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inspect_counts_without_affinity(tmp_path, cli):
    np.savez(tmp_path / "c.npz", load=np.array([[4, 0], [2, 2]]))
    proc = cli("inspect", tmp_path / "c.npz", "--gpus", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["affinity"] is None and out["locality"]["bound_top1"] is None
    assert out["load_skew"]["per_layer"] == [2.0, 1.0]
