"""Export a Placement for serving engines, and read engine placement files back.

Every exporter is a pure function of a :class:`~placer.model.placement.Placement` (plus the model's
layer numbering) that returns plain Python/numpy data; the ``export`` command writes it
atomically. Shapes: ``L`` MoE layers of the placement, ``H`` decoder (hidden) layers of the
model, ``E`` logical experts, ``G`` GPUs (EP ranks), ``S`` slots per GPU, ``P = G * S = E + R``
physical slots per layer (``R`` redundant experts).

Formats:

- ``sglang``: the object SGLang's ``--init-expert-location FILE.json`` reads, exactly
  ``{"physical_to_logical_map": [[...] * P] * H}``. SGLang passes the object's keys as keyword
  arguments to ``ExpertLocationMetadata.init_by_mapping``, so any other key makes it raise.
  Row ``h`` is decoder layer ``h``: SGLang sizes the map with the model config's
  ``num_hidden_layers`` and indexes it by layer id, so dense layers (DeepSeek's first ones) need
  a row too; they get SGLang's own trivial row ``p -> p % E`` (``init_trivial``). Slot ``p``
  lives on EP rank ``p // S``. SGLang checks none of the following, so we do before writing:
  every logical expert in every row, ids in ``[0, E)``, ``P`` divisible by ``G``, ``H`` rows.
- ``sglang-counts``: ``{"logical_count": [[...] * E] * H}``, per-layer token picks of each
  logical expert (every top-K pick counts 1; dense rows are zeros, as SGLang's own recorder
  writes them). SGLang then runs its own EPLB on these loads (``init_by_eplb``).
- ``eplb``: DeepSeek-EPLB-shaped int64 arrays ``phy2log [L, P]``, ``log2phy [L, E, maxcnt]``
  (-1 padded), ``logcnt [L, E]``.
- ``vllm-ascend``: the expert map JSON of vllm-ascend's ``expert_map_path``:
  ``{"moe_layer_count": L, "layer_list": [{"layer_id": l, "device_count": G, "device_list":
  [{"device_id": g, "device_expert": [S ids]}]}]}``; vllm-ascend reads layers positionally
  (``layer_id`` is the MoE layer index 0..L-1) and a device's list order is its local slot order.
- ``csv``: ``layer,gpu,slot,expert`` with ``layer`` the MoE layer index 0..L-1, ``slot`` the
  physical slot ``p`` (global, so ``gpu == p // S``), one row per slot.

Import back (:func:`read_placement_any`): our JSON, SGLang's map, vllm-ascend's map, the CSV,
and the ``eplb`` ``.npz``. :func:`migration_cost` counts the expert weights that must move to go
from one placement to another.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from placer.errors import PlacerError
from placer.model.placement import PLACEMENT_FORMAT, Placement

FORMATS = ("sglang", "sglang-counts", "eplb", "vllm-ascend", "csv")
SGLANG_KEY = "physical_to_logical_map"
SGLANG_COUNTS_KEY = "logical_count"
CSV_HEADER = ("layer", "gpu", "slot", "expert")


# --------------------------------------------------------------------------- layer numbering
def parse_layers(spec: str, option: str = "--moe-layers") -> list[int]:
    """``"1-26"`` or ``"0,3,5-7"`` -> sorted distinct layer numbers; a :class:`PlacerError` otherwise."""
    out: list[int] = []
    try:
        for part in str(spec).split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError(part)
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise PlacerError(f"{option} {spec!r} is not a list of layer numbers; write ranges and commas, e.g. 1-26 or 0,2,4-7") from None
    if not out or min(out) < 0:
        raise PlacerError(f"{option} {spec!r} must name non-negative layer numbers, e.g. 1-26")
    if len(set(out)) != len(out):
        raise PlacerError(f"{option} {spec!r} names a layer twice; list each MoE layer once")
    return sorted(out)


def trace_meta(placement: Placement) -> dict[str, Any]:
    """Where a placement's report recorded the trace's layer numbering (``moe_layers``,
    ``num_hidden_layers``): ``report["trace"]``, ``report["input"]`` (what ``solve`` writes), or the
    report's top level; ``{}`` when none has ``moe_layers``."""
    report = placement.report if isinstance(placement.report, dict) else {}
    for meta in (report.get("trace"), report.get("input"), report):
        if isinstance(meta, dict) and "moe_layers" in meta:
            return meta
    return {}


