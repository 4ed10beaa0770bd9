"""The replayed model: seeded expert FFNs and the single-process reference (torch, fp32).

One MoE layer maps the hidden state ``x [T, H]`` to
``x + sum_k g[t, k] * FFN_{l, ids[l, t, k]}(rmsnorm(x))``: a pre-norm residual block whose
router decisions come from the trace. ``FFN`` is SwiGLU (``W2 (silu(W1 x) * W3 x)``, as in
Mixtral and DeepSeek) or GELU (``W2 gelu(W1 x)``), weights drawn from
``numpy.random.default_rng([seed, layer, expert])``: every rank, placement and the reference
build bit-identical weights for one (layer, logical expert), so every placement computes the
same function. Initial activations come from ``default_rng([seed, ACTIVATION_STREAM])``.
A rank's bank may build only the experts its placement puts on it (:class:`ExpertBank`).
"""

from __future__ import annotations

import numpy as np

ACTIVATION_STREAM = 2**32 - 1  # a seed word no (layer, expert) pair uses
FFN_TYPES = ("swiglu", "gelu")


def initial_activations(seed: int, num_tokens: int, hidden: int) -> np.ndarray:
    """``[T, H]`` float32 token activations entering the first MoE layer."""
    return np.random.default_rng([seed, ACTIVATION_STREAM]).standard_normal((num_tokens, hidden), np.float32)


def expert_arrays(seed: int, layer: int, expert: int, hidden: int, ffn: int, ffn_type: str) -> list[np.ndarray]:
    """The weights of one expert: ``[W1 [H, F], W3 [H, F], W2 [F, H]]`` (GELU: no W3), float32.

    Scaled so that a 32-layer residual stack keeps activations of order 1.
    """
    rng = np.random.default_rng([seed, layer, expert])
    n_in = 2 if ffn_type == "swiglu" else 1
    ws = [rng.standard_normal((hidden, ffn), np.float32) / np.float32(np.sqrt(hidden)) for _ in range(n_in)]
    ws.append(rng.standard_normal((ffn, hidden), np.float32) / np.float32(2 * np.sqrt(ffn)))
    return ws


class NotHeld(Exception):
    """A rank was asked to compute an expert the placement does not put on it."""


class ExpertBank:
    """Expert weights on one device, built on first use and cached by (layer, expert).

    ``allowed`` (a set of (layer, expert), or None for any): the experts this bank may build;
    asking for another raises :class:`NotHeld`, so a replay that did not follow the placement
    cannot pass by building the expert it needed where it happened to be. ``owner`` names the
    bank in that message (``"rank 2 (placement)"``).
    """

    def __init__(self, seed: int, hidden: int, ffn: int, ffn_type: str, device="cpu",
                 allowed: set[tuple[int, int]] | None = None, owner: str = ""):
        self.seed, self.hidden, self.ffn, self.ffn_type, self.device = seed, hidden, ffn, ffn_type, device
        self.allowed, self.owner = allowed, owner
        self._cache: dict[tuple[int, int], list] = {}

    def built(self) -> list[tuple[int, int]]:
        """The (layer, expert) pairs built so far, sorted."""
        return sorted(self._cache)

    def arrays(self, layer: int, expert: int) -> list[np.ndarray]:
        return expert_arrays(self.seed, layer, expert, self.hidden, self.ffn, self.ffn_type)

    def weights(self, layer: int, expert: int) -> list:
        import torch
        key = (int(layer), int(expert))
        if key not in self._cache:
            if self.allowed is not None and key not in self.allowed:
                raise NotHeld(f"{self.owner} was asked to compute expert {key[1]} of layer {key[0]}, which the "
                              f"placement does not put on it; the replay did not follow the placement")
            self._cache[key] = [torch.from_numpy(a).to(self.device) for a in self.arrays(*key)]
        return self._cache[key]

    def forward(self, layer: int, expert: int, x):
        """``FFN_{layer, expert}(x)`` for ``x [N, H]`` already normalised; returns ``[N, H]``."""
        import torch.nn.functional as F
        w = self.weights(layer, expert)
        if self.ffn_type == "swiglu":
            return (F.silu(x @ w[0]) * (x @ w[1])) @ w[2]
        return F.gelu(x @ w[0]) @ w[1]


def held_experts(phy2log: np.ndarray, rank: int, world_size: int) -> set[tuple[int, int]]:
    """The (layer, expert) pairs whose slots ``phy2log [L, G*S]`` puts on ``rank``."""
    S = phy2log.shape[1] // world_size
    return {(l, int(e)) for l in range(phy2log.shape[0]) for e in phy2log[l, rank * S:(rank + 1) * S]}


def rmsnorm(x):
    """Weightless RMSNorm over the hidden dimension (eps 1e-6)."""
    import torch
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-6)


def experts_mix(bank: ExpertBank, layer: int, xn, experts: np.ndarray, weights: np.ndarray,
                rows: np.ndarray, out) -> None:
    """``out[rows[m]] += weights[m] * FFN_{layer, experts[m]}(xn[rows[m]])`` for every item m.

    ``xn`` ``[N, H]`` normalised inputs, ``experts``/``weights``/``rows`` ``[M]``; items of one
    expert run as one batch, experts in ascending id order.
    """
    import torch
    if len(experts) == 0:
        return
    order = np.argsort(experts, kind="stable")
    e_sorted = experts[order]
    bounds = np.flatnonzero(np.diff(e_sorted)) + 1
    for grp in np.split(order, bounds):
        r = torch.from_numpy(rows[grp]).to(out.device)
        w = torch.from_numpy(weights[grp]).to(out.device)[:, None]
        out.index_add_(0, r, w * bank.forward(layer, int(experts[grp[0]]), xn[r]))


def reference(ids: np.ndarray, gate: np.ndarray, x0: np.ndarray, bank: ExpertBank) -> np.ndarray:
    """Single-process forward of all tokens through all layers: ``[T, H]`` float32 output.

    ``ids`` ``[L, T, K]``, ``gate`` ``[L, T, K]`` float32, ``x0`` ``[T, H]``.
    """
    import torch
    x = torch.from_numpy(np.array(x0, dtype=np.float32, copy=True))
    L, T, K = ids.shape
    rows = np.repeat(np.arange(T), K)
    with torch.no_grad():
        for l in range(L):
            delta = torch.zeros_like(x)
            experts_mix(bank, l, rmsnorm(x), np.asarray(ids[l], np.int64).ravel(),
                        np.asarray(gate[l], np.float32).ravel(), rows, delta)
            x = x + delta
    return x.numpy()
