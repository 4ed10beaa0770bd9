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

Both formats take effect only for architectures whose SGLang model class builds expert-location
metadata (:mod:`placer.export.sglang_models`, checked against SGLang 0.5.23's source); for the
others (Mixtral, OLMoE) SGLang ignores the file without a word. The architecture comes from
``--model-config config.json`` (an ignored one is refused) or, guessed, from the model name in
the placement's trace metadata (an ignored one is warned about, with the reason); without
either the writers warn that it is unchecked. SGLang checks neither ``--ep-size`` nor
``--ep-num-redundant-experts`` against the file, so the printed launch line
(:func:`sglang_launch_flags`) is the only guard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from placer.errors import PlacerError
from placer.export import sglang_models
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
    """The SGLang (0.5.23) server flags that make it load ``path`` as written.

    EP size G (with TP size G: SGLang's EP groups split the TP group); ``--ep-num-redundant-experts
    R`` only with replicas (the file has E + R slots a row; SGLang sizes its slots by this flag and
    does not compare it with the file); ``--moe-a2a-backend deepep``: without an a2a backend
    every EP rank runs the MoE over all tokens and sums the partial outputs, so no token moves
    by the placement, and replicas are picked alike on every rank (``dynamic`` dispatch) instead
    of the one on the token's own GPU or node (``static``, what the placement was scored with).
    """
    G, R = placement.num_gpus, placement.num_replicas
    redundant = f" --ep-num-redundant-experts {R}" if R else ""
    return f"--tp-size {G} --ep-size {G}{redundant} --moe-a2a-backend deepep --init-expert-location {path}"


def architecture(placement: Placement, model_config: str | None) -> tuple[str | None, str]:
    """The model architecture and where it was read (``config.json`` or the trace's model name)."""
    if model_config is not None:
        from placer.fileio import read_json as read_json_file

        cfg = read_json_file(model_config, "model config", "give the model's config.json")
        archs = cfg.get("architectures") if isinstance(cfg, dict) else None
        if not isinstance(archs, list) or not archs or not isinstance(archs[0], str):
            raise PlacerError(f"{model_config}: has no \"architectures\" list; give the model's Hugging Face config.json")
        return archs[0], model_config
    report = placement.report if isinstance(placement.report, dict) else {}
    for key in ("input", "trace"):
        part = report.get(key)
        name = part.get("model") if isinstance(part, dict) else None
        if isinstance(name, str) and name:
            return sglang_models.architecture_of_name(name), f"model {name!r} of the trace metadata"
    return None, "nothing"


def check_architecture(placement: Placement, model_config: str | None) -> list[str]:
    """Refuse an architecture that ``config.json`` names and SGLang ignores the file for; warn
    when the architecture is only guessed from the trace's model name, or unknown."""
    arch, where = architecture(placement, model_config)
    version = sglang_models.SGLANG_VERSION
    kind = sglang_models.support(arch)
    if kind == "ignored":
        why = (f"SGLang {version} ignores --init-expert-location for {arch} (from {where}): its model class builds "
               f"no expert-location metadata, so SGLang would run its trivial layout without a word")
        if model_config is not None:
            raise PlacerError(f"{why}; serve it with another engine (--format eplb or csv) or check a newer SGLang")
        return [f"warning: {why}; pass --model-config config.json to check the architecture (an ignored one is "
                f"then refused)"]
    if kind == "conditional":
        return [f"warning: SGLang {version} honours --init-expert-location for {arch} only when its config gives the "
                f"expert count (num_experts); check the model's config.json"]
    if kind == "unknown":
        return [f"warning: the model's architecture is unknown (no model name in the placement's trace metadata), so "
                f"whether SGLang honours this file is not checked: SGLang {version} ignores it for Mixtral and OLMoE, "
                f"honours it for DeepSeek-V2/V3, Qwen2/3-MoE and the others in placer/export/sglang_models.py; "
                f"pass --model-config config.json to check"]
    return []


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
    return pl.validate(name, allow_duplicates=True)


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


def _written(placement: Placement, path: Path, warnings: list[str], fields: dict[str, Any], what: str) -> Written:
    flags = sglang_launch_flags(placement, path)
    return Written({**fields, "launch_flags": flags, "sglang_version_checked": sglang_models.SGLANG_VERSION,
                    "warnings": warnings},
                   "\n".join([f"wrote {path}: {what}", *warnings,
                               f"launch SGLang {sglang_models.SGLANG_VERSION} with: {flags}"]))


def _write_map(placement: Placement, path: Path, options: WriteOptions) -> Written:
    check_file_name(path)
    warnings = check_architecture(placement, options.model_config)
    obj = to_sglang(placement, options.moe_layers, options.num_hidden_layers)
    write_json(path, obj, indent=None)
    rows = obj[SGLANG_KEY]
    return _written(placement, path, warnings, {"num_hidden_layers": len(rows), "physical_experts": len(rows[0])},
                    f"{len(rows)} decoder layers x {len(rows[0])} physical experts ({placement.num_replicas} "
                    f"redundant) on {placement.num_gpus} EP ranks")


def _read_map(path: Path, options: ReadOptions) -> Placement:
    return from_sglang(read_json(path), options.num_experts, options.num_gpus, options.moe_layers,
                       options.gpus_per_node, str(path))


def _write_counts(placement: Placement, path: Path, options: WriteOptions) -> Written:
    check_file_name(path)
    warnings = check_architecture(placement, options.model_config)
    moe, H = resolve_layers(placement, options.moe_layers, options.num_hidden_layers)
    write_json(path, to_sglang_counts(loads_for_counts(placement, options.trace), moe, H), indent=None)
    return _written(placement, path, warnings, {"num_hidden_layers": H},
                    f"expert loads for {H} decoder layers; SGLang balances them itself (its EPLB, "
                    f"{placement.num_replicas} redundant experts)")


register(Exporter("sglang", "SGLang --init-expert-location map (physical_to_logical_map JSON)", (".json",),
                  write=_write_map, read=_read_map, sniff=lambda path: json_head_has(path, SGLANG_KEY)))
register(Exporter("sglang-counts", f"expert loads ('{SGLANG_COUNTS_KEY}' JSON) for SGLang's own balancer", (".json",),
                  write=_write_counts, sniff=lambda path: json_head_has(path, SGLANG_COUNTS_KEY)))
