"""Every bad input the issue lists, through the CLI: exit 2, one line naming the file and the
problem, no traceback, and no output file (not even a temporary one) left behind."""

from __future__ import annotations

import json

import numpy as np
import pytest

from support.cli import NotATensor, assert_user_error


def good_npz(path, **override):
    arrays = {"expert_ids": np.array([[[0, 1], [2, 3]], [[1, 2], [3, 0]]], np.int64),
              "gate_weights": np.full((2, 2, 2), 0.5, np.float32)}
    arrays.update(override)
    np.savez(path, **arrays)
    return path


def _truncated(tmp_path):
    src = good_npz(tmp_path / "full.npz")
    p = tmp_path / "bad.npz"
    p.write_bytes(src.read_bytes()[:150])
    return p, ("bad.npz", "truncated or corrupt")


def _corrupt(tmp_path):
    p = tmp_path / "bad.npz"
    p.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    return p, ("bad.npz", "corrupt")


def _pickle_in_npz(tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, expert_ids=np.array([[[0]]]), seq_offsets=np.array([object(), 1], dtype=object))
    return p, ("bad.npz", "pickle")


def _id_out_of_range(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"0": [[0, 1], [2, 9]], "1": [[1, 0], [0, 1]]}))
    return p, ("bad.json", "expert id 9", "out of range"), ("--num-experts", "4")


def _negative_id(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"0": [[0, 1], [2, -3]], "1": [[1, 0], [0, 1]]}))
    return p, ("bad.json", "-3", "negative")


def _negative_id_npz(tmp_path):
    return good_npz(tmp_path / "bad.npz", expert_ids=np.array([[[0, -1]]])), ("bad.npz", "negative")


def _unequal_layers_json(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"0": [[0, 1], [2, 3]], "1": [[1, 0]]}))
    return p, ("bad.json", "layer 1 has 1 tokens", "layer 0 has 2")


def _unequal_layers_jsonl(tmp_path):
    p = tmp_path / "bad.jsonl"
    recs = [{"layer": 0, "token_idx": 0, "experts": [1]}, {"layer": 0, "token_idx": 1, "experts": [0]},
            {"layer": 1, "token_idx": 0, "experts": [1]}]
    p.write_text("\n".join(map(json.dumps, recs)))
    return p, ("bad.jsonl", "unequal length", "token 1", "layer 1")


def _unequal_layers_megatron(tmp_path):
    p = tmp_path / "router_trace_rank0.jsonl"
    recs = [{"layer": 0, "num_tokens": 2, "topk": 1, "top_indices": [[0], [1]]},
            {"layer": 1, "num_tokens": 1, "topk": 1, "top_indices": [[0]]}]
    p.write_text("\n".join(map(json.dumps, recs)))
    return p, ("router_trace_rank0.jsonl", "unequal length")


def _empty_json(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"0": [], "1": []}))
    return p, ("bad.json", "empty")


def _empty_npz(tmp_path):
    return good_npz(tmp_path / "bad.npz", expert_ids=np.zeros((3, 0, 2), np.uint8),
                    gate_weights=np.zeros((3, 0, 2), np.float32)), ("bad.npz", "empty")


def _empty_jsonl(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text("\n\n")
    return p, ("bad.jsonl", "format")  # nothing to recognise: unknown format, pass --format


def _nan_weights(tmp_path):
    w = np.full((2, 2, 2), 0.5, np.float32)
    w[1, 0, 1] = np.nan
    return good_npz(tmp_path / "bad.npz", gate_weights=w), ("bad.npz", "NaN")


def _nan_gating_probs(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps({"layer": 0, "token_idx": 0, "experts": [1, 0], "gating_probs": [0.5, float("nan")]}) + "\n")
    return p, ("bad.jsonl", "NaN")


def _json_wrong_shape_list(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps([[0, 1], [1, 0]]))
    return p, ("bad.json", "expected a JSON object"), ("--format", "layer-json")


def _json_wrong_shape_ragged(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"0": [[0, 1], [2]], "1": [[1, 0], [0, 1]]}))
    return p, ("bad.json", "ragged")


def _json_wrong_shape_deep(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"0": [[[0, 1]], [[2, 1]]]}))
    return p, ("bad.json", "layer 0", "shape")


