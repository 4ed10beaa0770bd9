"""Exact solvers on real traces: quality vs baselines, proofs, and where exact stops being practical.

Run from the repository root (needs ../shared/traces; every solve is time-limited):

    python benchmarks/bench_exact.py --out docs/bench_exact.json --plot docs/bench_exact_scaling.png

Parts:
1. quality: Mixtral-8x7B MT-Bench (32 layers x 8 experts, top-2) on 4 and 8 GPUs and ESFT
   (DeepSeek-V2-Lite shape, 26 x 64, top-6) on 8 GPUs and 16 GPUs as 2 nodes x 8; solved on the
   first half of the tokens/sequences, scored in-sample and on the second half with
   ``placer.cost.evaluate`` (coherent per transition, ep copies per token and layer, max load
   imbalance), for each model and backend, against ``contiguous`` and ``eplb``.
2. scaling: solve time, status and gap of the compact MILP (CP-SAT) and of the default exact
   path, for growing layers, experts and GPUs (ESFT intent, experts coarsened to E' by
   ``id % E'`` where E' < 64).
3. ablation: what each MILP ingredient buys (backend's own bound and incumbent vs the optimum
   the dp proves) on Mixtral coding, first 8 layers, 4 GPUs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from placer.cost import evaluate  # noqa: E402
from placer.model.profile import Profile  # noqa: E402
from placer.solvers.base import Constraints, solve  # noqa: E402
from placer.cost.objectives import as_replica_gpus, gpu_loads, imbalance  # noqa: E402
from placer.solvers.packing import balanced_packing  # noqa: E402
from placer.model.topology import Topology  # noqa: E402
from placer.model.trace import Trace  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "traces"
warnings.filterwarnings("ignore")


def mixtral(category: str) -> Trace:
    raw = json.loads((SHARED / "mixtral_mtbench" / f"{category}.json").read_text())
    ids = np.stack([np.asarray(raw[str(l)], np.uint8) for l in range(len(raw))])
    return Trace(expert_ids=ids, num_experts=8, model="Mixtral-8x7B", source=f"mixtral_mtbench/{category}")


def esft(task: str = "intent") -> Trace:
    d = np.load(SHARED / "esft" / f"esft_v2lite_{task}.npz", allow_pickle=False)
    return Trace(expert_ids=d["expert_ids"], num_experts=64, gate_weights=d["gate_weights"],
                 seq_offsets=d["seq_offsets"], model="ESFT-vanilla-lite", source=f"esft/{task}")


def scores(data: Trace, placement, topo: Topology) -> dict:
    ev = evaluate(data, placement, topo, matrices=False)
    return {"coherent": ev["coherent"]["per_transition"], "ep": ev["ep"]["copies_per_token_layer"],
            "imbalance": ev["load"]["max_imbalance"]}


def run(name: str, solver: str, prof: Profile, topo: Topology, cons: Constraints,
        params: dict | None = None) -> tuple[dict, object]:
    t0, c0 = time.perf_counter(), time.process_time()
    res = solve(solver, prof, topo, cons, params)
    row = {"name": name, "solver": solver, "backend": cons.backend, "status": res.status,
           "objective": res.objective, "bound": res.bound, "gap": res.gap,
           "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
           "formulation": res.details.get("formulation"), "backend_bound": res.details.get("backend_bound"),
           "lower_bound": res.details.get("lower_bound"), "backend_status": res.details.get("backend_status")}
    return row, res.placement


def quality(args) -> list[dict]:
    cases = [("mixtral/coding", mixtral("coding"), Topology.uniform(4)),
             ("mixtral/coding", mixtral("coding"), Topology.uniform(8)),
             ("mixtral/math", mixtral("math"), Topology.uniform(4)),
             ("esft/intent", esft("intent"), Topology.uniform(8)),
             ("esft/intent", esft("intent"), Topology.uniform(16, 8))]
    rows = []
    for trace_name, trace, topo in cases:
        if args.cases and not any(trace_name.startswith(c) for c in args.cases.split(",")):
            continue
        train, test = trace.split(0.5)
        prof = Profile.from_trace(train)
        small = trace.num_experts <= 8
        base = Constraints(time_limit=args.time_limit if small else args.time_limit / 2, seed=0)
        plan = [("contiguous", "contiguous", base, None), ("eplb", "eplb", base, None),
                ("exflow (default exact path)", "exflow", base, None),
                ("layer_descent", "layer_descent", base, None),
                ("moetuner / cpsat", "moetuner", replace(base, backend="cpsat"), None),
                ("joint ep / cpsat", "joint", replace(base, cost="ep", backend="cpsat"), None)]
        # a limit some placement meets: the greedy (LPT) balance of the worst layer, rounded up
        load = prof.load.astype(float)
        lpt = imbalance(gpu_loads(load, as_replica_gpus(balanced_packing(load, topo.num_gpus)[0]),
                                  topo.num_gpus)).max()
        limit = float(np.ceil(lpt * 100) / 100)
        plan.append((f"joint, max-imbalance {limit:.2f}", "joint", replace(base, max_imbalance=limit, backend="cpsat"),
                     None))
        # beyond the dp's reach the default exact path already is the compact CP-SAT MILP
        backends = ["cpsat", "highs", "cbc"] if small and topo.num_gpus == 4 else ["cpsat"] if small else []
        for be in backends:
            plan.append((f"exflow compact MILP / {be}", "exflow", replace(base, backend=be), {"formulation": "compact"}))
        for label, solver, cons, params in plan:
            row, pl = run(label, solver, prof, topo, cons, params)
            row.update({"trace": trace_name, "gpus": topo.num_gpus, "gpus_per_node": topo.gpus_per_node,
                        "in_sample": scores(train, pl, topo), "held_out": scores(test, pl, topo)})
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("trace", "gpus", "name", "status", "gap", "wall_s")}), flush=True)
    return rows


def coarse(trace: Trace, L: int, E: int) -> Trace:
    ids = np.asarray(trace.expert_ids[:L]).astype(np.int64) % E
    # top-K ids may collide after coarsening; that only changes the statistics, not validity
    return Trace(expert_ids=ids.astype(np.uint8), num_experts=E)


def scaling(args) -> list[dict]:
    base_trace = esft("intent")
    configs = ([(L, 16, 4) for L in (2, 4, 8, 16)] + [(4, E, 4) for E in (8, 32, 64)]
               + [(4, 32, G) for G in (2, 8, 16)])
    rows = []
    for L, E, G in configs:
        prof = Profile.from_trace(coarse(base_trace, L, E))
        topo = Topology.uniform(G)
        for label, opts in (("default", {}), ("compact MILP", {"formulation": "compact"})):
            cons = Constraints(time_limit=args.scale_limit, backend="cpsat")
            row, _ = run(label, "exflow", prof, topo, cons, opts)
            row.update({"layers": L, "experts": E, "gpus": G})
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("layers", "experts", "gpus", "name", "status", "gap", "wall_s")}),
                  flush=True)
    return rows


def ablation(args) -> list[dict]:
    """What each MILP ingredient buys: Mixtral coding, first 8 layers, 4 GPUs (the dp gives the
    true optimum to compare with); the backend's own proven bound shows the formulation's strength."""
    train, _ = mixtral("coding").split(0.5)
    train.expert_ids = np.ascontiguousarray(np.asarray(train.expert_ids)[:8])
    train.moe_layers = list(range(8))
    prof = Profile.from_trace(train)
    topo = Topology.uniform(4)
    opt, _ = run("dp", "exflow", prof, topo, Constraints())
    rows = [dict(opt, layers=8, experts=8, gpus=4)]
    variants = [("naive (one variable per edge and GPU)", {"formulation": "naive", "cuts": False, "symmetry": False}),
                ("compact, no cuts, no symmetry", {"formulation": "compact", "cuts": False, "symmetry": False}),
                ("compact + symmetry", {"formulation": "compact", "cuts": False}),
                ("compact + symmetry + bound cuts", {"formulation": "compact"}),
                ("compact + symmetry + cuts + two-sided", {"formulation": "compact", "two_sided": True})]
    for label, opts in variants:
        for be in ("cpsat", "highs"):
            cons = Constraints(time_limit=args.scale_limit, backend=be)
            row, _ = run(label, "exflow", prof, topo, cons, opts)
            row.update({"layers": 8, "experts": 8, "gpus": 4})
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("name", "backend", "status", "backend_bound", "objective", "wall_s")}),
                  flush=True)
    return rows


def bound_speed() -> dict:
    """Time of the lower bound at DeepSeek-V3 size on a random dense transition tensor."""
    from placer.solvers.bounds import lower_bound
    rng = np.random.default_rng(0)
    L, E = 58, 256
    trans = rng.integers(0, 50, size=(L - 1, E, E))
    load = np.vstack([trans.sum(axis=2), trans[-1].sum(axis=0)[None]])
    prof = Profile(load=load, num_tokens=int(trans[0].sum()), top_k=1, trans=trans)
    t0 = time.perf_counter()
    val, name = lower_bound(prof, Topology.uniform(64, 8), Constraints())
    return {"shape": "58 x 256, 64 GPUs (8 nodes)", "seconds": time.perf_counter() - t0, "name": name}


def plot(rows: list[dict], path: Path) -> None:
    """Proven gap (top) and wall time (bottom) vs layers, experts and GPUs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), sharex="col")
    sweeps = [("layers", lambda r: r["experts"] == 16 and r["gpus"] == 4),
              ("experts", lambda r: r["layers"] == 4 and r["gpus"] == 4),
              ("gpus", lambda r: r["layers"] == 4 and r["experts"] == 32)]
    for col, (key, sel) in enumerate(sweeps):
        for label, marker in (("default", "o"), ("compact MILP", "s")):
            pts = sorted((r[key], 100 * (r["gap"] or 0.0), r["wall_s"]) for r in rows
                         if not r.get("ablation") and r["name"] == label and sel(r))
            if not pts:
                continue
            xs, gaps, ts = zip(*pts)
            axes[0, col].plot(xs, gaps, marker=marker, label=label)
            axes[1, col].plot(xs, ts, marker=marker, label=label)
        axes[0, col].set_ylabel("proven gap %")
        axes[1, col].set_ylabel("wall seconds (limit 20)")
        axes[1, col].set_xlabel(key)
        for ax in axes[:, col]:
            ax.set_xscale("log", base=2)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("exflow: proven gap and time vs size (ESFT intent coarsened, CP-SAT 1 worker, 20 s limit)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def markdown(results: dict) -> str:
    """Tables for docs/benchmarks.md from the JSON this script writes."""
    lines = []
    if "bound_speed" in results:
        b = results["bound_speed"]
        lines += [f"Lower bound at {b['shape']}: {b['seconds']:.1f} s ({b['name']}).", ""]
    if "quality" in results:
        lines += ["| trace | GPUs | placement | status | gap | wall s | cpu s | coherent in / held-out | "
                  "ep copies in / held-out | max imbalance in / held-out | coherent vs contiguous (held-out) | "
                  "ep vs eplb (held-out) |", "|" + " --- |" * 12]
        rows = results["quality"]
        for r in rows:
            same = [q for q in rows if q["trace"] == r["trace"] and q["gpus"] == r["gpus"]]
            cont = next(q for q in same if q["name"] == "contiguous")
            ep_base = next(q for q in same if q["name"] == "eplb")
            red_c = 1 - r["held_out"]["coherent"] / cont["held_out"]["coherent"]
            red_e = 1 - r["held_out"]["ep"] / ep_base["held_out"]["ep"]
            gpus = f"{r['gpus']}" + (f" ({r['gpus'] // r['gpus_per_node']}x{r['gpus_per_node']})"
                                     if r["gpus_per_node"] != r["gpus"] else "")
            lines.append(
                f"| {r['trace']} | {gpus} | {r['name']} | {r['status']} | {_pct(r['gap'])} | {r['wall_s']:.1f} | "
                f"{r['cpu_s']:.1f} | {r['in_sample']['coherent']:.4f} / {r['held_out']['coherent']:.4f} | "
                f"{r['in_sample']['ep']:.3f} / {r['held_out']['ep']:.3f} | "
                f"{r['in_sample']['imbalance']:.3f} / {r['held_out']['imbalance']:.3f} | {100 * red_c:+.1f}% | "
                f"{100 * red_e:+.1f}% |")
        lines.append("")
    if "scaling" in results:
        lines += ["| layers | experts | GPUs | path | formulation | status | gap | wall s | cpu s |",
                  "|" + " --- |" * 9]
        for r in results["scaling"]:
            if r.get("ablation"):
                continue
            lines.append(f"| {r['layers']} | {r['experts']} | {r['gpus']} | {r['name']} | {r['formulation']} | "
                         f"{r['status']} | {_pct(r['gap'])} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} |")
    if "ablation" in results:
        rows = results["ablation"]
        opt = rows[0]["objective"]
        lines += [f"Optimum (layer-chain dp): {opt:.2f} in {rows[0]['wall_s']:.1f} s.", "",
                  "| MILP variant | backend | backend status | backend's own bound | bound / optimum | "
                  "best placement / optimum | wall s |", "|" + " --- |" * 7]
        for r in rows[1:]:
            bb = r.get("backend_bound")
            lines.append(f"| {r['name']} | {r['backend']} | {r.get('backend_status')} | "
                         f"{'-' if bb is None else f'{bb:.1f}'} | {'-' if bb is None else f'{bb / opt:.3f}'} | "
                         f"{r['objective'] / opt:.4f} | {r['wall_s']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/bench_exact.json"))
    ap.add_argument("--plot", type=Path, default=Path("docs/bench_exact_scaling.png"))
    ap.add_argument("--time-limit", type=float, default=60.0, help="per solve in part 1")
    ap.add_argument("--scale-limit", type=float, default=20.0, help="per solve in part 2")
    ap.add_argument("--parts", default="bound,quality,scaling,ablation")
    ap.add_argument("--cases", default="", help="quality: only traces starting with these (comma-separated); "
                                               "their rows replace the same traces' rows in --out")
    ap.add_argument("--markdown", nargs="*", type=Path, help="print tables from these JSON files and exit")
    ap.add_argument("--replot", action="store_true", help="redraw --plot from the scaling rows in --out and exit")
    args = ap.parse_args()
    if args.replot:
        plot(json.loads(args.out.read_text())["scaling"], args.plot)
        return
    if args.markdown is not None:
        results: dict = {}
        for path in args.markdown:
            results.update(json.loads(path.read_text()))
        print(markdown(results))
        return
    if not SHARED.is_dir():
        sys.exit(f"needs the real traces at {SHARED}")
    out: dict = {}
    parts = args.parts.split(",")
    if "bound" in parts:
        out["bound_speed"] = bound_speed()
        print(json.dumps(out["bound_speed"]), flush=True)
    if "quality" in parts:
        out["quality"] = quality(args)
    if "scaling" in parts:
        out["scaling"] = scaling(args)
        plot(out["scaling"], args.plot)
    if "ablation" in parts:
        out["ablation"] = ablation(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # re-read: another part may have written the file meanwhile
    merged = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.cases and "quality" in out and "quality" in merged:
        fresh = {r["trace"] for r in out["quality"]}
        out["quality"] = [r for r in merged["quality"] if r["trace"] not in fresh] + out["quality"]
    merged.update(out)
    args.out.write_text(json.dumps(merged, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
