"""JSON Lines formats.

- ``token-jsonl``: one record per (token, layer), as many people log from vLLM:
  ``{"layer": l, "token_idx": t, "experts": [e1, ...]}`` plus optional ``"gating_probs"``
  (same length as ``experts``) and ``"request_id"`` or ``"problem_id"`` (tokens of one id form
  one sequence; ``token_idx`` counts within it). Records may come in any order; every token
  needs a record for every layer.
- ``megatron-router``: Megatron-Core ``router_trace_rank{r}.jsonl`` (``--moe-routing-trace-path``):
  one record per layer and step, ``{"rank", "step", "block", "layer": l, "num_tokens": n,
  "topk": k, "top_indices": [[...] * k] * n}`` (nested or flat). Records whose ``block`` is not
  ``"decoder"`` (MTP routers) are skipped. Token t of layer l is the t-th token over that layer's
  records in file order; the tokens of one step form one sequence. Each rank file holds its own
  tokens; ranks merge by concatenation (pass all rank files, or their directory).
- ``routed-experts``: one request per line with ``routed_experts`` (top level or under
  ``meta_info``): SGLang's base64 of raw int32 ``[tokens, num_hidden_layers, top_k]`` (the shape
  from the record's ``num_hidden_layers``/``top_k`` fields or ``--num-hidden-layers``/``--top-k``),
  vLLM's base64 of an ``.npy`` (shape inside), or a plain nested list. Each line is one
  sequence; hidden layers whose ids are all -1 (dense layers) and top-k slots that are -1 in
  every MoE layer (padding) are dropped.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

import numpy as np

from placer.errors import PlacerError
from placer.model.trace import Trace
from placer.traces.importers.common import (ImportOptions, first_jsonl_record, int_array, iter_jsonl,
                                            make_trace, npy_from_bytes, offsets_from_labels, record_int)
from placer.traces.importers.registry import Importer, register

_JSONL_EXT = (".jsonl", ".ndjson")


def _has(*keys: str):
    def sniff(path: Path) -> bool:
        rec = first_jsonl_record(path)
        return rec is not None and all(k in rec for k in keys)
    return sniff


# ------------------------------------------------------------------ token-jsonl
def _ids(path: Path, n: int, value: Any, what: str, ndim: int | None = None) -> np.ndarray:
    """A record's expert ids (nested lists of ints; booleans refused, as every non-integer)."""
    if _has_bool(value):
        raise PlacerError(f"{path}: line {n}: {what} holds true/false; expert ids are integers, fix the record")
    return int_array(str(path), value, f"line {n} {what}", ndim)


def _has_bool(value: Any) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, bool):
            return True
        if isinstance(v, list):
            stack.extend(v)
    return False


