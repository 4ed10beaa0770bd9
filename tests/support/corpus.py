"""A corpus of malformed and hostile inputs, one list per input kind, and the commands that read each.

Every item is bad: a user error that must end in exit status 2 with one line, no traceback, no
output file and nothing of the user's touched. :func:`build` writes the items under a folder and
returns them as :class:`Item` s, each with the command lines that read it (``{out}`` in an
argument is the run's own empty output folder). The files are written with numpy, json and
zipfile only (never through ``placer``), so the same corpus runs against any version of the tool
(``benchmarks/robustness.py`` measures before and after; ``tests/cli/test_corpus.py`` asserts).

Kinds: native trace, foreign ``.npz``, ExFlow ``.npy``, per-layer JSON, token JSONL, Megatron
JSONL, routed-experts JSONL, native counts, saved profile, OLMoE counts, fiddler counts, SGLang
``.pt`` dumps, placement JSON, SGLang map, vllm-ascend map, CSV, EPLB ``.npz``/``.pt``, topology
(bandwidth) files, prompt files, option values, output paths.
"""

from __future__ import annotations

import base64
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

L, T, K, E, G = 2, 12, 2, 4, 2
MOE_LAYERS, HIDDEN = [1, 3], 4
DEEP = 20000                                # nesting that overflows a recursive parser
NAN, INF = float("nan"), float("inf")


@dataclass
class Item:
    """One bad input: ``runs`` maps a command label to its argv (``{out}`` = the output folder)."""

    kind: str
    name: str
    runs: dict[str, list[str]] = field(default_factory=dict)


# ------------------------------------------------------------------------------ writers
def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=True)
    return buf.getvalue()


def npy_header(descr: str, shape: tuple, data: bytes = b"", fortran: bool = False) -> bytes:
    """An ``.npy`` whose header declares ``descr``/``shape`` whatever ``data`` holds (a size bomb)."""
    head = repr({"descr": descr, "fortran_order": fortran, "shape": tuple(shape)}).encode()
    pad = 64 - (10 + len(head) + 1) % 64
    return b"\x93NUMPY\x01\x00" + (len(head) + pad + 1).to_bytes(2, "little") + head + b" " * pad + b"\n" + data


