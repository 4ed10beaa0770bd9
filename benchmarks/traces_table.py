"""Import every file in ../shared/traces and inspect it: the table of docs/traces.md.

    python benchmarks/traces_table.py [--gpus 8] [--shared ../shared/traces]

Runs the real CLI (``moe-place import SRC -o TMP`` then ``moe-place inspect TMP --gpus G --json``)
for each file (each model/domain of the OLMoE counts, each model of the fiddler counts summed over
subjects) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "placer", *args], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"moe-place {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def inputs(shared: Path) -> list[tuple[str, Path, list[str]]]:
    out = []
    for f in sorted((shared / "esft").glob("*.npz")) + sorted((shared / "mixtral_mtbench").glob("*.json")):
        out.append((f"{f.parent.name}/{f.name}", f, []))
    olmoe = shared / "olmoe" / "olmoe_mixtral_routing_counts.npz"
    for model in ("olmoe", "mistral"):
        for domain in ("arxiv", "book", "c4", "github", "wikipedia"):
            out.append((f"olmoe ({model}__{domain})", olmoe, ["--key", f"{model}__{domain}"]))
    for model in ("olmoe", "olmoe-sft", "olmoe-dpo"):
        out.append((f"olmoe ({model}__tulu)", olmoe, ["--key", f"{model}__tulu", "--top-k", "8"]))
    fid = shared / "fiddler" / "mixtral_mmlu_expert_counts.npz"
    for model in ("Mixtral-8x7B-v0.1", "Mixtral-8x7B-Instruct-v0.1"):
        out.append((f"fiddler ({model}, 7 subjects)", fid, ["--key", f"{model}__all"]))
    return out


def fmt(x, spec=".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "traces")
    a = ap.parse_args()
    print(f"| input | kind | tokens | L | E | K | load skew max/mean: mean (max) | NMI top-1 | mean max P(next\\|cur) "
          f"| locality bound top-1, {a.gpus} GPUs | bound K x K pairs | contiguous keeps (K x K) | random |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for label, path, extra in inputs(a.shared):
            out = Path(tmp) / "x.npz"
            cli("import", str(path), "-o", str(out), *extra)
            s = json.loads(cli("inspect", str(out), "--gpus", str(a.gpus), "--json"))
            aff, loc, sk = s["affinity"], s["locality"], s["load_skew"]
            print(f"| {label} | {s['kind']} | {s['tokens']} | {s['layers']} | {s['experts']} | {s['top_k']} "
                  f"| {sk['mean']:.2f} ({sk['max']:.2f}) | {fmt(aff and aff['nmi_top1']['mean'])} "
                  f"| {fmt(aff and aff['max_cond_prob_top1']['mean'])} | {fmt(loc['bound_top1'])} "
                  f"| {fmt(loc['bound_pairs'])} | {fmt(loc.get('contiguous_pairs'))} | {loc['random_share']:.3f} |")


if __name__ == "__main__":
    main()
