"""Valid files of every input kind, as editable structures, and the commands that read each (for
tests/robust/test_fuzz.py).

A :class:`Seed` holds a structure (``npz``: a dict of arrays, with ``metadata`` kept as its JSON
object; ``npy``: an array; ``json``: an object; ``jsonl``: a list of objects; ``csv`` / ``txt``:
rows of cells; ``pt``: a dict of tensors and lists) that the fuzz test mutates, :func:`write`
turns into the file's bytes, and the command lines that read it (``{src}`` the file, ``{out}``
the run's empty output folder, ``{base}`` the corpus's valid trace and placement). The shapes are
the corpus's (L=2 MoE layers [1, 3] of 4 decoder layers, T=12 tokens, top-2 of E=4 experts, G=2).
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from support import corpus
from support.corpus import E, HIDDEN, K, L, MOE_LAYERS, T

ANY_TRACE = "{src}"


@dataclass(frozen=True)
class Seed:
    kind: str
    form: str                       # npz, npy, json, jsonl, csv, txt, pt
    suffix: str
    make: Callable[[], Any]
    runs: dict[str, list[str]]
    compress: bool = False


class Deep:
    """A JSON value spliced in as ``depth`` nested lists (deeper than any parser should follow)."""

    def __init__(self, depth: int):
        self.depth = depth


def _json_text(obj: Any) -> str:
    deep: list[int] = []

    def default(o: Any) -> Any:
        if isinstance(o, Deep):
            deep.append(o.depth)
            return f"__deep{len(deep) - 1}__"
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(type(o).__name__)

    text = json.dumps(obj, allow_nan=True, default=default)
    for i, d in enumerate(deep):
        text = text.replace(f'"__deep{i}__"', "[" * d + "0" + "]" * d)
    return text


def write(seed: Seed, obj: Any) -> bytes:
    """The file's bytes for ``obj``, a (mutated) structure of ``seed.form``."""
    if seed.form == "json":
        return _json_text(obj).encode()
    if seed.form == "jsonl":
        return ("\n".join(_json_text(r) for r in obj) + "\n").encode()
    if seed.form in ("csv", "txt"):
        sep = "," if seed.form == "csv" else " "
        return ("\n".join(sep.join(str(c) for c in row) for row in obj) + "\n").encode()
    if seed.form == "npy":
        return obj if isinstance(obj, bytes) else corpus.npy_bytes(obj)
    if seed.form == "npz":
        members = {k: v if isinstance(v, (np.ndarray, bytes)) else corpus.meta_array(_json_text(v)) if k == "metadata"
                   else _as_array(v) for k, v in obj.items()}
        buf = io.BytesIO()
        import zipfile
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if seed.compress else zipfile.ZIP_STORED) as zf:
            for name, value in members.items():
                zf.writestr(f"{name}.npy", value if isinstance(value, bytes) else corpus.npy_bytes(value))
        return buf.getvalue()
    if seed.form == "pt":
        import torch
        buf = io.BytesIO()
        torch.save(_to_torch(obj), buf)
        return buf.getvalue()
    raise ValueError(seed.form)


def _as_array(value: Any) -> np.ndarray:
    if isinstance(value, Deep):
        return np.array(_json_text(value))
    try:
        return np.array(value)
    except (ValueError, TypeError, OverflowError):
        return np.array([value], dtype=object)