def resolve_layers(placement: Placement, moe_layers: Sequence[int] | None = None,
                   num_hidden_layers: int | None = None) -> tuple[list[int], int]:
    """The decoder layer number of each placement layer, and the model's decoder layer count.

    Defaults: ``report.trace.moe_layers`` / ``report.trace.num_hidden_layers`` when the
    placement recorded them, else layers ``0..L-1`` and ``max(moe_layers) + 1``.
    """
    L = placement.num_layers
    meta = trace_meta(placement)
    if moe_layers is None:
        recorded = meta.get("moe_layers")
        moe_layers = [int(x) for x in recorded] if isinstance(recorded, list) and len(recorded) == L else list(range(L))
    moe_layers = [int(x) for x in moe_layers]
    if len(moe_layers) != L:
        raise PlacerError(f"--moe-layers names {len(moe_layers)} layers but the placement has {L}; "
                          f"give one decoder layer number per placement layer")
    if any(b <= a for a, b in zip(moe_layers, moe_layers[1:])) or moe_layers[0] < 0:
        raise PlacerError(f"--moe-layers must be increasing non-negative layer numbers, got {moe_layers}")
    if num_hidden_layers is None:
        recorded = meta.get("num_hidden_layers")
        num_hidden_layers = int(recorded) if isinstance(recorded, int) and recorded > moe_layers[-1] else moe_layers[-1] + 1
    if num_hidden_layers <= moe_layers[-1]:
        raise PlacerError(f"--num-hidden-layers {num_hidden_layers} is too small: MoE layer {moe_layers[-1]} exists; "
                          f"give the model's num_hidden_layers (at least {moe_layers[-1] + 1})")
    return moe_layers, int(num_hidden_layers)


# --------------------------------------------------------------------------------- SGLang
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
        arr = np.array(rows)
    except (ValueError, TypeError):
        arr = np.array([], dtype=object)
    if arr.dtype == object or arr.ndim != 2 or arr.size == 0 or not (
            np.issubdtype(arr.dtype, np.integer) or (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)))):
        raise PlacerError(f"{name}: must be a rectangular [num_hidden_layers, num_physical_experts] table of integers")
    arr = arr.astype(np.int64)
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


# ------------------------------------------------------------------------- other formats
def to_eplb(placement: Placement) -> dict[str, np.ndarray]:
    """DeepSeek-EPLB arrays: ``phy2log [L, P]``, ``log2phy [L, E, maxcnt]`` (-1 pad), ``logcnt [L, E]``."""
    placement.validate()
    return {"phy2log": placement.phy2log.astype(np.int64), "log2phy": placement.log2phy.astype(np.int64),
            "logcnt": placement.logcnt.astype(np.int64)}


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


def to_csv(placement: Placement) -> str:
    """``layer,gpu,slot,expert`` rows, one per physical slot (``slot`` is global: gpu = slot // S)."""
    placement.validate()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    gpu = placement.slot_gpu
    for l in range(placement.num_layers):
        for p in range(placement.num_slots):
            w.writerow((l, int(gpu[p]), p, int(placement.phy2log[l, p])))
    return buf.getvalue()


# ------------------------------------------------------------------------------- readers
def _trace_report(source: str, fmt: str, moe_layers: Sequence[int] | None, num_hidden_layers: int | None) -> dict:
    report: dict[str, Any] = {"imported_from": source, "import_format": fmt}
    if moe_layers is not None:
        report["trace"] = {"moe_layers": [int(x) for x in moe_layers], "num_hidden_layers": num_hidden_layers}
    return report


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
                   _trace_report(name, "sglang", layers, H))
    return pl.validate(name)


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
    return Placement(phy, E, G, gpus_per_node, _trace_report(name, "vllm-ascend", None, None)).validate(name)


