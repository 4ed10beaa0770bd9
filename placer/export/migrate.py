"""What it costs to move a deployment from one placement to another."""

from __future__ import annotations

from typing import Any

import numpy as np

from placer.errors import PlacerError
from placer.model.placement import Placement


def migration_cost(old: Placement, new: Placement, expert_bytes: float | None = None) -> dict[str, Any]:
    """Expert weights to copy to go from ``old`` to ``new``.

    A copy is needed for every (layer, GPU, logical expert) that ``new`` places on a GPU that did
    not hold that expert in ``old``; reordering slots within a GPU moves nothing over the
    network. ``slots_changed`` counts physical slots whose expert differs (what a naive
    slot-by-slot reload would copy). Bytes are ``moved * expert_bytes`` when given.
    """
    if old.num_layers != new.num_layers:
        raise PlacerError(f"the placements differ in layers ({old.num_layers} vs {new.num_layers}); {_layers_fix(new)}")
    if old.num_experts != new.num_experts:
        raise PlacerError(f"the placements differ in experts per layer ({old.num_experts} vs {new.num_experts}); "
                          f"compare placements of one model (--num-experts {new.num_experts} if the file does not record it)")
    G = max(old.num_gpus, new.num_gpus)

    def holds(pl: Placement) -> np.ndarray:
        h = np.zeros((pl.num_layers, pl.num_experts, G), dtype=bool)
        h[:, :, :pl.num_gpus] = pl.expert_gpus
        return h

    moved = (holds(new) & ~holds(old)).sum(axis=(1, 2))
    same_shape = old.phy2log.shape == new.phy2log.shape
    out: dict[str, Any] = {
        "moved_per_layer": moved.astype(int).tolist(),
        "moved_total": int(moved.sum()),
        "slots_changed_total": int((old.phy2log != new.phy2log).sum()) if same_shape else None,
        "slots_per_layer": new.num_slots,
        "layers": new.num_layers,
    }
    if expert_bytes is not None:
        out["expert_bytes"] = float(expert_bytes)
        out["bytes_per_layer"] = (moved * float(expert_bytes)).tolist()
        out["bytes_total"] = float(moved.sum() * float(expert_bytes))
    return out


def _layers_fix(new: Placement) -> str:
    """What to pass when an engine file has a row per decoder layer (dense ones too) and the
    target one per MoE layer: ``--moe-layers``, with the target's own numbering when it records it."""
    from placer.export.layers import trace_meta

    recorded = trace_meta(new).get("moe_layers")
    if isinstance(recorded, list) and recorded:
        layers = [int(x) for x in recorded]
        spec = f"{layers[0]}-{layers[-1]}" if layers == list(range(layers[0], layers[-1] + 1)) else ",".join(map(str, layers))
        return f"pass --moe-layers {spec} (the target's MoE layers) to read only those rows of the file"
    return f"pass --moe-layers with the {new.num_layers} rows of the file that are MoE layers, e.g. --moe-layers 1-{new.num_layers}"
