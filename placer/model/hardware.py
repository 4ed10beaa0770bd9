"""What a GPU cluster can move and compute: the inputs of the step-time model (:mod:`placer.cost.time`).

A :class:`Hardware` names, per GPU: the scale-up bandwidth inside a node (NVLink / xGMI, bytes/s
per direction, what one GPU can send to the others of its node at once), the scale-out bandwidth
(the NIC, bytes/s per direction), the per-message latency of each, HBM bandwidth and dense peak
FLOP/s (bf16, fp8), and the GPUs per node. ``*_efficiency`` is the share of a peak a real kernel
reaches (all-to-all kernels, grouped GEMMs); the presets' defaults and how they were fitted are in
``docs/time-model.md`` ("Calibration").

Presets are vendors' datasheet peaks (SXM parts, dense, no sparsity); ``h800`` is the part of
DeepEP's published measurements. A cluster of one's own is a JSON file with the same fields
(``--hardware my_cluster.json``); unknown fields are refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from placer.errors import PlacerError
from placer.fileio import read_json

GB = 1e9
TB = 1e12


@dataclass(frozen=True)
class Hardware:
    """Per-GPU figures of a cluster (see the module docstring). Units: bytes/s, seconds, FLOP/s."""

    name: str
    gpus_per_node: int
    scale_up_bytes_per_s: float       # NVLink / xGMI, per direction, one GPU to its node
    scale_out_bytes_per_s: float      # NIC, per direction, per GPU
    scale_up_latency_s: float
    scale_out_latency_s: float
    hbm_bytes_per_s: float
    bf16_flops: float
    fp8_flops: float
    scale_up_efficiency: float = 0.66   # of the scale-up peak an all-to-all kernel reaches (DeepEP fit)
    scale_out_efficiency: float = 0.90  # of the NIC peak an all-to-all kernel reaches (DeepEP fit)
    compute_efficiency: float = 0.62    # of the FLOP/s peak a grouped expert GEMM reaches (DeepGEMM)
    memory_efficiency: float = 0.8    # of the HBM peak streaming expert weights reaches

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "name":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise PlacerError(f"hardware {self.name!r}: {f.name} must be a positive number, got {v!r}")
            if f.name.endswith("efficiency") and v > 1:
                raise PlacerError(f"hardware {self.name!r}: {f.name} is a share of the peak, at most 1, got {v}")
        if int(self.gpus_per_node) != self.gpus_per_node:
            raise PlacerError(f"hardware {self.name!r}: gpus_per_node must be a whole number, got {self.gpus_per_node}")

    def flops(self, dtype: str) -> float:
        """Dense peak FLOP/s for expert GEMMs in ``dtype`` (``bf16`` or ``fp8``)."""
        return self.fp8_flops if dtype == "fp8" else self.bf16_flops

    def describe(self) -> dict:
        return dataclasses.asdict(self)


def _preset(name, gpn, up, out, hbm, bf16, fp8, up_lat=20e-6, out_lat=20e-6) -> Hardware:
    return Hardware(name, gpn, up, out, up_lat, out_lat, hbm, bf16, fp8)


# datasheet peaks: NVLink is quoted as total bidirectional (900 GB/s on H100 = 450 per direction)
PRESETS: dict[str, Hardware] = {h.name: h for h in (
    _preset("h100", 8, 450 * GB, 50 * GB, 3.35 * TB, 989e12, 1979e12),      # SXM5, CX7 400 Gb/s
    _preset("h200", 8, 450 * GB, 50 * GB, 4.8 * TB, 989e12, 1979e12),       # SXM, CX7 400 Gb/s
    _preset("h800", 8, 200 * GB, 50 * GB, 3.35 * TB, 989e12, 1979e12),      # NVLink 400 GB/s total; DeepEP's part
    _preset("b200", 8, 900 * GB, 100 * GB, 8.0 * TB, 2.25e15, 4.5e15),      # NVLink 5, CX8 800 Gb/s
    _preset("a100", 8, 300 * GB, 25 * GB, 2.04 * TB, 312e12, 312e12),       # SXM4 80 GB, HDR 200 Gb/s; no fp8
    _preset("mi300x", 8, 448 * GB, 50 * GB, 5.3 * TB, 1307e12, 2615e12),    # xGMI 896 GB/s total, 400 Gb/s NIC
)}


def hardware(spec: str | Path) -> Hardware:
    """A preset by name (``h100``, ``h200``, ``h800``, ``b200``, ``a100``, ``mi300x``) or a JSON file of
    :class:`Hardware` fields (``name`` optional; missing fields taken from ``"base": PRESET``)."""
    key = str(spec).lower()
    if key in PRESETS:
        return PRESETS[key]
    path = Path(spec)
    if not path.suffix == ".json" and not path.exists():
        raise PlacerError(f"unknown hardware {spec!r}; use one of {', '.join(PRESETS)} or a JSON file of its fields")
    if not path.exists():
        raise PlacerError(f"{path}: no such file; give a hardware JSON file or one of {', '.join(PRESETS)}")
    obj = read_json(path, "hardware file", "see docs/time-model.md")
    if not isinstance(obj, dict):
        raise PlacerError(f"{path}: a hardware file holds one JSON object of fields; see docs/time-model.md")
    base = obj.pop("base", None)
    if base is not None and not isinstance(base, str):
        raise PlacerError(f"{path}: base must be a preset's name ({', '.join(PRESETS)}), got {json.dumps(base)[:40]}")
    fields = {f.name for f in dataclasses.fields(Hardware)}
    unknown = sorted(set(obj) - fields)
    if unknown:
        raise PlacerError(f"{path}: unknown hardware field {unknown[0]!r}; fields: {', '.join(sorted(fields))}")
    values = dataclasses.asdict(PRESETS[base]) if base in PRESETS else {}
    if base is not None and base not in PRESETS:
        raise PlacerError(f"{path}: base {base!r} is not a preset; use one of {', '.join(PRESETS)}")
    values.update(obj)
    values["name"] = obj.get("name", path.stem)     # not the base's: the report names this file
    missing = sorted(fields - set(values))
    if missing:
        raise PlacerError(f"{path}: missing hardware field {missing[0]!r}; give it, or \"base\": a preset to start from")
    try:
        return Hardware(**values)
    except TypeError as exc:
        raise PlacerError(f"{path}: {exc}") from None
