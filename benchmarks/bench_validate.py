"""Distributed replay on real traces: bytes measured vs predicted, outputs, time vs contiguous.

Usage (from the repository root):
    python benchmarks/bench_validate.py [--traces ../shared/traces] [--gpus 4 8] [--modes ep coherent]
        [--tokens 2048] [--hidden-size 128] [--ffn-size 256] [--iters 5] [--solver NAME] [--out FILE]

For each trace (Mixtral-8x7B MT-Bench coding, ESFT DeepSeek-V2-Lite intent) the placement is
solved on the first half of the sequences and replayed on held-out tokens of the second half.
The solver is ``--solver NAME`` (a registered solver, e.g. ``eplb`` with ``--replicas R``), else
a simple heuristic defined here, named in the output:

- ``ep``: ``swap-spanned``, pairwise expert swaps between GPUs that lower the number of distinct
  GPUs each training token's top-K experts span (home-independent, so it carries over to new
  sequences), first improvement, until no swap helps or ``--passes``;
- ``coherent``: ``chain-assignment``, layer 0 contiguous, then each next layer by a linear
  assignment (``scipy.optimize.linear_sum_assignment``) maximising the transition counts kept on
  one GPU given the previous layer.

Mixtral's JSON has no sequence boundaries: its tokens are cut into blocks of ``--block`` tokens,
treated as sequences, so that homes (sequence s -> rank s % G) spread over the ranks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from placer import Placement, Trace  # noqa: E402
from placer.traces.load import load_one  # noqa: E402
from placer.cost import load_cost  # noqa: E402
from placer.validate.api import contiguous, validate  # noqa: E402


def load_mixtral_json(path: Path, block: int) -> Trace:
    """The per-layer JSON through the importer, its tokens cut into ``block``-token sequences."""
    trace = load_one(path)
    T = trace.num_tokens
    return replace(trace, seq_offsets=np.unique(np.r_[np.arange(0, T, block), T]).astype(np.int64))


# ------------------------------------------------------------------------ built-in heuristics
def spanned(ids: np.ndarray, gpu: np.ndarray, G: int) -> int:
    """Sum over tokens of the distinct GPUs their picks span; ``ids`` ``[T, K]``, ``gpu`` ``[E]``."""
    g = gpu[ids]
    hit = np.zeros((len(ids), G), bool)
    hit[np.arange(len(ids))[:, None], g] = True
    return int(hit.sum())


def swap_spanned(trace: Trace, G: int, passes: int = 3) -> Placement:
    E, L = trace.num_experts, trace.num_layers
    gpu_of = np.tile(np.arange(E) // (E // G), (L, 1))
    for l in range(L):
        ids = np.asarray(trace.expert_ids[l], np.int64)
        gpu, best = gpu_of[l], spanned(ids, gpu_of[l], G)
        for _ in range(passes):
            improved = False
            for a in range(E):
                for b in range(a + 1, E):
                    if gpu[a] == gpu[b]:
                        continue
                    gpu[a], gpu[b] = gpu[b], gpu[a]
                    c = spanned(ids, gpu, G)
                    if c < best:
                        best, improved = c, True
                    else:
                        gpu[a], gpu[b] = gpu[b], gpu[a]
            if not improved:
                break
    return Placement.from_gpu_of(gpu_of, G, report={"solver": "swap-spanned"})


def chain_assignment(trace: Trace, G: int) -> Placement:
    from scipy.optimize import linear_sum_assignment
    E, L, K = trace.num_experts, trace.num_layers, trace.top_k
    ids = np.asarray(trace.expert_ids, np.int64)
    gpu_of = np.zeros((L, E), np.int64)
    gpu_of[0] = np.arange(E) // (E // G)
    for l in range(L - 1):
        trans = np.zeros((E, E))
        np.add.at(trans, (np.repeat(ids[l], K, axis=1).ravel(), np.tile(ids[l + 1], (1, K)).ravel()), 1)
        keep = np.zeros((E, G))           # keep[j, g]: pairs kept local if j goes to GPU g
        np.add.at(keep, (slice(None), gpu_of[l]), trans.T)
        cost = -np.repeat(keep, E // G, axis=1)   # E slots, E // G per GPU
        rows, cols = linear_sum_assignment(cost)
        gpu_of[l + 1, rows] = cols // (E // G)
    return Placement.from_gpu_of(gpu_of, G, report={"solver": "chain-assignment"})


def solve(trace: Trace, G: int, mode: str, solver: str | None, passes: int, replicas: int = 0) -> Placement:
    if solver:
        from placer.model.profile import Profile
        from placer.solvers.base import Constraints, get_solver
        from placer.model.topology import Topology
        res = get_solver(solver)(Profile.from_trace(trace), Topology.uniform(G),
                                 Constraints(cost=mode, time_limit=60.0, seed=0, replicas=replicas))
        res.placement.report.setdefault("solver", solver)
        return res.placement
    return swap_spanned(trace, G, passes) if mode == "ep" else chain_assignment(trace, G)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "traces")
    ap.add_argument("--gpus", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--modes", nargs="+", default=["ep", "coherent"])
    ap.add_argument("--which", nargs="+", default=["mixtral", "esft"])
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--hidden-size", type=int, default=128)
    ap.add_argument("--ffn-size", type=int, default=256)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--solver", default=None, help="a registered solver instead of the built-in heuristics")
    ap.add_argument("--replicas", type=int, default=0, help="redundant slots per layer, for --solver")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    traces = {"mixtral": lambda: load_mixtral_json(args.traces / "mixtral_mtbench" / "coding.json", args.block),
              "esft": lambda: load_one(args.traces / "esft" / "esft_v2lite_intent.npz")}
    rows = []
    for name in args.which:
        full = traces[name]()
        train, test = full.split(0.5)
        for G in args.gpus:
            for mode in args.modes:
                t0 = time.perf_counter()
                pl = solve(train, G, mode, args.solver, args.passes, args.replicas)
                solve_s = time.perf_counter() - t0
                base = contiguous(full.num_layers, full.num_experts, G)
                replayed = test._token_range(0, min(args.tokens, test.num_tokens), with_offsets=True)
                rep = validate(test, pl, base, mode=mode,
                               hidden_size=args.hidden_size, ffn_size=args.ffn_size, tokens=args.tokens,
                               iters=args.iters, warmup=1, seed=0, timeout_s=1200)
                row = {"trace": name, "gpus": G, "mode": mode, "solver": pl.report.get("solver", args.solver),
                       "replicas": pl.num_replicas,
                       "solve_s": round(solve_s, 2), "tokens": rep["tokens"], "layers": rep["layers"],
                       "top_k": rep["top_k"], "outputs_match": rep["outputs_match"],
                       "max_abs_error": max(rep["placement"]["max_abs_error"], rep["baseline_detail"]["max_abs_error"]),
                       "bytes_match": rep["bytes_match"], "predicted_by": rep["placement"]["predicted_by"],
                       "bytes_measured": rep["bytes_measured"], "bytes_predicted": rep["bytes_predicted"],
                       "baseline_bytes_measured": rep["baseline_bytes_measured"],
                       "baseline_bytes_predicted": rep["baseline_bytes_predicted"],
                       "bytes_ratio": rep["bytes_ratio"],
                       "time_placement_s": rep["time_placement_s"], "time_baseline_s": rep["time_baseline_s"],
                       "time_ratio": rep["time_ratio"],
                       "comm_time_placement_s": rep["comm_time_placement_s"],
                       "comm_time_baseline_s": rep["comm_time_baseline_s"],
                       "comm_time_ratio": rep["comm_time_ratio"],
                       # load cost model on the replayed tokens: max/mean picks per GPU, mean over layers
                       "imbalance_placement": load_cost(replayed, pl).mean_imbalance,
                       "imbalance_baseline": load_cost(replayed, base).mean_imbalance}
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
