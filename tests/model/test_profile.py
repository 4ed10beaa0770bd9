"""Profile counts against plain Python loops on small random traces (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from placer.errors import PlacerError
from placer.model.profile import Profile
from placer.model.trace import Trace
from placer.traces.load import load_input, load_trace, profile_of
from support.generate import random_trace
from support.truths import token_counts


@st.composite
def traces(draw):
    L = draw(st.integers(1, 4))
    T = draw(st.integers(1, 30))
    E = draw(st.integers(2, 7))
    K = draw(st.integers(1, E))
    seed = draw(st.integers(0, 2**32 - 1))
    trace = random_trace(seed, L, E, K, T, weights=draw(st.booleans()), dropped=0.2 if draw(st.booleans()) else 0.0)
    return trace, draw(st.integers(1, 40))


@settings(max_examples=60, deadline=None)
@given(traces())
def test_counts_equal_python_loops(case):
    trace, chunk = case
    prof = Profile.from_trace(trace, chunk_tokens=chunk)
    load, trans, trans1, coact = token_counts(trace)
    assert np.array_equal(prof.load, load)
    assert np.array_equal(prof.trans, trans)
    assert np.array_equal(prof.trans_top1, trans1)
    assert np.array_equal(prof.coact, coact)
    assert prof.num_tokens == trace.num_tokens and prof.top_k == trace.top_k


def test_sums_and_symmetry():
    prof = Profile.from_trace(random_trace(0, 3, 16, 4, 500), chunk_tokens=64)
    assert prof.load.sum(axis=1).tolist() == [500 * 4] * 3
    assert prof.trans.sum(axis=(1, 2)).tolist() == [500 * 16] * 2
    assert prof.trans_top1.sum(axis=(1, 2)).tolist() == [500] * 2
    assert np.array_equal(prof.coact, prof.coact.transpose(0, 2, 1))
    # marginals of the K x K transition counts are K times the loads
    assert np.array_equal(prof.trans.sum(axis=2), 4 * prof.load[:-1])
    assert np.array_equal(prof.trans.sum(axis=1), 4 * prof.load[1:])


def test_save_load_roundtrip_and_memmapped_trace(tmp_path):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 8, size=(3, 1000, 2))
    t = Trace(expert_ids=ids, num_experts=8, seq_offsets=np.array([0, 400, 1000]))
    t.save(tmp_path / "t.npz")
    mm = Trace.load(tmp_path / "t.npz", mmap=True)
    assert isinstance(mm.expert_ids, np.memmap)
    a, b = Profile.from_trace(t), Profile.from_trace(mm, chunk_tokens=97)
    for key in ("load", "trans", "trans_top1", "coact"):
        assert np.array_equal(getattr(a, key), getattr(b, key))
    a.save(tmp_path / "p.npz")
    back = Profile.load_file(tmp_path / "p.npz")
    for key in ("load", "trans", "trans_top1", "coact"):
        assert np.array_equal(getattr(a, key), getattr(back, key))
    assert back.transition_weights()[0].sum() == pytest.approx(1000)


def test_loads_only_profile_refuses_transition_weights():
    prof = Profile(load=np.array([[1, 2]]), num_tokens=3, top_k=1)
    with pytest.raises(PlacerError, match="no inter-layer transition counts"):
        prof.transition_weights()


def test_profile_cli_matches_library(tmp_path, cli):
    rng = np.random.default_rng(2)
    t = Trace(expert_ids=rng.integers(0, 6, size=(4, 300, 2)), num_experts=6)
    t.save(tmp_path / "t.npz")
    proc = cli("profile", tmp_path / "t.npz", "-o", tmp_path / "p.npz", "--chunk-tokens", "50")
    assert proc.returncode == 0, proc.stderr
    got, want = Profile.load_file(tmp_path / "p.npz"), Profile.from_trace(t)
    assert np.array_equal(got.trans, want.trans) and np.array_equal(got.coact, want.coact)


def test_load_input_profile_of_and_load_trace(tmp_path):
    rng = np.random.default_rng(4)
    t = Trace(expert_ids=rng.integers(0, 6, size=(3, 200, 2)), num_experts=6)
    t.save(tmp_path / "t.npz")
    data = load_input(tmp_path / "t.npz")
    assert isinstance(data, Trace) and isinstance(data.expert_ids, np.memmap)  # native: memory-mapped
    prof = profile_of(data, chunk_tokens=64, coact=False, trans=False)
    assert np.array_equal(prof.load, Profile.from_trace(t).load) and prof.coact is None and prof.trans is None
    prof.save(tmp_path / "p.npz")
    saved = load_input(tmp_path / "p.npz")
    assert isinstance(saved, Profile) and profile_of(saved) is saved  # a profile passes through
    assert load_trace(tmp_path / "t.npz").num_tokens == 200
    with pytest.raises(PlacerError, match="aggregate counts only; the replay needs per-token routing"):
        load_trace(tmp_path / "p.npz", "the replay")
