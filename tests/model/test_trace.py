"""The Trace model and its native file: round trip, memory-mapped chunks, validation, splits."""

from __future__ import annotations

import numpy as np
import pytest

from placer.errors import PlacerError
from placer.model.trace import Trace, id_dtype
from placer.fileio import Scratch
from placer.model.trace_file import write_trace_from_shards
from support.generate import random_trace


def full_trace(T=50, offsets=None):
    """3 MoE layers (1, 2, 4 of 6), top-2 of 8 experts, gate weights, every metadata field."""
    return random_trace(0, 3, 8, 2, T, seq_offsets=offsets, weights=True, moe_layers=[1, 2, 4],
                        num_hidden_layers=6, model="m", source="s")


def test_roundtrip_is_exact_and_deterministic(tmp_path):
    t = full_trace(offsets=np.array([0, 20, 50]))
    t.save(tmp_path / "a.npz")
    t.save(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    back = Trace.load(tmp_path / "a.npz")
    assert np.array_equal(back.expert_ids, t.expert_ids) and back.expert_ids.dtype == np.uint8
    assert np.array_equal(back.gate_weights, t.gate_weights)
    assert back.offsets.tolist() == [0, 20, 50]
    assert (back.moe_layers, back.num_hidden_layers, back.model, back.source) == ([1, 2, 4], 6, "m", "s")


def test_shards_assemble_to_the_bytes_of_save(tmp_path):
    """The two ways into the one writer: token shards on disk give the file Trace.save gives."""
    t = full_trace(T=50, offsets=np.array([0, 7, 30, 50]))
    t.dropped = np.random.default_rng(3).random((3, 50)) < 0.2
    t.save(tmp_path / "saved.npz")
    shards = []
    for k, (a, b) in enumerate([(0, 7), (7, 30), (30, 50)]):
        shard = {}
        for name in ("expert_ids", "gate_weights", "dropped"):
            arr = np.asarray(getattr(t, name))[:, a:b]
            shard[name] = tmp_path / f"{k}.{name}.npy"
            np.save(shard[name], arr.astype(np.uint8) if name == "expert_ids" else arr)
        shards.append(shard)
    with Scratch(tmp_path) as scratch:
        write_trace_from_shards(tmp_path / "sharded.npz", shards, t.metadata(), scratch, seq_offsets=t.offsets)
    assert (tmp_path / "sharded.npz").read_bytes() == (tmp_path / "saved.npz").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["saved.npz", "sharded.npz", *(
        f"{k}.{n}.npy" for k in range(3) for n in ("expert_ids", "gate_weights", "dropped"))])   # no scratch left
    back = Trace.load(tmp_path / "sharded.npz")
    assert isinstance(back.expert_ids, np.memmap) and np.array_equal(back.dropped, t.dropped)


def test_chunks_cover_the_trace_in_order(tmp_path):
    t = full_trace(T=103)
    t.save(tmp_path / "t.npz")
    mm = Trace.load(tmp_path / "t.npz", mmap=True)
    chunks = list(mm.iter_chunks(10))
    assert [c.num_tokens for c in chunks] == [10] * 10 + [3]
    assert np.array_equal(np.concatenate([c.expert_ids for c in chunks], axis=1), t.expert_ids)


def test_id_dtype():
    assert id_dtype(256) == np.uint8 and id_dtype(257) == np.uint16 and id_dtype(70000) == np.uint32


@pytest.mark.parametrize("mutate, fragment", [
    (lambda t: setattr(t, "num_experts", 3), "out of range"),
    (lambda t: setattr(t, "seq_offsets", np.array([0, 60])), "seq_offsets"),
    (lambda t: setattr(t, "gate_weights", np.full((3, 50, 2), np.nan)), "NaN"),
    (lambda t: setattr(t, "moe_layers", [3, 2, 1]), "increasing"),
    (lambda t: setattr(t, "expert_ids", np.zeros((3, 0, 2), np.uint8)), "empty"),
])
def test_validate_rejects(mutate, fragment):
    t = full_trace()
    mutate(t)
    with pytest.raises(PlacerError, match=fragment):
        t.validate("x")


def test_split_by_sequence_and_concat():
    t = full_trace(T=50, offsets=np.array([0, 10, 25, 40, 50]))
    train, test = t.split(0.5)
    assert train.num_tokens + test.num_tokens == 50
    assert train.offsets.tolist() == [0, 10, 25] and test.offsets.tolist() == [0, 15, 25]
    both = Trace.concat([train, test])
    assert np.array_equal(both.expert_ids, t.expert_ids) and both.offsets.tolist() == t.offsets.tolist()


def test_top1_follows_weights():
    ids = np.array([[[3, 1], [0, 2]]])
    w = np.array([[[0.1, 0.9], [0.8, 0.2]]], np.float32)
    assert Trace(expert_ids=ids, num_experts=4, gate_weights=w).top1().tolist() == [[1, 0]]
    assert Trace(expert_ids=ids, num_experts=4).top1().tolist() == [[3, 0]]


def test_load_refuses_foreign_npz(tmp_path):
    np.savez(tmp_path / "x.npz", expert_ids=np.zeros((1, 1, 1), np.uint8))
    with pytest.raises(PlacerError, match="moe-place import"):
        Trace.load(tmp_path / "x.npz")
