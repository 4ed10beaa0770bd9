"""Record the golden outputs of ``tests/golden/cases.py`` with the code of this checkout.

    python tests/golden/record.py [--only NAME ...]

Run once on main a0271a5 (before the redesign); the files in ``tests/data/golden/`` are what
``tests/golden/test_golden.py`` holds later code to. Each case runs as a subprocess, as a user would.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import CASES, GOLDEN_DIR, REPO, expand, trace_paths  # noqa: E402


def run_case(case, out: Path, shared: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), CI="true")
    return subprocess.run([sys.executable, "-m", "placer", *expand(case, out, trace_paths(shared))],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=900)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "traces")
    args = ap.parse_args()
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        if args.only and case.name not in args.only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / f"out{case.suffix}"
            t0 = time.perf_counter()
            proc = run_case(case, out, args.shared)
            dt = time.perf_counter() - t0
            if proc.returncode != 0:
                sys.exit(f"{case.name}: exit {proc.returncode}\n{proc.stderr}")
            data = out.read_bytes() if case.output == "file" else proc.stdout.encode()
            case.golden.write_bytes(data)
            print(f"{case.name}: {len(data)} bytes in {dt:.1f} s", flush=True)


if __name__ == "__main__":
    main()
