"""One JSON-able report of a placement under the chosen cost models (what ``evaluate`` prints)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from placer.cost.inputs import check_compatible
from placer.cost.registry import COST_MODELS, EvalOptions, cost_model_names
from placer.fileio import to_jsonable
from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.model.trace import DEFAULT_CHUNK_TOKENS, Trace

_MATRICES = ("traffic", "gpu_load")


def default_costs(step: Any = None) -> list[str]:
    """The cost models :func:`evaluate` runs by default: every registered one, ``time`` only
    with the step spec it needs."""
    return [c for c in cost_model_names() if c != "time" or step is not None]


def passes_over_trace(data: Trace | Profile, costs: Sequence[str]) -> int:
    """How many times :func:`evaluate` reads the tokens of ``data`` for ``costs`` (for progress)."""
    if not isinstance(data, Trace):
        return 0
    return len([c for c in costs if c in COST_MODELS and COST_MODELS.get(c).reads_trace])


def evaluate(data: Trace | Profile, placement: Placement, topology: Topology,
             costs: Sequence[str] | None = None, hidden_size: int | None = None, dtype_bytes: int = 2,
             home: np.ndarray | None = None, chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
             matrices: bool = True, progress: Callable[[int], None] | None = None,
             step: Any = None, time_comm: str = "ep") -> dict[str, Any]:
    """A JSON-able summary of the chosen cost models (plain Python types, arrays as lists).

    ``costs``: the models to run (default: every registered one, ``time`` only with a ``step``,
    the :class:`~placer.cost.time.StepSpec` it needs; ``time_comm``: its exchanges, ep or coherent).

    ``ep`` needs a Trace and ``coherent`` transition counts: without them their entry says it
    was skipped and why.
    ``matrices=False`` leaves out the ``[G, G]`` traffic and ``[L, G]`` load arrays.
    ``progress`` is called with the tokens of every chunk read (one pass per trace-based model).
    """
    names = default_costs(step) if costs is None else costs
    models = [COST_MODELS.get(c) for c in names]
    check_compatible(data, placement, topology)
    L = data.num_layers
    out: dict[str, Any] = {
        "data": {"kind": "trace" if isinstance(data, Trace) else "profile", "num_layers": L,
                 "num_experts": data.num_experts, "num_tokens": int(data.num_tokens), "top_k": int(data.top_k)},
        "placement": {"num_gpus": placement.num_gpus, "slots_per_gpu": placement.slots_per_gpu,
                      "replicas_per_layer": placement.num_replicas},
        "topology": topology.describe(),
    }
    options = EvalOptions(hidden_size, dtype_bytes, home, chunk_tokens, progress, step, time_comm)
    for model in models:
        why = model.skip(data)
        res = {"model": model.name, "skipped": why} if why else model.summary(data, placement, topology, options)
        if not matrices:
            res = {k: v for k, v in res.items() if k not in _MATRICES}
        out[model.name] = res
    return to_jsonable(out)
