"""Outcomes of the bad-input corpus (tests/support/corpus.py) across every command that reads each kind.

Each (item, command) runs in this process (tests/support/inproc.py) under an address-space cap,
and is classified: clean one-line error (exit 2, nothing left behind), traceback, accepted (exit
0 on a bad input), multi-line, left-output, data-loss, hang. The placer package is whichever
PYTHONPATH names, so the same corpus measures two versions:

    PYTHONPATH=/path/to/old/checkout python benchmarks/robustness.py --json before.json
    PYTHONPATH=. python benchmarks/robustness.py --json after.json

Prints the tables by input kind and by command (docs/robustness.md) and every run that was not
clean.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support import corpus  # noqa: E402
from support.inproc import corpus_outcomes, limit_memory, table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="write every outcome here")
    ap.add_argument("--kinds", help="comma list of kinds (default: all)")
    args = ap.parse_args()
    import placer
    print(f"placer from {Path(placer.__file__).parent}", file=sys.stderr)
    limit_memory()
    with tempfile.TemporaryDirectory(prefix="moe-place-corpus-") as tmp:
        items = corpus.build(Path(tmp), args.kinds.split(",") if args.kinds else None)
        start = time.perf_counter()
        bad: list[str] = []

        def note(item, command, outcome, run):
            if outcome != "clean":
                tail = (run.stderr.strip().splitlines() or [repr(run.exception)])[-1][:160]
                bad.append(f"{item.kind}/{item.name} [{command}]: {outcome}: {tail}")

        results = corpus_outcomes(Path(tmp), items, note)
    print(f"{len(items)} items, {len(results)} runs, {time.perf_counter() - start:.0f} s\n")
    print(table(results, "kind"), "\n")
    print(table(results, "command"), "\n")
    failing = {(k, n) for k, n, _c, o in results if o != "clean"}
    print(f"items failing somewhere: {len(failing)} of {len(items)}")
    print("by outcome:", dict(Counter(o for *_x, o in results)))
    print("\n".join(bad))
    if args.json:
        Path(args.json).write_text(json.dumps(results))


if __name__ == "__main__":
    main()
