"""Planning sweeps on real traces (ESFT / DeepSeek-V2-Lite shape, Mixtral-8x7B), timed.

Usage (from the repository root; needs ../shared/traces):

    python benchmarks/plan_sweep.py [--out docs/img] [--solvers partition,contiguous,eplb]

Imports each trace with ``moe-place import``, runs ``moe-place plan`` with the model's real sizes
and prints the table and the wall time of each plan command. Writes ``plan_<name>.png`` and
``plan_<name>.csv`` under ``--out``. The issue's target: a five-configuration sweep of an ESFT
trace in under a minute.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MOE_PLACE_SHARED_TRACES", REPO.parent / "shared" / "traces"))

# Model sizes from the public configs: DeepSeek-V2-Lite hidden 2048, moe_intermediate 1408, 27
# decoder layers (26 MoE); Mixtral-8x7B hidden 4096, intermediate 14336. An expert is three
# hidden x intermediate matrices (gate, up, down), bf16.
CASES = {
    "esft_intent": dict(src=SHARED / "esft" / "esft_v2lite_intent.npz", import_args=["--model", "ESFT-vanilla-lite (DeepSeek-V2-Lite shape), intent task"],
                        plan_args=["--gpus", "2,4,8,16,32", "--replicas", "0", "--hidden-size", "2048",
                                   "--expert-params", str(3 * 2048 * 1408), "--gpu-memory", "16GiB"]),
    "esft_intent_balanced": dict(src=SHARED / "esft" / "esft_v2lite_intent.npz",
                                 import_args=["--model", "ESFT-vanilla-lite, intent task, --max-imbalance 1.1"],
                                 plan_args=["--gpus", "2,4,8,16,32", "--replicas", "0", "--hidden-size", "2048",
                                            "--expert-params", str(3 * 2048 * 1408), "--gpu-memory", "16GiB",
                                            "--max-imbalance", "1.1"]),
    "mixtral_coding": dict(src=SHARED / "mixtral_mtbench" / "coding.json", import_args=["--num-experts", "8", "--model", "Mixtral-8x7B, MT-Bench coding"],
                           plan_args=["--gpus", "2,4,8", "--replicas", "0,1x", "--hidden-size", "4096",
                                      "--expert-params", str(3 * 4096 * 14336), "--gpu-memory", "40GiB"]),
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "docs" / "img"))
    ap.add_argument("--solvers", default="partition,contiguous,eplb")
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args()
    if not SHARED.is_dir():
        print(f"no traces at {SHARED}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    py = [sys.executable, "-m", "placer"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases.split(","):
            case = CASES[name]
            trace = Path(tmp) / f"{name}.npz"
            subprocess.run(py + ["import", str(case["src"]), "-o", str(trace), *case["import_args"]],
                           check=True, env=env, cwd=REPO)
            cmd = py + ["plan", str(trace), "--solvers", args.solvers, *case["plan_args"],
                        "--plot", str(out / f"plan_{name}.png"), "--csv", str(out / f"plan_{name}.csv")]
            print("$", " ".join(cmd[2:]), flush=True)
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, cwd=REPO)
            print(f"[{name}] plan wall time: {time.perf_counter() - t0:.1f} s\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
