"""``validate(trace, placement, ...)``: check the inputs, then replay them on G ranks (Python API).

All input checks happen here, before any rank starts, so a bad input is one :class:`PlacerError`
line (exit 2) and never a hung process group.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from placer.errors import PlacerError
from placer.model.placement import Placement
from placer.model.trace import Trace
from placer.validate.model import FFN_TYPES
from placer.validate.faults import FAIL_ENV, MUTATE_ENV, MUTATIONS
from placer.validate.worker import ReplayConfig

MODES = ("ep", "coherent")
BACKENDS = ("gloo", "nccl")


def contiguous(num_layers: int, num_experts: int, num_gpus: int) -> Placement:
    """The Megatron/DeepSpeed default: expert e on GPU ``e // (E / G)`` in every layer."""
    if num_experts % num_gpus:
        raise PlacerError(f"--baseline contiguous needs the {num_experts} experts to split evenly over "
                          f"{num_gpus} GPUs; pass --baseline FILE with a placement instead")
    from placer.solvers.baselines import first_copy_gpus
    return Placement.from_gpu_of(first_copy_gpus("contiguous", num_layers, num_experts, num_gpus),
                                 num_gpus, report={"solver": "contiguous"})


def _check_fits(p: Placement, trace: Trace, name: str) -> None:
    if p.num_layers != trace.num_layers:
        raise PlacerError(f"{name} has {p.num_layers} layers but the trace has {trace.num_layers}; "
                          f"solve the placement on this trace")
    if p.num_experts != trace.num_experts:
        raise PlacerError(f"{name} has {p.num_experts} experts but the trace has {trace.num_experts}; "
                          f"solve the placement on this trace")


def build_config(trace: Trace, placement: Placement, baseline: str | Placement = "contiguous", *,
                 mode: str = "ep", world_size: int | None = None, backend: str = "gloo",
                 hidden_size: int = 64, ffn_size: int = 128, ffn_type: str = "swiglu",
                 tokens: int | None = 2048, iters: int = 3, warmup: int = 1, seed: int = 0,
                 timeout_s: float = 600.0, placement_name: str = "the placement") -> ReplayConfig:
    """Check everything a replay needs and return its :class:`ReplayConfig`.

    ``tokens``: replay the first N tokens (sequences cut at N); None or 0 replays all of them.
    """
    if mode not in MODES:
        raise PlacerError(f"unknown --mode {mode!r}; use one of {', '.join(MODES)}")
    if backend not in BACKENDS:
        raise PlacerError(f"unknown --dist-backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if ffn_type not in FFN_TYPES:
        raise PlacerError(f"unknown --ffn-type {ffn_type!r}; use one of {', '.join(FFN_TYPES)}")
    for opt, v in (("--hidden-size", hidden_size), ("--ffn-size", ffn_size), ("--iters", iters)):
        if v < 1:
            raise PlacerError(f"{opt} must be at least 1, got {v}")
    if warmup < 0 or timeout_s <= 0:
        raise PlacerError("--warmup must be >= 0 and --timeout positive")
    G = placement.num_gpus
    if world_size is not None and world_size != G:
        raise PlacerError(f"{placement_name} is for {G} GPUs but --world-size is {world_size}; "
                          f"replay it with --world-size {G} or solve a placement for {world_size} GPUs")
    _check_fits(placement, trace, placement_name)
    if isinstance(baseline, Placement):
        base, base_name = baseline, baseline.report.get("solver") or "file"
        if base.num_gpus != G:
            raise PlacerError(f"the --baseline placement is for {base.num_gpus} GPUs but {placement_name} "
                              f"is for {G}; compare placements for the same GPUs")
        _check_fits(base, trace, "the --baseline placement")
    elif baseline == "contiguous":
        base, base_name = contiguous(trace.num_layers, trace.num_experts, G), "contiguous"
    else:
        base = Placement.load(baseline)
        return build_config(trace, placement, base, mode=mode, world_size=world_size, backend=backend,
                            hidden_size=hidden_size, ffn_size=ffn_size, ffn_type=ffn_type, tokens=tokens,
                            iters=iters, warmup=warmup, seed=seed, timeout_s=timeout_s,
                            placement_name=placement_name)
    if mode == "coherent":
        from placer.validate.routing import coherent_gpu_of
        coherent_gpu_of(placement)
        coherent_gpu_of(base)
    if tokens is not None and tokens < 0:
        raise PlacerError(f"--tokens must be positive (0 = all), got {tokens}")
    if tokens and tokens < trace.num_tokens:
        trace = trace._token_range(0, int(tokens), with_offsets=True)
    if trace.dropped is not None and np.asarray(trace.dropped).any():
        raise PlacerError("the trace has capacity-dropped tokens, which the replay does not model (the cost "
                          "model skips them); replay a trace without drops or fewer --tokens before the first drop")
    _check_size(trace, hidden_size, ffn_size, ffn_type)
    mutation = os.environ.get(MUTATE_ENV) or None
    if mutation is not None and mutation not in MUTATIONS:
        raise PlacerError(f"{MUTATE_ENV}={mutation!r} is not one of {', '.join(MUTATIONS)} (a test hook); unset it")
    gate = None if trace.gate_weights is None else np.asarray(trace.gate_weights, np.float32)
    return ReplayConfig(
        expert_ids=np.asarray(trace.expert_ids, np.int64), gate=gate, offsets=trace.offsets.copy(),
        num_experts=trace.num_experts, phy2log=placement.phy2log.copy(), baseline=base.phy2log.copy(),
        baseline_name=base_name, world_size=G, mode=mode, backend=backend, hidden=int(hidden_size),
        ffn=int(ffn_size), ffn_type=ffn_type, iters=int(iters), warmup=int(warmup), seed=int(seed),
        collective_timeout_s=float(timeout_s),
        info={"trace_model": trace.model, "sequences": trace.num_sequences},
        fail_spec=os.environ.get(FAIL_ENV) or None, mutation=mutation,
    )


def _check_size(trace: Trace, hidden: int, ffn: int, ffn_type: str) -> None:
    """The reference on rank 0 builds every expert of every layer (``L E (2 or 3) H F`` fp32
    weights) next to ``[T, H]`` activations: refuse sizes beyond the memory budget."""
    from placer.limits import check_budget
    L, T, _K = trace.expert_ids.shape
    mats = 3 if ffn_type == "swiglu" else 2
    check_budget(4 * (L * trace.num_experts * mats * hidden * ffn + 8 * T * hidden),
                 f"--hidden-size {hidden} x --ffn-size {ffn} for {L} layers x {trace.num_experts} experts",
                 "replay a smaller model (the bytes scale with --hidden-size; the check does not need a big one)")


def validate(trace: Trace, placement: Placement, baseline: str | Placement = "contiguous",
             **kw: Any) -> dict[str, Any]:
    """Replay ``placement`` against ``baseline`` on G spawned ranks and return the report.

    Keyword arguments are those of :func:`build_config`. Under torchrun (RANK and WORLD_SIZE set)
    this process is one rank instead, and only rank 0 returns the report (others return None).
    """
    from placer.validate.launch import check_backend, run_torchrun, spawn, torchrun_env
    cfg = build_config(trace, placement, baseline, **kw)
    env = torchrun_env()
    if env is not None:
        check_backend(cfg.backend, 1)
        return run_torchrun(cfg)
    check_backend(cfg.backend, cfg.world_size)
    return spawn(cfg, cfg.collective_timeout_s)

