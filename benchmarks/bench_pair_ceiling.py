"""How far a bound summed over layer pairs can go: each consecutive layer pair solved alone.

Every bound of ``placer.solvers.bounds`` for the coherent cost is a sum over layer pairs of a
bound on that pair's own optimum (the whole placement restricted to a pair is feasible for the
pair). So no such bound can exceed the sum of the pairs' optima, whatever the method: where
that sum is far below the whole model's objective, the gap is in the cross-layer consistency,
and only bounds over longer chains of layers can close it.

This script solves every pair alone with ``partition`` (``--seconds`` each, coherent, one node)
and prints the sum of those objectives (an upper estimate of the sum of the pair optima, so of
that ceiling) next to the sum of the pairs' own bounds. Compare with the whole model's objective
from ``bench_quality.py``. Measured in docs/benchmarks.md ("What a bound over layer pairs can
reach").

    python benchmarks/bench_pair_ceiling.py ../shared/traces/esft/esft_v2lite_intent.npz --gpus 8 --top1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    from placer.model.profile import Profile
    from placer.model.topology import Topology
    from placer.model.trace import Trace
    from placer.solvers.base import Constraints, solve
    from placer.traces.load import load_input

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace", type=Path)
    ap.add_argument("--gpus", type=int, required=True)
    ap.add_argument("--top1", action="store_true", help="the trace's first pick only (bench_quality's top-1 rows)")
    ap.add_argument("--seconds", type=float, default=2.0, help="partition's time limit per pair")
    args = ap.parse_args()
    trace = load_input(args.trace)
    ids = trace.top1()[:, :, None] if args.top1 else trace.expert_ids
    topology = Topology.for_cluster(args.gpus, None, None, None)
    objective = bound = 0.0
    for l in range(trace.num_layers - 1):
        pair = Trace(expert_ids=ids[l:l + 2], num_experts=trace.num_experts, seq_offsets=trace.seq_offsets)
        res = solve("partition", Profile.from_trace(pair), topology,
                    Constraints(cost="coherent", time_limit=args.seconds, seed=0))
        objective += res.objective
        bound += res.bound or 0.0
    print(f"{args.trace.name}{' top-1' if args.top1 else ''} on {args.gpus} GPUs, {trace.num_layers - 1} layer pairs: "
          f"sum of the pairs' objectives {objective:,.0f}, sum of their bounds {bound:,.0f}")


if __name__ == "__main__":
    main()
