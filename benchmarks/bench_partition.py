"""Benchmarks of the scalable heuristic ``partition`` (issue 8); figures go to docs/benchmarks.md.

Sections (``--section``, default all):

- ``tiny``: gap to the exact optimum on tiny instances, the optimum found by enumerating every
  balanced placement (``tests/support/brute.py::optimum``), coherent cost.
- ``traces``: the real traces in ../shared/traces, solved on the first half of the sequences
  and scored on the held-out second half (``Trace.split``), at 4/8/16 GPUs (one node): coherent
  cost per token transition (``placer.cost.coherent_cost``), ep dispatch copies per token-layer
  (``placer.cost.ep_cost``), per-layer GPU load max/mean (``placer.cost.load_cost``) for
  contiguous, eplb, and partition without cap, with
  ``--max-imbalance 1.10``, and with ``--replicas G``.
- ``scale``: planted synthetic instances up to the DeepSeek-V3 shape (58 x 256, top-8, 64 GPUs,
  8 per node): wall time, objective against the planted placement's, and the lower bound from
  ``placer.solvers.bounds`` when it is on main.

Run: ``python benchmarks/bench_partition.py [--section NAME] [--out results.json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "solvers"))

from placer.cost import coherent_cost, ep_cost, load_cost  # noqa: E402
from placer.errors import PlacerError  # noqa: E402
from placer.model.placement import Placement  # noqa: E402
from placer.model.profile import Profile  # noqa: E402
from placer.solvers.base import Constraints, solve  # noqa: E402
from placer.model.topology import Topology  # noqa: E402
from placer.model.trace import Trace  # noqa: E402

SHARED = REPO.parent / "shared" / "traces"


# ----------------------------------------------------------------------------- data
def esft(name: str) -> Trace:
    with np.load(SHARED / "esft" / f"esft_v2lite_{name}.npz", allow_pickle=False) as z:
        return Trace(np.asarray(z["expert_ids"]), 64, gate_weights=np.asarray(z["gate_weights"]),
                     seq_offsets=np.asarray(z["seq_offsets"]),
                     moe_layers=[int(x) for x in z["moe_layer_numbers"]], model="ESFT-vanilla-lite")


def mixtral(name: str) -> Trace:
    obj = json.loads((SHARED / "mixtral_mtbench" / f"{name}.json").read_text())
    ids = np.stack([np.asarray(obj[str(l)], np.int64) for l in range(len(obj))])
    return Trace(ids, 8, model="Mixtral-8x7B")


# ----------------------------------------------------------------------------- sections
def section_tiny(seeds: int) -> list[dict]:
    from support.brute import optimum
    from support.generate import random_trace, skewed
    from test_partition import TINY
    rows = []
    for L, E, G, gpn, K in TINY:
        topo = Topology.uniform(G, gpn)
        gaps, times = [], []
        for seed in range(seeds):
            trace = random_trace(seed, L, E, K, 60, affinity=0.6, p=skewed(E, 0.0))  # the instances of docs/benchmarks.md
            prof, opt = Profile.from_trace(trace), optimum(trace, topo)
            res = solve("partition", prof, topo, Constraints(seed=seed, time_limit=30))
            gaps.append((res.objective - opt) / opt if opt > 0 else 0.0)
            times.append(res.timings["solver_s"])
        rows.append({"shape": f"{L}x{E} on {G} GPUs" + (f", {gpn}/node" if gpn else ""), "top_k": K,
                     "instances": seeds, "optimal": int(sum(g <= 1e-9 for g in gaps)),
                     "mean_gap": float(np.mean(gaps)), "max_gap": float(np.max(gaps)),
                     "mean_time_s": float(np.mean(times))})
        print(rows[-1], flush=True)
    return rows


def contiguous(L: int, E: int, G: int) -> Placement:
    return Placement.from_gpu_of(np.tile(np.arange(E) // (E // G), (L, 1)), G)


def score(test: Trace, test_prof: Profile, pl: Placement, topo: Topology, train_prof: Profile | None = None) -> dict:
    """Held-out metrics, plus the in-sample (training half) coherent cost and imbalance."""
    coh = coherent_cost(test_prof, pl, topo)
    ep = ep_cost(test, pl, topo)
    ld = load_cost(test_prof, pl)
    out = {"coherent_per_transition": coh.per_transition,
           "ep_copies_per_token_layer": ep.copies / (test.num_tokens * test.num_layers),
           "max_imbalance": float(ld.max_imbalance), "mean_imbalance": float(ld.mean_imbalance)}
    if train_prof is not None:
        out["train_coherent_per_transition"] = coherent_cost(train_prof, pl, topo).per_transition
        out["train_max_imbalance"] = float(load_cost(train_prof, pl).max_imbalance)
    return out


def section_traces(time_limit: float, gpus: list[int]) -> list[dict]:
    datasets = [("esft_intent", lambda: esft("intent")), ("esft_summary", lambda: esft("summary")),
                ("mixtral_coding", lambda: mixtral("coding")), ("mixtral_math", lambda: mixtral("math"))]
    rows = []
    for name, load in datasets:
        trace = load()
        train, test = trace.split(0.5)
        tr_prof = Profile.from_trace(train)
        te_prof = Profile.from_trace(test, coact=False)
        L, E = trace.num_layers, trace.num_experts
        for G in gpus:
            if E % G or G > E:
                continue
            topo = Topology.uniform(G)
            base = score(test, te_prof, contiguous(L, E, G), topo, tr_prof)
            configs = [("contiguous", None, 0.0, base)]
            for reps in (0, G):
                res = solve("eplb", tr_prof, topo, Constraints(replicas=reps, time_limit=time_limit))
                configs.append((f"eplb{' --replicas G' if reps else ''}", res, res.timings["solver_s"],
                                score(test, te_prof, res.placement, topo, tr_prof)))
            for label, cons in (("partition", Constraints(time_limit=time_limit)),
                                ("partition --max-imbalance 1.10", Constraints(max_imbalance=1.10, time_limit=time_limit)),
                                ("partition --replicas G", Constraints(replicas=G, time_limit=time_limit))):
                try:
                    res = solve("partition", tr_prof, topo, cons)
                except PlacerError as exc:
                    configs.append((label, None, 0.0, {"error": str(exc)}))
                    continue
                configs.append((label, res, res.timings["solver_s"], score(test, te_prof, res.placement, topo, tr_prof)))
            for label, res, secs, sc in configs:
                row = {"trace": name, "gpus": G, "solver": label, "time_s": secs,
                       "hit_time_limit": bool(res is not None and res.details.get("hit_time_limit")), **sc}
                if "coherent_per_transition" in sc:
                    row["coherent_reduction_vs_contiguous"] = 1 - sc["coherent_per_transition"] / base["coherent_per_transition"]
                    row["ep_reduction_vs_contiguous"] = 1 - sc["ep_copies_per_token_layer"] / base["ep_copies_per_token_layer"]
                rows.append(row)
                print(row, flush=True)
    return rows


def section_scale(time_limit: float, tokens: int, sizes: list[tuple], bound_fn=None, replicas: bool = False) -> list[dict]:
    """``bound_fn``: a ``lower_bound`` to use when the solver returned none (placer.solvers.bounds
    not on this branch yet); its time is reported apart from the solve time."""
    from test_partition import planted_trace
    rows = []
    for L, E, G, gpn, K in sizes:
        trace, gpu_of = planted_trace(L, E, G, K, tokens, seed=0, drift=0.05)
        prof = Profile.from_trace(trace, coact=False)
        topo = Topology.uniform(G, gpn)
        planted_cost = coherent_cost(prof, Placement.from_gpu_of(gpu_of, G, gpn), topo).total
        t = time.perf_counter()
        cons = Constraints(time_limit=time_limit, replicas=G if replicas else 0)
        res = solve("partition", prof, topo, cons)
        wall = time.perf_counter() - t
        bound_time = res.timings.get("bound_s")
        if res.bound is None and bound_fn is not None:
            tb = time.perf_counter()
            res.bound, _ = bound_fn(prof, topo, cons)
            bound_time = time.perf_counter() - tb
        row = {"shape": f"{L}x{E}, top-{K}, {G} GPUs, {gpn}/node" + (f", {G} replicas" if replicas else ""),
               "time_s": wall, "max_imbalance": float(load_cost(prof, res.placement).max_imbalance),
               "objective": res.objective, "planted": planted_cost,
               "objective_over_planted": res.objective / planted_cost, "bound": res.bound, "gap_to_bound": res.gap, "bound_time_s": bound_time,
               "hit_time_limit": res.details["hit_time_limit"],
               "starts": [(s["start"], round(s["objective"]), round(t, 2))
                          for s, t in zip(res.details["starts"], res.timings["starts_s"])],
               "kicks_accepted": res.details["kicks_accepted"]}
        rows.append(row)
        print(row, flush=True)
    return rows


def section_metis(tokens: int, degrees: list[int]) -> list[dict]:
    """DeepSeek-V3-shaped planted instance: METIS start with all edges vs the heaviest per vertex."""
    from test_partition import planted_trace
    from placer.solvers.partition.starts import metis_start
    from placer.solvers.search.feasible import make_feasible
    from placer.solvers.search.problem import build_problem, objective
    from placer.solvers.search.refine import refine, single_thread_blas
    trace, gpu_of = planted_trace(58, 256, 64, 8, tokens, seed=0, drift=0.05)
    prof = Profile.from_trace(trace, coact=False)
    topo = Topology.uniform(64, 8)
    prob = build_problem(prof, topo, Constraints())
    planted_cost = objective(prob, gpu_of)
    rows = []
    with single_thread_blas():
        for deg in degrees:
            t = time.perf_counter()
            gpu = metis_start(prob, 0, deg or None)
            metis_s = time.perf_counter() - t
            make_feasible(prob, gpu)
            start = objective(prob, gpu)
            refine(prob, gpu, time.perf_counter() + 120)
            rows.append({"degree": deg or "all", "metis_s": metis_s, "start_over_planted": start / planted_cost,
                         "refined_over_planted": objective(prob, gpu) / planted_cost})
            print(rows[-1], flush=True)
    return rows


def markdown(results: dict) -> str:
    """The tables of docs/benchmarks.md from a ``--out`` JSON file."""
    lines = []
    if "tiny" in results:
        lines += ["| instance | top-K | instances | optimal | mean gap | max gap | mean time (s) |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in results["tiny"]:
            lines.append(f"| {r['shape']} | {r['top_k']} | {r['instances']} | {r['optimal']} | "
                         f"{100 * r['mean_gap']:.3f}% | {100 * r['max_gap']:.2f}% | {r['mean_time_s']:.2f} |")
        lines.append("")
    if "traces" in results:
        lines += ["| trace | GPUs | solver | coherent/transition (held-out) | vs contiguous | ep copies/token-layer | vs contiguous "
                  "| max/mean load held-out | in-sample | time (s) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in results["traces"]:
            if "error" in r:
                lines.append(f"| {r['trace']} | {r['gpus']} | {r['solver']} | refused: {r['error'].split(';')[0]} "
                             f"| | | | | | |")
                continue
            lines.append(f"| {r['trace']} | {r['gpus']} | {r['solver']} | {r['coherent_per_transition']:.3f} | "
                         f"{-100 * r['coherent_reduction_vs_contiguous']:+.1f}% | {r['ep_copies_per_token_layer']:.3f} | "
                         f"{-100 * r['ep_reduction_vs_contiguous']:+.1f}% | {r['max_imbalance']:.3f} | "
                         f"{r['train_max_imbalance']:.3f} | {r['time_s']:.1f}{' (limit)' if r.get('hit_time_limit') else ''} |")
        lines.append("")
    if "scale" in results:
        lines += ["| instance | solve time (s) | hit limit | objective / planted | bound | gap to bound | bound time (s) | max/mean load | starts (kind, objective, s) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in results["scale"]:
            gap = "n/a" if r["gap_to_bound"] is None else f"{100 * r['gap_to_bound']:.1f}%"
            bt = "n/a" if r.get("bound_time_s") is None else f"{r['bound_time_s']:.1f}"
            imb = f"{r['max_imbalance']:.3f}" if "max_imbalance" in r else "n/a"
            bound = r["bound"] if r["bound"] is not None else "n/a"
            lines.append(f"| {r['shape']} | {r['time_s']:.1f} | {r['hit_time_limit']} | {r['objective_over_planted']:.4f} | "
                         f"{bound} | {gap} | {bt} | {imb} | "
                         f"{', '.join(f'{k} {o} {t}' for k, o, t in r['starts'])} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--section", choices=["tiny", "traces", "scale", "metis", "all"], default="all")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--time-limit", type=float, default=28.0)
    ap.add_argument("--gpus", default="4,8,16")
    ap.add_argument("--tokens", type=int, default=20000)
    ap.add_argument("--sizes", default="8x64x8x8x4,16x128x16x8x8,32x256x32x8x8,58x256x64x8x8",
                    help="LxExGxGPNxK,...")
    ap.add_argument("--out", default=None)
    ap.add_argument("--replicas", action="store_true", help="scale section: one redundant expert per GPU")
    ap.add_argument("--markdown", default=None, metavar="JSON", help="print the docs tables of a --out file and exit")
    ap.add_argument("--bound-module", default=None,
                    help="a .py file defining lower_bound(profile, topology, constraints), used when "
                         "placer.solvers.bounds is absent")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return
    out = {}
    if args.section in ("tiny", "all"):
        out["tiny"] = section_tiny(args.seeds)
    if args.section in ("traces", "all"):
        out["traces"] = section_traces(args.time_limit, [int(g) for g in args.gpus.split(",")])
    if args.section in ("scale", "all"):
        sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
        bound_fn = None
        if args.bound_module:
            import importlib.util
            spec = importlib.util.spec_from_file_location("bound_module", args.bound_module)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            bound_fn = mod.lower_bound
        out["scale"] = section_scale(args.time_limit, args.tokens, sizes, bound_fn, args.replicas)
    if args.section == "metis":
        out["metis"] = section_metis(args.tokens, [0, 32, 16, 8])
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