def _load_token_jsonl(path: Path, options: ImportOptions) -> Trace:
    seq_of: dict[Any, int] = {}
    seqs, toks, layers, experts, probs = [], [], [], [], []
    for n, rec in iter_jsonl(path, accumulate=True):
        if "experts" not in rec:
            raise PlacerError(f"{path}: line {n} needs integer 'layer', 'token_idx' and a list 'experts'; fix the record")
        layer = record_int(path, n, rec, "layer", 0)
        tok = record_int(path, n, rec, "token_idx", 0)
        ex = rec["experts"]
        if not isinstance(ex, list) or not ex:
            raise PlacerError(f"{path}: line {n}: 'experts' must be a non-empty list of expert ids")
        row = _ids(path, n, ex, "'experts'", ndim=1)
        req = rec.get("request_id", rec.get("problem_id"))
        seqs.append(seq_of.setdefault(str(req) if req is not None else None, len(seq_of)))
        toks.append(tok)
        layers.append(layer)
        experts.append(row)
        probs.append(rec.get("gating_probs"))
    if not experts:
        raise PlacerError(f"{path}: the trace is empty (no records); record at least one token of one layer")
    if len({len(r) for r in experts}) > 1:
        raise PlacerError(f"{path}: 'experts' lists of different lengths; every token needs the same number of experts")
    ex = np.stack(experts)
    seqs_a, toks_a, layers_a = (np.asarray(x, np.int64) for x in (seqs, toks, layers))
    layer_ids, layer_pos = np.unique(layers_a, return_inverse=True)
    # tokens sorted by (sequence, token_idx): a pair, never one packed key that could overflow
    tok_ids, tok_pos = np.unique(np.stack([seqs_a, toks_a], axis=1), axis=0, return_inverse=True)
    tok_pos = tok_pos.reshape(-1)
    L, T, K = len(layer_ids), len(tok_ids), ex.shape[1]
    cell = tok_pos * L + layer_pos
    uniq, counts = np.unique(cell, return_counts=True)
    if np.any(counts > 1):
        c = int(uniq[np.argmax(counts > 1)])
        raise PlacerError(f"{path}: token {int(tok_ids[c // L, 1])} has two records for layer "
                          f"{int(layer_ids[c % L])}; remove the duplicate")
    if len(uniq) != L * T:
        have = np.zeros(L * T, bool)
        have[uniq] = True
        c = int(np.flatnonzero(~have)[0])
        raise PlacerError(f"{path}: layers of unequal length: token {int(tok_ids[c // L, 1])} has no "
                          f"record for layer {int(layer_ids[c % L])}; every token needs every layer")
    ids = np.empty((L, T, K), np.int64)
    ids[layer_pos, tok_pos] = ex
    weights = None
    if all(p is not None for p in probs):
        if _has_bool(probs):
            raise PlacerError(f"{path}: 'gating_probs' holds true/false; give the router's weights as numbers")
        try:
            w = np.asarray(probs, dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            raise PlacerError(f"{path}: 'gating_probs' must be lists of numbers as long as 'experts'; fix or drop them") from None
        if w.shape != ex.shape:
            raise PlacerError(f"{path}: 'gating_probs' has shape {list(w.shape)} but 'experts' has {list(ex.shape)}; they must match")
        weights = np.empty((L, T, K), np.float32)
        weights[layer_pos, tok_pos] = w
    return make_trace(path, ids, options.num_experts, gate_weights=weights, seq_offsets=offsets_from_labels(tok_ids[:, 0]),
                      moe_layers=[int(x) for x in layer_ids])


# -------------------------------------------------------------- megatron-router
def _load_megatron(path: Path, options: ImportOptions) -> Trace:
    per_layer: dict[int, list[np.ndarray]] = {}
    steps: dict[int, list] = {}
    for n, rec in iter_jsonl(path):
        if rec.get("block", "decoder") != "decoder":
            continue  # multi-token-prediction (MTP) routers reuse decoder layer numbers
        if "top_indices" not in rec:
            raise PlacerError(f"{path}: line {n} needs integer 'layer', 'num_tokens', 'topk' and 'top_indices'; fix the record")
        layer = record_int(path, n, rec, "layer", 0)
        num = record_int(path, n, rec, "num_tokens", 0)
        k = record_int(path, n, rec, "topk", 1)
        arr = _ids(path, n, rec["top_indices"], "'top_indices'")
        if arr.size != num * k:
            raise PlacerError(f"{path}: line {n}: 'top_indices' holds {arr.size} ids but num_tokens x topk = {num} x {k}; fix the record")
        per_layer.setdefault(layer, []).append(arr.reshape(num, k))
        steps.setdefault(layer, []).append((rec.get("step"), num))
    if not per_layer:
        raise PlacerError(f"{path}: the trace is empty (no decoder router records); record at least one token of one layer")
    layers = sorted(per_layer)
    rows = [np.concatenate(per_layer[l]) for l in layers]
    for l, r in zip(layers, rows):
        if r.shape != rows[0].shape:
            raise PlacerError(f"{path}: layers of unequal length: layer {l} has {r.shape[0]} tokens of top-{r.shape[1]} but "
                              f"layer {layers[0]} has {rows[0].shape[0]} of top-{rows[0].shape[1]}; every layer needs every token")
    # tokens of one step form one sequence (a step's batch carries no finer boundaries)
    first = steps[layers[0]]
    step_of = [st if type(st) is int and abs(st) < 2**62 else None for st, _ in first]
    if None in step_of:
        step_of = [0] * len(first)
    labels = np.repeat(np.array(step_of, np.int64), [num for _, num in first])
    return make_trace(path, np.stack(rows), options.num_experts, moe_layers=layers,
                      seq_offsets=offsets_from_labels(labels))


# --------------------------------------------------------------- routed-experts
def _routed_value(rec: dict[str, Any]) -> Any:
    if "routed_experts" in rec:
        return rec["routed_experts"]
    meta = rec.get("meta_info")
    if isinstance(meta, dict) and "routed_experts" in meta:
        return meta["routed_experts"]
    return None


def _sniff_routed(path: Path) -> bool:
    rec = first_jsonl_record(path)
    return rec is not None and _routed_value(rec) is not None


def _decode_routed(path: Path, n: int, rec: dict[str, Any], value: Any, options: ImportOptions) -> np.ndarray:
    """``[tokens, hidden_layers, top_k]`` int64 of one request."""
    if isinstance(value, list):
        arr = _ids(path, n, value, "'routed_experts'")
        if arr.ndim != 3:
            raise PlacerError(f"{path}: line {n}: 'routed_experts' must be [tokens, layers, top_k], got shape {list(arr.shape)}")
        return arr
    if not isinstance(value, str):
        raise PlacerError(f"{path}: line {n}: 'routed_experts' must be a base64 string or a nested list")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise PlacerError(f"{path}: line {n}: 'routed_experts' is not valid base64; the file is corrupt, re-export it") from None
    if raw[:6] == b"\x93NUMPY":  # vLLM: an .npy file
        arr = npy_from_bytes(raw, f"{path}: line {n}: routed_experts")
        if arr.ndim != 3 or arr.dtype.kind not in "iu":
            raise PlacerError(f"{path}: line {n}: routed_experts must be integer [tokens, layers, top_k], got {arr.dtype} {list(arr.shape)}")
        return arr.astype(np.int64)
    # SGLang: raw little-endian int32, shape from the record or the options
    layers = record_int(path, n, rec, "num_hidden_layers", 1, options.num_hidden_layers)
    k = record_int(path, n, rec, "top_k", 1, options.top_k)
    if layers is None or k is None:
        raise PlacerError(f"{path}: line {n}: raw int32 routed_experts need the layer count and top-k; "
                          f"pass --num-hidden-layers and --top-k")
    if len(raw) % 4:
        raise PlacerError(f"{path}: line {n}: routed_experts is {len(raw)} bytes, not whole int32 values; the payload is truncated")
    flat = np.frombuffer(raw, dtype="<i4").astype(np.int64)
    per_token = int(layers) * int(k)
    if flat.size % per_token:
        raise PlacerError(f"{path}: line {n}: {flat.size} ids do not split into tokens of {layers} layers x top-{k}; "
                          f"check --num-hidden-layers and --top-k")
    return flat.reshape(-1, int(layers), int(k))


def _load_routed(path: Path, options: ImportOptions) -> Trace:
    reqs = []
    for n, rec in iter_jsonl(path):
        value = _routed_value(rec)
        if value is None:
            raise PlacerError(f"{path}: line {n} has no 'routed_experts' (top level or in meta_info); fix the record")
        arr = _decode_routed(path, n, rec, value, options)
        if arr.shape[0] == 0:
            continue
        if reqs and arr.shape[1:] != reqs[0].shape[1:]:
            raise PlacerError(f"{path}: line {n}: routed_experts has {arr.shape[1]} layers x top-{arr.shape[2]} but earlier lines "
                              f"have {reqs[0].shape[1]} x top-{reqs[0].shape[2]}; all requests must come from one model")
        reqs.append(arr)
    if not reqs:
        raise PlacerError(f"{path}: the trace is empty (no tokens); record at least one request")
    ids = np.concatenate(reqs).transpose(1, 0, 2)  # [hidden_layers, T, K]
    moe = [l for l in range(ids.shape[0]) if not np.all(ids[l] == -1)]
    cols = [c for c in range(ids.shape[2]) if not np.all(ids[moe][:, :, c] == -1)]  # -1 padded slots
    lens = [r.shape[0] for r in reqs]
    return make_trace(path, np.ascontiguousarray(ids[moe][:, :, cols]), options.num_experts, moe_layers=moe,
                      num_hidden_layers=ids.shape[0],
                      seq_offsets=np.concatenate([[0], np.cumsum(lens)]).astype(np.int64))


register(Importer("token-jsonl", _JSONL_EXT + (".json",), _has("layer", "token_idx", "experts"), _load_token_jsonl,
                  'JSONL, one record per (token, layer): {"layer", "token_idx", "experts"[, "gating_probs", "request_id"]}'))
register(Importer("megatron-router", _JSONL_EXT, _has("layer", "num_tokens", "topk", "top_indices"), _load_megatron,
                  "Megatron-Core router_trace_rank{r}.jsonl: {layer, num_tokens, topk, top_indices}"))
register(Importer("routed-experts", _JSONL_EXT + (".json",), _sniff_routed, _load_routed,
                  "SGLang / vLLM per-request routed_experts (base64 int32 or .npy), one request per line"))
