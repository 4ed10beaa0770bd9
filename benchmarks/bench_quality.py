"""Placement quality at a time limit: objective, proven bound, gap and whole-command wall time.

Usage (repository root; the real traces come from ../shared/traces):

    python benchmarks/bench_quality.py --time-limit 10 [--only esft mixtral synthetic] [--out FILE.jsonl]

Each row is one ``moe-place solve TRACE --gpus G [--gpus-per-node 8] --cost coherent --time-limit T
--json`` run as a user runs it (a subprocess, default solver ``auto``), timed from start to exit.
Instances (the issue's tuning set):

- ESFT intent and summary (DeepSeek-V2-Lite, 26 x 64, top-6) and their top-1 projections (each
  token's highest-gate pick: strong affinity, like Switch), on 4, 8 and 16 GPUs (16 = 2 nodes of 8);
- Mixtral-8x7B MT-Bench (32 x 8, top-2), four categories, on 2, 4 and 8 GPUs;
- synthetic planted traces (``traces/make_synthetic.py``: 12 layers, top-2, E = 128 and 256) on 2,
  4, 8 and 16 GPUs (16 = 2 nodes of 8);
- ``deepseek`` (only when asked for with ``--only deepseek``): the DeepSeek-V3 shape, planted traces
  of 58 layers x 256 experts, top-8, 32 groups, ``--ds-sequences`` x 128 tokens (782: 100k tokens,
  7813: 1M), on 64 GPUs with and without ``--replicas 64``, 128 and 256 GPUs with and without one
  replica per GPU, and 384 and 512 experts (Kimi-K2-like, top-8) on 64 GPUs; nodes of 8 GPUs.

Every run is wrapped in ``/usr/bin/time -v`` where it exists, for the maximum resident set size.

Writes one JSON object per row to ``--out`` (appending) and prints a markdown table;
``--compare BEFORE.jsonl AFTER.jsonl`` prints the before/after table of two such files instead
(rows matched on instance, G and extra arguments). The objective
is the coherent cost in its own units (hop-weighted token transitions, docs/cost-models.md); the
gap is ``(objective - bound) / objective``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from placer.model.trace import Trace  # noqa: E402
from placer.traces.load import load_input  # noqa: E402


def instances(shared: Path, tmp: Path, only: list[str] | None, ds_sequences: int = 782,
              names: list[str] | None = None) -> list[tuple[str, Path, int, int | None, list[str]]]:
    """``(name, trace file, G, gpus per node, extra solve arguments)`` of every instance."""
    out: list[tuple[str, Path, int, int | None, list[str]]] = []

    def want(family: str) -> bool:
        return not only or family in only

    if want("esft"):
        for task in ("intent", "summary"):
            src = shared / "esft" / f"esft_v2lite_{task}.npz"
            trace = load_input(src)
            top1 = tmp / f"esft_{task}_top1.npz"
            Trace(expert_ids=trace.top1()[:, :, None], num_experts=trace.num_experts, seq_offsets=trace.seq_offsets,
                  moe_layers=trace.moe_layers, num_hidden_layers=trace.num_hidden_layers, model=trace.model,
                  source=f"{src.name}, top-1 by gate weight").save(top1)
            for name, path in ((f"esft/{task}", src), (f"esft/{task}/top1", top1)):
                for G in (4, 8, 16):
                    out.append((name, path, G, 8 if G == 16 else None, []))
    if want("mixtral"):
        for cat in ("coding", "math", "reasoning", "writing"):
            for G in (2, 4, 8):
                out.append((f"mixtral/{cat}", shared / "mixtral_mtbench" / f"{cat}.json", G, None, []))
    if want("synthetic"):
        for E in (128, 256):
            path = tmp / f"synthetic_{E}.npz"
            subprocess.run([sys.executable, str(REPO / "traces" / "make_synthetic.py"), "-o", str(path),
                            "--experts", str(E), "--groups", "16", "--seed", "0"], check=True, cwd=REPO)
            for G in (2, 4, 8, 16):
                out.append((f"synthetic/E{E}", path, G, 8 if G == 16 else None, []))
    if only and "deepseek" in only:
        for E, runs in ((256, ((64, 0), (64, 64), (128, 0), (128, 128), (256, 0), (256, 256))),
                        (384, ((64, 0),)), (512, ((64, 0),))):
            path = tmp / f"ds_{E}.npz"
            rows = [(f"deepseek/E{E}/{ds_sequences * 128 // 1000}k" + (f"/r{R}" if R else ""), path, G, 8,
                     ["--replicas", str(R)] if R else []) for G, R in runs]
            rows = [r for r in rows if not names or f"{r[0]}:{r[2]}" in names]
            if rows:
                subprocess.run([sys.executable, str(REPO / "traces" / "make_synthetic.py"), "-o", str(path),
                                "--layers", "58", "--experts", str(E), "--top-k", "8", "--groups", "32",
                                "--sequences", str(ds_sequences), "--seed", "0"], check=True, cwd=REPO)
            out += rows
    return out


TIME = Path("/usr/bin/time")


def run(path: Path, G: int, gpn: int | None, time_limit: float, extra: list[str], out: Path) -> dict:
    cmd = [sys.executable, "-m", "placer", "solve", str(path), "--gpus", str(G), "--cost", "coherent",
           "--time-limit", str(time_limit), "-o", str(out), "--json", *extra]
    if gpn:
        cmd += ["--gpus-per-node", str(gpn)]
    rss = out.with_suffix(".time")
    if TIME.exists():
        cmd = [str(TIME), "-v", "-o", str(rss), *cmd]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env={"CI": "true", **_env()})
    wall = time.perf_counter() - t0
    if proc.returncode:
        return {"error": proc.stderr.strip()[-400:], "wall_s": wall}
    r = json.loads(proc.stdout)
    row = {"solver": r["solver"], "chosen": r["chosen"], "status": r["status"], "objective": r["objective"],
           "bound": r["bound"], "bound_method": r["bound_method"], "gap": r["gap"], "wall_s": wall,
           "bound_s": r.get("timing", {}).get("bound_s")}
    if rss.exists():
        lines = [x for x in rss.read_text().splitlines() if "Maximum resident set size" in x]
        row["max_rss_mb"] = int(lines[0].split(":")[1]) / 1024 if lines else None
    return row


def _env() -> dict:
    import os
    return {k: v for k, v in os.environ.items() if k != "CI"} | {"PYTHONPATH": str(REPO)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "traces")
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--only", nargs="*", default=None, help="families: esft mixtral synthetic")
    ap.add_argument("--solver-args", default="", help="extra solve arguments, e.g. '--solver partition'")
    ap.add_argument("--label", default="", help="a name for this run in the output rows")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--ds-sequences", type=int, default=782, help="deepseek: sequences of 128 tokens (7813: 1M)")
    ap.add_argument("--names", nargs="*", default=None, help="only these 'instance:G' rows, e.g. esft/intent:8")
    ap.add_argument("--compare", nargs=2, type=Path, default=None, metavar=("BEFORE", "AFTER"))
    args = ap.parse_args()
    if args.compare:
        compare(*args.compare)
        return
    print(f"| instance | G | solver | status | objective | bound | gap | wall s (limit {args.time_limit:g}) |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, G, gpn, extra in instances(args.shared, Path(tmp), args.only, args.ds_sequences, args.names):
            if args.names and f"{name}:{G}" not in args.names:
                continue
            row = {"label": args.label, "instance": name, "gpus": G, "gpus_per_node": gpn,
                   "time_limit": args.time_limit,
                   **run(path, G, gpn, args.time_limit, [*extra, *args.solver_args.split()], Path(tmp) / "p.json")}
            if args.out:
                with args.out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
            if "error" in row:
                print(f"| {name} | {G} | error: {row['error'][:80]} | | | | | {row['wall_s']:.1f} |", flush=True)
                continue
            gap = "-" if row["gap"] is None else f"{100 * row['gap']:.1f}%"
            bound = "-" if row["bound"] is None else f"{row['bound']:.6g}"
            print(f"| {name} | {G} | {row['solver']} | {row['status']} | {row['objective']:.6g} | {bound} | {gap} "
                  f"| {row['wall_s']:.1f} |", flush=True)


def _cell(row: dict | None) -> str:
    if row is None:
        return "| | | | |"
    if "error" in row:
        return f"| error | | | {row['wall_s']:.1f} |"
    gap = "-" if row["gap"] is None else f"{100 * row['gap']:.1f} %"
    bound = "-" if row["bound"] is None else f"{row['bound']:,.0f}"
    return f"| {row['objective']:,.0f} | {bound} | {gap} | {row['wall_s']:.1f} |"


def _method(row: dict | None) -> str:
    """The bound method in a few words: the kinds of bound that won some pair."""
    if row is None or "error" in row or not row.get("bound_method"):
        return "-"
    m = row["bound_method"]
    if not m.startswith(("coherent hop-weighted", "ep-pairwise hop-weighted")):
        return m.split(" (")[0][:40]
    kinds = [("eigenvalue/degree split", "eigenvalue/degree split"), ("eigenvalue ", "eigenvalue"),
             ("b-matching", "b-matching"), ("top-S degrees", "top-S degrees")]
    won = [short for key, short in kinds if key in m.replace("eigenvalue/degree split", "split ")
           or (short == "eigenvalue/degree split" and "split" in m)]
    return ", ".join(won) + (" (pooled replicas)" if "pooled" in m else "")


def compare(before: Path, after: Path) -> None:
    """A markdown table: each instance's objective, bound, gap, wall before and after."""
    def rows(path: Path) -> dict:
        out = {}
        for line in path.read_text().splitlines():
            r = json.loads(line)
            out[(r["instance"], r["gpus"])] = r
        return out

    old, new = rows(before), rows(after)
    limit = next(iter(new.values()))["time_limit"]
    print(f"| instance | G | objective before | bound before | gap before | wall s before | objective after "
          f"| bound after | gap after | wall s after (limit {limit:g}) | bound method after | objective after/before |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key in sorted(set(old) | set(new), key=lambda k: (k[0], k[1])):
        o, n = old.get(key), new.get(key)
        ratio = (f"{n['objective'] / o['objective']:.4f}" if o and n and "error" not in o and "error" not in n
                 and o["objective"] else "-")
        print(f"| {key[0]} | {key[1]} {_cell(o)} {_cell(n)[1:]} {_method(n)} | {ratio} |")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