def write_zip(path: Path, members: dict[str, Any], compress: bool = False) -> Path:
    """An ``.npz`` from arrays or raw ``.npy`` bytes (``name`` without ``.npy``)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as zf:
        for name, value in members.items():
            zf.writestr(f"{name}.npy", value if isinstance(value, bytes) else npy_bytes(value))
    return path


def meta_array(meta: Any) -> np.ndarray:
    return np.array(meta if isinstance(meta, str) else json.dumps(meta))


def ids_base() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([[rng.choice(E, K, replace=False) for _ in range(T)] for _ in range(L)]).astype(np.uint8)


def gate_base() -> np.ndarray:
    return np.full((L, T, K), 0.5, np.float32)


def trace_meta(**override) -> dict:
    meta = {"format": "moe-place/trace@1", "num_experts": E, "moe_layers": MOE_LAYERS, "num_hidden_layers": HIDDEN,
            "model": "m", "source": "corpus", "extra": {}}
    meta.update(override)
    return {k: v for k, v in meta.items() if v is not _DROP}


_DROP = object()


def native_members(meta: Any = None, **arrays) -> dict[str, Any]:
    members = {"expert_ids": ids_base(), "gate_weights": gate_base(), "seq_offsets": np.array([0, 6, T], np.int64)}
    for k, v in arrays.items():
        if v is _DROP:
            members.pop(k, None)
        else:
            members[k] = v
    members["metadata"] = meta_array(trace_meta() if meta is None else meta)
    return members


def placement_obj(**override) -> dict:
    obj = {"format": "moe-place/placement@1", "num_layers": L, "num_experts": E, "num_gpus": G, "gpus_per_node": G,
           "slots_per_gpu": E // G, "phy2log": [[0, 1, 2, 3], [2, 0, 3, 1]], "report": {}}
    obj.update(override)
    return {k: v for k, v in obj.items() if v is not _DROP}


def deep_list(depth: int = DEEP) -> str:
    return "[" * depth + "0" + "]" * depth


def deep_obj(depth: int = DEEP) -> str:
    return '{"a":' * depth + "0" + "}" * depth


def dump(obj: Any) -> str:
    """JSON text; ``Raw`` values are spliced in as they are (deep nesting, NaN literals, huge ints)."""
    text = json.dumps(obj, allow_nan=True)
    for i, raw in enumerate(_RAW):
        text = text.replace(f'"__raw{i}__"', raw)
    return text


_RAW: list[str] = []


def raw(text: str) -> str:
    _RAW.append(text)
    return f"__raw{len(_RAW) - 1}__"


# ------------------------------------------------------------------------------ commands
def trace_runs(src: str, extra: list[str] | None = None, aggregate: bool = False) -> dict[str, list[str]]:
    """Every command that reads a routing input (a trace, or counts for those that take them)."""
    x = list(extra or [])
    runs = {
        "import": ["import", src, "-o", "{out}/t.npz", *x],
        "inspect": ["inspect", src, "--gpus", str(G), *x],
        "profile": ["profile", src, "-o", "{out}/p.npz", *x],
        "solve": ["solve", src, "--gpus", str(G), "--time-limit", "2", "-o", "{out}/p.json"],
        "evaluate": ["evaluate", src, "{base}/placement.json", *x],
        "compare": ["compare", src, "{base}/placement.json", "contiguous", *x],
        "plan": ["plan", src, "--gpus", str(G), "--solvers", "contiguous,eplb", "--time-limit", "1",
                 "--csv", "{out}/plan.csv", *x],
        "validate": ["validate", src, "{base}/placement.json", "--tokens", "16", "--iters", "1", "--warmup", "0",
                     "--hidden-size", "8", "--ffn-size", "8"],
    }
    if x:  # solve and validate read native traces and anything importable without options
        del runs["solve"], runs["validate"]
    return runs


def placement_runs(src: str, read: list[str] | None = None, native: bool = False) -> dict[str, list[str]]:
    r = list(read or [])
    runs = {"import-placement": ["import-placement", src, "-o", "{out}/p.json", *r],
            "import": ["import", src, "-o", "{out}/p.json", *r],
            "migrate": ["import-placement", "{base}/placement.json", "--migrate-to", src]}
    if native:
        runs.update({
            "evaluate": ["evaluate", "{base}/trace.npz", src],
            "compare": ["compare", "{base}/trace.npz", src],
            "export": ["export", src, "--format", "sglang", "-o", "{out}/loc.json"],
            "validate": ["validate", "{base}/trace.npz", src, "--tokens", "16", "--iters", "1", "--warmup", "0",
                         "--hidden-size", "8", "--ffn-size", "8"],
        })
    else:
        del runs["migrate"]
    return runs


def topology_runs(src: str) -> dict[str, list[str]]:
    t = "{base}/trace.npz"
    return {"solve": ["solve", t, "--gpus", str(G), "--topology", src, "--time-limit", "2", "-o", "{out}/p.json"],
            "evaluate": ["evaluate", t, "{base}/placement.json", "--topology", src],
            "compare": ["compare", t, "{base}/placement.json", "contiguous", "--topology", src],
            "plan": ["plan", t, "--gpus", str(G), "--solvers", "contiguous", "--time-limit", "1", "--topology", src]}


# ------------------------------------------------------------------------------ the kinds
class Builder:
    """Writes items of one kind into ``folder`` and collects them."""

    def __init__(self, root: Path, kind: str):
        self.root, self.kind = root, kind
        self.folder = root / kind
        self.folder.mkdir(parents=True, exist_ok=True)
        self.items: list[Item] = []

    def path(self, name: str, suffix: str) -> Path:
        return self.folder / f"{name}{suffix}"

    def add(self, name: str, runs: dict[str, list[str]]) -> None:
        self.items.append(Item(self.kind, name, runs))


def native_trace(b: Builder) -> None:
    def npz(name: str, members: dict[str, Any], compress: bool = False) -> None:
        p = write_zip(b.path(name, ".npz"), members, compress)
        b.add(name, trace_runs(str(p)))

    bad_ints = {"str": "four", "frac": 4.5, "neg": -1, "zero": 0, "list": [4], "null": None, "2^31": 2**31,
                "2^40": 2**40, "2^63": 2**63, "2^64": 2**64, "float_huge": 1e300, "nan": raw("NaN"),
                "inf": raw("Infinity"), "dict": {"a": 1}}
    for tag, v in bad_ints.items():
        npz(f"num_experts_{tag}", native_members(meta=dump(trace_meta(num_experts=v))))
    npz("num_experts_missing", native_members(meta=trace_meta(num_experts=_DROP)))
    for tag, v in {"digits_str": "13", "csv_str": "1,3", "short": [1], "repeat": [1, 1], "decreasing": [3, 1],
                   "negative": [-1, 2], "frac": [0.5, 1], "strs": ["a", "b"], "dict": {"0": 1}, "scalar": 5,
                   "huge": [2**70, 2**71], "bools": [True, 1.5], "nested": [[1], [3]], "nan": [raw("NaN"), 1]}.items():
        npz(f"moe_layers_{tag}", native_members(meta=dump(trace_meta(moe_layers=v))))
    for tag, v in {"str": "four", "neg": -1, "small": 2, "frac": 4.5, "list": [4], "huge": 2**70, "dict": {}}.items():
        npz(f"num_hidden_layers_{tag}", native_members(meta=dump(trace_meta(num_hidden_layers=v))))
    for tag, v in {"str": "abc", "list": [1, 2], "int": 5}.items():
        npz(f"extra_{tag}", native_members(meta=trace_meta(extra=v)))
    for tag, v in {"model_list": ["a"], "model_dict": {"a": 1}, "source_int": 5}.items():
        key = tag.split("_")[0]
        npz(f"meta_{tag}", native_members(meta=trace_meta(**{key: v})))
    # metadata that is not the object it claims
    for tag, text in {"not_json": "{not json", "list": "[1, 2]", "deep": deep_list(), "deep_obj": deep_obj(),
                      "number": "5", "format_v2": json.dumps(trace_meta(format="moe-place/trace@2"))}.items():
        npz(f"metadata_{tag}", native_members(meta=text))
    npz("metadata_2d", {**native_members(), "metadata": np.array([["a", "b"]])})
    npz("metadata_numeric", {**native_members(), "metadata": np.arange(3)})
    # expert ids of the wrong kind or size
    ids = ids_base().astype(np.int64)
    id_variants = {
        "float": ids.astype(np.float32) + 0.5, "float_nan": np.full(ids.shape, NAN), "complex": ids.astype(np.complex64),
        "bool": ids.astype(bool), "negative": ids.astype(np.int8) - 1,
        "2^40": np.where(ids == 0, 2**40, ids).astype(np.int64),
        "int64_max": np.where(ids == 0, np.iinfo(np.int64).max, ids).astype(np.int64),
        "uint64_max": np.where(ids == 0, np.iinfo(np.uint64).max, ids).astype(np.uint64),
        "2d": ids[0], "4d": ids[..., None], "empty_tokens": ids[:, :0], "empty_layers": ids[:0],
        "strings": ids.astype("U2"), "datetime": ids.astype("datetime64[s]"), "void": ids.astype("V1"),
        "structured": np.zeros(ids.shape, dtype=[("a", "u1")]), "float16": ids.astype(np.float16),
    }
    for tag, arr in id_variants.items():
        npz(f"expert_ids_{tag}", native_members(expert_ids=arr))
    npz("expert_ids_missing", native_members(expert_ids=_DROP))
    npz("expert_ids_pickle", native_members(expert_ids=np.array([object()] * 4, dtype=object)))
    npz("expert_ids_declared_huge", native_members(expert_ids=npy_header("|u1", (2, 10**12, 2), bytes(48))))
    npz("expert_ids_declared_huge_deflated",
        native_members(expert_ids=npy_header("|u1", (2, 10**11, 2), bytes(48))), compress=True)
    npz("expert_ids_header_garbage", native_members(expert_ids=b"\x93NUMPY\x01\x00\x10\x00{not a dict}   \n"))
    npz("expert_ids_negative_shape", native_members(expert_ids=npy_header("|u1", (2, -5, 2), bytes(48))))
    npz("expert_ids_bad_descr", native_members(expert_ids=npy_header("<q17", (2, 12, 2), bytes(48))))
    gate = gate_base()
    for tag, arr in {"int": gate.astype(np.int32), "complex": gate.astype(np.complex64), "nan": np.where(gate > 0, NAN, gate),
                     "inf": np.full(gate.shape, INF, np.float32), "shape": gate[:, :5], "bool": gate > 0,
                     "strings": gate.astype("U3"), "negative_inf": np.full(gate.shape, -INF, np.float32),
                     "declared_huge": npy_header("<f4", (2, 10**12, 2), bytes(96))}.items():
        npz(f"gate_weights_{tag}", native_members(gate_weights=arr))
    for tag, arr in {"float": np.array([0.0, 6.0, 12.0]), "not_zero": np.array([1, 6, 12]), "decreasing": np.array([0, 8, 6, 12]),
                     "past_end": np.array([0, 6, 13]), "2d": np.array([[0, 6, 12]]), "huge": np.array([0, 2**62, 12]),
                     "empty": np.array([], np.int64), "uint64_max": np.array([0, np.iinfo(np.uint64).max, 12], np.uint64),
                     "one": np.array([0]), "declared_huge": npy_header("<i8", (10**10,), bytes(24)),
                     "strings": np.array(["0", "6", "12"]), "repeat": np.array([0, 6, 6, 12])}.items():
        npz(f"seq_offsets_{tag}", native_members(seq_offsets=arr))
    drop = np.zeros((L, T), bool)
    drop[0, :2] = True
    for tag, arr in {"int01": drop.astype(np.int64), "float": drop.astype(np.float32), "all_true": np.ones((L, T), bool),
                     "shape": drop[:, :5], "uint8": drop.astype(np.uint8), "strings": drop.astype("U5"),
                     "int_other": np.full((L, T), 7)}.items():
        npz(f"dropped_{tag}", native_members(dropped=arr))
    # the container itself
    good = write_zip(b.path("_good", ".npz"), native_members())
    data = good.read_bytes()
    for frac in (0.1, 0.5, 0.9, 0.99):
        p = b.path(f"truncated_{int(frac * 100)}", ".npz")
        p.write_bytes(data[: int(len(data) * frac)])
        b.add(p.stem, trace_runs(str(p)))
    cd = data.find(b"PK\x01\x02")
    garbled = data[:cd] + bytes(b ^ 0x5A for b in data[cd:])       # the central directory overwritten
    for name, content in {"central_dir_garbled": garbled, "empty": b"", "random": os.urandom(2048),
                          "text": b"expert_ids,0,1\n", "zip_magic_only": b"PK\x05\x06" + bytes(18)}.items():
        p = b.path(name, ".npz")
        p.write_bytes(content)
        b.add(name, trace_runs(str(p)))
    p = b.path("zip_of_directory", ".npz")
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("expert_ids.npy/", b"")
        zf.writestr("metadata.npy", npy_bytes(meta_array(trace_meta())))
    b.add(p.stem, trace_runs(str(p)))
    folder = b.path("a_directory", ".npz")
    folder.mkdir(exist_ok=True)
    b.add("a_directory", trace_runs(str(folder)))


def foreign_npz(b: Builder) -> None:
    def npz(name: str, **arrays) -> None:
        members = {"expert_ids": ids_base().astype(np.int64), "gate_weights": gate_base(),
                   "seq_offsets": np.array([0, 6, T]), "moe_layer_numbers": np.array(MOE_LAYERS)}
        for k, v in arrays.items():
            if v is _DROP:
                members.pop(k)
            else:
                members[k] = v
        b.add(name, trace_runs(str(write_zip(b.path(name, ".npz"), members))))

    for tag, v in {"frac": np.array([0.5, 1.5]), "strings": np.array(["a", "b"]), "too_many": np.array([1, 2, 3]),
                   "decreasing": np.array([3, 1]), "negative": np.array([-2, 1]), "huge": np.array([1, 2**62]),
                   "2d": np.array([[1], [3]]), "complex": np.array([1j, 2j]), "bool": np.array([True, True]),
                   "object": np.array([object(), 1], dtype=object)}.items():
        npz(f"moe_layer_numbers_{tag}", moe_layer_numbers=v)
    ids = ids_base().astype(np.int64)
    for tag, arr in {"float": ids + 0.5, "negative": ids - 1, "2^40": np.where(ids == 0, 2**40, ids),
                     "uint64_max": np.where(ids == 0, np.iinfo(np.uint64).max, ids).astype(np.uint64),
                     "bool": ids > 0, "complex": ids.astype(complex), "strings": ids.astype("U2"),
                     "declared_huge": npy_header("<i8", (2, 10**12, 2), bytes(64))}.items():
        npz(f"expert_ids_{tag}", expert_ids=arr)
    for tag, meta in {"num_experts_str": {"num_experts": "four"}, "num_experts_2^40": {"num_experts": 2**40},
                      "num_experts_frac": {"num_experts": 4.5}, "num_experts_neg": {"num_experts": -4},
                      "hidden_str": {"num_hidden_layers": "x"}, "hidden_list": {"num_hidden_layers": [4]},
                      "list": [1, 2], "deep": None}.items():
        npz(f"metadata_{tag}", metadata=np.array(deep_list() if meta is None else json.dumps(meta)))
    npz("seq_offsets_float", seq_offsets=np.array([0.0, 6.5, 12.0]))
    npz("gate_weights_complex", gate_weights=gate_base().astype(np.complex64))


def exflow_npy(b: Builder) -> None:
    top1 = ids_base()[:, :, 0].T.astype(np.int64)           # [T, L]

    def npy(name: str, content: bytes) -> None:
        p = b.path(name, ".npy")
        p.write_bytes(content)
        b.add(name, trace_runs(str(p)))

    for tag, arr in {"float": top1 + 0.5, "bool": top1 > 0, "complex": top1.astype(complex), "1d": top1[:, 0],
                     "3d": top1[:, :, None], "empty": top1[:0], "negative": top1 - 1,
                     "2^40": np.where(top1 == 0, 2**40, top1), "uint64_max": np.where(top1 == 0, np.iinfo(np.uint64).max, top1).astype(np.uint64),
                     "strings": top1.astype("U2"), "nan": np.full(top1.shape, NAN),
                     "object": np.array([[object()]], dtype=object)}.items():
        npy(f"npy_{tag}", npy_bytes(arr))
    npy("npy_truncated", npy_bytes(top1)[:100])
    npy("npy_declared_huge", npy_header("<i8", (10**12, 2), bytes(64)))
    npy("npy_header_garbage", b"\x93NUMPY\x01\x00\x08\x00garbage\n")
    npy("npy_version_9", b"\x93NUMPY\x09\x00" + npy_bytes(top1)[8:])


def layer_json(b: Builder) -> None:
    base = {str(l): ids_base()[i].tolist() for i, l in enumerate(MOE_LAYERS)}

    def js(name: str, text: str | bytes) -> None:
        p = b.path(name, ".json")
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        b.add(name, trace_runs(str(p)))

    def with_value(v: Any) -> str:
        obj = json.loads(json.dumps(base))
        obj["1"][3][1] = v
        return dump(obj)

    for tag, v in {"str": "1", "frac": 1.5, "true": True, "null": None, "nan": raw("NaN"), "inf": raw("Infinity"),
                   "neg_inf": raw("-Infinity"), "2^40": 2**40, "2^63": 2**63, "2^64": 2**64, "below_int64": -2**63 - 1,
                   "float_huge": 1e300, "neg": -1, "list": [0], "dict": {"a": 1}, "deep": raw(deep_list())}.items():
        js(f"id_{tag}", with_value(v))
    for tag, v in {"str": "abc", "int": 5, "null": None, "dict": {"a": 1}, "deep": raw(deep_list()),
                   "deep_obj": raw(deep_obj()), "3d": [[[0, 1]]] * T, "empty": [], "flat_mixed": [0, [1, 2]]}.items():
        obj = dict(base)
        obj["1"] = v
        js(f"layer_{tag}", dump(obj))
    for tag, key in {"word": "abc", "negative": "-1", "frac": "1.5", "huge": "9" * 30, "empty": "", "exp": "1e9",
                     "space": " 1 2 "}.items():
        obj = dict(base)
        obj[key] = obj.pop("3")
        js(f"key_{tag}", json.dumps(obj))
    short = dict(base)
    short["3"] = short["3"][:5]
    js("unequal_tokens", json.dumps(short))
    wide = dict(base)
    wide["3"] = [r + [0] for r in wide["3"]]
    js("unequal_topk", json.dumps(wide))
    for name, text in {"empty_object": "{}", "top_list": "[[0, 1]]", "top_string": '"abc"', "top_number": "5",
                       "empty_file": "", "whitespace": "  \n ", "truncated": json.dumps(base)[:40],
                       "deep_top": deep_list(), "deep_top_obj": deep_obj(), "empty_layers": '{"1": [], "3": []}'}.items():
        js(name, text)
    js("invalid_utf8", b'{"1": [[0, 1]], "3": [[0, 1]]}\xff\xfe')
    js("nul_bytes", b'{"1": [[0, \x001]]}')


def token_jsonl(b: Builder) -> None:
    ids = ids_base()
    recs = [{"layer": l, "token_idx": t % 6, "request_id": f"r{t // 6}", "experts": ids[i, t].tolist(),
             "gating_probs": [0.5, 0.5]} for i, l in enumerate(MOE_LAYERS) for t in range(T)]

    def jl(name: str, records: list[Any], lines: list[str] | None = None) -> None:
        p = b.path(name, ".jsonl")
        p.write_text("\n".join(lines if lines is not None else [dump(r) for r in records]) + "\n")
        b.add(name, trace_runs(str(p)))

    def field_set(key: str, v: Any, every: bool = False) -> list[dict]:
        out = [dict(r) for r in recs]
        for r in (out if every else out[3:4]):
            r[key] = v
        return out

    ints = {"str": "two", "frac": 1.5, "neg": -1, "2^63": 2**63, "2^64": 2**64, "true": True, "null": None,
            "list": [1], "dict": {"a": 1}, "nan": raw("NaN"), "float_huge": 1e300}
    for tag, v in ints.items():
        jl(f"layer_{tag}", field_set("layer", v))
        jl(f"token_idx_{tag}", field_set("token_idx", v))
    near = [dict(r, token_idx=2**62 + r["token_idx"]) if r["request_id"] == "r0" else dict(r) for r in recs]
    jl("token_idx_near_2^62", near)
    for tag, v in {"str": "abc", "int": 5, "empty": [], "nested": [[0, 1]], "str_item": [0, "1"], "frac": [0, 1.5],
                   "bool": [0, True], "null": [0, None], "2^40": [0, 2**40], "neg": [0, -1], "2^64": [0, 2**64],
                   "deep": raw(deep_list()), "nan": [0, raw("NaN")]}.items():
        jl(f"experts_{tag}", field_set("experts", v))
    for tag, v in {"str": "abc", "short": [0.5], "str_item": [0.5, "x"], "nan": [raw("NaN"), 0.5],
                   "inf": [raw("Infinity"), 0.5], "nested": [[0.5, 0.5]], "int": 5, "huge": [1e400, 0.5],
                   "dict": {"a": 1}}.items():
        jl(f"gating_probs_{tag}", field_set("gating_probs", v))
    jl("request_id_deep", field_set("request_id", raw(deep_list())))
    jl("line_deep", [], [dump(r) for r in recs[:3]] + [deep_list()])
    jl("line_deep_obj", [], [dump(r) for r in recs[:3]] + [deep_obj()])
    jl("line_not_object", [], [dump(r) for r in recs[:3]] + ["[1, 2]"])
    jl("line_truncated", [], [dump(r) for r in recs[:-1]] + [dump(recs[-1])[:20]])
    jl("duplicate_record", recs + [recs[0]])
    jl("missing_layer", recs[:-1])
    p = b.path("invalid_utf8", ".jsonl")
    p.write_bytes(json.dumps(recs[0]).encode() + b"\n\xff\xfe\n")
    b.add(p.stem, trace_runs(str(p)))


def megatron_jsonl(b: Builder) -> None:
    ids = ids_base()
    recs = [{"rank": 0, "step": s, "block": "decoder", "layer": l, "num_tokens": 6, "topk": K,
             "top_indices": ids[i, 6 * s:6 * s + 6].tolist()} for s in range(2) for i, l in enumerate(MOE_LAYERS)]

    def mg(name: str, key: str, v: Any) -> None:
        out = [dict(r) for r in recs]
        out[1][key] = v
        p = b.path(name, ".jsonl")
        p.write_text("\n".join(dump(r) for r in out) + "\n")
        b.add(name, trace_runs(str(p)))

    for key in ("num_tokens", "topk"):
        for tag, v in {"str": "six", "neg": -1, "zero": 0, "frac": 6.5, "2^40": 2**40, "list": [6], "true": True,
                       "nan": raw("NaN")}.items():
            mg(f"{key}_{tag}", key, v)
    for tag, v in {"str": "one", "frac": 1.5, "neg": -1, "2^64": 2**64}.items():
        mg(f"layer_{tag}", "layer", v)
    for tag, v in {"str": "abc", "str_item": [[0, "1"]] * 6, "frac": [[0, 1.5]] * 6, "neg": [[0, -1]] * 6,
                   "2^40": [[0, 2**40]] * 6, "deep": raw(deep_list()), "count": [[0, 1]] * 5, "dict": {"a": 1}}.items():
        mg(f"top_indices_{tag}", "top_indices", v)


def routed_jsonl(b: Builder) -> None:
    H = HIDDEN
    full = np.full((T, H, K), -1, np.int32)
    full[:, MOE_LAYERS] = ids_base().transpose(1, 0, 2)
    payload = base64.b64encode(full[:6].astype("<i4").tobytes()).decode()

    def rt(name: str, rec: dict) -> None:
        p = b.path(name, ".jsonl")
        good = {"routed_experts": payload, "num_hidden_layers": H, "top_k": K}
        p.write_text(dump(good) + "\n" + dump(rec) + "\n")
        b.add(name, trace_runs(str(p)))

    for key in ("num_hidden_layers", "top_k"):
        for tag, v in {"str": "four", "zero": 0, "neg": -1, "2^40": 2**40, "frac": 4.5, "list": [4], "true": True,
                       "nan": raw("NaN")}.items():
            rt(f"{key}_{tag}", {"routed_experts": payload, "num_hidden_layers": H, "top_k": K, key: v})
    for tag, v in {"not_base64": "!!!!", "odd_bytes": base64.b64encode(b"\x01\x02\x03").decode(),
                   "npy_float": base64.b64encode(npy_bytes(full[:6].astype(np.float32))).decode(),
                   "npy_complex": base64.b64encode(npy_bytes(full[:6].astype(np.complex64))).decode(),
                   "npy_2d": base64.b64encode(npy_bytes(full[:6, 0])).decode(),
                   "npy_huge": base64.b64encode(npy_header("<i4", (10**11, 4, 2), bytes(32))).decode(),
                   "npy_object": base64.b64encode(npy_bytes(np.array([object()], dtype=object))).decode(),
                   "list_frac": [[[0.5, 1]] * H] * 2, "list_str": [[["a", 1]] * H] * 2, "deep": raw(deep_list()),
                   "int": 5, "list_2d": [[0, 1]], "2^40": [[[2**40, 1]] * H] * 2}.items():
        rt(f"routed_{tag}", {"routed_experts": v, "num_hidden_layers": H, "top_k": K})
    rt("other_shape", {"routed_experts": base64.b64encode(full[:6, :, :1].astype("<i4").tobytes()).decode(),
                       "num_hidden_layers": H, "top_k": 1})


def counts_npz(b: Builder) -> None:
    load = np.bincount(ids_base()[0].ravel(), minlength=E)[None].repeat(L, 0).astype(np.int64)
    trans = np.ones((L - 1, E, E), np.int64)

    def cn(name: str, **arrays) -> None:
        members = {"load": load, "trans": trans, "top_k": np.array(K), "num_tokens": np.array(T),
                   "moe_layers": np.array(MOE_LAYERS)}
        for k, v in arrays.items():
            if v is _DROP:
                members.pop(k)
            else:
                members[k] = v
        b.add(name, trace_runs(str(write_zip(b.path(name, ".npz"), members)), aggregate=True))

    for tag, v in {"array": np.array([2, 2]), "str": np.array("two"), "zero": np.array(0), "neg": np.array(-1),
                   "frac": np.array(2.5), "2^40": np.array(2**40), "nan": np.array(NAN), "complex": np.array(2j),
                   "bool": np.array(True), "over_E": np.array(9)}.items():
        cn(f"top_k_{tag}", top_k=v)
    for tag, v in {"str": np.array("x"), "neg": np.array(-5), "frac": np.array(1.5), "array": np.array([12, 12]),
                   "nan": np.array(NAN), "2^70": np.array(2.0**70), "too_few": np.array(5)}.items():
        cn(f"num_tokens_{tag}", num_tokens=v)
    for tag, v in {"nan": np.where(load > 0, NAN, 0.0), "inf": np.full(load.shape, INF), "neg": -load,
                   "frac": load + 0.5, "complex": load.astype(complex), "bool": load > 0, "str": load.astype("U3"),
                   "1d": load[0], "3d": load[None], "empty": load[:, :0],
                   "declared_huge": npy_header("<i8", (2, 10**11), bytes(64))}.items():
        cn(f"load_{tag}", load=v)
    for tag, v in {"shape": trans[:, :2], "nan": np.full(trans.shape, NAN), "neg": -trans, "complex": trans.astype(complex),
                   "declared_huge": npy_header("<i8", (1, 10**6, 10**6), bytes(64))}.items():
        cn(f"trans_{tag}", trans=v)
    for tag, v in {"str": np.array(["a", "b"]), "frac": np.array([0.5, 1.0]), "too_many": np.array([1, 2, 3]),
                   "decreasing": np.array([3, 1]), "2d": np.array([[1, 3]])}.items():
        cn(f"moe_layers_{tag}", moe_layers=v)


def profile_npz(b: Builder) -> None:
    load = np.full((L, E), 6, np.int64)
    trans = np.full((L - 1, E, E), 3, np.int64)

    def meta(**override) -> str:
        m = {"format": "moe-place/profile@1", "num_tokens": T, "top_k": K, "moe_layers": MOE_LAYERS,
             "num_hidden_layers": HIDDEN, "model": "m", "source": "s", "extra": {}}
        m.update(override)
        return dump({k: v for k, v in m.items() if v is not _DROP})

    def pf(name: str, metadata: str | None = None, **arrays) -> None:
        members = {"load": load, "trans": trans, "metadata": np.array(metadata or meta())}
        for k, v in arrays.items():
            if v is _DROP:
                members.pop(k)
            else:
                members[k] = v
        b.add(name, trace_runs(str(write_zip(b.path(name, ".npz"), members, compress=True)), aggregate=True))

    for tag, v in {"str": "many", "neg": -1, "frac": 1.5, "list": [12], "nan": raw("NaN"), "null": None, "2^70": 2**70,
                   "missing": _DROP}.items():
        pf(f"num_tokens_{tag}", meta(num_tokens=v))
    for tag, v in {"zero": 0, "neg": -1, "str": "two", "list": [2], "frac": 2.5, "2^40": 2**40, "over_E": 9,
                   "missing": _DROP}.items():
        pf(f"top_k_{tag}", meta(top_k=v))
    for tag, v in {"digits_str": "13", "short": [1], "decreasing": [3, 1], "strs": ["a", "b"], "scalar": 5}.items():
        pf(f"moe_layers_{tag}", meta(moe_layers=v))
    for tag, v in {"str": "x", "neg": -1, "small": 2}.items():
        pf(f"num_hidden_layers_{tag}", meta(num_hidden_layers=v))
    pf("extra_str", meta(extra="abc"))
    pf("metadata_deep", deep_list())
    for tag, v in {"nan": np.full(load.shape, NAN), "neg": -load, "complex": load.astype(complex), "str": load.astype("U2"),
                   "1d": load[0], "declared_huge": npy_header("<i8", (2, 10**11), bytes(64))}.items():
        pf(f"load_{tag}", **{"load": v})
    pf("trans_shape", trans=trans[:, :3])
    pf("coact_shape", coact=np.ones((L, E, 3), np.int64))
    pf("trans_declared_huge", trans=npy_header("<i8", (1, 10**6, 10**6), bytes(64)))


def olmoe_npz(b: Builder) -> None:
    topk = np.full((3, E), 6, np.int64)
    top1 = np.full((3, E), 3, np.int64)
    cross = np.ones((2, E, E), np.int64)

    def om(name: str, extra: list[str] | None = None, **arrays) -> None:
        members = {"m__d__topk_counts": topk, "m__d__top1_counts": top1, "m__d__crosslayer_top1": cross,
                   "layers_of_counts": np.array([0, 7, 15])}
        members.update({k: v for k, v in arrays.items() if v is not _DROP})
        for k, v in arrays.items():
            if v is _DROP:
                members.pop(k)
        b.add(name, trace_runs(str(write_zip(b.path(name, ".npz"), members)), extra, aggregate=True))

    for tag, v in {"frac": np.array([0.5, 7, 15]), "str": np.array(["a", "b", "c"]), "neg": np.array([-1, 7, 15]),
                   "decreasing": np.array([15, 7, 0]), "2d": np.array([[0, 7, 15]]), "few": np.array([0, 7])}.items():
        om(f"layers_of_counts_{tag}", layers_of_counts=v)
    for tag, v in {"nan": np.full(topk.shape, NAN), "neg": -topk, "1d": topk[0], "complex": topk.astype(complex)}.items():
        om(f"topk_counts_{tag}", m__d__topk_counts=v)
    om("top1_zero", m__d__top1_counts=np.zeros_like(top1))
    om("top1_inconsistent", m__d__top1_counts=top1 + 1)
    om("crosslayer_shape", m__d__crosslayer_top1=cross[:, :2])
    om("crosslayer_pairs_str", layer_pairs_of_crosslayer=np.array([["a", "b"], ["c", "d"]]))
    om("no_top1_no_topk_option", m__d__top1_counts=_DROP)
    om("top_k_option_zero", ["--top-k", "0"])


def fiddler_npz(b: Builder) -> None:
    counts = np.full((1, 2, L, E), 5, np.int64)

    def fd(name: str, key: str = "mix__all", **arrays) -> None:
        members = {"counts": counts, "models": np.array(["mix"]), "subjects": np.array(["a", "b"])}
        members.update(arrays)
        b.add(name, trace_runs(str(write_zip(b.path(name, ".npz"), members)), ["--key", key], aggregate=True))

    for tag, v in {"3d": counts[0], "nan": np.full(counts.shape, NAN), "neg": -counts, "frac": counts + 0.5,
                   "complex": counts.astype(complex), "declared_huge": npy_header("<i8", (1, 2, 10**6, 10**6), bytes(64))}.items():
        fd(f"counts_{tag}", counts=v)
    fd("models_mismatch", models=np.array(["a", "b", "c"]))
    fd("models_numeric", models=np.array([1.5]))
    for tag, key in {"index_out": "0__99", "negative": "-1__0", "unknown": "a__b", "empty": "__", "no_sep": "mix",
                     "huge_index": "99999999999999999999__0"}.items():
        fd(f"key_{tag}", key=key)


def sglang_pt(b: Builder) -> None:
    try:
        import torch
    except ImportError:
        return
    H = HIDDEN
    phys = np.full((H, T, 8), -1, np.int32)
    phys[MOE_LAYERS, :, :K] = ids_base()
    p2l = torch.arange(E).repeat(H, 1)

    def pt(name: str, obj: Any, extra: list[str] | None = None) -> None:
        p = b.path(name, ".pt")
        torch.save(obj, p)
        b.add(name, trace_runs(str(p), extra))

    def rec(**over) -> dict:
        r = {"topk_ids_of_layer": torch.from_numpy(phys), "extend_seq_lens": [6, 6]}
        r.update(over)
        return r

    good = {"records": [rec()], "last_physical_to_logical_map": p2l}
    for tag, v in {"int": 5, "str": "abc", "dict": {"a": 1}, "tensor": torch.zeros(3)}.items():
        pt(f"records_{tag}", {**good, "records": v})
    for tag, v in {"float": torch.from_numpy(phys.astype(np.float32) + 0.5), "2d": torch.from_numpy(phys[0]),
                   "str": "abc", "list": [[1, 2]], "over_map": torch.from_numpy(np.where(phys >= 0, 99, phys))}.items():
        pt(f"topk_{tag}", {**good, "records": [rec(topk_ids_of_layer=v)]})
    for tag, v in {"1d": torch.arange(E), "float": p2l.float() + 0.5, "ids_out": p2l + 100, "str": "abc",
                   "negative": p2l - 5}.items():
        pt(f"map_{tag}", {**good, "last_physical_to_logical_map": v})
    for tag, v in {"str": ["a", "b"], "neg": [-6, 18], "int": 5, "nested": [[6], [6]]}.items():
        pt(f"extend_seq_lens_{tag}", {**good, "records": [rec(extend_seq_lens=v)]})
    for tag, v in {"str": "x", "2^40": 2**40, "neg": -3}.items():
        pt(f"num_logical_experts_{tag}", {**good, "num_logical_experts": v})
    for tag, v in {"float": torch.full((2, H, E), 0.5), "4d": torch.ones((1, 2, H, E), dtype=torch.int64),
                   "neg": -torch.ones((2, H, E), dtype=torch.int64), "str": "abc"}.items():
        pt(f"stat_{tag}", {"logical_count": v}, ["--top-k", "2"])
    pt("not_a_dict", [1, 2, 3])


def placement_json(b: Builder) -> None:
    def pj(name: str, text: str | bytes) -> None:
        p = b.path(name, ".json")
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        b.add(name, placement_runs(str(p), native=True))

    bad = {"str": "four", "frac": 4.5, "true": True, "neg": -1, "zero": 0, "2^40": 2**40, "list": [4], "null": None,
           "nan": raw("NaN"), "dict": {"a": 1}}
    for key in ("num_experts", "num_gpus"):
        for tag, v in bad.items():
            pj(f"{key}_{tag}", dump(placement_obj(**{key: v})))
    for tag, v in {"str": "x", "zero": 0, "neg": -1, "frac": 1.5, "three": 3, "list": [2]}.items():
        pj(f"gpus_per_node_{tag}", dump(placement_obj(gpus_per_node=v)))
    for tag, v in {"str": "x", "wrong": 3, "frac": 2.5}.items():
        pj(f"slots_per_gpu_{tag}", dump(placement_obj(slots_per_gpu=v)))
    for tag, v in {"str": "x", "wrong": 5}.items():
        pj(f"num_layers_{tag}", dump(placement_obj(num_layers=v)))
    rows = [[0, 1, 2, 3], [2, 0, 3, 1]]
    for tag, v in {"str": "abc", "empty": [], "empty_rows": [[], []], "ragged": [[0, 1, 2, 3], [0, 1]],
                   "frac": [[0, 1.5, 2, 3], rows[1]], "strs": [["0", "1", "2", "3"], rows[1]],
                   "bools": [[True, False, True, False], rows[1]], "nulls": [[None] * 4, rows[1]],
                   "2^63": [[0, 1, 2, 2**63], rows[1]], "2^64": [[0, 1, 2, 2**64], rows[1]], "neg": [[0, 1, 2, -1], rows[1]],
                   "deep": raw(deep_list()), "3d": [rows, rows], "flat": rows[0], "nan": [[0, 1, 2, raw("NaN")], rows[1]],
                   "missing_expert": [[0, 1, 2, 2], rows[1]], "dup_on_gpu": [[0, 0, 2, 3], rows[1]]}.items():
        pj(f"phy2log_{tag}", dump(placement_obj(phy2log=v)))
    for tag, v in {"str": "abc", "list": [1], "int": 5}.items():
        pj(f"report_{tag}", dump(placement_obj(report=v)))
    pj("format_missing", dump(placement_obj(format=_DROP)))
    pj("format_wrong", dump(placement_obj(format="moe-place/placement@9")))
    pj("phy2log_missing", dump(placement_obj(phy2log=_DROP)))
    for name, text in {"top_list": "[1, 2]", "truncated": json.dumps(placement_obj())[:50], "empty": "",
                       "deep": deep_list(), "deep_obj": deep_obj(), "not_json": "{format: 1}"}.items():
        pj(name, text)
    pj("invalid_utf8", json.dumps(placement_obj()).encode()[:-1] + b"\xff}")


def sglang_map(b: Builder) -> None:
    read = ["--num-experts", str(E), "--gpus", str(G)]
    rows = [[p % E for p in range(E)] for _ in range(HIDDEN)]

    def sg(name: str, text: str, opts: list[str] | None = None) -> None:
        p = b.path(name, ".json")
        p.write_text(text)
        b.add(name, placement_runs(str(p), read if opts is None else opts))

    for tag, v in {"str": "abc", "frac": [[0, 1.5, 2, 3]] * HIDDEN, "strs": [["0", "1", "2", "3"]] * HIDDEN,
                   "bools": [[True, False, True, False]] * HIDDEN, "deep": raw(deep_list()), "2^64": [[0, 1, 2, 2**64]] * HIDDEN,
                   "neg": [[0, 1, 2, -1]] * HIDDEN, "ragged": [[0, 1, 2, 3], [0, 1]], "empty": [], "3d": [rows],
                   "nan": [[0, 1, 2, raw("NaN")]] * HIDDEN, "missing_expert": [[0, 1, 2, 2]] * HIDDEN, "odd_slots": [[0, 1, 2]] * HIDDEN}.items():
        sg(f"map_{tag}", dump({"physical_to_logical_map": v}))
    good = json.dumps({"physical_to_logical_map": rows})
    sg("extra_key", json.dumps({"physical_to_logical_map": rows, "other": 1}))
    for tag, opts in {"experts_zero": ["--num-experts", "0", "--gpus", "2"], "experts_str": ["--num-experts", "x", "--gpus", "2"],
                      "experts_neg": ["--num-experts", "-1", "--gpus", "2"], "experts_2^40": ["--num-experts", str(2**40), "--gpus", "2"],
                      "gpus_zero": ["--num-experts", "4", "--gpus", "0"], "gpus_three": ["--num-experts", "4", "--gpus", "3"],
                      "gpus_neg": ["--num-experts", "4", "--gpus", "-2"], "gpus_2^40": ["--num-experts", "4", "--gpus", str(2**40)],
                      "moe_layers_huge": [*read, "--moe-layers", "0-1000000000"], "moe_layers_out": [*read, "--moe-layers", "7"],
                      "moe_layers_word": [*read, "--moe-layers", "a-b"], "moe_layers_neg": [*read, "--moe-layers", "-3"],
                      "gpus_per_node_three": [*read, "--gpus-per-node", "3"], "gpus_per_node_zero": [*read, "--gpus-per-node", "0"],
                      "missing_options": []}.items():
        sg(f"option_{tag}", good, opts)


def vllm_ascend(b: Builder) -> None:
    def layer(l: int, **over) -> dict:
        d = {"layer_id": l, "device_count": G,
             "device_list": [{"device_id": g, "device_expert": [2 * g, 2 * g + 1]} for g in range(G)]}
        d.update(over)
        return d

    def va(name: str, obj: Any) -> None:
        p = b.path(name, ".json")
        p.write_text(dump(obj))
        b.add(name, placement_runs(str(p)))

    base = {"moe_layer_count": L, "layer_list": [layer(0), layer(1)]}
    for tag, v in {"str": "two", "wrong": 3, "neg": -1, "frac": 2.5}.items():
        va(f"moe_layer_count_{tag}", {**base, "moe_layer_count": v})
    for tag, v in {"str": "abc", "empty": [], "ints": [5], "dict": {"a": 1}}.items():
        va(f"layer_list_{tag}", {**base, "layer_list": v})
    for tag, v in {"str": "two", "zero": 0, "neg": -1, "2^40": 2**40, "frac": 1.5, "true": True}.items():
        va(f"device_count_{tag}", {**base, "layer_list": [layer(0, device_count=v), layer(1, device_count=v)]})
    for tag, v in {"str": "x", "empty": [], "short": [{"device_id": 0, "device_expert": [0, 1]}]}.items():
        va(f"device_list_{tag}", {**base, "layer_list": [layer(0, device_list=v), layer(1)]})
    for tag, v in {"str": "abc", "frac": [0, 1.5], "strs": [0, "1"], "bools": [True, False], "ragged": [0, 1, 2],
                   "2^64": [0, 2**64], "neg": [0, -1], "deep": raw(deep_list()), "nan": [0, raw("NaN")]}.items():
        dl = [{"device_id": 0, "device_expert": v}, {"device_id": 1, "device_expert": [2, 3]}]
        va(f"device_expert_{tag}", {**base, "layer_list": [layer(0, device_list=dl), layer(1)]})


def csv_files(b: Builder) -> None:
    rows = [(l, p // 2, p, e) for l, r in enumerate([[0, 1, 2, 3], [2, 0, 3, 1]]) for p, e in enumerate(r)]

    def cs(name: str, text: str | bytes) -> None:
        p = b.path(name, ".csv")
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        b.add(name, placement_runs(str(p)))

    def with_row(row: tuple) -> str:
        return "layer,gpu,slot,expert\n" + "\n".join(",".join(map(str, r)) for r in rows + [row]) + "\n"

    for tag, row in {"slot_10^12": (0, 0, 10**12, 0), "layer_10^12": (10**12, 0, 0, 0), "gpu_10^12": (0, 10**12, 0, 0),
                     "expert_10^12": (0, 0, 4, 10**12), "expert_2^70": (0, 0, 4, 2**70), "negative": (0, 0, -1, 0),
                     "word": (0, 0, "x", 0), "frac": (0, 0, 1.5, 0), "short": (0, 0, 4), "long": (0, 0, 4, 0, 9),
                     "duplicate": rows[0], "wrong_gpu": (2, 1, 0, 0), "nan": (0, 0, "nan", 0)}.items():
        cs(f"row_{tag}", with_row(row))
    head = "layer,gpu,slot,expert\n"
    cs("missing_row", head + "\n".join(",".join(map(str, r)) for r in rows[:-1]) + "\n")
    for name, text in {"empty": "", "header_only": head, "header_wrong": "a,b,c,d\n0,0,0,0\n", "binary": os.urandom(256),
                       "wide_row": head + ",".join(["1"] * 100000) + "\n", "invalid_utf8": head.encode() + b"\xff,\xfe\n"}.items():
        cs(name, text)


def eplb_files(b: Builder) -> None:
    phy = np.array([[0, 1, 2, 3], [2, 0, 3, 1]], np.int64)
    logcnt = np.ones((L, E), np.int64)

    def ep(name: str, **arrays) -> None:
        members = {"phy2log": phy, "logcnt": logcnt}
        for k, v in arrays.items():
            if v is _DROP:
                members.pop(k)
            else:
                members[k] = v
        b.add(name, placement_runs(str(write_zip(b.path(name, ".npz"), members)), ["--gpus", str(G)]))

    for tag, v in {"frac": phy + 0.5, "nan": np.full(phy.shape, NAN), "complex": phy.astype(complex), "str": phy.astype("U2"),
                   "bool": phy > 0, "1d": phy[0], "3d": phy[None], "2^40": np.where(phy == 0, 2**40, phy),
                   "uint64_max": np.where(phy == 0, np.iinfo(np.uint64).max, phy).astype(np.uint64), "neg": phy - 1,
                   "empty": phy[:, :0], "declared_huge": npy_header("<i8", (2, 10**12), bytes(64)),
                   "pickle": np.array([object()], dtype=object)}.items():
        ep(f"phy2log_{tag}", phy2log=v)
    for tag, v in {"1d": logcnt[0], "3d": logcnt[None], "declared_huge": npy_header("<i8", (2, 10**12), bytes(64)),
                   "wide": np.ones((L, 10**6), np.int8)}.items():
        ep(f"logcnt_{tag}", logcnt=v)
    ep("no_phy2log", phy2log=_DROP)
    try:
        import torch
    except ImportError:
        return
    for name, obj in {"pt_list": [1, 2], "pt_float": {"phy2log": torch.tensor(phy, dtype=torch.float32) + 0.5},
                      "pt_nested": {"phy2log": [[0, 1], [2]]}, "pt_str": {"phy2log": "abc"}}.items():
        p = b.path(name, ".pt")
        torch.save(obj, p)
        b.add(name, placement_runs(str(p), ["--gpus", str(G)]))


def topology_files(b: Builder) -> None:
    bw = np.full((G, G), 1e11)

    def tp(name: str, content: bytes, suffix: str) -> None:
        p = b.path(name, suffix)
        p.write_bytes(content)
        b.add(name, topology_runs(str(p)))

    for tag, arr in {"complex": bw.astype(complex) + 1j, "object": np.array([[object()]], dtype=object), "1d": bw[0],
                     "3d": bw[None], "non_square": np.full((2, 3), 1e11), "nan": np.full((G, G), NAN), "inf": np.full((G, G), INF),
                     "zero": np.zeros((G, G)), "neg": -bw, "str": bw.astype("U5"), "bool": bw > 0, "empty": np.zeros((0, 0)),
                     "wrong_g": np.full((3, 3), 1e11)}.items():
        tp(f"npy_{tag}", npy_bytes(arr), ".npy")
    tp("npy_declared_huge", npy_header("<f8", (10**6, 10**6), bytes(64)), ".npy")
    tp("npy_truncated", npy_bytes(bw)[:90], ".npy")
    for tag, text in {"word": "1e11 abc\n1e11 1e11\n", "ragged": "1e11 1e11\n1e11\n", "nan": "nan nan\nnan nan\n",
                      "inf": "inf inf\ninf inf\n", "empty": "", "one_row": "1e11 1e11\n", "neg": "-1 -1\n-1 -1\n"}.items():
        tp(f"txt_{tag}", text.encode(), ".txt")
    tp("txt_binary", os.urandom(300), ".txt")
    tp("txt_huge_row", (" ".join(["1e11"] * 200000) + "\n").encode(), ".txt")


def prompt_files(b: Builder) -> None:
    cfg = "num_experts=4,num_hidden_layers=2"

    def pr(name: str, content: bytes, suffix: str = ".txt", from_config: str = cfg, extra: list[str] | None = None) -> None:
        p = b.path(name, suffix)
        p.write_bytes(content)
        b.add(name, {"collect": ["collect", "olmoe", "--from-config", from_config, "--prompts", str(p),
                                 "-o", "{out}/t.npz", "--device", "cpu", "--max-tokens", "64", *(extra or [])]})

    pr("binary", os.urandom(400))
    pr("invalid_utf8", b"hello \xff\xfe world\n")
    pr("empty", b"")
    pr("newlines", b"\n\n\n")
    pr("jsonl_no_field", b'{"prompt": "hi"}\n', ".jsonl")
    pr("jsonl_number", b'{"text": 5}\n', ".jsonl")
    pr("jsonl_deep", deep_list().encode() + b"\n", ".jsonl")
    pr("jsonl_deep_obj", deep_obj().encode() + b"\n", ".jsonl")
    pr("jsonl_not_object", b"[1, 2]\n", ".jsonl")
    for tag, fc in {"experts_word": "num_experts=abc", "experts_zero": "num_experts=0", "experts_neg": "num_experts=-1",
                    "experts_huge": "num_experts=100000000", "hidden_huge": "hidden_size=1000000000",
                    "layers_huge": "num_hidden_layers=1000000000", "no_equals": "foo", "vocab_zero": "vocab_size=0",
                    "deep_value": "num_experts=" + deep_list(3000)}.items():
        pr(f"config_{tag}", b"hello world\n", from_config=fc)
    for tag, opt in {"max_tokens_zero": ["--max-tokens", "0"], "batch_zero": ["--batch-size", "0"],
                     "batch_neg": ["--batch-size", "-1"], "seq_len_zero": ["--seq-len", "0"]}.items():
        pr(f"option_{tag}", b"hello world\n", extra=opt)


OPTION_CASES: dict[str, list[str]] = {}


def option_values(b: Builder) -> None:
    t, p = "{base}/trace.npz", "{base}/placement.json"
    solve = ["solve", t, "--gpus", "2", "-o", "{out}/p.json"]
    plan = ["plan", t, "--gpus", "2", "--solvers", "contiguous", "--time-limit", "1"]
    validate = ["validate", t, p, "--tokens", "16", "--iters", "1", "--warmup", "0", "--hidden-size", "8", "--ffn-size", "8"]
    cases = {
        **{f"solve_time_limit_{v}": [*solve, "--time-limit", v] for v in ("0", "-5", "nan", "inf", "")},
        **{f"plan_time_limit_{v}": [*plan, "--time-limit", v] for v in ("0", "-5", "nan")},
        **{f"solve_threads_{v}": [*solve, "--threads", v] for v in ("0", "-1")},
        "plan_max_imbalance_0.5": [*plan, "--max-imbalance", "0.5"], "solve_max_imbalance_nan": [*solve, "--max-imbalance", "nan"],
        "solve_load_weight_nan": [*solve, "--solver", "joint", "--param", "load_weight=nan"],
        "solve_param_unknown": [*solve, "--param", "nosuch=1"], "solve_kicks_neg": [*solve, "--solver", "partition", "--param", "kicks=-3"],
        "solve_backend_unknown": [*solve, "--backend", "nosuch"], "solve_solver_unknown": [*solve, "--solver", "nosuch"],
        "solve_seed_word": [*solve, "--seed", "x"],
        **{f"solve_gpus_{v}": ["solve", t, "--gpus", v, "-o", "{out}/p.json"] for v in ("0", "-1", "100000", str(2**40), "3")},
        **{f"solve_replicas_{v}": [*solve, "--replicas", v] for v in ("-1", "abc", "nanx", "infx", "1e30x", str(10**12))},
        **{f"solve_holdout_{v}": [*solve, "--holdout", v] for v in ("1.0", "-0.1", "nan")},
        **{f"solve_inter_node_cost_{v}": [*solve, "--inter-node-cost", v] for v in ("nan", "-1", "inf")},
        "solve_gpus_per_node_0": [*solve, "--gpus-per-node", "0"],
        **{f"compare_gpus_{v}": ["compare", t, "contiguous", "--gpus", v] for v in ("100000", "0", str(2**40))},
        **{f"plan_gpus_{v}": ["plan", t, "--gpus", v, "--solvers", "contiguous"] for v in ("100000", "0,2", "a")},
        **{f"plan_expert_params_{v}": [*plan, "--expert-params", v] for v in ("nan", "0", "-1")},
        "plan_expert_bytes_word": [*plan, "--expert-bytes", "lots"], "plan_gpu_memory_zero": [*plan, "--gpu-memory", "0"],
        "plan_bandwidth_zero": [*plan, "--bandwidth", "intra=0"], "plan_tokens_per_step_zero": [*plan, "--tokens-per-step", "0"],
        "plan_replicas_neg": [*plan, "--replicas", "-1"], "plan_solvers_empty": ["plan", t, "--gpus", "2", "--solvers", ","],
        "evaluate_hidden_size_zero": ["evaluate", t, p, "--hidden-size", "0"], "evaluate_dtype_bytes_zero": ["evaluate", t, p, "--dtype-bytes", "0"],
        "evaluate_holdout_nan": ["evaluate", t, p, "--split", "test", "--holdout", "nan"],
        **{f"validate_timeout_{v}": [*validate, "--timeout", v] for v in ("nan", "inf", "0", "-1")},
        **{f"validate_{o}_{v}": [*validate, f"--{o}", v] for o, v in (("tokens", "-1"), ("iters", "0"), ("world-size", "0"),
                                                                       ("hidden-size", "0"), ("seed", "-1"), ("warmup", "-1"))},
        "validate_world_size_wrong": [*validate, "--world-size", "3"],
        "inspect_gpus_0": ["inspect", t, "--gpus", "0"],
        "inspect_chunk_zero": ["inspect", t, "--chunk-tokens", "0"],
        **{f"import_num_experts_{v}": ["import", t, "-o", "{out}/t.npz", "--num-experts", v] for v in ("0", str(2**31), str(2**40), "2")},
        **{f"import_top_k_{v}": ["import", t, "-o", "{out}/t.npz", "--top-k", v] for v in ("0", "-1")},
        **{f"profile_num_experts_{v}": ["profile", t, "-o", "{out}/p.npz", "--num-experts", v] for v in (str(2**31), str(2**20))},
        **{f"export_moe_layers_{v}": ["export", p, "--format", "sglang", "-o", "{out}/l.json", "--moe-layers", v]
           for v in ("0-1000000000", "1234", "a", "5,5", "-2")},
        **{f"export_num_hidden_layers_{v}": ["export", p, "--format", "sglang", "-o", "{out}/l.json", "--num-hidden-layers", v]
           for v in ("-1", "1", str(10**12))},
        "export_format_unknown": ["export", p, "--format", "nosuch", "-o", "{out}/l.json"],
        **{f"import_placement_{o}_{v}": ["import-placement", p, "-o", "{out}/q.json", f"--{o}", v]
           for o, v in (("num-experts", "0"), ("num-experts", "-1"), ("gpus", "0"), ("gpus-per-node", "0"), ("expert-bytes", "nan"))},
        "import_placement_expert_bytes_nan_migrate": ["import-placement", p, "--migrate-to", p, "--expert-bytes", "nan"],
        "import_placement_expert_bytes_inf": ["import-placement", p, "--migrate-to", p, "--expert-bytes", "inf"],
    }
    for name, argv in cases.items():
        b.add(name, {argv[0]: argv})


def output_paths(b: Builder) -> None:
    """Outputs that are the command's input (or a link to it), directories, devices, FIFOs, or in
    places nothing can be written."""
    base = b.root / "_base"
    t, p = str(base / "trace.npz"), str(base / "placement.json")
    writers: dict[str, tuple[Callable[[str], list[str]], str]] = {
        "solve": (lambda o: ["solve", t, "--gpus", "2", "--time-limit", "2", "-o", o], "trace"),
        "profile": (lambda o: ["profile", t, "-o", o], "trace"),
        "import": (lambda o: ["import", t, "-o", o], "trace"),
        "import-placement": (lambda o: ["import-placement", p, "-o", o], "placement"),
        "export": (lambda o: ["export", p, "--format", "csv", "-o", o], "placement"),
        "plan-csv": (lambda o: ["plan", t, "--gpus", "2", "--solvers", "contiguous", "--time-limit", "1", "--csv", o], "trace"),
        "plan-plot": (lambda o: ["plan", t, "--gpus", "2", "--solvers", "contiguous", "--time-limit", "1", "--plot", o], "trace"),
        "inspect-plots": (lambda o: ["inspect", t, "--plots", o], "trace"),
    }
    f = b.folder
    for cmd, (argv, what) in writers.items():
        inputs = {"trace": (t, f / "link_to_trace.npz", f / "hard_trace.npz"),
                  "placement": (p, f / "link_to_placement.json", f / "hard_placement.json")}[what]
        targets = {"the_input": inputs[0], "symlink_to_input": str(inputs[1]), "hardlink_to_input": str(inputs[2]),
                   "a_directory": str(f / "a_dir"), "a_fifo": str(f / "fifo"), "a_char_device": str(f / "chardev"),
                   "in_proc": "/proc/moe-place-x.json", "in_sys": "/sys/moe-place-x.json", "empty": "",
                   "under_a_file": str(f / "a_file" / "x.json"), "missing_directory": str(f / "no" / "such" / "x.json"),
                   "name_too_long": str(f / ("x" * 300))}
        for tag, target in targets.items():
            if cmd == "inspect-plots" and tag in ("a_directory", "missing_directory"):
                continue  # a folder is what --plots wants; a missing one it creates
            b.add(f"{cmd}__{tag}", {cmd.split("-")[0] if cmd.startswith(("plan", "inspect")) else cmd: argv(target)})


FIXTURES = ("link_to_trace.npz", "hard_trace.npz", "link_to_placement.json", "hard_placement.json", "fifo", "chardev",
            "a_dir", "a_file")


def output_fixtures(folder: Path, base: Path) -> None:
    """The special files the output items name (made again before every run: a run may replace them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in FIXTURES:
        q = folder / name
        if q.is_symlink() or (q.exists() and not q.is_dir()):
            q.unlink()
    (folder / "link_to_trace.npz").symlink_to(base / "trace.npz")
    os.link(base / "trace.npz", folder / "hard_trace.npz")
    (folder / "link_to_placement.json").symlink_to(base / "placement.json")
    os.link(base / "placement.json", folder / "hard_placement.json")
    os.mkfifo(folder / "fifo")
    try:
        os.mknod(folder / "chardev", 0o666 | 0o020000, os.makedev(1, 3))   # a copy of /dev/null
    except (PermissionError, OSError):
        (folder / "chardev").symlink_to("/dev/null")
    (folder / "a_dir").mkdir(exist_ok=True)
    (folder / "a_file").write_text("x")


KINDS: dict[str, Callable[[Builder], None]] = {
    "native-trace": native_trace, "foreign-npz": foreign_npz, "exflow-npy": exflow_npy, "layer-json": layer_json,
    "token-jsonl": token_jsonl, "megatron-jsonl": megatron_jsonl, "routed-jsonl": routed_jsonl, "counts-npz": counts_npz,
    "profile-npz": profile_npz, "olmoe-npz": olmoe_npz, "fiddler-npz": fiddler_npz, "sglang-pt": sglang_pt,
    "placement-json": placement_json, "sglang-map": sglang_map, "vllm-ascend": vllm_ascend, "csv": csv_files,
    "eplb": eplb_files, "topology": topology_files, "prompts": prompt_files, "options": option_values,
    "outputs": output_paths,
}


def write_base(root: Path) -> Path:
    """The valid inputs items refer to as ``{base}``: a native trace and its placement."""
    base = root / "_base"
    base.mkdir(parents=True, exist_ok=True)
    write_zip(base / "trace.npz", native_members())
    (base / "placement.json").write_text(json.dumps(placement_obj()))
    return base


def build(root: Path, kinds: list[str] | None = None) -> list[Item]:
    """Write the corpus under ``root`` (every kind, or ``kinds``) and return its items."""
    root = Path(root)
    base = write_base(root)
    items: list[Item] = []
    for kind, make in KINDS.items():
        if kinds is None or kind in kinds:
            b = Builder(root, kind)
            make(b)
            items += b.items
    output_fixtures(root / "outputs", base)
    for item in items:
        for argv in item.runs.values():
            argv[:] = [a.replace("{base}", str(base)) for a in argv]
    return items
