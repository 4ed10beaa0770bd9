"""Where the coherent bound's eigenvalue ascents stop with more time (issue 12).

For one trace and GPU count: the b-matching flows of every layer pair, then the ascents of
:func:`placer.solvers.bounds.finish_bound` for each budget, with the evaluation cap of each
ascent (:class:`placer.solvers.bounds.decomposition.Effort`, ``max_evals``; 300 in the solver)
set by ``--max-evals``. Prints the bound, the seconds the ascents used (less than the budget when
every ascent stopped on its cap or stalled), and how many ascents ran into the cap. The gap to a
placement's objective is ``1 - bound / objective``.

Run: ``python benchmarks/bench_bound_ceiling.py TRACE --gpus 4 --budgets 10,30,120 --max-evals 3000``
(one core: BLAS is held to one thread, as in the solver).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import placer.solvers.bounds as bounds  # noqa: E402
from placer.model.topology import Topology  # noqa: E402
from placer.solvers.base import Constraints  # noqa: E402
from placer.solvers.bounds import decomposition  # noqa: E402
from placer.solvers.search.refine import single_thread_blas  # noqa: E402
from placer.traces.load import load_input, profile_of  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--gpus", type=int, required=True)
    ap.add_argument("--gpus-per-node", type=int, default=None, help="default: 8 when --gpus > 8, else one node")
    ap.add_argument("--budgets", default="10,30", help="seconds of ascents, comma separated")
    ap.add_argument("--max-evals", type=int, default=300, help="evaluations an ascent may take (solver: 300)")
    ap.add_argument("--semidefinite", action="store_true", help="the semidefinite stage on the time left "
                                                                "(partition's --param semidefinite=true)")
    args = ap.parse_args()

    profile = profile_of(load_input(args.trace))
    gpn = args.gpus_per_node or (8 if args.gpus > 8 else None)
    topo = Topology.for_cluster(args.gpus, gpn, None, None)
    cons = Constraints(cost="coherent")
    evals: list[int] = []
    split = decomposition.split_cut_bound

    def counted(*a, **kw):
        value, n, how = split(*a, **kw)
        evals.append(n)
        return value, n, how

    # the solver's ascents with another evaluation cap, counted
    bounds.split_cut_bound = counted
    bounds.Effort = lambda deadline: decomposition.Effort(deadline=deadline, max_evals=args.max_evals)
    print("| budget s | max evals | bound | ascents' s | ascents | at the cap |")
    print("|---|---|---|---|---|---|")
    with single_thread_blas():
        for budget in (float(b) for b in args.budgets.split(",")):
            evals.clear()
            # every pair's flow first (no deadline on them), as the solver does within its share
            pending = bounds.begin_bound(profile, topo, cons, time.perf_counter() + 1e9, args.semidefinite)
            t0 = time.perf_counter()
            value, _ = bounds.finish_bound(pending, t0 + budget)
            used = time.perf_counter() - t0
            capped = sum(n >= args.max_evals for n in evals)
            print(f"| {budget:g} | {args.max_evals} | {value:,.0f} | {used:.1f} | {len(evals)} | {capped} |", flush=True)


if __name__ == "__main__":
    main()
