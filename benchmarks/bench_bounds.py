"""Lower bounds before and after the deadline bounds (issue 12); the table goes to docs/benchmarks.md.

For every instance: the bound of before (``lower_bound(...)`` without a deadline: b-matching),
the deadline bound (``lower_bound(..., deadline=now + B)``) for each budget B with the seconds it
took, and the objective ``partition`` finds (``python -m placer solve TRACE --gpus G --solver
partition --json``, its default effort), so the gap ``(objective - bound) / objective`` before
and after. Topologies as the CLI builds them: one node up to 8 GPUs, 16 = 2 nodes of 8 with the
default inter-node hop 18.

Instances: ESFT intent / summary (26 x 64, top-6) and their top-1 projections (each token's
highest-gate pick), the four Mixtral MT-Bench files (32 x 8, top-2), and synthetic traces
``traces/make_synthetic.py --experts E --groups 16`` for E = 128, 256 (12 layers, top-2); on 2,
4, 8 and 16 GPUs where E allows; ``--cost coherent`` everywhere and ``ep`` for top-K >= 2; plus
``--replicas`` rows (pooled b-matching against the caps of before).

Run: ``python benchmarks/bench_bounds.py [--budgets 2,10] [--only esft] [--cost coherent]
[--out results.json] [--table]``. Solver results are cached in ``--work`` (default
``/tmp/bench_bounds``), so a rerun after a bound change only recomputes the bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from placer.model.topology import Topology  # noqa: E402
from placer.model.trace import Trace  # noqa: E402
from placer.solvers.base import Constraints  # noqa: E402
from placer.solvers.bounds import lower_bound  # noqa: E402
from placer.solvers.search.refine import single_thread_blas  # noqa: E402
from placer.traces.load import load_input, profile_of  # noqa: E402

SHARED = REPO.parent / "shared" / "traces"
GPUS = (2, 4, 8, 16)
REPLICA_ROWS = (("esft_intent", 8, 8), ("esft_intent", 16, 16), ("mixtral_coding", 4, 4), ("syn128", 8, 8))


def instances(work: Path) -> dict[str, Path]:
    """Name -> trace file, writing the projections and synthetic traces into ``work``."""
    out: dict[str, Path] = {}
    for name in ("intent", "summary"):
        src = SHARED / "esft" / f"esft_v2lite_{name}.npz"
        out[f"esft_{name}"] = src
        top1 = work / f"esft_{name}_top1.npz"
        if not top1.exists():
            t = load_input(src)
            Trace(expert_ids=t.top1()[:, :, None], num_experts=t.num_experts, seq_offsets=t.seq_offsets,
                  moe_layers=t.moe_layers, model=t.model).save(top1)
        out[f"esft_{name}_top1"] = top1
    for name in ("coding", "math", "reasoning", "writing"):
        out[f"mixtral_{name}"] = SHARED / "mixtral_mtbench" / f"{name}.json"
    for E in (128, 256):
        path = work / f"syn{E}.npz"
        if not path.exists():
            subprocess.run([sys.executable, str(REPO / "traces" / "make_synthetic.py"), "-o", str(path),
                            "--experts", str(E), "--groups", "16"], check=True, capture_output=True)
        out[f"syn{E}"] = path
    return out


def partition(path: Path, G: int, cost: str, replicas: int, work: Path) -> dict:
    """``partition``'s report through the CLI (cached in ``work``): objective, its bound, wall time."""
    key = work / f"partition_{path.stem}_{G}_{cost}_{replicas}.json"
    if key.exists():
        return json.loads(key.read_text())
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "placer", "solve", str(path), "--gpus", str(G), "--solver",
                           "partition", "--cost", cost, "--replicas", str(replicas), "--json",
                           "-o", str(work / "placement.json")], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    if proc.returncode:
        raise SystemExit(proc.stderr)
    report = json.loads(proc.stdout)
    out = {"objective": report["objective"], "bound": report["bound"], "wall_s": time.perf_counter() - t0}
    key.write_text(json.dumps(out))
    return out


