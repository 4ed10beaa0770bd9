"""Every baseline (contiguous, round_robin, random, eplb) x every cost model on the real traces.

For each per-token trace in ../shared/traces (ESFT DeepSeek-V2-Lite npz, Mixtral MT-Bench JSON)
and each cluster (8 GPUs in 1 node; 16 GPUs in 2 nodes of 8), the placement is fitted on the
first half of the sequences (EPLB and the replica rule use its expert loads) and scored on the
second half (held-out tokens), with :func:`placer.cost.coherent_cost`, :func:`placer.cost.ep_cost`
and :func:`placer.cost.load_cost`. Where G does not divide E (Mixtral's 8 experts on 16 GPUs)
every solver gets the fewest redundant slots that make it fit.

Home GPUs for the ep model: the held-out tokens are cut into G contiguous blocks, block g homed
on GPU g (``home[t] = t * G // T``), so every GPU sends the same number of tokens, as data-parallel
ranks would. The cost model's default (sequence s on GPU s % G) would home all of a Mixtral trace
(one sequence) on GPU 0 and the 6 held-out ESFT summary sequences on 6 of 16 GPUs.

    python benchmarks/baselines_table.py [--traces ../shared/traces] [--out docs/baselines_table.md]

Aggregate-count data (OLMoE-1B-7B's 64-expert counts for 5 domains, Mixtral's MMLU counts for 7
subjects) has no per-token routing, so only the load model applies: placements are fitted on
one domain (c4; the first subject) and scored on every domain, which shows whether a balance
learnt on one workload holds on another. Those rows use 0 and G redundant slots.

The traces are read in place and never copied into the repository.
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

from placer.model.profile import Profile  # noqa: E402
from placer.solvers.base import Constraints, solve  # noqa: E402
from placer.model.topology import Topology  # noqa: E402
from placer.model.trace import Trace  # noqa: E402

SOLVERS = ["contiguous", "round_robin", "random", "eplb"]
CLUSTERS = [(8, 8), (16, 8)]  # (GPUs, GPUs per node)


def load_esft(path: Path) -> Trace:
    """ESFT's per-token npz (not moe-place's native format: no metadata member)."""
    with np.load(path, allow_pickle=False) as z:
        return Trace(expert_ids=z["expert_ids"], num_experts=64, gate_weights=z["gate_weights"],
                     seq_offsets=z["seq_offsets"], moe_layers=[int(x) for x in z["moe_layer_numbers"]],
                     model="ESFT-vanilla-lite (DeepSeek-V2-Lite shape)", source=path.name).validate(path.name)


def load_layer_json(path: Path, num_experts: int, model: str) -> Trace:
    """The per-layer JSON dump ``{"0": [[e1, e2], ...], ...}``; token i is token i in every layer."""
    obj = json.loads(path.read_text())
    layers = sorted(obj, key=int)
    ids = np.array([obj[k] for k in layers], dtype=np.uint8)
    return Trace(expert_ids=ids, num_experts=num_experts, moe_layers=[int(k) for k in layers],
                 model=model, source=path.name).validate(path.name)


def find_traces(root: Path) -> list[tuple[str, Trace]]:
    out = []
    for p in sorted((root / "esft").glob("*.npz")):
        out.append((f"esft/{p.stem}", load_esft(p)))
    for p in sorted((root / "mixtral_mtbench").glob("*.json")):
        out.append((f"mixtral/{p.stem}", load_layer_json(p, 8, "Mixtral-8x7B")))
    return out


def evaluate_all(name: str, trace: Trace) -> list[dict]:
    from placer.cost import coherent_cost, ep_cost, load_cost

    train, test = trace.split(0.5)
    profile = Profile.from_trace(train, coact=False, trans=False)
    L, E = trace.num_layers, trace.num_experts
    rows = []
    for G, gpn in CLUSTERS:
        topo = Topology.uniform(G, gpn)
        replicas = (-E) % G
        for solver in SOLVERS:
            t0 = time.perf_counter()
            res = solve(solver, profile, topo, Constraints(replicas=replicas, seed=0))
            solve_s = time.perf_counter() - t0
            pl = res.placement
            coh = coherent_cost(test, pl, topo)
            ep = ep_cost(test, pl, topo, home=np.arange(test.num_tokens) * G // test.num_tokens)
            ld = load_cost(test, pl)
            ld_fit = load_cost(train, pl)
            rows.append({
                "trace": name, "tokens_test": test.num_tokens, "gpus": G, "nodes": G // gpn,
                "replicas": replicas, "solver": solver, "solve_s": solve_s,
                "coherent_per_transition": float(coh.per_transition),
                "ep_copies_per_token_layer": float(ep.copies) / (test.num_tokens * L),
                "ep_inter_node_share": float(ep.inter_node_share),
                "ep_mean_gpus_spanned": float(ep.mean_gpus_spanned),
                "load_mean_imbalance": float(ld.mean_imbalance),
                "load_max_imbalance": float(ld.max_imbalance),
                "load_mean_imbalance_fit": float(ld_fit.mean_imbalance),
            })
    return rows


def aggregate_sets(root: Path) -> list[tuple[str, str, dict[str, np.ndarray]]]:
    """(name, fit key, {domain: load [L, E]}) for the load-only count files."""
    out = []
    p = root / "olmoe" / "olmoe_mixtral_routing_counts.npz"
    if p.exists():
        with np.load(p, allow_pickle=False) as z:
            for model, label in (("olmoe", "OLMoE-1B-7B, layers 0/7/15"), ("mistral", "Mixtral-8x7B, layers 0/7/15")):
                loads = {k.split("__")[1]: np.asarray(z[k]) for k in sorted(z.keys())
                         if k.startswith(model + "__") and k.endswith("__topk_counts")}
                if loads:
                    out.append((label, "c4", loads))
    p = root / "fiddler" / "mixtral_mmlu_expert_counts.npz"
    if p.exists():
        with np.load(p, allow_pickle=False) as z:
            subjects = [str(s) for s in z["subjects"]]
            counts = np.asarray(z["counts"])
            out.append(("Mixtral-8x7B-Instruct, MMLU", subjects[0],
                        {s: counts[1, i] for i, s in enumerate(subjects)}))
    return out


def aggregate_rows(name: str, fit: str, loads: dict[str, np.ndarray]) -> list[dict]:
    from placer.cost import load_cost

    fit_profile = Profile(load=loads[fit], num_tokens=0, top_k=1)
    E = fit_profile.num_experts
    rows = []
    for G, gpn in CLUSTERS:
        topo = Topology.uniform(G, gpn)
        for replicas in sorted({(-E) % G, (-E) % G + G}):
            placements = {s: solve(s, fit_profile, topo, Constraints(replicas=replicas, seed=0)).placement
                          for s in SOLVERS}
            for domain, load in loads.items():
                prof = Profile(load=load, num_tokens=0, top_k=1)
                rows.append({"data": name, "fit": fit, "eval": domain, "gpus": G, "nodes": G // gpn,
                             "replicas": replicas,
                             **{s: load_cost(prof, pl).mean_imbalance for s, pl in placements.items()}})
    return rows


def aggregate_markdown(rows: list[dict]) -> str:
    lines = ["| counts | fitted on | scored on | GPUs (nodes) | R | " + " | ".join(SOLVERS) + " |",
             "|" + " --- |" * (5 + len(SOLVERS))]
    for r in rows:
        lines.append(f"| {r['data']} | {r['fit']} | {r['eval']} | {r['gpus']} ({r['nodes']}) | {r['replicas']} | "
                     + " | ".join(f"{r[s]:.3f}" for s in SOLVERS) + " |")
    return "\n".join(lines) + "\n"


def markdown(rows: list[dict]) -> str:
    head = ("| trace | GPUs (nodes) | R | solver | coherent: hops per transition | ep: copies per token-layer "
            "| ep: inter-node share | ep: GPUs spanned | load: mean imb. | load: worst imb. | load: mean imb. (fit half) |")
    lines = [head, "|" + " --- |" * 11]
    for r in rows:
        lines.append(f"| {r['trace']} | {r['gpus']} ({r['nodes']}) | {r['replicas']} | {r['solver']} "
                     f"| {r['coherent_per_transition']:.3f} | {r['ep_copies_per_token_layer']:.3f} "
                     f"| {r['ep_inter_node_share']:.3f} | {r['ep_mean_gpus_spanned']:.2f} "
                     f"| {r['load_mean_imbalance']:.3f} | {r['load_max_imbalance']:.3f} "
                     f"| {r['load_mean_imbalance_fit']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--traces", type=Path, default=REPO.parent / "shared" / "traces")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = ap.parse_args()
    try:
        import placer.cost  # noqa: F401
    except ImportError:
        sys.exit("placer.cost is not on this branch yet: run `git merge main` once the cost models land")
    rows = []
    for name, trace in find_traces(args.traces):
        print(f"{name}: {trace.describe()}", file=sys.stderr)
        rows += evaluate_all(name, trace)
    agg = []
    for name, fit, loads in aggregate_sets(args.traces):
        print(f"{name}: aggregate counts, {len(loads)} domains", file=sys.stderr)
        agg += aggregate_rows(name, fit, loads)
    table = ("Per-token traces, fitted on the first half, scored on the second half:\n\n" + markdown(rows)
             + "\nAggregate counts (load model only): mean over layers of busiest GPU / mean GPU load\n\n"
             + aggregate_markdown(agg))
    rows = {"per_token": rows, "aggregate": agg}
    print(table)
    if args.out:
        args.out.write_text(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
