"""How often does the original EPLB put two copies of one expert on one GPU, and how often does
the fix need its swap repair?

Random instances (seed 0): 2 layers, G in {2, 4, 8} GPUs in one node, E = G x {1..4} experts,
G x {1, 2} redundant slots, Zipf(1.5) loads clipped at 10^4 (skewed, like real routing).

    python benchmarks/eplb_double_placement.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import placer.solvers.replicate as replicate  # noqa: E402
from placer.model.placement import Placement  # noqa: E402
from placer.solvers.eplb import rebalance_experts  # noqa: E402


def main(trials: int = 2000) -> None:
    repairs = 0
    put = replicate.DistinctBins.put

    def counting_put(self, item, choose):
        nonlocal repairs
        repairs += not self.allowed(item)
        return put(self, item, choose)

    replicate.DistinctBins.put = counting_put
    rng = np.random.default_rng(0)
    n = doubled = capped = 0
    for _ in range(trials):
        G = int(rng.choice([2, 4, 8]))
        E = G * int(rng.integers(1, 5))
        R = G * int(rng.integers(1, 3))
        if R > E * (G - 1):
            continue
        w = rng.zipf(1.5, size=(2, E)).clip(0, 1e4)
        orig, _, cnt = rebalance_experts(w, E + R, 1, 1, G, distinct=False)
        per_gpu = np.sort(orig.reshape(2, G, -1), axis=2)
        doubled += bool(np.any(per_gpu[:, :, 1:] == per_gpu[:, :, :-1]))
        capped += bool(cnt.max() > G)
        fixed, _, _ = rebalance_experts(w, E + R, 1, 1, G)
        Placement(fixed, E, G).validate()
        n += 1
    replicate.DistinctBins.put = put
    print(f"instances: {n}; original double-places in {doubled}, of which {capped} give an expert more copies "
          f"than GPUs; fixed: all valid, swap repair used {repairs} times")


if __name__ == "__main__":
    main()