def _json_truncated(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"0": [[0, 1], [2, 3]], "1": [[1, 0], [0, 1]]})[:25])
    return p, ("bad.json", "truncated or corrupt")


def _jsonl_truncated(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps({"layer": 0, "token_idx": 0, "experts": [1]}) + "\n" + '{"layer": 1, "tok')
    return p, ("bad.jsonl", "line 2", "truncated or corrupt")


def _unknown_format(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("layer,token,expert\n0,0,1\n")
    return p, ("bad.txt", "unknown trace format", "--format")


def _unknown_format_flag(tmp_path):
    p = tmp_path / "ok.json"
    p.write_text(json.dumps({"0": [[0]]}))
    return p, ("unknown input format 'csv'",), ("--format", "csv")


def _truncated_npy(tmp_path):
    p = tmp_path / "bad.npy"
    np.save(p, np.zeros((100, 4), np.int64))
    p.write_bytes(p.read_bytes()[:300])
    return p, ("bad.npy", "truncated or corrupt")


def _float_ids_npz(tmp_path):
    return good_npz(tmp_path / "bad.npz", expert_ids=np.full((1, 2, 2), 0.5)), ("bad.npz", "integers")


def _corrupt_pt(tmp_path):
    pytest.importorskip("torch")
    p = tmp_path / "bad.pt"
    p.write_bytes(b"PK\x03\x04garbage" * 10)
    return p, ("bad.pt", "corrupt")


def _missing_file(tmp_path):
    return tmp_path / "nope.json", ("nope.json", "no such file")


CASES = [_truncated, _corrupt, _pickle_in_npz, _id_out_of_range, _negative_id, _negative_id_npz,
         _unequal_layers_json, _unequal_layers_jsonl, _unequal_layers_megatron, _empty_json, _empty_npz,
         _empty_jsonl, _nan_weights, _nan_gating_probs, _json_wrong_shape_list, _json_wrong_shape_ragged,
         _json_wrong_shape_deep, _json_truncated, _jsonl_truncated, _unknown_format, _unknown_format_flag,
         _truncated_npy, _float_ids_npz, _corrupt_pt, _missing_file]


FAST = (_truncated, _json_wrong_shape_ragged, _missing_file)   # the rest are slow: a subprocess each


@pytest.mark.parametrize("case", [pytest.param(c, id=c.__name__.strip("_"), marks=() if c in FAST else pytest.mark.slow)
                                  for c in CASES])
def test_bad_input_import(case, tmp_path, cli):
    src, fragments, *extra = case(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = list(extra[0]) if extra else []
    proc = cli("import", src, "-o", out_dir / "trace.npz", *args)
    assert_user_error(proc, *fragments)
    assert list(out_dir.iterdir()) == [], "an output file was left behind"


@pytest.mark.parametrize("command", ["inspect", "profile"])
def test_bad_input_other_commands(command, tmp_path, cli):
    src, fragments = _nan_weights(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = ["-o", out_dir / "p.npz"] if command == "profile" else ["--plots", out_dir / "plots"]
    proc = cli(command, src, *args)
    assert_user_error(proc, *fragments)
    assert list(out_dir.iterdir()) == []


def test_bad_native_trace_is_refused(tmp_path, cli):
    """A native trace whose ids were tampered with beyond num_experts is caught on load."""
    from placer.model.trace import Trace
    t = Trace(expert_ids=np.array([[[0], [1]]], np.uint8), num_experts=2)
    t.save(tmp_path / "t.npz")
    proc = cli("inspect", tmp_path / "t.npz", "--num-experts", "1")
    assert_user_error(proc, "out of range")


@pytest.mark.slow
def test_pickled_object_in_sglang_dump_is_refused(tmp_path, cli):
    torch = pytest.importorskip("torch")
    p = tmp_path / "dump.pt"
    torch.save({"records": [NotATensor()], "last_physical_to_logical_map": torch.zeros((1, 2), dtype=torch.int64)}, p)
    out = tmp_path / "out"
    out.mkdir()
    proc = cli("import", p, "-o", out / "t.npz")
    assert_user_error(proc, "dump.pt", "never unpickles")
    assert list(out.iterdir()) == []
