"""SGLang: the ``--init-expert-location`` map (``sglang``) and the expert loads (``sglang-counts``).

- ``sglang``: the object SGLang's ``--init-expert-location FILE.json`` reads, exactly
  ``{"physical_to_logical_map": [[...] * P] * H}``. SGLang passes the object's keys as keyword
  arguments to ``ExpertLocationMetadata.init_by_mapping``, so any other key makes it raise.
  Row ``h`` is decoder layer ``h``: SGLang sizes the map with the model config's
  ``num_hidden_layers`` and indexes it by layer id, so dense layers (DeepSeek's first ones) need
  a row too; they get SGLang's own trivial row ``p -> p % E`` (``init_trivial``). Slot ``p``
  lives on EP rank ``p // S``. SGLang checks none of the following, so we do before writing:
  every logical expert in every row, ids in ``[0, E)``, ``P`` divisible by ``G``, ``H`` rows.
  The map records neither E nor G (SGLang takes them from the model config and ``--ep-size``),
  so reading it back needs both.
- ``sglang-counts``: ``{"logical_count": [[...] * E] * H}``, per-layer token picks of each
  logical expert (every top-K pick counts 1; dense rows are zeros, as SGLang's own recorder
  writes them). SGLang then runs its own EPLB on these loads (``init_by_eplb``); the file holds
  no placement, so it cannot be read back as one.

SGLang reads ``--init-expert-location`` as a file only when the name ends in ``.json`` (``.pt``:
torch); any other string it parses as inline JSON and fails, so both writers refuse other names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from placer.errors import PlacerError
from placer.export.layers import resolve_layers
from placer.export.registry import (Exporter, ReadOptions, WriteOptions, Written, import_report, json_head_has,
                                    read_json, register)
from placer.fileio import write_json
from placer.model.placement import Placement, phy2log_table

SGLANG_KEY = "physical_to_logical_map"
SGLANG_COUNTS_KEY = "logical_count"


# ------------------------------------------------------------------------------ the map
def trivial_row(num_slots: int, num_experts: int) -> np.ndarray:
    """``[P]`` SGLang's trivial location (``init_trivial``): slot p holds expert ``p % E``."""
    return np.arange(num_slots, dtype=np.int64) % num_experts


def sglang_map(placement: Placement, moe_layers: Sequence[int] | None = None,
               num_hidden_layers: int | None = None) -> np.ndarray:
    """``[H, P]`` int64 physical-to-logical map over ALL decoder layers (dense rows trivial)."""
    placement.validate()
    layers, H = resolve_layers(placement, moe_layers, num_hidden_layers)
    rows = np.tile(trivial_row(placement.num_slots, placement.num_experts), (H, 1))
    rows[layers] = placement.phy2log
    return check_sglang_map(rows, placement.num_experts, placement.num_gpus, H)


def check_sglang_map(rows: Any, num_experts: int, num_gpus: int, num_hidden_layers: int | None = None,
                     name: str = "physical_to_logical_map") -> np.ndarray:
    """Check a map the way SGLang needs it (it does not check itself); returns ``[H, P]`` int64.

    SGLang fails late (at dispatch) or silently on: a logical expert missing from a row (no
    physical slot to dispatch to), ids outside ``[0, E)``, ``P`` not divisible by the EP size,
    a row count other than the model's ``num_hidden_layers``.
    """
    try:
        arr = phy2log_table(rows, name)
    except PlacerError:
        raise PlacerError(f"{name}: must be a rectangular [num_hidden_layers, num_physical_experts] table of integers") from None
    H, P = arr.shape
    if num_hidden_layers is not None and H != num_hidden_layers:
        raise PlacerError(f"{name}: has {H} rows but the model has {num_hidden_layers} decoder layers; "
                          f"SGLang needs one row per decoder layer (pass --num-hidden-layers)")
    if P < num_experts:
        raise PlacerError(f"{name}: {P} physical slots per layer cannot hold {num_experts} experts")
    if P % num_gpus:
        raise PlacerError(f"{name}: {P} physical slots (E + redundant) are not divisible by EP size {num_gpus}; "
                          f"SGLang asserts num_physical_experts % ep_size == 0")
    bad = np.argwhere((arr < 0) | (arr >= num_experts))
    if len(bad):
        h, p = bad[0]
        raise PlacerError(f"{name}: row {h} slot {p} holds expert {arr[h, p]}, outside [0, {num_experts}); "
                          f"check --num-experts")
    for h in range(H):
        present = np.bincount(arr[h], minlength=num_experts)
        if np.any(present == 0):
            raise PlacerError(f"{name}: row {h} has no slot for logical expert {int(np.argmin(present))}; "
                              f"every logical expert needs a slot in every row")
    return arr


def to_sglang(placement: Placement, moe_layers: Sequence[int] | None = None,
              num_hidden_layers: int | None = None) -> dict[str, list]:
    """The ``--init-expert-location`` JSON object: exactly one key, ``physical_to_logical_map``."""
    return {SGLANG_KEY: sglang_map(placement, moe_layers, num_hidden_layers).tolist()}


def sglang_launch_flags(placement: Placement, path: str | Path) -> str:
    """The SGLang server flags that make it load ``path`` (EP size = G, R redundant experts)."""
    return (f"--tp-size {placement.num_gpus} --ep-size {placement.num_gpus} "
            f"--ep-num-redundant-experts {placement.num_replicas} --init-expert-location {path}")


