"""Every import format: a small hand-made file with a known answer, auto-detection, and the real
files in ../shared/traces."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest

from placer.errors import PlacerError
from placer.model.profile import Profile
from placer.traces.importers.registry import detect, formats
from placer.traces.load import load_any
from placer.model.trace import Trace
from support.cli import run_python


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def ids_of(trace: Trace) -> list:
    return np.asarray(trace.expert_ids).tolist()


# ---------------------------------------------------------------- per-token formats
def test_layer_json(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"1": [[2, 3], [0, 1], [1, 3]], "0": [[0, 1], [2, 3], [3, 0]]}))
    t = load_any(p)
    assert detect(p).name == "layer-json"
    assert ids_of(t) == [[[0, 1], [2, 3], [3, 0]], [[2, 3], [0, 1], [1, 3]]]
    assert t.moe_layers == [0, 1] and t.num_experts == 4 and t.num_sequences == 1


def test_npz_with_weights_offsets_and_layer_numbers(tmp_path):
    p = tmp_path / "t.npz"
    ids = np.array([[[0, 5], [1, 2], [3, 4]], [[5, 4], [3, 2], [1, 0]]], np.uint8)
    w = np.array([[[0.6, 0.4], [0.2, 0.8], [0.5, 0.1]], [[0.3, 0.7], [0.9, 0.1], [0.4, 0.6]]], np.float16)
    np.savez(p, expert_ids=ids, gate_weights=w, seq_offsets=np.array([0, 1, 3]), moe_layer_numbers=np.array([1, 3], np.int16))
    t = load_any(p)
    assert detect(p).name == "npz"
    assert ids_of(t) == ids.tolist()
    assert t.moe_layers == [1, 3] and t.num_hidden_layers == 4
    assert t.offsets.tolist() == [0, 1, 3]
    # top-1 follows the gate weights, not column order
    assert t.top1().tolist() == [[0, 2, 3], [4, 3, 0]]


def test_exflow_npy(tmp_path):
    p = tmp_path / "t.npy"
    np.save(p, np.array([[0, 1, 2], [3, 3, 1], [2, 0, 0], [1, 2, 3]], np.int64))  # [T=4, L=3]
    t = load_any(p)
    assert detect(p).name == "exflow-npy"
    assert t.top_k == 1 and t.num_layers == 3 and t.num_tokens == 4
    assert np.asarray(t.expert_ids)[:, :, 0].tolist() == [[0, 3, 2, 1], [1, 3, 0, 2], [2, 1, 0, 3]]


def test_token_jsonl_orders_tokens_and_splits_requests(tmp_path):
    recs = []
    # request "b" logged first; token_idx restarts per request; records shuffled across layers
    truth = {("b", 0): ([1, 2], [3, 0]), ("b", 1): ([0, 3], [2, 1]), ("a", 0): ([2, 1], [1, 3])}
    for (req, tok), (l0, l1) in truth.items():
        recs.append({"layer": 1, "token_idx": tok, "experts": l1, "gating_probs": [0.7, 0.3], "request_id": req})
    for (req, tok), (l0, l1) in reversed(list(truth.items())):
        recs.append({"layer": 0, "token_idx": tok, "experts": l0, "gating_probs": [0.4, 0.6], "request_id": req})
    p = write_jsonl(tmp_path / "t.jsonl", recs)
    t = load_any(p)
    assert detect(p).name == "token-jsonl"
    assert ids_of(t) == [[[1, 2], [0, 3], [2, 1]], [[3, 0], [2, 1], [1, 3]]]
    assert t.offsets.tolist() == [0, 2, 3]
    assert np.allclose(np.asarray(t.gate_weights)[0], 0.4 * (np.arange(2) == 0) + 0.6 * (np.arange(2) == 1))
    assert t.top1().tolist() == [[2, 3, 1], [3, 2, 1]]


def test_megatron_router_ranks_merge(tmp_path):
    def rec(step, layer, idx, block="decoder", **kw):
        n = len(idx) if isinstance(idx[0], list) else len(idx) // 2
        return {"rank": 0, "step": step, "block": block, "layer": layer, "num_tokens": n, "topk": 2,
                "top_indices": idx, **kw}
    r0 = write_jsonl(tmp_path / "router_trace_rank0.jsonl", [
        rec(1, 1, [[0, 1], [2, 3]]),
        rec(1, 2, [1, 2, 3, 0]),                           # flat layout
        rec(1, 2, [[3, 3]], block="mtp", mtp_idx=0),       # MTP router: same layer number, skipped
        rec(2, 1, [[3, 1]]),
        rec(2, 2, [[0, 2]]),
    ])
    write_jsonl(tmp_path / "router_trace_rank1.jsonl", [rec(1, 1, [[2, 2]]), rec(1, 2, [[1, 1]])])
    assert detect(r0).name == "megatron-router"
    t = load_any(r0)
    assert ids_of(t) == [[[0, 1], [2, 3], [3, 1]], [[1, 2], [3, 0], [0, 2]]]
    assert t.moe_layers == [1, 2] and t.offsets.tolist() == [0, 2, 3]   # one sequence per step
    merged = load_any([tmp_path])  # the directory: ranks in rank order
    assert merged.num_tokens == 4 and merged.offsets.tolist() == [0, 2, 3, 4]
    assert np.asarray(merged.expert_ids)[:, 3].tolist() == [[2, 2], [1, 1]]


def test_routed_experts_sglang_raw_int32(tmp_path):
    # 3 hidden layers (layer 0 dense: -1), top-2; two requests of 2 and 1 tokens
    req1 = np.array([[[-1, -1], [0, 3], [2, 1]], [[-1, -1], [1, 1], [3, 0]]], np.int32)
    req2 = np.array([[[-1, -1], [2, 2], [0, 0]]], np.int32)
    pad = lambda r: np.concatenate([r, -np.ones(r.shape[:2] + (1,), np.int32)], axis=2)  # a -1 padded slot
    recs = [{"text": "x", "meta_info": {"routed_experts": base64.b64encode(pad(r).astype("<i4").tobytes()).decode()},
             "num_hidden_layers": 3, "top_k": 3} for r in (req1, req2)]
    p = write_jsonl(tmp_path / "sglang.jsonl", recs)
    assert detect(p).name == "routed-experts"
    t = load_any(p)
    assert t.moe_layers == [1, 2] and t.num_hidden_layers == 3
    assert ids_of(t) == [[[0, 3], [1, 1], [2, 2]], [[2, 1], [3, 0], [0, 0]]]
    assert t.offsets.tolist() == [0, 2, 3]


def test_routed_experts_raw_needs_shape(tmp_path):
    p = write_jsonl(tmp_path / "s.jsonl", [{"routed_experts": base64.b64encode(np.zeros(4, "<i4").tobytes()).decode()}])
    with pytest.raises(PlacerError, match="--num-hidden-layers and --top-k"):
        load_any(p)
    t = load_any(p, num_hidden_layers=2, top_k=1)
    assert t.num_tokens == 2 and t.num_layers == 2


def test_routed_experts_vllm_npy_and_list(tmp_path):
    arr = np.array([[[1, 0], [2, 3]], [[0, 1], [3, 3]], [[2, 2], [1, 0]]], np.int16)  # [T=3, L=2, K=2]
    buf = io.BytesIO()
    np.save(buf, arr)
    recs = [{"routed_experts": base64.b64encode(buf.getvalue()).decode()}, {"routed_experts": [[[3, 1], [0, 2]]]}]
    t = load_any(write_jsonl(tmp_path / "v.jsonl", recs))
    want = np.concatenate([arr, [[[3, 1], [0, 2]]]]).transpose(1, 0, 2)
    assert ids_of(t) == want.tolist() and t.offsets.tolist() == [0, 3, 4]


def _sglang_per_token_dump(path):
    torch = pytest.importorskip("torch")
    # 3 hidden layers (0 dense), 6 physical slots over 4 logical experts (slots 4, 5 replicate 0, 2)
    p2l = torch.tensor([[0, 1, 2, 3, 0, 2]] * 3, dtype=torch.int64)
    p2l[2] = torch.tensor([3, 2, 1, 0, 3, 1])
    def rec(phys, lens):
        full = -torch.ones((3, phys.shape[1], 8), dtype=torch.int32)
        full[1:, :, :2] = phys
        return {"forward_pass_id": 0, "rank": 0, "input_ids": [0] * phys.shape[1], "positions": list(range(phys.shape[1])),
                "extend_seq_lens": lens, "forward_mode": 1, "topk_ids_of_layer": full, "misc_objects": [],
                "global_physical_count": torch.zeros((3, 6), dtype=torch.int32)}
    prefill = torch.tensor([[[4, 1], [2, 3], [5, 0]], [[0, 1], [4, 5], [2, 3]]], dtype=torch.int32)  # [2 MoE, 3 tok, 2]
    decode = torch.tensor([[[1, 5], [3, 4]], [[5, 0], [1, 2]]], dtype=torch.int32)
    torch.save({"records": [rec(prefill, [2, 1]), rec(decode, None)], "last_physical_to_logical_map": p2l}, path)


def test_sglang_per_token_dump(tmp_path):
    p = tmp_path / "expert_distribution_recorder_1.0_0.pt"
    _sglang_per_token_dump(p)
    assert detect(p).name == "sglang-dump"
    t = load_any(p, num_experts=4)
    assert t.moe_layers == [1, 2] and t.num_hidden_layers == 3 and t.top_k == 2
    # layer 1 map [0,1,2,3,0,2]; layer 2 map [3,2,1,0,3,1]
    assert ids_of(t) == [[[0, 1], [2, 3], [2, 0], [1, 2], [3, 0]],
                         [[3, 2], [3, 1], [1, 0], [1, 3], [2, 1]]]
    assert t.offsets.tolist() == [0, 2, 3, 4, 5]


def test_sglang_stat_dump(tmp_path):
    torch = pytest.importorskip("torch")
    counts = torch.zeros((4, 3, 4), dtype=torch.int32)  # circular buffer of 4, 2 passes filled
    counts[0, 1] = torch.tensor([3, 1, 0, 2])
    counts[1, 1] = torch.tensor([1, 1, 1, 1])
    counts[0, 2] = torch.tensor([0, 5, 5, 0])
    counts[1, 2] = torch.tensor([2, 0, 2, 0])
    p = tmp_path / "stat.pt"
    torch.save({"rank": 0, "logical_count": counts, "average_utilization_rate_over_window": None}, p)
    with pytest.raises(PlacerError, match="--top-k"):
        load_any(p)
    prof = load_any(p, top_k=2)
    assert isinstance(prof, Profile)
    assert prof.load.tolist() == [[4, 2, 1, 3], [2, 5, 7, 0]] and prof.moe_layers == [1, 2]
    assert prof.num_tokens == 5 and prof.trans is None


# ------------------------------------------------------------------ aggregate counts
def test_native_counts(tmp_path):
    p = tmp_path / "c.npz"
    load = np.array([[3, 1], [2, 2]])
    t1 = np.array([[[2, 0], [0, 0]]])
    np.savez(p, load=load, trans_top1=t1, top_k=np.array(2), moe_layers=np.array([0, 2]))
    prof = load_any(p)
    assert detect(p).name == "counts"
    assert prof.load.tolist() == load.tolist() and prof.trans_top1.tolist() == t1.tolist()
    assert prof.top_k == 2 and prof.num_tokens == 2 and prof.moe_layers == [0, 2]
    # two files add up
    both = load_any([p, p])
    assert both.load.tolist() == (2 * load).tolist() and both.num_tokens == 4


def test_saved_profile_reads_back(tmp_path):
    t = load_any(_tiny_json(tmp_path))
    prof = Profile.from_trace(t)
    prof.save(tmp_path / "p.npz")
    back = load_any(tmp_path / "p.npz")
    assert np.array_equal(back.trans, prof.trans) and np.array_equal(back.load, prof.load)


def _tiny_json(tmp_path):
    p = tmp_path / "tiny.json"
    p.write_text(json.dumps({"0": [[0, 1], [2, 3]], "1": [[1, 2], [3, 0]]}))
    return p


def test_olmoe_layout(tmp_path):
    p = tmp_path / "o.npz"
    top1 = np.array([[3, 1, 0, 0], [1, 1, 1, 1], [0, 0, 4, 0]])
    topk = np.array([[4, 2, 1, 1], [2, 2, 2, 2], [1, 1, 5, 1]])     # K = 8 / 4 = 2
    cross = np.zeros((2, 4, 4), np.int64)
    cross[0, 0, 1] = 3
    cross[0, 1, 2] = 1
    cross[1, 2, 2] = 4
    np.savez(p, m__x__topk_counts=topk, m__x__top1_counts=top1, m__x__crosslayer_top1=cross,
             m__x__crosslayer_topk=cross, m__y__topk_counts=topk, layers_of_counts=np.array([0, 7, 15]),
             layer_pairs_of_crosslayer=np.array([[0, 7], [7, 15]]))
    assert detect(p).name == "olmoe-counts"
    with pytest.raises(PlacerError, match="m__x, m__y"):
        load_any(p)
    prof = load_any(p, key="m__x")
    assert prof.top_k == 2 and prof.num_tokens == 4 and prof.moe_layers == [0, 7, 15]
    assert prof.load.tolist() == topk.tolist() and prof.trans_top1.tolist() == cross.tolist() and prof.trans is None
    with pytest.raises(PlacerError, match="--top-k"):
        load_any(p, key="m__y")
    assert load_any(p, key="m__y", top_k=2).num_tokens == 4


def test_fiddler_layout(tmp_path):
    p = tmp_path / "f.npz"
    counts = np.arange(2 * 3 * 2 * 4).reshape(2, 3, 2, 4) * 2
    np.savez(p, counts=counts, models=np.array(["base", "chat"]), subjects=np.array(["s0", "s1", "s2"]),
             whitespace_words=np.array([1, 2, 3]))
    assert detect(p).name == "fiddler-counts"
    with pytest.raises(PlacerError, match="chat__s1"):
        load_any(p)
    prof = load_any(p, key="chat__s1")
    assert prof.load.tolist() == counts[1, 1].tolist() and prof.top_k == 2
    assert prof.num_tokens == counts[1, 1, 0].sum() // 2
    assert load_any(p, key="base__all").load.tolist() == counts[0].sum(axis=0).tolist()


# ------------------------------------------------------------------ registry, concat
def test_every_registered_format_is_tested():
    names = set(formats())
    assert names == {"layer-json", "npz", "exflow-npy", "token-jsonl", "megatron-router", "routed-experts",
                     "sglang-dump", "counts", "olmoe-counts", "fiddler-counts"}


def test_concat_of_sources_and_override(tmp_path):
    a = _tiny_json(tmp_path)
    t = load_any([a, a], num_experts=16)
    assert t.num_tokens == 4 and t.offsets.tolist() == [0, 2, 4] and t.num_experts == 16
    with pytest.raises(PlacerError, match="out of range"):
        load_any([a], num_experts=3)


def test_forced_format_and_unknown(tmp_path):
    p = tmp_path / "trace.dat"
    p.write_text(json.dumps({"0": [[1], [0]]}))
    assert load_any(p).num_tokens == 2                      # detected by content despite the extension
    assert load_any(p, fmt="layer-json").num_tokens == 2
    with pytest.raises(PlacerError, match="unknown format 'bogus'"):
        load_any(p, fmt="bogus")
    q = tmp_path / "notes.txt"
    q.write_text("hello")
    with pytest.raises(PlacerError, match="unknown trace format"):
        load_any(q)


def test_import_cli_writes_trace_and_profile(tmp_path, cli):
    src = _tiny_json(tmp_path)
    out = tmp_path / "out.npz"
    proc = cli("import", src, src, "-o", out, "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["kind"] == "trace" and info["tokens"] == 4
    t = Trace.load(out)
    assert np.asarray(t.expert_ids)[:, 2:].tolist() == [[[0, 1], [2, 3]], [[1, 2], [3, 0]]]
    c = tmp_path / "c.npz"
    np.savez(c, load=np.array([[1, 1]]))
    assert cli("import", c, "-o", tmp_path / "p.npz").returncode == 0
    assert Profile.load_file(tmp_path / "p.npz").load.tolist() == [[1, 1]]


# ------------------------------------------------------------------ real files
@pytest.mark.slow
def test_real_esft_loads_equal_numpy_count(shared_traces):
    for f in sorted((shared_traces / "esft").glob("*.npz")):
        raw = np.load(f, allow_pickle=False)
        t = load_any(f)
        assert t.moe_layers == raw["moe_layer_numbers"].tolist()
        prof = Profile.from_trace(t, coact=False)
        direct = np.stack([np.bincount(raw["expert_ids"][l].ravel().astype(np.int64), minlength=64)
                           for l in range(raw["expert_ids"].shape[0])])
        assert np.array_equal(prof.load, direct)
        assert t.offsets.tolist() == raw["seq_offsets"].tolist()


@pytest.mark.slow
def test_real_mixtral_json(shared_traces):
    files = sorted((shared_traces / "mixtral_mtbench").glob("*.json"))
    first = json.loads(files[0].read_text())
    t = load_any(files[0])
    assert (t.num_layers, t.num_experts, t.top_k) == (32, 8, 2)
    assert np.asarray(t.expert_ids)[5].tolist() == first["5"]
    both = load_any(files[:2])
    assert both.num_sequences == 2 and both.num_tokens == t.num_tokens + load_any(files[1]).num_tokens


def test_real_count_files(shared_traces):
    o = shared_traces / "olmoe" / "olmoe_mixtral_routing_counts.npz"
    raw = np.load(o, allow_pickle=False)
    prof = load_any(o, key="mistral__github")
    assert prof.top_k == 2 and prof.load.tolist() == raw["mistral__github__topk_counts"].tolist()
    T = raw["mistral__github__top1_counts"][0].sum()
    assert prof.num_tokens == T and prof.trans_top1.sum(axis=(1, 2)).tolist() == [T, T]
    assert load_any(o, key="olmoe__c4").top_k == 8
    f = shared_traces / "fiddler" / "mixtral_mmlu_expert_counts.npz"
    rawf = np.load(f, allow_pickle=False)
    pf = load_any(f, key="Mixtral-8x7B-Instruct-v0.1__machine_learning")
    assert pf.load.tolist() == rawf["counts"][1, 6].tolist() and pf.num_layers == 32


# ------------------------------------------------------------------ round trips
def _writers():
    """Writers of a random [L, T, K] id array (one sequence) in each per-token text format."""
    def layer_json(path, ids):
        path = path.with_suffix(".json")
        path.write_text(json.dumps({str(l): ids[l].tolist() for l in range(ids.shape[0])}))
        return path

    def token_jsonl(path, ids):
        recs = [{"layer": l, "token_idx": t, "experts": ids[l, t].tolist()}
                for t in reversed(range(ids.shape[1])) for l in range(ids.shape[0])]
        return write_jsonl(path.with_suffix(".jsonl"), recs)

    def megatron(path, ids):
        half = max(1, ids.shape[1] // 2)
        recs = [{"layer": l, "num_tokens": len(rows), "topk": ids.shape[2], "top_indices": rows.tolist()}
                for step in (ids[:, :half], ids[:, half:]) if step.shape[1]
                for l, rows in enumerate(step)]
        return write_jsonl(path.with_name("router_trace_rank0.jsonl"), recs)

    def routed(path, ids):
        raw = base64.b64encode(np.ascontiguousarray(ids.transpose(1, 0, 2)).astype("<i4").tobytes()).decode()
        return write_jsonl(path.with_suffix(".jsonl"), [{"routed_experts": raw, "num_hidden_layers": ids.shape[0],
                                                         "top_k": ids.shape[2]}])

    return {"layer-json": layer_json, "token-jsonl": token_jsonl, "megatron-router": megatron, "routed-experts": routed}


@pytest.mark.parametrize("fmt", list(_writers()))
@pytest.mark.parametrize("seed", range(4))
def test_round_trip_text_formats(fmt, seed, tmp_path):
    rng = np.random.default_rng(seed)
    L, T, K, E = rng.integers(1, 5), rng.integers(1, 40), rng.integers(1, 4), 12
    ids = rng.integers(0, E, size=(L, T, K))
    path = _writers()[fmt](tmp_path / "x", ids)
    assert detect(path).name == fmt
    t = load_any(path, num_experts=E)
    assert ids_of(t) == ids.tolist() and t.num_experts == E


def test_no_torch_or_matplotlib_on_import(tmp_path):
    code = ("import sys, placer, placer.traces.importers, placer.analysis.stats, placer.commands.inspect, "
            "placer.commands.import_, placer.commands.profile; "
            "bad = [m for m in ('torch', 'matplotlib', 'transformers') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    run_python(code)


def test_registry_imports_formats_lazily_in_tuple_order():
    """The registry module imports no format module (no import cycle); the first lookup imports
    the built-in modules, and detection order is the order of their tuple."""
    code = ("import sys; from placer.traces.importers.registry import BUILTIN_MODULES, formats; "
            "assert not [m for m in BUILTIN_MODULES if m in sys.modules]; "
            "mods = [imp.load.__module__ for imp in formats().values()]; "
            "assert sorted(set(mods), key=mods.index) == list(BUILTIN_MODULES), mods")
    run_python(code)


def test_list_formats(cli):
    proc = cli("import", "--list-formats")
    assert proc.returncode == 0
    assert {line.split()[0] for line in proc.stdout.splitlines()} == set(formats())


@pytest.mark.slow
def test_real_files_import_through_cli(shared_traces, tmp_path, cli):
    # one file of each layout (the library-level tests above read every file)
    cases = [(sorted(shared_traces.glob("esft/*.npz"))[0], []), (sorted(shared_traces.glob("mixtral_mtbench/*.json"))[0], [])]
    cases += [(shared_traces / "olmoe" / "olmoe_mixtral_routing_counts.npz", ["--key", "olmoe__github"]),
              (shared_traces / "fiddler" / "mixtral_mmlu_expert_counts.npz", ["--key", "Mixtral-8x7B-v0.1__all"])]
    for src, extra in cases:
        out = tmp_path / f"{src.stem}.npz"
        proc = cli("import", src, "-o", out, "--json", *extra)
        assert proc.returncode == 0, proc.stderr
        info = json.loads(proc.stdout)
        assert info["kind"] == ("profile" if extra else "trace")
        back = Profile.load_file(out) if extra else Trace.load(out)
        assert back.num_layers == info["layers"] and back.num_tokens == info["tokens"]
