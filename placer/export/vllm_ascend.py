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
from placer.model.placement import Placement


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
    try:
        layers = obj["layer_list"]
        G = int(layers[0]["device_count"])
        table = [[d["device_expert"] for d in layer["device_list"]] for layer in layers]
        arr = np.array(table)
        if int(obj["moe_layer_count"]) != len(layers):
            raise PlacerError(f"{name}: moe_layer_count is {obj['moe_layer_count']} but layer_list has {len(layers)} layers")
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise PlacerError(f"{name}: malformed vllm-ascend expert map ({exc!r}); expected moe_layer_count and "
                          f"layer_list of device_list/device_expert") from None
    if arr.dtype == object or arr.ndim != 3 or arr.shape[1] != G or not np.issubdtype(arr.dtype, np.integer):
        raise PlacerError(f"{name}: every layer needs device_count={G} devices with the same number of integer expert ids")
    phy = arr.reshape(arr.shape[0], -1).astype(np.int64)
    E = int(phy.max()) + 1 if num_experts is None else int(num_experts)
    return Placement(phy, E, G, gpus_per_node, import_report(name, "vllm-ascend")).validate(name)


def _write(placement: Placement, path: Path, options: WriteOptions) -> Written:
    write_json(path, to_vllm_ascend(placement), indent=1)
    return Written({}, f"wrote {path}: vllm-ascend expert map, {placement.num_layers} MoE layers on {placement.num_gpus} devices")


def _read(path: Path, options: ReadOptions) -> Placement:
    return from_vllm_ascend(read_json(path), options.num_experts, options.gpus_per_node, str(path))


register(Exporter("vllm-ascend", "vllm-ascend expert map JSON (expert_map_path)", (".json",),
                  write=_write, read=_read, sniff=lambda path: json_head_has(path, "layer_list")))
