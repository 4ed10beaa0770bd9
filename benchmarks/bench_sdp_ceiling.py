"""How far a semidefinite relaxation on the bound's own segments could take the coherent bound (issue 12).

The coherent bound (``placer.solvers.bounds``) sums, over segments of consecutive layers (chains
of :func:`placer.solvers.bounds.window_for` layers), a bound on each segment's smallest balanced
cut, found by an L-BFGS ascent of the eigenvalue/degree claim. This script solves, for the same
segments at the GPU level of one node, the semidefinite relaxation with nonnegativity::

    min  sum_t sum_ij trans[t, i, j] (1 - X[t i, t+1 j])
    s.t. X - J / G  PSD,  diag(X) = 1,  X >= 0,  sum_{j in layer b} X[v, j] = S  for every v, b

(``X[v, w]`` = 1 when v and w share a GPU; every balanced placement is feasible, so the optimum
is a lower bound on the segment's cut), and prints the sum over segments in the objective's
units, beside nothing else: compare it with the solver's bound and objective
(``bench_bound_ceiling.py``, ``bench_quality.py``).

The values come from SCS, a first-order solver, at ``eps`` 1e-4: a measurement of the
relaxation's strength, not a proven bound (no dual certificate is checked). Needs ``cvxpy``,
which the project does not depend on (``pip install cvxpy``).

Run: ``python benchmarks/bench_sdp_ceiling.py ../shared/traces/esft/esft_v2lite_intent.npz --gpus 4``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from placer.model.trace import Trace  # noqa: E402
from placer.solvers.bounds import window_for  # noqa: E402
from placer.traces.load import load_input, profile_of  # noqa: E402


def segment_cut(trans: np.ndarray, gpus: int, eps: float) -> tuple[float, str]:
    """The relaxation's optimum for one chain ``trans [c-1, E, E]`` on ``gpus`` GPUs of one node."""
    import cvxpy as cp

    c, E = len(trans) + 1, trans.shape[1]
    S, n = E // gpus, c * E
    X = cp.Variable((n, n), symmetric=True)
    cons = [X - np.ones((n, n)) / gpus >> 0, cp.diag(X) == 1, X >= 0]
    cons += [cp.sum(X[:, b * E:(b + 1) * E], axis=1) == S for b in range(c)]
    cut = sum(cp.sum(cp.multiply(trans[t], 1 - X[t * E:(t + 1) * E, (t + 1) * E:(t + 2) * E])) for t in range(c - 1))
    prob = cp.Problem(cp.Minimize(cut), cons)
    prob.solve(solver="SCS", eps=eps, max_iters=5000)
    return float(prob.value), prob.status


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--gpus", type=int, required=True, help="GPUs of one node")
    ap.add_argument("--eps", type=float, default=1e-4, help="SCS's tolerance")
    ap.add_argument("--top1", action="store_true", help="the trace's first pick only (bench_quality's top-1 rows)")
    args = ap.parse_args()
    try:
        import cvxpy  # noqa: F401
    except ImportError:
        sys.exit("this benchmark needs cvxpy, which the project does not depend on: pip install cvxpy")
    trace = load_input(args.trace)
    if args.top1:
        trace = Trace(expert_ids=trace.top1()[:, :, None], num_experts=trace.num_experts, seq_offsets=trace.seq_offsets)
    profile = profile_of(trace)
    trans = np.asarray(profile.trans, np.float64)
    E, K2 = profile.num_experts, float(profile.top_k ** 2)
    if E % args.gpus:
        sys.exit(f"{E} experts do not fill {args.gpus} GPUs evenly; pick a divisor of {E}")
    step = window_for(E) - 1
    total, t0 = 0.0, time.perf_counter()
    for a in range(0, len(trans), step):
        b = min(a + step, len(trans))
        began = time.perf_counter()
        cut, status = segment_cut(trans[a:b], args.gpus, args.eps)
        total += cut
        print(json.dumps({"layers": [a, b], "cut": round(cut, 1), "status": status,
                          "seconds": round(time.perf_counter() - began, 1)}), flush=True)
    print(f"sum over segments: {total / K2:,.0f} (objective units), {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