def from_sglang(obj: Any, num_experts: int | None, num_gpus: int | None, moe_layers: Sequence[int] | None = None,
                gpus_per_node: int | None = None, name: str = "sglang file") -> Placement:
    """A Placement from SGLang's ``{"physical_to_logical_map": [H, P]}``.

    ``moe_layers`` picks the rows that are MoE layers (default: every row). E and G are not in
    the file: SGLang takes them from the model config and ``--ep-size``.
    """
    if not isinstance(obj, dict) or SGLANG_KEY not in obj:
        raise PlacerError(f"{name}: no '{SGLANG_KEY}' key; not an SGLang expert-location file")
    if set(obj) != {SGLANG_KEY}:
        extra = sorted(set(obj) - {SGLANG_KEY})
        raise PlacerError(f"{name}: extra keys {extra} besides '{SGLANG_KEY}' (SGLang would raise); remove them")
    if num_experts is None or num_gpus is None:
        raise PlacerError(f"{name}: an SGLang map does not record the expert count or EP size; "
                          f"pass --num-experts and --gpus")
    rows = check_sglang_map(obj[SGLANG_KEY], num_experts, num_gpus, name=name)
    H = rows.shape[0]
    layers = list(range(H)) if moe_layers is None else [int(x) for x in moe_layers]
    if layers and max(layers) >= H:
        raise PlacerError(f"{name}: --moe-layers names layer {max(layers)} but the map has {H} rows")
    pl = Placement(rows[layers], num_experts, num_gpus, gpus_per_node,
                   import_report(name, "sglang", layers, H))
    return pl.validate(name)


# ----------------------------------------------------------------------------- the loads
def to_sglang_counts(load: np.ndarray, moe_layers: Sequence[int], num_hidden_layers: int) -> dict[str, list]:
    """``{"logical_count": [H, E]}`` from per-MoE-layer loads ``load [L, E]`` (token picks).

    Dense decoder layers get zero rows, as SGLang's expert-distribution recorder writes them.
    """
    load = np.asarray(load)
    if load.ndim != 2 or load.shape[0] != len(moe_layers):
        raise PlacerError(f"expert loads have shape {list(load.shape)} but {len(moe_layers)} MoE layers were given; "
                          f"use the trace the placement was solved on")
    if num_hidden_layers <= max(moe_layers):
        raise PlacerError(f"--num-hidden-layers {num_hidden_layers} is too small for MoE layer {max(moe_layers)}")
    out = np.zeros((num_hidden_layers, load.shape[1]), dtype=np.int64)
    out[list(moe_layers)] = np.rint(load).astype(np.int64)
    return {SGLANG_COUNTS_KEY: out.tolist()}


def loads_for_counts(placement: Placement, trace_path: str | None) -> np.ndarray:
    """``[L, E]`` token picks per expert: from ``trace_path`` (a trace or counts profile), else the
    placement's ``report.load``."""
    if trace_path is not None:
        from placer.model.profile import Profile
        from placer.traces.load import load_input

        data = load_input(trace_path)
        if (data.num_layers, data.num_experts) != (placement.num_layers, placement.num_experts):
            raise PlacerError(f"{trace_path}: the trace has {data.num_layers} layers x {data.num_experts} experts but the "
                              f"placement has {placement.num_layers} x {placement.num_experts}; use the trace it was solved on")
        return data.load if isinstance(data, Profile) else Profile.from_trace(data, coact=False, trans=False).load
    load = placement.report.get("load") if isinstance(placement.report, dict) else None
    if load is None:
        raise PlacerError("--format sglang-counts needs expert loads: pass --trace TRACE.npz (the trace the placement was solved on)")
    return np.asarray(load)


# ------------------------------------------------------------------------- file side
def check_file_name(path: Path) -> None:
    """SGLang's name rule (see the module docstring)."""
    if path.suffix != ".json":
        raise PlacerError(f"{path}: SGLang only reads --init-expert-location files named *.json; "
                          f"use -o {path.with_suffix('.json')}")


def _write_map(placement: Placement, path: Path, options: WriteOptions) -> Written:
    check_file_name(path)
    obj = to_sglang(placement, options.moe_layers, options.num_hidden_layers)
    write_json(path, obj, indent=None)
    flags = sglang_launch_flags(placement, path)
    rows = obj[SGLANG_KEY]
    return Written({"num_hidden_layers": len(rows), "physical_experts": len(rows[0]), "launch_flags": flags},
                   f"wrote {path}: {len(rows)} decoder layers x {len(rows[0])} physical experts "
                   f"({placement.num_replicas} redundant) on {placement.num_gpus} EP ranks\n"
                   f"launch SGLang with: {flags}")


def _read_map(path: Path, options: ReadOptions) -> Placement:
    return from_sglang(read_json(path), options.num_experts, options.num_gpus, options.moe_layers,
                       options.gpus_per_node, str(path))


def _write_counts(placement: Placement, path: Path, options: WriteOptions) -> Written:
    check_file_name(path)
    moe, H = resolve_layers(placement, options.moe_layers, options.num_hidden_layers)
    write_json(path, to_sglang_counts(loads_for_counts(placement, options.trace), moe, H), indent=None)
    flags = (f"--ep-size {placement.num_gpus} --ep-num-redundant-experts {placement.num_replicas} "
             f"--init-expert-location {path}")
    return Written({"num_hidden_layers": H, "launch_flags": flags},
                   f"wrote {path}: expert loads for {H} decoder layers; SGLang balances them itself with: {flags}")


register(Exporter("sglang", "SGLang --init-expert-location map (physical_to_logical_map JSON)", (".json",),
                  write=_write_map, read=_read_map, sniff=lambda path: json_head_has(path, SGLANG_KEY)))
register(Exporter("sglang-counts", f"expert loads ('{SGLANG_COUNTS_KEY}' JSON) for SGLang's own balancer", (".json",),
                  write=_write_counts, sniff=lambda path: json_head_has(path, SGLANG_COUNTS_KEY)))
