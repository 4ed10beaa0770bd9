"""Statistics of a routing profile that say how much a placement can win (``moe-place inspect``).

All functions take counts from a :class:`~placer.model.profile.Profile` (L = MoE layers, E = experts):

- **load skew** of layer l: ``max_e load[l, e] / mean_e load[l, e]`` (1 = perfectly even).
- **NMI** of a layer transition: the normalised mutual information of consecutive top-1 choices
  X (expert at layer l) and Y (expert at layer l+1), from the joint counts ``trans_top1[l]``:
  ``NMI = 2 I(X; Y) / (H(X) + H(Y))`` (arithmetic-mean normalisation, scikit-learn's default);
  0 = independent, 1 = each choice determines the other. 0 when H(X) + H(Y) = 0.
- **mean max conditional probability** of a transition: ``sum_i max_j M[i, j] / sum_ij M[i, j]``
  with ``M = trans_top1[l]``: the load-weighted mean over experts i of ``max_j P(Y=j | X=i)``,
  i.e. how often a token's next top-1 expert is its current expert's most likely successor.
- **locality bound** for G GPUs with S = ceil(E / G) slots per GPU and one copy of each expert
  per layer (no replicas): an upper bound on the share of layer transitions (weighted by a
  transition matrix M = ``trans_top1[l]`` for top-1, or ``trans[l]``, all K x K pairs, for the
  coherent cost model) that any placement keeps on one GPU. Expert i at layer l shares its GPU
  with at most S experts of layer l+1, so it keeps at most the sum of its S largest successor
  counts (``row bound = sum_i top_S(M[i, :])``); symmetrically for predecessors (``column
  bound``). Per transition ``kept <= min(row bound, column bound)``; the bound of the trace is
  ``sum_l min(...) / sum_l sum(M_l)``. Each layer's placement takes part in two transitions, so
  a real placement may fall short of it; it never exceeds it. A balanced random placement keeps
  1/G in expectation; :func:`contiguous_kept_share` gives what the default contiguous placement
  keeps, for reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from placer.model.profile import Profile


def load_skew(load: np.ndarray) -> np.ndarray:
    """``[L]`` max/mean expert load per layer (``load [L, E]``); NaN for a layer with no load."""
    load = np.asarray(load, dtype=np.float64)
    mean = load.mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mean > 0, load.max(axis=1) / np.where(mean > 0, mean, 1), np.nan)


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def nmi(joint: np.ndarray) -> float:
    """Normalised mutual information ``2 I / (H(X) + H(Y))`` of the joint counts ``[E, E]``."""
    joint = np.asarray(joint, dtype=np.float64)
    total = joint.sum()
    if total <= 0:
        return float("nan")
    p = joint / total
    px, py = p.sum(axis=1), p.sum(axis=0)
    hx, hy = _entropy(px), _entropy(py)
    if hx + hy <= 0:
        return 0.0
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(px, py)[nz])).sum())
    return max(0.0, 2.0 * mi / (hx + hy))


def max_conditional_probability(joint: np.ndarray) -> float:
    """``sum_i max_j M[i, j] / sum M``: load-weighted mean of the largest ``P(next | current)``."""
    joint = np.asarray(joint, dtype=np.float64)
    total = joint.sum()
    return float(joint.max(axis=1).sum() / total) if total > 0 else float("nan")


def slots_per_gpu(num_experts: int, num_gpus: int) -> int:
    """S = ceil(E / G): slots one GPU needs to hold every expert once."""
    return -(-int(num_experts) // int(num_gpus))


def locality_kept_bound(trans: np.ndarray, slots: int) -> np.ndarray:
    """``[L-1]`` upper bound on the transition weight kept on one GPU, per transition.

    ``trans [L-1, E, E]``; ``slots`` = S. ``min(sum_i top_S(row i), sum_j top_S(column j))``.
    """
    trans = np.asarray(trans, dtype=np.float64)
    if trans.shape[0] == 0:
        return np.zeros(0)
    E = trans.shape[-1]
    s = min(int(slots), E)
    rows = -np.partition(-trans, s - 1, axis=2)[:, :, :s].sum(axis=(1, 2))
    cols = -np.partition(-trans, s - 1, axis=1)[:, :s, :].sum(axis=(1, 2))
    return np.minimum(rows, cols)


def locality_bound(trans: np.ndarray, num_gpus: int) -> float:
    """Upper bound on the share of transitions (weighted by ``trans [L-1, E, E]``) any placement
    on ``num_gpus`` GPUs without replicas keeps on one GPU (module docstring)."""
    trans = np.asarray(trans)
    total = float(trans.sum())
    if total <= 0:
        return float("nan")
    kept = locality_kept_bound(trans, slots_per_gpu(trans.shape[-1], num_gpus))
    return float(kept.sum() / total)


def contiguous_kept_share(profile: Profile, num_gpus: int) -> float | None:
    """Share of K x K layer-transition pairs that the contiguous placement (expert e on GPU
    ``e // (E/G)``, the Megatron/DeepSpeed default) keeps on one GPU: ``1 -`` its coherent cost
    per transition on one node (0/1 hops). None without ``trans`` or when G does not divide E."""
    if profile.trans is None or profile.trans.shape[0] == 0 or profile.num_experts % num_gpus:
        return None
    from placer.cost import coherent_cost
    from placer.model.topology import Topology
    from placer.solvers.baselines import baseline_placement

    placement = baseline_placement("contiguous", profile.load, num_gpus)
    return 1.0 - coherent_cost(profile, placement, Topology.uniform(num_gpus)).per_transition


def summarize(profile: Profile, num_gpus: int | None = None) -> dict[str, Any]:
    """Every statistic above as a JSON-able dict (per-layer lists plus summaries)."""
    skew = load_skew(profile.load)
    out: dict[str, Any] = {
        "tokens": profile.num_tokens,
        "layers": profile.num_layers,
        "moe_layers": list(profile.moe_layers),
        "experts": profile.num_experts,
        "top_k": profile.top_k,
        "load_skew": {"mean": float(np.nanmean(skew)), "min": float(np.nanmin(skew)),
                      "max": float(np.nanmax(skew)), "per_layer": skew.tolist()},
        "affinity": None,
        "locality": None,
    }
    t1 = profile.trans_top1
    if t1 is not None and t1.shape[0] > 0:
        n = [nmi(m) for m in t1]
        c = [max_conditional_probability(m) for m in t1]
        out["affinity"] = {"nmi_top1": {"mean": float(np.nanmean(n)), "per_transition": n},
                           "max_cond_prob_top1": {"mean": float(np.nanmean(c)), "per_transition": c}}
    if num_gpus is not None:
        S = slots_per_gpu(profile.num_experts, num_gpus)
        loc: dict[str, Any] = {"gpus": int(num_gpus), "slots_per_gpu": S, "random_share": 1.0 / num_gpus,
                               "bound_top1": None, "bound_pairs": None}
        if t1 is not None and t1.shape[0] > 0:
            loc["bound_top1"] = locality_bound(t1, num_gpus)
            kept = locality_kept_bound(t1, S)
            loc["bound_top1_per_transition"] = (kept / np.maximum(t1.sum(axis=(1, 2)), 1)).tolist()
        if profile.trans is not None and profile.trans.shape[0] > 0:
            loc["bound_pairs"] = locality_bound(profile.trans, num_gpus)
            loc["contiguous_pairs"] = contiguous_kept_share(profile, num_gpus)
        out["locality"] = loc
    return out