def from_csv(text: str, num_experts: int | None = None, gpus_per_node: int | None = None,
             name: str = "csv file") -> Placement:
    """A Placement from ``layer,gpu,slot,expert`` rows (E defaults to the largest id + 1)."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip().lower() for h in header) != CSV_HEADER:
        raise PlacerError(f"{name}: the first line must be the header {','.join(CSV_HEADER)}")
    try:
        data = np.array([[int(x) for x in row] for row in reader if row], dtype=np.int64)
    except ValueError as exc:
        raise PlacerError(f"{name}: a row is not four integers ({exc}); fix the CSV") from None
    if data.ndim != 2 or data.shape[1] != 4 or len(data) == 0:
        raise PlacerError(f"{name}: expected rows of four integers layer,gpu,slot,expert")
    if data.min() < 0:
        raise PlacerError(f"{name}: negative numbers are not allowed")
    layer, gpu, slot, expert = data.T
    L, P, G = int(layer.max()) + 1, int(slot.max()) + 1, int(gpu.max()) + 1
    seen = np.zeros((L, P), dtype=np.int64)
    np.add.at(seen, (layer, slot), 1)
    if np.any(seen != 1):
        l, p = np.argwhere(seen != 1)[0]
        raise PlacerError(f"{name}: layer {l} slot {p} appears {seen[l, p]} times; every (layer, slot) needs exactly one row")
    if P % G:
        raise PlacerError(f"{name}: {P} slots per layer cannot be split evenly over {G} GPUs")
    if np.any(gpu != slot // (P // G)):
        i = int(np.argmax(gpu != slot // (P // G)))
        raise PlacerError(f"{name}: slot {slot[i]} is on GPU {slot[i] // (P // G)} ({P // G} slots per GPU) but its row says GPU {gpu[i]}")
    phy = np.empty((L, P), dtype=np.int64)
    phy[layer, slot] = expert
    E = int(expert.max()) + 1 if num_experts is None else int(num_experts)
    return Placement(phy, E, G, gpus_per_node, _trace_report(name, "csv", None, None)).validate(name)


def looks_like_placement(path: str | Path) -> bool:
    """Cheap sniff (first 4 KiB): is ``path`` an engine placement file rather than a routing trace?

    True for our CSV header, SGLang's map and vllm-ascend's map; ``moe-place import`` uses it to
    hand such files to :func:`read_placement_any`.
    """
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096).decode("utf-8", errors="ignore")
    except OSError:
        return False
    first = head.lstrip().split("\n", 1)[0].strip().lower().replace(" ", "")
    if first == ",".join(CSV_HEADER):
        return True
    stripped = head.lstrip()
    return stripped.startswith("{") and (f'"{SGLANG_KEY}"' in head or '"layer_list"' in head)


def read_placement_any(path: str | Path, num_experts: int | None = None, num_gpus: int | None = None,
                       moe_layers: Sequence[int] | None = None, gpus_per_node: int | None = None) -> Placement:
    """Read our placement JSON, SGLang's map, vllm-ascend's map, the CSV, or the ``eplb`` ``.npz``.

    ``num_experts`` and ``num_gpus`` are needed for SGLang's map (not recorded in it) and for the
    ``.npz``'s GPU count; ``moe_layers`` picks SGLang rows that are MoE layers (default: all).
    """
    path = Path(path)
    if not path.is_file():
        raise PlacerError(f"{path}: no such file; check the placement path")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _from_eplb_npz(path, num_gpus, gpus_per_node)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise PlacerError(f"{path}: cannot read it as text ({exc}); give a JSON or CSV placement") from None
    if suffix == ".csv":
        return from_csv(text, num_experts, gpus_per_node, str(path))
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise PlacerError(f"{path}: not valid JSON ({exc}); give a moe-place, SGLang or vllm-ascend JSON, or a .csv") from None
    if isinstance(obj, dict) and obj.get("format") == PLACEMENT_FORMAT:
        return Placement.from_json(obj, str(path))
    if isinstance(obj, dict) and SGLANG_KEY in obj:
        return from_sglang(obj, num_experts, num_gpus, moe_layers, gpus_per_node, str(path))
    if isinstance(obj, dict) and "layer_list" in obj:
        return from_vllm_ascend(obj, num_experts, gpus_per_node, str(path))
    if isinstance(obj, dict) and SGLANG_COUNTS_KEY in obj:
        raise PlacerError(f"{path}: holds expert loads ('{SGLANG_COUNTS_KEY}'), not a placement; "
                          f"solve a placement from a trace instead")
    raise PlacerError(f"{path}: not a placement file this tool knows (moe-place JSON, SGLang "
                      f"'{SGLANG_KEY}', vllm-ascend expert map, CSV, eplb .npz)")


def _from_eplb_npz(path: Path, num_gpus: int | None, gpus_per_node: int | None) -> Placement:
    from placer.model.trace_file import read_npz_members

    arrays, _ = read_npz_members(path, mmap=False)
    if "phy2log" not in arrays:
        raise PlacerError(f"{path}: no phy2log array; not an eplb export")
    if num_gpus is None:
        raise PlacerError(f"{path}: an eplb .npz does not record the GPU count; pass --gpus")
    E = int(arrays["logcnt"].shape[1]) if "logcnt" in arrays and arrays["logcnt"].ndim == 2 else int(arrays["phy2log"].max()) + 1
    return Placement(np.asarray(arrays["phy2log"]), E, num_gpus, gpus_per_node,
                     _trace_report(str(path), "eplb", None, None)).validate(str(path))


# ------------------------------------------------------------------------- migration cost
def migration_cost(old: Placement, new: Placement, expert_bytes: float | None = None) -> dict[str, Any]:
    """Expert weights to copy to go from ``old`` to ``new``.

    A copy is needed for every (layer, GPU, logical expert) that ``new`` places on a GPU that did
    not hold that expert in ``old``; reordering slots within a GPU moves nothing over the
    network. ``slots_changed`` counts physical slots whose expert differs (what a naive
    slot-by-slot reload would copy). Bytes are ``moved * expert_bytes`` when given.
    """
    if old.num_layers != new.num_layers or old.num_experts != new.num_experts:
        raise PlacerError(f"the placements differ in shape ({old.num_layers} vs {new.num_layers} layers, "
                          f"{old.num_experts} vs {new.num_experts} experts); compare placements of one model")
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
