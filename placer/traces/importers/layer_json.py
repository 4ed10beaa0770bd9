"""Per-layer JSON: ``{"0": [[e1, e2], ...], "1": [...], ...}``.

Keys are layer numbers (strings of integers, used as ``moe_layers``); values list every
token's top-K expert ids, token i being the same token in every layer (the HD-MoE layout of
``shared/traces/mixtral_mtbench``). One sequence.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from placer.errors import PlacerError
from placer.model.trace import Trace
from placer.traces.importers.common import ImportOptions, int_array, make_trace, read_json
from placer.traces.importers.registry import Importer, register

_HEAD = re.compile(rb'^\s*\{\s*"\s*\d+\s*"\s*:')


def _sniff(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return bool(_HEAD.match(fh.read(256)))
    except OSError:
        return False


def _load(path: Path, options: ImportOptions) -> Trace:
    obj = read_json(path)
    if not isinstance(obj, dict) or not obj:
        raise PlacerError(f"{path}: expected a JSON object {{\"0\": [[e1, e2], ...], ...}} mapping layers to per-token expert lists, "
                          f"got {type(obj).__name__}; re-export it in that shape")
    try:
        layers = sorted((int(k), k) for k in obj)
    except ValueError:
        bad = next(k for k in obj if not k.strip().lstrip("-").isdigit())
        raise PlacerError(f"{path}: key '{bad}' is not a layer number; keys must be layer indices \"0\", \"1\", ...") from None
    rows = []
    for num, key in layers:
        value = obj[key]
        if not isinstance(value, list):
            raise PlacerError(f"{path}: layer {key} holds {type(value).__name__}, expected a list of per-token expert lists")
        arr = int_array(str(path), value, f"layer {key}")
        if arr.ndim == 1 and arr.size:
            arr = arr[:, None]  # top-1 given as plain ids
        if arr.ndim != 2:
            raise PlacerError(f"{path}: layer {key} must be a list of per-token expert lists, got shape {list(arr.shape)}")
        rows.append(arr)
    T0, K0 = rows[0].shape
    for (num, key), arr in zip(layers, rows):
        if arr.shape[0] != T0:
            raise PlacerError(f"{path}: layer {key} has {arr.shape[0]} tokens but layer {layers[0][1]} has {T0}; "
                              f"every layer must list the same tokens")
        if arr.shape[1] != K0:
            raise PlacerError(f"{path}: layer {key} has top-{arr.shape[1]} but layer {layers[0][1]} has top-{K0}; use one top-k")
    return make_trace(path, np.stack(rows), options.num_experts, moe_layers=[n for n, _ in layers])


register(Importer("layer-json", (".json",), _sniff, _load,
                  'per-layer JSON {"0": [[e1, e2], ...], ...} (HD-MoE / mixtral_mtbench layout)'))
