"""``partition`` variants over seeds: mean objective and gap per instance (issue 12).

One seed's run is one draw: on the ESFT top-1 projections the objective of the same command moves
by up to 8 % between seeds (summary top-1 on 2 x 8 GPUs: 570,298 and 618,210), more than most
changes of the search. This runs each variant on every instance for every seed and prints the
means, so a change is judged on them.

Usage (repository root; traces from ../shared/traces, projections and synthetic traces written to
a temporary folder as ``bench_quality.py`` does):

    python benchmarks/bench_seeds.py --time-limit 10 --seeds 0 1 2 \\
        --variant base= --variant every0=crossover_every=0 [--only esft/intent/top1:4 ...] [--jobs 2]

A variant is ``NAME=PARAMS``, PARAMS a ``+``-joined list of ``--param`` values (empty: the
defaults). Each run is ``moe-place solve TRACE --gpus G [--gpus-per-node 8] --cost coherent
--solver partition --time-limit T --seed S --param ...``; ``--jobs`` runs that many at once
(2 on a 2-core machine halves the wall time and slows both runs alike, which a comparison
between variants tolerates but absolute times do not). Rows go to ``--out`` as JSON lines.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_quality import _env, instances  # noqa: E402


def run(path: Path, G: int, gpn: int | None, T: float, seed: int, params: str, out: Path) -> dict:
    cmd = [sys.executable, "-m", "placer", "solve", str(path), "--gpus", str(G), "--cost", "coherent",
           "--solver", "partition", "--time-limit", str(T), "--seed", str(seed), "--json", "-o", str(out)]
    if gpn:
        cmd += ["--gpus-per-node", str(gpn)]
    for p in filter(None, params.split("+")):
        cmd += ["--param", p]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=_env())
    if proc.returncode:
        return {"error": proc.stderr.strip()[-300:]}
    r = json.loads(proc.stdout)
    return {"objective": r["objective"], "bound": r["bound"], "gap": r["gap"],
            "crossovers": r["details"].get("crossovers"), "bound_beside": r["details"].get("bound_beside")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "traces")
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variant", action="append", default=None, help="NAME=PARAMS (repeatable)")
    ap.add_argument("--only", nargs="*", default=None, help="instances as NAME:G, e.g. esft/intent/top1:4")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    variants = [v.split("=", 1) for v in (a.variant or ["default="])]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [r for r in instances(a.shared, Path(tmp), ["esft", "synthetic"])
                if not a.only or f"{r[0]}:{r[2]}" in a.only]
        jobs = list(itertools.product(rows, a.seeds, variants))

        def one(job):
            (name, path, G, gpn, _), seed, (vname, params) = job
            res = run(path, G, gpn, a.time_limit, seed, params, Path(tmp) / f"{abs(hash((name, G, seed, vname)))}.json")
            return {"instance": name, "gpus": G, "seed": seed, "variant": vname, "params": params,
                    "time_limit": a.time_limit, **res}

        with cf.ThreadPoolExecutor(max(1, a.jobs)) as ex:
            results = list(ex.map(one, jobs))
    if a.out:
        with a.out.open("a") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")
    names = [v[0] for v in variants]
    print("| instance | G | " + " | ".join(f"{n}: objective / gap (mean)" for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for name, _, G, _, _ in rows:
        cells = []
        for n in names:
            got = [r for r in results if r["instance"] == name and r["gpus"] == G and r["variant"] == n and "error" not in r]
            if not got:
                cells.append("error")
                continue
            obj = sum(r["objective"] for r in got) / len(got)
            gap = sum(r["gap"] for r in got) / len(got)
            cells.append(f"{obj:,.0f} / {100 * gap:.1f} %")
        print(f"| {name} | {G} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