def row(name: str, path: Path, G: int, cost: str, replicas: int, budgets: list[float], work: Path) -> dict:
    data = load_input(path)
    prof = profile_of(data, coact=cost == "ep")
    topo = Topology.for_cluster(G)
    cons = Constraints(cost=cost, replicas=replicas)
    heur = partition(path, G, cost, replicas, work)
    obj = heur["objective"]
    with single_thread_blas():
        t0 = time.perf_counter()
        old, _ = lower_bound(prof, topo, cons)
        out = {"instance": name, "gpus": G, "nodes": topo.num_nodes, "cost": cost, "replicas": replicas,
               "objective": obj, "partition_s": heur["wall_s"], "old": old, "old_s": time.perf_counter() - t0,
               "old_gap": _gap(obj, old), "new": {}}
        for b in budgets:
            t0 = time.perf_counter()
            value, method = lower_bound(prof, topo, cons, deadline=t0 + b)
            out["new"][str(b)] = {"bound": value, "s": time.perf_counter() - t0, "gap": _gap(obj, value),
                                  "method": method}
    return out


def _gap(obj: float, bound: float) -> float:
    return (obj - bound) / obj if obj > 0 else 0.0


def table(rows: list[dict], budgets: list[float]) -> str:
    """The markdown table of docs/benchmarks.md."""
    head = ["instance", "G", "cost", "R", "partition", "bound before", "gap before"]
    for b in budgets:
        head += [f"bound @{b:g}s", "s", "gap"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        g = f"{r['gpus']}" + (f" ({r['nodes']}x{r['gpus'] // r['nodes']})" if r["nodes"] > 1 else "")
        cells = [r["instance"], g, r["cost"], str(r["replicas"]), f"{r['objective']:,.0f}", f"{r['old']:,.0f}",
                 f"{100 * r['old_gap']:.1f} %"]
        for b in budgets:
            n = r["new"][str(b)]
            cells += [f"{n['bound']:,.0f}", f"{n['s']:.1f}", f"{100 * n['gap']:.1f} %"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="2,10", help="deadline budgets in seconds, comma separated")
    ap.add_argument("--only", default=None, help="instances whose name contains this")
    ap.add_argument("--cost", choices=["coherent", "ep", "both"], default="both")
    ap.add_argument("--gpus", default=",".join(map(str, GPUS)))
    ap.add_argument("--no-replicas", action="store_true", help="skip the --replicas rows")
    ap.add_argument("--work", default="/tmp/bench_bounds")
    ap.add_argument("--out", default=None, help="write the rows as JSON")
    ap.add_argument("--table", action="store_true", help="print the markdown table at the end")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    budgets = [float(x) for x in args.budgets.split(",")]
    costs = ["coherent", "ep"] if args.cost == "both" else [args.cost]
    gpus = [int(x) for x in args.gpus.split(",")]
    paths = instances(work)
    todo = []
    for cost in costs:
        for name, path in paths.items():
            K = 1 if name.endswith("top1") else 2
            if (args.only and args.only not in name) or (cost == "ep" and K < 2):
                continue
            E = 8 if name.startswith("mixtral") else 64 if name.startswith("esft") else int(name[3:])
            todo += [(name, path, G, cost, 0) for G in gpus if E % G == 0 and E >= G]
        if not args.no_replicas:
            todo += [(n, paths[n], G, cost, R) for n, G, R in REPLICA_ROWS if not args.only or args.only in n]
    rows = []
    for name, path, G, cost, R in todo:
        r = row(name, path, G, cost, R, budgets, work)
        rows.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "new"} | {
            b: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in n.items() if k != "method"}
            for b, n in r["new"].items()}), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    if args.table:
        print(table(rows, budgets))


if __name__ == "__main__":
    main()
