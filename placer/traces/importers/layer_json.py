"""Per-layer JSON: ``{"0": [[e1, e2], ...], "1": [...], ...}``.

Keys are layer numbers (strings of integers, used as ``moe_layers``); values list every
token's top-K expert ids, token i being the same token in every layer (the HD-MoE layout of
``shared/traces/mixtral_mtbench``). One sequence.

The file is parsed one layer at a time (``json.JSONDecoder.raw_decode`` on each value in turn,
after the depth check of :func:`placer.fileio.json_depth`), so the Python objects of one layer,
not of the whole file, are alive at once: each layer becomes an int64 array before the next is
read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from placer.errors import PlacerError
from placer.fileio import json_depth, read_bytes
from placer.limits import MAX_JSON_DEPTH, MAX_LAYER_NUMBER, check_budget
from placer.model.trace import Trace
from placer.traces.importers.common import ImportOptions, int_array, make_trace
from placer.traces.importers.registry import Importer, register

_HEAD = re.compile(rb'^\s*\{\s*"\s*\d+\s*"\s*:')
_WS = re.compile(r"\s*")
_BOOL = re.compile(rb"\b(?:true|false)\b")
FIX = "the file is truncated or corrupt, re-export it"


def _sniff(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return bool(_HEAD.match(fh.read(256)))
    except OSError:
        return False


def _layers(path: Path):
    """Yield ``(key, value)`` of the top-level object, decoding one value at a time."""
    raw = read_bytes(path, "trace")
    # bytes, text and one layer's int64 ids at a time: about 4 bytes per byte of the file
    check_budget(4 * len(raw), f"{path}: {len(raw):,} bytes of JSON", "split it or convert it to .npz")
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise PlacerError(f"{path}: JSON nested more than {MAX_JSON_DEPTH} levels deep; a per-layer trace nests 3 deep, {FIX}")
    if _BOOL.search(re.sub(rb'"[^"\\]*(?:\\.[^"\\]*)*"', b'""', raw)):
        raise PlacerError(f"{path}: holds true/false where expert ids belong; expert ids are integers, fix the file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlacerError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); {FIX}") from None
    del raw
    dec = json.JSONDecoder()
    i = _WS.match(text, 0).end()
    if text[i:i + 1] != "{":
        what = "nothing" if i >= len(text) else f"'{text[i:i + 1]}'"
        raise PlacerError(f"{path}: expected a JSON object {{\"0\": [[e1, e2], ...], ...}} mapping layers to per-token "
                          f"expert lists, got {what}; re-export it in that shape")
    i = _WS.match(text, i + 1).end()
    if text[i:i + 1] == "}":
        return
    try:
        while True:
            key, i = dec.raw_decode(text, i)
            i = _WS.match(text, i).end()
            if not isinstance(key, str) or text[i:i + 1] != ":":
                raise ValueError(f"expected a string key and ':' at character {i}")
            value, i = dec.raw_decode(text, _WS.match(text, i + 1).end())
            yield key, value
            i = _WS.match(text, i).end()
            if text[i:i + 1] == "}":
                break
            if text[i:i + 1] != ",":
                raise ValueError(f"expected ',' or '}}' at character {i}")
            i = _WS.match(text, i + 1).end()
    except (ValueError, RecursionError) as exc:
        raise PlacerError(f"{path}: not valid JSON ({' '.join(str(exc).split())[:100]}); {FIX}") from None
    if _WS.match(text, i + 1).end() != len(text):
        raise PlacerError(f"{path}: extra data after the JSON object; {FIX}")


def _layer_number(path: Path, key: str) -> int:
    if not re.fullmatch(r"\s*\d{1,7}\s*", key) or int(key) > MAX_LAYER_NUMBER:
        raise PlacerError(f"{path}: key '{key[:40]}' is not a layer number; keys must be layer indices \"0\", \"1\", ... "
                          f"(at most {MAX_LAYER_NUMBER})")
    return int(key)


def _load(path: Path, options: ImportOptions) -> Trace:
    rows: dict[int, np.ndarray] = {}
    for key, value in _layers(path):
        num = _layer_number(path, key)
        if num in rows:
            raise PlacerError(f"{path}: layer {num} appears twice; give each layer once")
        if not isinstance(value, list):
            raise PlacerError(f"{path}: layer {key} holds {type(value).__name__}, expected a list of per-token expert lists")
        arr = int_array(str(path), value, f"layer {key}")
        if arr.ndim == 1 and arr.size:
            arr = arr[:, None]  # top-1 given as plain ids
        if arr.ndim != 2:
            raise PlacerError(f"{path}: layer {key} must be a list of per-token expert lists, got shape {list(arr.shape)}")
        rows[num] = arr
    if not rows:
        raise PlacerError(f"{path}: expected a JSON object {{\"0\": [[e1, e2], ...], ...}} mapping layers to per-token expert "
                          f"lists, got an empty object; re-export it in that shape")
    layers = sorted(rows)
    T0, K0 = rows[layers[0]].shape
    for num in layers:
        arr = rows[num]
        if arr.shape[0] != T0:
            raise PlacerError(f"{path}: layer {num} has {arr.shape[0]} tokens but layer {layers[0]} has {T0}; "
                              f"every layer must list the same tokens")
        if arr.shape[1] != K0:
            raise PlacerError(f"{path}: layer {num} has top-{arr.shape[1]} but layer {layers[0]} has top-{K0}; use one top-k")
    return make_trace(path, np.stack([rows[n] for n in layers]), options.num_experts, moe_layers=layers)


register(Importer("layer-json", (".json",), _sniff, _load,
                  'per-layer JSON {"0": [[e1, e2], ...], ...} (HD-MoE / mixtral_mtbench layout)'))
