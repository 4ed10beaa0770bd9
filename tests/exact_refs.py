"""Reference truths for the exact-model tests: costs computed per token from their definitions,
and brute-force enumeration of every placement of tiny instances."""

from __future__ import annotations

import itertools

import numpy as np

from placer.model.profile import Profile
from placer.model.trace import Trace


def random_trace(rng: np.random.Generator, L: int, E: int, K: int, T: int, affinity: float = 0.6) -> Trace:
    """A trace whose layer-(l+1) choice follows layer l's with probability ``affinity`` (K distinct ids)."""
    perm = [rng.permutation(E) for _ in range(L)]
    ids = np.empty((L, T, K), np.int64)
    for t in range(T):
        first = rng.choice(E, size=K, replace=False)
        ids[0, t] = first
        for l in range(1, L):
            if rng.random() < affinity:
                cand = perm[l][ids[l - 1, t]]
            else:
                cand = rng.choice(E, size=K, replace=False)
            ids[l, t] = cand
    return Trace(expert_ids=ids.astype(np.uint8), num_experts=E)


def token_coherent_cost(trace: Trace, expert_gpus: np.ndarray, hop: np.ndarray) -> float:
    """Coherent cost by definition: per token and layer transition, the mean over its K x K pairs
    of the smallest hop between a replica of the layer-l expert and one of the layer-(l+1) expert.
    ``expert_gpus`` ``[L, E, G]`` bool."""
    ids = np.asarray(trace.expert_ids).astype(np.int64)
    L, T, K = ids.shape
    total = 0.0
    for l in range(L - 1):
        E = expert_gpus.shape[1]
        D = np.full((E, E), np.inf)
        for i in range(E):
            for j in range(E):
                ga = np.flatnonzero(expert_gpus[l, i])
                gb = np.flatnonzero(expert_gpus[l + 1, j])
                D[i, j] = hop[np.ix_(ga, gb)].min()
        total += D[ids[l][:, :, None], ids[l + 1][:, None, :]].sum() / K ** 2
    return float(total)


def token_pairs(trace: Trace) -> np.ndarray:
    """``[L-1, E, E]`` K x K pair counts of consecutive layers / K^2, counted token by token."""
    ids = np.asarray(trace.expert_ids).astype(np.int64)
    L, T, K = ids.shape
    P = np.zeros((L - 1, trace.num_experts, trace.num_experts))
    for l in range(L - 1):
        for t in range(T):
            for a in ids[l, t]:
                for b in ids[l + 1, t]:
                    P[l, a, b] += 1
    return P / K ** 2


def pairs_cost(P: np.ndarray, gpu_of: np.ndarray, hop: np.ndarray) -> float:
    """Coherent cost of a replica-free placement from token pair counts ``P``."""
    return sum(float((P[l] * hop[np.ix_(gpu_of[l], gpu_of[l + 1])]).sum()) for l in range(len(P)))


def token_pair_cut(trace: Trace, gpu_of: np.ndarray, hop: np.ndarray) -> float:
    """The exact models' ``ep`` objective by definition: per token and layer, the hop between
    every unordered pair of its K experts (replica-free placements)."""
    ids = np.asarray(trace.expert_ids).astype(np.int64)
    L, T, K = ids.shape
    total = 0.0
    for l in range(L):
        g = gpu_of[l][ids[l]]
        for a in range(K):
            for b in range(a + 1, K):
                total += hop[g[:, a], g[:, b]].sum()
    return float(total)


def layer_assignments(E: int, G: int) -> list[np.ndarray]:
    """Every map expert -> GPU with exactly E / G experts per GPU (no symmetry removed)."""
    S = E // G
    out = []
    for combo in itertools.product(range(G), repeat=E):
        if all(combo.count(g) == S for g in range(G)):
            out.append(np.array(combo))
    return out


def all_gpu_of(L: int, E: int, G: int):
    """Every replica-free placement ``gpu_of [L, E]``."""
    per = layer_assignments(E, G)
    for choice in itertools.product(per, repeat=L):
        yield np.stack(choice)


def layer_replica_sets(E: int, G: int, S: int) -> list[np.ndarray]:
    """Every ``[E, G]`` bool holding of one layer: each GPU S distinct experts, each expert >= 1 GPU."""
    per_gpu = list(itertools.combinations(range(E), S))
    out = []
    for choice in itertools.product(per_gpu, repeat=G):
        m = np.zeros((E, G), bool)
        for g, experts in enumerate(choice):
            m[list(experts), g] = True
        if m.any(axis=1).all():
            out.append(m)
    return out


def profile_of(trace: Trace) -> Profile:
    return Profile.from_trace(trace)
