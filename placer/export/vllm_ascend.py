"""vllm-ascend's expert map JSON (its ``expert_map_path``).

``{"moe_layer_count": L, "layer_list": [{"layer_id": l, "device_count": G, "device_list":
[{"device_id": g, "device_expert": [S ids]}]}]}``; vllm-ascend reads layers positionally
(``layer_id`` is the MoE layer index 0..L-1) and a device's list order is its local slot order.
The map does not record E: reading back takes ``--num-experts`` or the largest id + 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from placer.errors import PlacerError
from placer.export.registry import (Exporter, ReadOptions, WriteOptions, Written, import_report, json_head_has,
                                    read_json, register)
from placer.fileio import write_json
from placer.model.fields import as_int
from placer.model.placement import Placement, phy2log_table


def to_vllm_ascend(placement: Placement) -> dict[str, Any]:
    """vllm-ascend's expert map: per MoE layer, per device, its experts in local slot order."""
    placement.validate()
    G, S = placement.num_gpus, placement.slots_per_gpu
    per_gpu = placement.phy2log.reshape(placement.num_layers, G, S)
    return {"moe_layer_count": placement.num_layers,
            "layer_list": [{"layer_id": l, "device_count": G,
                            "device_list": [{"device_id": g, "device_expert": per_gpu[l, g].tolist()}
                                            for g in range(G)]}
                           for l in range(placement.num_layers)]}


def from_vllm_ascend(obj: Any, num_experts: int | None = None, gpus_per_node: int | None = None,
                     name: str = "vllm-ascend file") -> Placement:
    """A Placement from vllm-ascend's expert map (E defaults to the largest id + 1)."""
    shape = "expected moe_layer_count and layer_list of device_list/device_expert"
    if not isinstance(obj, dict) or "layer_list" not in obj or "moe_layer_count" not in obj:
        raise PlacerError(f"{name}: malformed vllm-ascend expert map; {shape}")
    layers = obj["layer_list"]
    if not isinstance(layers, list) or not layers or not all(isinstance(x, dict) for x in layers):
        raise PlacerError(f"{name}: layer_list must be a non-empty list of layer objects; {shape}")
    count = as_int(obj["moe_layer_count"], f"{name}: moe_layer_count", 1, fix="fix the map")
    if count != len(layers):
        raise PlacerError(f"{name}: moe_layer_count is {count} but layer_list has {len(layers)} layers")
    rows = []
    G = None
    for l, layer in enumerate(layers):
        devices = layer.get("device_list")
        if not isinstance(devices, list) or not devices or not all(isinstance(d, dict) and "device_expert" in d for d in devices):
            raise PlacerError(f"{name}: layer {l}: device_list must list devices with device_expert; {shape}")
        g = as_int(layer.get("device_count"), f"{name}: layer {l} device_count", 1, len(devices), fix="fix the map")
        if g != len(devices) or (G is not None and g != G):
            raise PlacerError(f"{name}: every layer needs device_count={G or g} devices with the same number of integer expert ids")
        G = g
        rows.append([e for d in devices for e in d["device_expert"]] if all(isinstance(d["device_expert"], list) for d in devices)
                    else None)
        if rows[-1] is None or len({len(d["device_expert"]) for d in devices}) != 1:
            raise PlacerError(f"{name}: every layer needs device_count={G} devices with the same number of integer expert ids")
    phy = phy2log_table(rows, f"{name}: device_expert")
    E = int(phy.max()) + 1 if num_experts is None else int(num_experts)
    return Placement(phy, E, G, gpus_per_node, import_report(name, "vllm-ascend")).validate(name)


def _write(placement: Placement, path: Path, options: WriteOptions) -> Written:
    write_json(path, to_vllm_ascend(placement), indent=1)
    return Written({}, f"wrote {path}: vllm-ascend expert map, {placement.num_layers} MoE layers on {placement.num_gpus} devices")


def _read(path: Path, options: ReadOptions) -> Placement:
    return from_vllm_ascend(read_json(path), options.num_experts, options.gpus_per_node, str(path))


register(Exporter("vllm-ascend", "vllm-ascend expert map JSON (expert_map_path)", (".json",),
                  write=_write, read=_read, sniff=lambda path: json_head_has(path, "layer_list")))
