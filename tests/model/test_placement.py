"""Placement: validity rules, derived views and the canonical JSON, against hand-made truths."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from placer.errors import PlacerError
from placer.model.placement import PLACEMENT_FORMAT, Placement


def test_views_on_hand_made_placement_with_replicas():
    # 4 experts, 3 GPUs x 2 slots: expert 0 and 2 replicated.
    phy = np.array([[0, 1, 2, 0, 3, 2]])
    pl = Placement(phy, num_experts=4, num_gpus=3).validate()
    assert pl.slots_per_gpu == 2 and pl.num_replicas == 2
    assert pl.logcnt.tolist() == [[2, 1, 2, 1]]
    assert pl.log2phy.tolist() == [[[0, 3], [1, -1], [2, 5], [4, -1]]]
    assert pl.expert_gpus[0].astype(int).tolist() == [[1, 1, 0], [1, 0, 0], [0, 1, 1], [0, 0, 1]]
    with pytest.raises(ValueError):
        pl.gpu_of


@pytest.mark.parametrize("phy, fragment", [
    ([[0, 1, 2, 2]], "no slot"),            # expert 3 missing
    ([[0, 0, 1, 2, 3, 3]], "two replicas"),  # expert 0 twice on GPU 0 (S=3 with G=2)
    ([[0, 1, 2, 4]], "out of range"),
    ([[0, 1, 2, 3, 1]], "evenly"),           # 5 slots on 2 GPUs
])
def test_invalid_placements_are_rejected(phy, fragment):
    with pytest.raises(PlacerError, match=fragment):
        Placement(np.array(phy), num_experts=4, num_gpus=2).validate()


@settings(max_examples=40, deadline=None)
@given(L=st.integers(1, 3), G=st.sampled_from([1, 2, 4]), S=st.integers(1, 3), seed=st.integers(0, 10**6))
def test_from_gpu_of_round_trips(L, G, S, seed):
    rng = np.random.default_rng(seed)
    E = G * S
    gpu_of = np.stack([rng.permutation(np.repeat(np.arange(G), S)) for _ in range(L)])
    pl = Placement.from_gpu_of(gpu_of, G).validate()
    assert np.array_equal(pl.gpu_of, gpu_of)
    # every slot's GPU holds the expert it names
    for l in range(L):
        for p in range(E):
            assert gpu_of[l, pl.phy2log[l, p]] == p // S


def test_json_round_trip_and_atomic_save(tmp_path):
    phy = np.array([[1, 0, 3, 2], [2, 3, 0, 1]])
    pl = Placement(phy, 4, 2, gpus_per_node=1, report={"solver": "hand", "x": np.float64(1.5)})
    out = tmp_path / "p.json"
    pl.save(out)
    obj = json.loads(out.read_text())
    assert obj["format"] == PLACEMENT_FORMAT and obj["slots_per_gpu"] == 2 and obj["report"]["x"] == 1.5
    back = Placement.load(out)
    assert np.array_equal(back.phy2log, phy) and back.gpus_per_node == 1
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]


def test_invalid_placement_is_not_written(tmp_path):
    out = tmp_path / "bad.json"
    with pytest.raises(PlacerError):
        Placement(np.array([[0, 0, 1, 1]]), 4, 2).save(out)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text, fragment", [
    ("{", "not valid JSON"),
    ('{"format": "other"}', "not a moe-place placement"),
    (json.dumps({"format": PLACEMENT_FORMAT, "num_experts": 2, "num_gpus": 2}), "missing field"),
    (json.dumps({"format": PLACEMENT_FORMAT, "num_experts": 2, "num_gpus": 2, "phy2log": [[0, 1], [1]]}), "rectangular"),
    (json.dumps({"format": PLACEMENT_FORMAT, "num_experts": 2, "num_gpus": 2, "slots_per_gpu": 2,
                 "phy2log": [[0, 1]]}), "slots_per_gpu"),
])
def test_reader_rejects_bad_files(tmp_path, text, fragment):
    f = tmp_path / "p.json"
    f.write_text(text)
    with pytest.raises(PlacerError, match=fragment):
        Placement.load(f)
