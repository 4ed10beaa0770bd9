"""The ``time`` cost model: predicted seconds of one forward step of B tokens, summed over MoE layers.

Per MoE layer (docs/time-model.md):

- **communication**: ``ep`` dispatches each token once to every remote GPU serving one of its
  picks and combines back (two all-to-alls); ``coherent`` moves each token once per layer
  transition (one). An all-to-all of a ``[G, G]`` byte matrix takes ``latency + max over GPUs of
  max(scale-up bytes / scale-up bandwidth, scale-out bytes / scale-out bandwidth)``, the larger
  of what a GPU sends and receives: NVLink and the NIC work in parallel, the slowest GPU bounds
  the exchange, and the latency is paid once (the level's: scale-out when any byte leaves a node).
- **experts**: the slowest GPU's roofline, ``max(FLOPs / (peak x efficiency), weight bytes of
  its active experts / (HBM x efficiency))``: a GPU serving n picks does ``n x 2 x matrices x H x I``
  FLOPs; expert e (one of its c replicas) is active in a step when at least one of the step's B
  tokens picks it there: probability ``1 - (1 - p_e / c)^B``, ``p_e`` the share of tokens that
  pick e. Decode (small B) is memory-bound, prefill compute-bound.
- **shared experts** (when the model has them): every GPU runs them on its own B / G tokens; the
  same on every GPU, reported apart (``shared_s``), not changed by a placement.

``step_s = comm_s + compute_s + shared_s``. From a Trace the ep traffic is counted token by token
(:func:`placer.cost.ep_cost`); from a Profile (what solvers see) it is estimated
(:func:`ep_exchange_from_profile`). Token picks per GPU follow the load model (a replicated
expert's picks split evenly over its replicas). Figures are per step: the trace's counts are
scaled by ``B / T``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from placer.cost.objectives import gpu_loads
from placer.cost.registry import CostModel, register
from placer.model.experts import ExpertShape
from placer.model.hardware import Hardware
from placer.model.topology import Topology

PHASES = {"prefill": 8192, "decode": 256}      # default tokens per step of each phase


@dataclass(frozen=True)
class StepSpec:
    """One forward step: ``tokens_per_step`` B, on ``hardware``, of a model with ``shape`` experts;
    expert GEMMs in ``compute_dtype`` (``bf16`` or ``fp8``)."""

    hardware: Hardware
    shape: ExpertShape
    tokens_per_step: int = PHASES["prefill"]
    phase: str = "prefill"
    compute_dtype: str = "bf16"

    def describe(self) -> dict[str, Any]:
        return {"hardware": self.hardware.name, "model": self.shape.name, "phase": self.phase,
                "tokens_per_step": self.tokens_per_step, "compute_dtype": self.compute_dtype}


@dataclass
class TimeCost:
    """Predicted seconds of a step (module docstring). ``per_layer_*`` are ``[L]``; for coherent
    ``per_layer_comm_s[l]`` is the exchange after layer l (0 for the last)."""

    step_s: float
    comm_s: float
    compute_s: float
    shared_s: float
    per_layer_s: np.ndarray
    per_layer_comm_s: np.ndarray
    per_layer_compute_s: np.ndarray
    spec: StepSpec
    cost_model: str

    def summary(self) -> dict[str, Any]:
        return {"model": "time", "unit": "seconds per step", "comm_model": self.cost_model, **self.spec.describe(),
                "step_s": self.step_s, "comm_s": self.comm_s, "compute_s": self.compute_s,
                "shared_s": self.shared_s, "per_layer_s": self.per_layer_s,
                "per_layer_comm_s": self.per_layer_comm_s, "per_layer_compute_s": self.per_layer_compute_s}


# ------------------------------------------------------------------------- exchanges
def exchange_time(nbytes: np.ndarray, topology: Topology, hw: Hardware) -> float:
    """Seconds of one all-to-all moving ``nbytes[a, b]`` bytes from GPU a to GPU b (module docstring)."""
    return float(exchange_times(nbytes[None], topology, hw)[0])


def exchange_times(nbytes: np.ndarray, topology: Topology, hw: Hardware) -> np.ndarray:
    """``[n]`` :func:`exchange_time` of each of ``nbytes [n, G, G]``."""
    B = np.asarray(nbytes, dtype=np.float64)
    G = B.shape[-1]
    off = ~np.eye(G, dtype=bool)
    inter = topology.inter_node & off
    intra = off & ~inter
    up = hw.scale_up_bytes_per_s * hw.comm_efficiency
    out = hw.scale_out_bytes_per_s * hw.comm_efficiency
    t_up = np.maximum((B * intra).sum(axis=2), (B * intra).sum(axis=1)) / up           # [n, G]
    t_out = np.maximum((B * inter).sum(axis=2), (B * inter).sum(axis=1)) / out
    slowest = np.maximum(t_up, t_out).max(axis=1)
    moved_out = (B * inter).sum(axis=(1, 2)) > 0
    moved = (B * off).sum(axis=(1, 2)) > 0
    latency = np.where(moved_out, hw.scale_out_latency_s, np.where(moved, hw.scale_up_latency_s, 0.0))
    return latency + slowest


def ep_exchange_from_profile(pick: np.ndarray, pair: np.ndarray | None, rg: np.ndarray, num_gpus: int,
                             tokens: float) -> np.ndarray:
    """``[L, G, G]`` expected dispatch copies per step of ``tokens`` tokens, from per-token rates.

    ``pick [L, E]``: share of tokens picking expert e; ``pair [L, E, E]``: share picking both
    (None: as if independent); ``rg [L, E, R]`` replica GPUs (a pick of e is served by each of
    its c replicas with probability 1 / c). A token reaches GPU g when one of its picks is served
    there: with g's experts in order of popularity, ``u_g = sum_e p_e prod_{e' before e}
    (1 - p(e' | e))``, ``p(e' | e) = p_ee' / p_e``: the chance that e is the first of g's experts
    the token picks, taking the pairs as conditionally independent given e. Exact when g's
    experts are picked independently and when they are always picked together (the two ends a
    placement moves between). Homes are spread evenly (B / G tokens a GPU), so GPU h sends
    ``B / G x u_g`` copies to every other g.
    """
    L, E, R = rg.shape
    G = num_gpus
    cnt = (rg >= 0).sum(axis=2)
    share = pick / cnt                                              # [L, E] per replica
    u = np.zeros((L, G))
    for l in range(L):
        inst_e = np.concatenate([np.flatnonzero(rg[l, :, r] >= 0) for r in range(R)])
        inst_g = np.concatenate([rg[l, rg[l, :, r] >= 0, r] for r in range(R)])
        p = share[l, inst_e]
        for g in range(G):
            on = np.flatnonzero(inst_g == g)
            if not len(on):
                continue
            on = on[np.argsort(-p[on], kind="stable")]
            pe = p[on]
            if pair is None:
                cond = np.broadcast_to(pe[None, :], (len(on), len(on)))            # [e, e'] = p_e'
            else:
                e = inst_e[on]
                pp = pair[l][np.ix_(e, e)] / np.outer(cnt[l, e], cnt[l, e])
                cond = np.divide(pp, pe[:, None], out=np.zeros_like(pp), where=pe[:, None] > 0)
            miss = np.log(np.clip(1.0 - np.tril(cond, -1), 1e-300, 1.0)).sum(axis=1)
            u[l, g] = min(1.0, float((pe * np.exp(miss)).sum()))
    M = np.broadcast_to((tokens / G) * u[:, None, :], (L, G, G)).copy()
    M[:, np.arange(G), np.arange(G)] = 0.0
    return M


# --------------------------------------------------------------------------- experts
def active_experts(pick: np.ndarray, rg: np.ndarray, tokens: float, num_gpus: int) -> np.ndarray:
    """``[L, G]`` expected active expert replicas per GPU in a step of ``tokens`` tokens."""
    cnt = (rg >= 0).sum(axis=2)
    p = 1.0 - np.power(np.clip(1.0 - pick / cnt, 0.0, 1.0), tokens)           # [L, E] per replica
    out = np.zeros((rg.shape[0], num_gpus))
    for l in range(rg.shape[0]):
        valid = rg[l] >= 0
        out[l] = np.bincount(rg[l][valid], weights=np.broadcast_to(p[l][:, None], valid.shape)[valid],
                             minlength=num_gpus)
    return out


def expert_times(gpu_picks: np.ndarray, active: np.ndarray, spec: StepSpec) -> np.ndarray:
    """``[L, G]`` roofline seconds of each GPU's routed experts: ``gpu_picks`` per step, ``active``
    expected active experts (their weights are read once per step)."""
    hw, shape = spec.hardware, spec.shape
    flops = gpu_picks * shape.flops_per_pick / (hw.flops(spec.compute_dtype) * hw.compute_efficiency)
    memory = active * shape.expert_bytes / (hw.hbm_bytes_per_s * hw.memory_efficiency)
    return np.maximum(flops, memory)


def shared_time(spec: StepSpec, num_gpus: int) -> float:
    """Seconds of the shared experts per layer on each GPU (its B / G tokens)."""
    shape, hw = spec.shape, spec.hardware
    if not shape.shared_intermediate_size:
        return 0.0
    flops = spec.tokens_per_step / num_gpus * shape.shared_flops_per_token
    return max(flops / (hw.flops(spec.compute_dtype) * hw.compute_efficiency),
               shape.shared_bytes / (hw.hbm_bytes_per_s * hw.memory_efficiency))


# ----------------------------------------------------------------------------- steps
def step_time(comm_copies: np.ndarray, load: np.ndarray, num_tokens: int, rg: np.ndarray, topology: Topology,
              spec: StepSpec, cost_model: str) -> TimeCost:
    """The step time of a placement (``rg [L, E, R]``) from its per-layer exchanges and loads.

    ``comm_copies``: ``[L, G, G]`` (ep: dispatch copies per layer) or ``[L-1, G, G]`` (coherent:
    token moves per transition), counted over the ``num_tokens`` tokens of ``load [L, E]``.
    """
    L, E = load.shape
    G = topology.num_gpus
    B = float(spec.tokens_per_step)
    scale = B / max(num_tokens, 1)
    H = spec.shape.hidden_size
    per_layer_comm = np.zeros(L)
    if len(comm_copies):
        copies = np.asarray(comm_copies, dtype=np.float64) * scale
        if cost_model == "ep":
            per_layer_comm = (exchange_times(copies * H * spec.shape.dispatch_bytes, topology, spec.hardware)
                              + exchange_times(np.swapaxes(copies, 1, 2) * H * spec.shape.combine_bytes,
                                               topology, spec.hardware))
        else:
            per_layer_comm[:len(copies)] = exchange_times(copies * H * spec.shape.dispatch_bytes, topology,
                                                          spec.hardware)
    pick = load / max(num_tokens, 1)
    picks = gpu_loads(load, rg, G) * scale
    experts = expert_times(picks, active_experts(pick, rg, B, G), spec)
    per_layer_compute = experts.max(axis=1)
    shared = shared_time(spec, G) * L
    per_layer = per_layer_comm + per_layer_compute
    return TimeCost(step_s=float(per_layer.sum() + shared), comm_s=float(per_layer_comm.sum()),
                    compute_s=float(per_layer_compute.sum()), shared_s=float(shared), per_layer_s=per_layer,
                    per_layer_comm_s=per_layer_comm, per_layer_compute_s=per_layer_compute, spec=spec,
                    cost_model=cost_model)


def time_cost(data, placement, topology: Topology, spec: StepSpec, comm: str = "ep",
              chunk_tokens: int | None = None, progress=None) -> TimeCost:
    """The ``time`` cost of ``placement`` on a Trace (exchanges counted token by token) or a
    Profile (coherent exchanges exact, ep estimated, :func:`ep_exchange_from_profile`)."""
    from placer.cost.coherent import coherent_cost
    from placer.cost.ep import ep_cost
    from placer.cost.inputs import check_compatible, pad_experts, replica_gpus
    from placer.model.profile import Profile
    from placer.model.trace import DEFAULT_CHUNK_TOKENS

    check_compatible(data, placement, topology)
    chunk = chunk_tokens or DEFAULT_CHUNK_TOKENS
    rg = replica_gpus(placement)
    E = placement.num_experts
    if isinstance(data, Profile):
        prof = data
    else:
        prof = Profile.from_trace(data, chunk_tokens=chunk, coact=False, trans=False)
    load = pad_experts(prof.load.astype(np.float64), E, (1,))
    T = prof.num_tokens
    if comm == "coherent":
        copies = coherent_cost(data, placement, topology, chunk_tokens=chunk, progress=progress).layer_traffic
    elif isinstance(data, Profile):
        pair = None if data.coact is None else pad_experts(data.coact.astype(np.float64), E, (1, 2)) / max(T, 1)
        copies = ep_exchange_from_profile(load / max(T, 1), pair, rg, topology.num_gpus, float(T))
    else:
        # a step's B tokens are spread evenly over the GPUs (data-parallel ranks), whatever
        # the sequences of the trace: the trace's tokens in order, cut into G equal blocks
        home = (np.arange(data.num_tokens, dtype=np.int64) * topology.num_gpus) // max(data.num_tokens, 1)
        copies = ep_cost(data, placement, topology, home=home, chunk_tokens=chunk, progress=progress).layer_traffic
    return step_time(copies, load, T, rg, topology, spec, comm)


def _summary(data, placement, topology: Topology, options) -> dict[str, Any]:
    if options.step is None:
        return {"model": "time", "skipped": "needs the model's expert shape: pass --model NAME or its config.json "
                                            "(or --hidden-size and --expert-intermediate-size)"}
    return time_cost(data, placement, topology, options.step, options.time_comm, options.chunk_tokens,
                     options.progress).summary()


register(CostModel("time", _summary, lambda data: None))
