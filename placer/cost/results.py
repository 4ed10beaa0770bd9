"""What the cost models return: one dataclass per model, each with a JSON-able ``summary``.

Units: coherent in hop-weighted token transitions (``hop`` is the topology's unitless hop
cost), ep in token copies (bytes and seconds given a hidden size), load in token picks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class CoherentCost:
    """Coherent (ExFlow) cost: hop-weighted layer transitions.

    - ``total``: sum over tokens and transitions l -> l+1 of the mean over the token's K x K
      expert pairs of the (nearest-replica) hop cost. Unit: hop-weighted token transitions.
    - ``per_transition``: ``total / (num_tokens * (L - 1))``; with top-1 and one node (0/1
      hops) the share of layer transitions that change GPU (ExFlow's metric).
    - ``per_layer``: ``[L-1]`` the total split by transition l -> l+1.
    - ``traffic``: ``[G, G]`` expected token moves from GPU a to GPU b (fractional: each of a
      token's K x K pairs weighs 1/K^2), summed over transitions; diagonal 0.
      ``(hop * traffic).sum() == total``.
    - ``inter_node_share``: share of the token moves that cross nodes.
    - ``time_s``: with a hidden size, the alpha-beta estimate
      (:func:`~placer.cost.alltoall.alltoall_time`) of one all-to-all per transition carrying
      that transition's traffic, summed (seconds); ``per_layer_time_s`` ``[L-1]``. None without
      a hidden size.
    """

    total: float
    per_transition: float
    per_layer: np.ndarray
    traffic: np.ndarray
    num_tokens: int
    inter_node_share: float
    time_s: float | None = None
    per_layer_time_s: np.ndarray | None = None
    layer_traffic: np.ndarray | None = None      # [L-1, G, G] token moves per transition (not in summary)

    @property
    def max_link(self) -> float:
        """The largest off-diagonal traffic entry (token moves on the busiest GPU pair)."""
        return float(self.traffic.max()) if self.traffic.size else 0.0

    def summary(self) -> dict[str, Any]:
        return {"model": "coherent", "unit": "hop-weighted token transitions",
                "total": self.total, "per_transition": self.per_transition,
                "inter_node_share": self.inter_node_share, "max_link": self.max_link,
                "time_s": self.time_s, "per_layer": self.per_layer,
                "per_layer_time_s": self.per_layer_time_s, "traffic": self.traffic}


@dataclass
class EPCost:
    """Standard two-all-to-all expert-parallel cost with dedup.

    - ``copies``: dispatch copies sent off the home GPU, all layers (combine sends as many back).
    - ``bytes``: dispatch + combine bytes, ``2 * copies * hidden_size * dtype_bytes``; None
      without a hidden size.
    - ``per_layer``: ``[L]`` copies per layer.
    - ``traffic``: ``[G, G]`` dispatch copies from home GPU a to expert GPU b, all layers
      (combine traffic is its transpose).
    - ``inter_node_share``: share of copies that cross nodes.
    - ``mean_gpus_spanned``: mean over (token, layer) of the number of distinct GPUs serving
      the token's top-K (home included only when it serves one of them).
    - ``time_s``: alpha-beta estimate of the dispatch + combine time, summed over layers
      (seconds); None without a hidden size. ``per_layer_time_s`` ``[L]`` likewise.
    """

    copies: int
    bytes: float | None
    per_layer: np.ndarray
    traffic: np.ndarray
    inter_node_share: float
    mean_gpus_spanned: float
    time_s: float | None
    per_layer_time_s: np.ndarray | None
    num_tokens: int
    hidden_size: int | None = None
    dtype_bytes: int = 2
    layer_traffic: np.ndarray | None = None      # [L, G, G] dispatch copies per layer (not in summary)

    @property
    def max_link(self) -> int:
        """Dispatch copies on the busiest (home GPU, expert GPU) pair."""
        return int(self.traffic.max()) if self.traffic.size else 0

    @property
    def copies_per_token_layer(self) -> float:
        """Mean remote copies a token sends per layer."""
        layers = len(self.per_layer)
        return self.copies / (self.num_tokens * layers) if self.num_tokens and layers else 0.0

    def summary(self) -> dict[str, Any]:
        return {"model": "ep", "unit": "token copies (dispatch; combine sends as many back)",
                "copies": self.copies, "copies_per_token_layer": self.copies_per_token_layer,
                "bytes": self.bytes, "hidden_size": self.hidden_size, "dtype_bytes": self.dtype_bytes,
                "inter_node_share": self.inter_node_share,
                "mean_gpus_spanned": self.mean_gpus_spanned, "max_link": self.max_link,
                "time_s": self.time_s, "per_layer": self.per_layer,
                "per_layer_time_s": self.per_layer_time_s, "traffic": self.traffic}


@dataclass
class LoadCost:
    """Token picks per GPU per layer.

    - ``gpu_load``: ``[L, G]`` picks served by each GPU (float: a replicated expert's picks split
      evenly over its replicas).
    - ``imbalance``: ``[L]`` max / mean over GPUs (1.0 = perfectly balanced; 1.0 for a layer
      with no picks).
    """

    gpu_load: np.ndarray
    imbalance: np.ndarray

    @property
    def mean_imbalance(self) -> float:
        return float(self.imbalance.mean()) if self.imbalance.size else 1.0

    @property
    def max_imbalance(self) -> float:
        return float(self.imbalance.max()) if self.imbalance.size else 1.0

    def summary(self) -> dict[str, Any]:
        return {"model": "load", "unit": "token picks per GPU",
                "mean_imbalance": self.mean_imbalance, "max_imbalance": self.max_imbalance,
                "imbalance": self.imbalance, "gpu_load": self.gpu_load}
