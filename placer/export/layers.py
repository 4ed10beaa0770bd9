"""Decoder layer numbering shared by the export formats.

A placement has ``L`` MoE layers; the model has ``H`` decoder (hidden) layers, some of them dense
(DeepSeek's first ones). SGLang's files have one row per decoder layer, so a writer needs the
decoder layer number of each placement layer: given by the user (``--moe-layers``), recorded in
the placement's report by ``solve``, or ``0..L-1``.
"""

from __future__ import annotations

from typing import Any, Sequence

from placer.errors import PlacerError
from placer.limits import MAX_LAYER_NUMBER
from placer.model.placement import Placement


def parse_layers(spec: str, option: str = "--moe-layers") -> list[int]:
    """``"1-26"`` or ``"0,3,5-7"`` -> sorted distinct layer numbers (each at most
    :data:`placer.limits.MAX_LAYER_NUMBER`); a :class:`PlacerError` otherwise."""
    out: list[int] = []
    try:
        for part in str(spec).split(","):
            part = part.strip()
            if not part:
                continue
            lo, _, hi = part.partition("-") if not part.startswith("-") else (part, "", "")
            lo_n, hi_n = int(lo), int(hi) if hi else int(lo)
            if hi_n < lo_n or hi_n > MAX_LAYER_NUMBER:
                raise PlacerError(f"{option} {spec!r}: {part} is not a range of layer numbers from 0 to {MAX_LAYER_NUMBER}; "
                                  f"write e.g. 1-26 or 0,2,4-7")
            out.extend(range(lo_n, hi_n + 1))
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
    if num_hidden_layers > MAX_LAYER_NUMBER + 1:
        raise PlacerError(f"--num-hidden-layers {num_hidden_layers} is not a layer count (at most {MAX_LAYER_NUMBER + 1}); "
                          f"give the model's num_hidden_layers")
    return moe_layers, int(num_hidden_layers)
