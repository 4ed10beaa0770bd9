"""The Placement: which logical expert every physical slot of every layer holds.

``phy2log`` ``[L, P]`` int64 with ``P = G * S``: physical slot p of layer l holds logical expert
``phy2log[l, p]`` and lives on GPU ``p // S`` (S slots per GPU per layer). Replicas (redundant
experts) are extra slots: ``P - E`` replicas per layer. This is the convention of SGLang, vLLM's
EPLB and DeepSeek's EPLB.

Valid means: ids in ``[0, E)``, every logical expert in every layer at least once, no two
replicas of one expert on one GPU, ``P`` a multiple of G.

Canonical JSON (``"format": "moe-place/placement@1"``): ``num_layers``, ``num_experts``,
``num_gpus``, ``gpus_per_node``, ``slots_per_gpu``, ``phy2log`` and a free ``report`` object.
Written atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from placer.errors import PlacerError
from placer.fileio import write_json

PLACEMENT_FORMAT = "moe-place/placement@1"


@dataclass(eq=False)
class Placement:
    """Expert-to-slot map per layer (see module docstring)."""

    phy2log: np.ndarray
    num_experts: int
    num_gpus: int
    gpus_per_node: int | None = None
    report: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.phy2log = np.asarray(self.phy2log, dtype=np.int64)
        self.num_experts = int(self.num_experts)
        self.num_gpus = int(self.num_gpus)
        self.gpus_per_node = self.num_gpus if self.gpus_per_node is None else int(self.gpus_per_node)

    # -------------------------------------------------------------- shape
    @property
    def num_layers(self) -> int:
        return int(self.phy2log.shape[0])

    @property
    def num_slots(self) -> int:
        """P = G * S physical slots per layer."""
        return int(self.phy2log.shape[1])

    @property
    def slots_per_gpu(self) -> int:
        return self.num_slots // self.num_gpus

    @property
    def num_replicas(self) -> int:
        """Redundant slots per layer, ``P - E``."""
        return self.num_slots - self.num_experts

    @property
    def slot_gpu(self) -> np.ndarray:
        """``[P]`` GPU of each physical slot."""
        return np.arange(self.num_slots) // self.slots_per_gpu

    # ------------------------------------------------------------ validity
    def validate(self, name: str = "placement") -> "Placement":
        """Raise :class:`PlacerError` (naming ``name``) unless the placement is valid."""
        p = self.phy2log
        E, G = self.num_experts, self.num_gpus
        if p.ndim != 2 or p.shape[0] == 0:
            raise PlacerError(f"{name}: phy2log must be a non-empty [layers, slots] table, got shape {list(p.shape)}")
        if E < 1 or G < 1:
            raise PlacerError(f"{name}: num_experts and num_gpus must be positive (got {E}, {G})")
        if self.gpus_per_node < 1 or G % self.gpus_per_node:
            raise PlacerError(f"{name}: {G} GPUs are not a whole number of nodes of {self.gpus_per_node} GPUs")
        P = p.shape[1]
        if P % G:
            raise PlacerError(f"{name}: {P} slots per layer cannot be split evenly over {G} GPUs; "
                              f"each GPU needs the same number of slots")
        if P < E:
            raise PlacerError(f"{name}: {P} slots per layer cannot hold {E} experts")
        if p.min() < 0 or p.max() >= E:
            bad = int(p.min()) if p.min() < 0 else int(p.max())
            raise PlacerError(f"{name}: expert id {bad} is out of range [0, {E})")
        cnt = self.logcnt
        missing = np.argwhere(cnt == 0)
        if len(missing):
            l, e = missing[0]
            raise PlacerError(f"{name}: expert {e} has no slot in layer {l}; every expert needs at least one")
        S = P // G
        per_gpu = np.sort(p.reshape(p.shape[0], G, S), axis=2)
        dup = np.argwhere(per_gpu[:, :, 1:] == per_gpu[:, :, :-1])
        if len(dup):
            l, g, _ = dup[0]
            raise PlacerError(f"{name}: layer {l} puts two replicas of one expert on GPU {g}; "
                              f"replicas must sit on different GPUs")
        return self

    # ------------------------------------------------------- derived views
    @property
    def logcnt(self) -> np.ndarray:
        """``[L, E]`` number of slots (replicas) of each logical expert."""
        L, E = self.num_layers, self.num_experts
        out = np.zeros((L, E), np.int64)
        np.add.at(out, (np.repeat(np.arange(L), self.num_slots), self.phy2log.ravel()), 1)
        return out

    @property
    def log2phy(self) -> np.ndarray:
        """``[L, E, maxcnt]`` physical slots of each expert, ascending, padded with -1."""
        L, E = self.num_layers, self.num_experts
        cnt = self.logcnt
        width = int(cnt.max())
        out = np.full((L, E, width), -1, np.int64)
        for l in range(L):
            order = np.argsort(self.phy2log[l], kind="stable")
            experts = self.phy2log[l][order]
            starts = np.searchsorted(experts, np.arange(E))
            rank = np.arange(len(order)) - starts[experts]
            out[l, experts, rank] = order
        return out

    @property
    def expert_gpus(self) -> np.ndarray:
        """``[L, E, G]`` bool: GPU g holds a replica of expert e at layer l."""
        L, E, G = self.num_layers, self.num_experts, self.num_gpus
        out = np.zeros((L, E, G), bool)
        layer = np.repeat(np.arange(L), self.num_slots)
        out[layer, self.phy2log.ravel(), np.tile(self.slot_gpu, L)] = True
        return out

    @property
    def gpu_of(self) -> np.ndarray:
        """``[L, E]`` GPU of each expert; only defined without replicas (else use ``expert_gpus``)."""
        if self.num_replicas:
            raise ValueError("gpu_of is ambiguous with replicas; use expert_gpus or log2phy")
        out = np.empty((self.num_layers, self.num_experts), np.int64)
        rows = np.arange(self.num_layers)[:, None]
        out[rows, self.phy2log] = self.slot_gpu[None, :]
        return out

    @classmethod
    def from_gpu_of(cls, gpu_of: np.ndarray, num_gpus: int, gpus_per_node: int | None = None,
                    report: dict | None = None) -> "Placement":
        """Build a replica-free placement from ``gpu_of [L, E]`` (each GPU gets E / G experts).

        Within a GPU, slots hold its experts in ascending id order (deterministic).
        """
        gpu_of = np.asarray(gpu_of, dtype=np.int64)
        L, E = gpu_of.shape
        if E % num_gpus:
            raise PlacerError(f"{E} experts cannot be split evenly over {num_gpus} GPUs")
        counts = np.stack([np.bincount(gpu_of[l], minlength=num_gpus) for l in range(L)])
        if np.any(counts != E // num_gpus):
            raise PlacerError(f"every GPU must hold exactly {E // num_gpus} experts per layer")
        # stable sort by GPU keeps experts ascending within each GPU
        phy2log = np.argsort(gpu_of, axis=1, kind="stable")
        return cls(phy2log, E, num_gpus, gpus_per_node, report or {})

    # ------------------------------------------------------------------ IO
    def to_json(self) -> dict[str, Any]:
        return {
            "format": PLACEMENT_FORMAT,
            "num_layers": self.num_layers,
            "num_experts": self.num_experts,
            "num_gpus": self.num_gpus,
            "gpus_per_node": self.gpus_per_node,
            "slots_per_gpu": self.slots_per_gpu,
            "phy2log": self.phy2log.tolist(),
            "report": self.report,
        }

    def save(self, path: str | Path) -> None:
        """Validate, then write the canonical JSON atomically."""
        self.validate(str(path))
        write_json(path, self.to_json(), indent=None)

    @classmethod
    def from_json(cls, obj: Any, name: str = "placement") -> "Placement":
        """The placement in a parsed canonical JSON object; every field typed (never coerced) and
        the table checked before anything is built from it."""
        from placer.model.fields import as_dict, as_int, as_optional_int

        if not isinstance(obj, dict) or obj.get("format") != PLACEMENT_FORMAT:
            raise PlacerError(f"{name}: not a moe-place placement (expected \"format\": \"{PLACEMENT_FORMAT}\"); "
                              f"import engine files with moe-place import")
        for key in ("phy2log", "num_experts", "num_gpus"):
            if key not in obj:
                raise PlacerError(f"{name}: missing field '{key}'; the placement file is incomplete")
        fix = "the placement file is malformed, write it again"
        phy = phy2log_table(obj["phy2log"], f"{name}: phy2log")
        pl = cls(phy, as_int(obj["num_experts"], f"{name}: num_experts", 1, fix=fix),
                 as_int(obj["num_gpus"], f"{name}: num_gpus", 1, phy.shape[1], fix=fix),
                 as_optional_int(obj.get("gpus_per_node"), f"{name}: gpus_per_node", 1, fix=fix),
                 as_dict(obj.get("report"), f"{name}: report", fix))
        pl.validate(name)
        for key, actual in (("num_layers", pl.num_layers), ("slots_per_gpu", pl.slots_per_gpu)):
            if key in obj and as_int(obj[key], f"{name}: {key}", fix=fix) != actual:
                raise PlacerError(f"{name}: {key} says {obj[key]} but phy2log implies {actual}")
        return pl

    @classmethod
    def load(cls, path: str | Path) -> "Placement":
        from placer.fileio import read_json

        return cls.from_json(read_json(path, "placement", "the file is truncated or corrupt"), str(path))


def phy2log_table(rows: Any, where: str) -> np.ndarray:
    """``[L, P]`` int64 from a JSON table of expert ids (lists of ints, or an integer array):
    rectangular, non-empty, integers that fit int64; a PlacerError naming ``where`` otherwise."""
    if isinstance(rows, np.ndarray):
        arr = rows
    else:
        if not isinstance(rows, list) or not rows or not all(isinstance(r, list) for r in rows):
            raise PlacerError(f"{where} must be a non-empty [layers, slots] table of integers")
        width = len(rows[0])
        if width == 0 or any(len(r) != width for r in rows):
            raise PlacerError(f"{where} must be a rectangular [layers, slots] table (every row as long as the first)")
        if not all(type(v) is int for r in rows for v in r):
            bad = next(v for r in rows for v in r if type(v) is not int)
            raise PlacerError(f"{where} holds {bad!r}; expert ids must be integers")
        if any(v < -2**63 or v >= 2**63 for r in rows for v in r):
            raise PlacerError(f"{where} holds an expert id beyond 64 bits; expert ids must be 0 .. E-1")
        arr = np.array(rows, dtype=np.int64)
    if arr.ndim != 2 or arr.size == 0 or arr.dtype.kind not in "iu":
        raise PlacerError(f"{where} must be a non-empty [layers, slots] table of integers, got {arr.dtype} {list(arr.shape)}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) >= 2**63:
        raise PlacerError(f"{where} holds expert id {int(arr.max())}; expert ids must be 0 .. E-1")
    return arr.astype(np.int64)
