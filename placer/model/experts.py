"""The shape of a model's experts: what one token costs an expert and what an expert weighs.

An :class:`ExpertShape` holds the hidden size H, the routed experts' intermediate size I, the
number of weight matrices an expert multiplies (3 for gated FFNs: SwiGLU's gate, up and down;
2 for plain ones: Switch's wi and wo), bytes per weight and per activation element (dispatch and
combine), and the shared experts every token runs on its own GPU (their total intermediate size).
Per routed pick an expert does ``2 * matrices * H * I`` FLOPs and weighs ``matrices * H * I *
weight_bytes`` bytes.

Where it comes from: a Hugging Face ``config.json`` (:func:`from_config`: ``hidden_size``,
``moe_intermediate_size`` or ``intermediate_size``, ``n_shared_experts`` /
``shared_expert_intermediate_size``, ``hidden_act``), a known model by name (:data:`KNOWN`, the
models of the shared traces and DeepSeek-V3), or explicit flags.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from placer.errors import PlacerError
from placer.fileio import read_json


@dataclass(frozen=True)
class ExpertShape:
    """Sizes of one MoE layer's experts (module docstring). Bytes are per element."""

    hidden_size: int
    intermediate_size: int
    matrices: int = 3
    weight_bytes: float = 2.0
    dispatch_bytes: float = 2.0
    combine_bytes: float = 2.0
    shared_intermediate_size: int = 0
    name: str = ""

    def __post_init__(self) -> None:
        for key in ("hidden_size", "intermediate_size", "matrices", "weight_bytes", "dispatch_bytes", "combine_bytes"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise PlacerError(f"expert shape: {key} must be a positive number, got {v!r}")
        if self.shared_intermediate_size < 0:
            raise PlacerError(f"expert shape: shared_intermediate_size must be >= 0, got {self.shared_intermediate_size}")

    def _ffn_flops(self, intermediate: int) -> float:
        return 2.0 * self.matrices * self.hidden_size * intermediate

    def _ffn_bytes(self, intermediate: int) -> float:
        return self.matrices * self.hidden_size * intermediate * self.weight_bytes

    @property
    def flops_per_pick(self) -> float:
        """FLOPs one routed pick costs its expert: ``2 * matrices * H * I``."""
        return self._ffn_flops(self.intermediate_size)

    @property
    def expert_bytes(self) -> float:
        """Bytes of one routed expert's weights in one layer: ``matrices * H * I * weight_bytes``."""
        return self._ffn_bytes(self.intermediate_size)

    @property
    def shared_flops_per_token(self) -> float:
        """FLOPs of the shared experts per token (their summed intermediate size)."""
        return self._ffn_flops(self.shared_intermediate_size)

    @property
    def shared_bytes(self) -> float:
        """Bytes of the shared experts' weights in one layer."""
        return self._ffn_bytes(self.shared_intermediate_size)

    def describe(self) -> dict:
        return dataclasses.asdict(self)


# models of the shared traces and the target shape (their published config.json values)
KNOWN: dict[str, ExpertShape] = {s.name: s for s in (
    ExpertShape(2048, 1408, shared_intermediate_size=2 * 1408, name="deepseek-v2-lite"),
    ExpertShape(7168, 2048, shared_intermediate_size=2048, name="deepseek-v3"),
    ExpertShape(4096, 14336, name="mixtral-8x7b"),
    ExpertShape(2048, 1024, name="olmoe-1b-7b"),
    ExpertShape(2048, 768, name="qwen3-30b-a3b"),
)}


def from_config(config: dict[str, Any], name: str = "config.json") -> ExpertShape:
    """The expert shape of a Hugging Face model config (module docstring)."""
    def num(key: str, default: Any = None) -> Any:
        v = config.get(key, default)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise PlacerError(f"{name}: {key} must be a number, got {v!r}")
        return v

    H = num("hidden_size", num("d_model"))
    inter = num("moe_intermediate_size", num("intermediate_size", num("d_ff")))
    if H is None or inter is None:
        raise PlacerError(f"{name}: no hidden_size / moe_intermediate_size (or intermediate_size) in the config; "
                          f"pass --hidden-size and --expert-intermediate-size")
    shared = 0
    if num("n_shared_experts"):
        shared = int(num("n_shared_experts")) * int(num("moe_intermediate_size", inter))
    elif num("shared_expert_intermediate_size"):
        shared = int(num("shared_expert_intermediate_size"))
    act = str(config.get("hidden_act", config.get("dense_act_fn", "silu"))).lower()
    gated = act in ("silu", "swiglu", "swish") or bool(config.get("is_gated_act"))
    return ExpertShape(int(H), int(inter), 3 if gated else 2, shared_intermediate_size=shared,
                       name=str(config.get("model_type", name)))


def expert_shape(spec: str | Path) -> ExpertShape:
    """A known model by name (:data:`KNOWN`) or the path of its ``config.json``."""
    if str(spec).lower() in KNOWN:
        return KNOWN[str(spec).lower()]
    path = Path(spec)
    if path.is_dir():
        path = path / "config.json"
    if not path.exists():
        raise PlacerError(f"{spec}: neither a known model ({', '.join(KNOWN)}) nor a config.json file")
    obj = read_json(path, "model config", "give the model's config.json")
    if not isinstance(obj, dict):
        raise PlacerError(f"{path}: a model config is one JSON object; give the model's config.json")
    return from_config(obj, str(path))
