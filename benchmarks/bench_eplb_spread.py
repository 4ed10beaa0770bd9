"""How much EPLB's own held-out balance moves when its training tokens change a little (issue 13).

Usage (repository root; needs ../shared/traces):

    python benchmarks/bench_eplb_spread.py [--refits 12]

For the ESFT traces at 4, 8 and 16 GPUs (16 as 2 x 8) with one replica per GPU, EPLB is fitted
on the training half (the first half of the sequences, as ``solve --holdout 0.5``) and then
refitted ``--refits`` times with one training sequence in eight left out (random, seeded). Each
placement's held-out worst-layer max/mean is printed: the spread is the noise floor against
which "no worse than EPLB held out" on one row can be judged.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from placer.cost import load_cost
from placer.model.topology import Topology
from placer.solvers.base import Constraints, solve
from placer.traces.load import load_input, profile_of

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--traces", type=Path, default=REPO.parent / "shared" / "traces")
    ap.add_argument("--refits", type=int, default=12)
    args = ap.parse_args()
    print("| trace | GPUs | EPLB held out | refitted without 1/8 of the sequences: min / median / max |")
    print("|---|---|---|---|")
    for name in ("intent", "summary"):
        data = load_input(args.traces / "esft" / f"esft_v2lite_{name}.npz")
        train, test = data.split(0.5)
        S = train.num_sequences
        for G in (4, 8, 16):
            topo = Topology.for_cluster(G, 8)
            cons = Constraints(replicas=G, cost="ep", time_limit=1, seed=0)
            full = solve("eplb", profile_of(train, coact=False, trans=False), topo, cons).placement
            rng = np.random.default_rng(1)
            worst = []
            for _ in range(args.refits):
                keep = np.sort(rng.choice(S, S - max(1, S // 8), replace=False))
                part = profile_of(train.select_sequences(keep), coact=False, trans=False)
                worst.append(load_cost(test, solve("eplb", part, topo, cons).placement).max_imbalance)
            print(f"| {name} | {G} | {load_cost(test, full).max_imbalance:.3f} | {min(worst):.3f} / "
                  f"{float(np.median(worst)):.3f} / {max(worst):.3f} |", flush=True)


if __name__ == "__main__":
    main()
