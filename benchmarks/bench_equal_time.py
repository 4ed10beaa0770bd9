"""`partition` against the exact model (`exflow`) at equal time limits, on real traces.

Usage (repository root; needs ../shared/traces):

    python benchmarks/bench_equal_time.py [--time-limit 20] [--gpus 4 8]

Each solve is `moe-place solve TRACE --gpus G --solver S --time-limit T --holdout 0.5 --json`
(fitted on the first half of the sequences, scored on the second half), coherent cost model, one
node. Prints a markdown table: objective (coherent, in-sample), proven bound and gap, wall time,
held-out coherent cost per transition against contiguous, held-out ep copies per token and
layer, held-out worst-layer imbalance.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRACES = ["mixtral_mtbench/coding.json", "esft/esft_v2lite_intent.npz"]


def solve(trace: Path, gpus: int, solver: str, time_limit: float, out: Path) -> dict:
    cmd = [sys.executable, "-m", "placer", "solve", str(trace), "--gpus", str(gpus), "--solver", solver,
           "--time-limit", str(time_limit), "--holdout", "0.5", "-o", str(out), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=True)
    return json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--traces", type=Path, default=REPO.parent / "shared" / "traces")
    ap.add_argument("--time-limit", type=float, default=20.0)
    ap.add_argument("--gpus", type=int, nargs="+", default=[4, 8])
    args = ap.parse_args()
    print("| trace | GPUs | solver | status | objective | bound | gap | wall s | held-out coherent (contiguous) | held-out ep copies | held-out max imbalance |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in TRACES:
            for g in args.gpus:
                for solver in ("partition", "exflow"):
                    r = solve(args.traces / name, g, solver, args.time_limit, Path(tmp) / "p.json")
                    m = r["metrics"]
                    sol, base = m["solution"]["held_out"], m["contiguous"]["held_out"]
                    gap = "-" if r["gap"] is None else f"{100 * r['gap']:.2f}%"
                    print(f"| {name} | {g} | {solver} | {r['status']} | {r['objective']:.1f} | {r['bound']:.1f} | {gap} "
                          f"| {r['timing']['solver_s']:.1f} | {sol['coherent_per_transition']:.4f} "
                          f"({base['coherent_per_transition']:.4f}) | {sol['ep_copies_per_token_layer']:.3f} "
                          f"| {sol['max_imbalance']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