def _to_torch(obj: Any) -> Any:
    """numpy arrays back to tensors where torch has the dtype (others stay arrays: a pickled
    numpy array the reader must refuse)."""
    import torch
    if isinstance(obj, dict):
        return {k: _to_torch(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_torch(v) for v in obj]
    if isinstance(obj, np.ndarray) and obj.dtype.kind in "biufc" and obj.dtype != np.uint64:
        return torch.from_numpy(np.ascontiguousarray(obj, dtype=obj.dtype.newbyteorder("=")))
    return obj


# ------------------------------------------------------------------------------ the seeds
def _trace_runs(extra: list[str] | None = None) -> dict[str, list[str]]:
    return corpus.trace_runs(ANY_TRACE, extra)


def _native() -> dict:
    m = corpus.native_members(meta=None)
    m["metadata"] = corpus.trace_meta()
    return m


def _foreign() -> dict:
    return {"expert_ids": corpus.ids_base().astype(np.int64), "gate_weights": corpus.gate_base(),
            "seq_offsets": np.array([0, 6, T]), "moe_layer_numbers": np.array(MOE_LAYERS)}


def _layer_json() -> dict:
    return {str(l): corpus.ids_base()[i].tolist() for i, l in enumerate(MOE_LAYERS)}


def _token_jsonl() -> list:
    ids = corpus.ids_base()
    return [{"layer": l, "token_idx": t % 6, "request_id": f"r{t // 6}", "experts": ids[i, t].tolist(),
             "gating_probs": [0.5, 0.5]} for i, l in enumerate(MOE_LAYERS) for t in range(T)]


def _megatron() -> list:
    ids = corpus.ids_base()
    return [{"rank": 0, "step": s, "block": "decoder", "layer": l, "num_tokens": 6, "topk": K,
             "top_indices": ids[i, 6 * s:6 * s + 6].tolist()} for s in range(2) for i, l in enumerate(MOE_LAYERS)]


def _routed() -> list:
    full = np.full((T, HIDDEN, K), -1, np.int32)
    full[:, MOE_LAYERS] = corpus.ids_base().transpose(1, 0, 2)
    return [{"routed_experts": base64.b64encode(full[s:s + 6].astype("<i4").tobytes()).decode(),
             "num_hidden_layers": HIDDEN, "top_k": K} for s in (0, 6)]


def _counts() -> dict:
    load = np.bincount(corpus.ids_base()[0].ravel(), minlength=E)[None].repeat(L, 0).astype(np.int64)
    return {"load": load, "trans": np.ones((L - 1, E, E), np.int64), "top_k": np.array(K), "num_tokens": np.array(T),
            "moe_layers": np.array(MOE_LAYERS)}


def _profile() -> dict:
    return {"load": np.full((L, E), 6, np.int64), "trans": np.full((L - 1, E, E), 3, np.int64),
            "metadata": {"format": "moe-place/profile@1", "num_tokens": T, "top_k": K, "moe_layers": MOE_LAYERS,
                         "num_hidden_layers": HIDDEN, "model": "m", "source": "s", "extra": {}}}


def _olmoe() -> dict:
    return {"m__d__topk_counts": np.full((3, E), 6, np.int64), "m__d__top1_counts": np.full((3, E), 3, np.int64),
            "m__d__crosslayer_top1": np.ones((2, E, E), np.int64), "layers_of_counts": np.array([0, 7, 15])}


def _fiddler() -> dict:
    return {"counts": np.full((1, 2, L, E), 5, np.int64), "models": np.array(["mix"]), "subjects": np.array(["a", "b"])}


def _sglang_dump() -> dict:
    phys = np.full((HIDDEN, T, 8), -1, np.int32)
    phys[MOE_LAYERS, :, :K] = corpus.ids_base()
    return {"records": [{"topk_ids_of_layer": phys, "extend_seq_lens": [6, 6]}],
            "last_physical_to_logical_map": np.tile(np.arange(E), (HIDDEN, 1))}


def _placement() -> dict:
    return corpus.placement_obj()


def _sglang_map() -> dict:
    return {"physical_to_logical_map": [[p % E for p in range(E)] for _ in range(HIDDEN)]}


def _vllm_ascend() -> dict:
    return {"moe_layer_count": L, "layer_list": [
        {"layer_id": l, "device_count": 2,
         "device_list": [{"device_id": g, "device_expert": [2 * g, 2 * g + 1]} for g in range(2)]} for l in range(L)]}


def _csv() -> list:
    rows = [[l, p // 2, p, e] for l, r in enumerate([[0, 1, 2, 3], [2, 0, 3, 1]]) for p, e in enumerate(r)]
    return [["layer", "gpu", "slot", "expert"], *rows]


def _eplb() -> dict:
    return {"phy2log": np.array([[0, 1, 2, 3], [2, 0, 3, 1]], np.int64), "logcnt": np.ones((L, E), np.int64)}


def _bandwidth() -> np.ndarray:
    return np.array([[0.0, 1e11], [1e11, 0.0]])


def _bandwidth_txt() -> list:
    return [["0", "1e11"], ["1e11", "0"]]


def _hardware() -> dict:
    return {"base": "h100", "name": "mine", "gpus_per_node": 2, "scale_up_bytes_per_s": 4.5e11, "comm_efficiency": 0.8}


def _model_config() -> dict:
    return {"hidden_size": 16, "moe_intermediate_size": 32, "n_shared_experts": 1, "hidden_act": "silu"}


_READ = ["--num-experts", str(E), "--gpus", "2"]
_STEP = ["evaluate", "{base}/trace.npz", "{base}/placement.json"]

SEEDS: list[Seed] = [
    Seed("native-trace", "npz", ".npz", _native, _trace_runs()),
    Seed("foreign-npz", "npz", ".npz", _foreign, _trace_runs()),
    Seed("exflow-npy", "npy", ".npy", lambda: corpus.ids_base()[:, :, 0].T.astype(np.int64), _trace_runs()),
    Seed("layer-json", "json", ".json", _layer_json, _trace_runs()),
    Seed("token-jsonl", "jsonl", ".jsonl", _token_jsonl, _trace_runs()),
    Seed("megatron-jsonl", "jsonl", ".jsonl", _megatron, _trace_runs()),
    Seed("routed-jsonl", "jsonl", ".jsonl", _routed, _trace_runs()),
    Seed("counts-npz", "npz", ".npz", _counts, _trace_runs()),
    Seed("profile-npz", "npz", ".npz", _profile, _trace_runs(), compress=True),
    Seed("olmoe-npz", "npz", ".npz", _olmoe, _trace_runs()),
    Seed("fiddler-npz", "npz", ".npz", _fiddler, _trace_runs(["--key", "mix__all"])),
    Seed("sglang-pt", "pt", ".pt", _sglang_dump, _trace_runs()),
    Seed("placement-json", "json", ".json", _placement, corpus.placement_runs(ANY_TRACE, native=True)),
    Seed("sglang-map", "json", ".json", _sglang_map, corpus.placement_runs(ANY_TRACE, _READ)),
    Seed("vllm-ascend", "json", ".json", _vllm_ascend, corpus.placement_runs(ANY_TRACE)),
    Seed("placement-csv", "csv", ".csv", _csv, corpus.placement_runs(ANY_TRACE)),
    Seed("eplb-npz", "npz", ".npz", _eplb, corpus.placement_runs(ANY_TRACE, ["--gpus", "2"])),
    Seed("eplb-pt", "pt", ".pt", _eplb, corpus.placement_runs(ANY_TRACE, ["--gpus", "2"])),
    Seed("topology-npy", "npy", ".npy", _bandwidth, corpus.topology_runs(ANY_TRACE)),
    Seed("topology-txt", "txt", ".txt", _bandwidth_txt, corpus.topology_runs(ANY_TRACE)),
    Seed("hardware-json", "json", ".json", _hardware,
         {"evaluate": [*_STEP, "--hardware", ANY_TRACE, "--model", "mixtral-8x7b"]}),
    Seed("model-config", "json", ".json", _model_config, {"evaluate": [*_STEP, "--model", ANY_TRACE]}),
]
