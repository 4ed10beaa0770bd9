"""The cost models ``evaluate`` and ``compare`` report, by name: one module each, registered here.

A :class:`CostModel` says what it needs (``skip(data)`` names what is missing, or None) and
computes a JSON-able summary from a Trace or Profile, a Placement and a Topology with the shared
:class:`EvalOptions`. The built-in models register from their own modules
(:mod:`placer.cost.coherent`, :mod:`placer.cost.ep`, :mod:`placer.cost.load`); a new one is a
module that calls :func:`register` plus its name in the tuple below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from placer.model.trace import DEFAULT_CHUNK_TOKENS
from placer.registry import Registry


@dataclass(frozen=True)
class EvalOptions:
    """What a report may ask of every model: bytes per token copy (``hidden_size x dtype_bytes``),
    home GPUs ``[T]`` (ep), the chunk of tokens read at a time, and a progress callback."""

    hidden_size: int | None = None
    dtype_bytes: int = 2
    home: np.ndarray | None = None
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS
    progress: Callable[[int], None] | None = None
    step: Any = None                  # placer.cost.time.StepSpec: what the time model needs
    time_comm: str = "ep"             # the exchanges the time model counts: ep or coherent


@dataclass(frozen=True)
class CostModel:
    """A registered cost model. ``summary(data, placement, topology, options)`` returns a dict
    with at least ``model`` and ``unit``; ``skip(data)`` says why ``data`` cannot be scored (or
    None); ``reads_trace``: whether it reads every token of a Trace (one progress pass)."""

    name: str
    summary: Callable[..., dict[str, Any]]
    skip: Callable[[Any], str | None]
    reads_trace: bool = True


COST_MODELS: Registry[CostModel] = Registry("cost model", ("placer.cost.coherent", "placer.cost.ep",
                                                           "placer.cost.load", "placer.cost.time"))


def register(model: CostModel) -> CostModel:
    return COST_MODELS.add(model.name, model, model.summary.__module__)


def cost_model_names() -> tuple[str, ...]:
    """Every registered cost model, in registration order."""
    return tuple(COST_MODELS)
