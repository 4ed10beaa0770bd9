"""Wall time of the baselines and EPLB at DeepSeek-V3 size (58 MoE layers x 256 experts).

Loads are synthetic (log-normal, sigma 1, seed 0): speed does not depend on where the load comes from, only
on the shapes. Clusters: 64 GPUs in 8 nodes, 0 and 64 redundant slots; EPLB with 8 groups
(hierarchical, DeepSeek-V3's grouping) and with 1 group (global).

    python benchmarks/baselines_speed.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from placer.model.profile import Profile  # noqa: E402
from placer.solvers.base import Constraints, solve  # noqa: E402
from placer.model.topology import Topology  # noqa: E402


def main() -> None:
    L, E, G, gpn = 58, 256, 64, 8
    load = np.round(1000 * np.random.default_rng(0).lognormal(0.0, 1.0, size=(L, E)))
    profile = Profile(load=load, num_tokens=0, top_k=8)
    topo = Topology.uniform(G, gpn)
    print("| solver | options | replicas | seconds (best of 3) | max imbalance |")
    print("| --- | --- | --- | --- | --- |")
    for replicas in (0, 64):
        for name, options in [("contiguous", {}), ("round_robin", {}), ("random", {}),
                              ("eplb", {"num_groups": 8}), ("eplb", {"num_groups": 1})]:
            best = np.inf
            for _ in range(3):
                t0 = time.perf_counter()
                res = solve(name, profile, topo, Constraints(replicas=replicas), options)
                best = min(best, time.perf_counter() - t0)
            opt = ", ".join(f"{k}={v}" for k, v in options.items())
            print(f"| {name} | {opt} | {replicas} | {best:.3f} | {res.details['max_imbalance']:.3f} |")


if __name__ == "__main__":
    main()
