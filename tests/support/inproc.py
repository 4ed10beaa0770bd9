"""Running the CLI in this process and classifying what a bad input did (corpus and fuzz tests).

A subprocess per run would cost an interpreter start and the imports (about a second each); the
corpus runs thousands, so :func:`run_cli_inprocess` calls ``placer.cli.main(argv)`` here with
stdout and stderr captured, exactly what ``python -m placer ARGV`` prints and returns except
that an escaping exception is caught (it would be a traceback and exit 1). The replay of
``validate`` is replaced by :class:`ReplayWouldStart` once every input check has passed (its
ranks are exercised by tests/validate). Every run has a deadline (SIGALRM).

:func:`classify` names the outcome: ``clean`` (exit 2, one line, nothing left behind),
``traceback:<Exception>``, ``accepted`` (exit 0), ``multi-line``, ``left-output``, ``data-loss``
(an input or a special file was replaced or changed), ``hang``, ``exit<N>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import resource
import signal
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

RUN_DEADLINE_S = 60


class Hang(BaseException):
    """A run passed its deadline."""


class ReplayWouldStart(BaseException):
    """validate checked its inputs and would now start its ranks: the input was accepted."""


@dataclass
class Run:
    code: int | None
    stdout: str
    stderr: str
    exception: BaseException | None = None


def limit_memory(extra_bytes: int = 6 << 30) -> None:
    """Cap this process's address space at what it uses now plus ``extra_bytes``, so that an
    allocation a reader should have refused fails with MemoryError instead of exhausting the
    machine."""
    with open("/proc/self/status") as fh:
        vm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    want = vm + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))


@contextlib.contextmanager
def memory_cap(extra_bytes: int = 6 << 30):
    """:func:`limit_memory` for the length of the block, then the old limit again (a test
    process goes on to run other tests)."""
    old = resource.getrlimit(resource.RLIMIT_AS)
    limit_memory(extra_bytes)
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


@contextlib.contextmanager
def _stub_replay():
    import placer.validate.launch as launch

    def spawn(*_args, **_kw):
        raise ReplayWouldStart()

    real, launch.spawn = launch.spawn, spawn
    try:
        yield
    finally:
        launch.spawn = real


def run_cli_inprocess(argv: list[str], deadline_s: float = RUN_DEADLINE_S) -> Run:
    """``placer.cli.main(argv)`` here, stdout/stderr captured; see the module docstring."""
    from placer.cli import main

    os.environ["CI"] = "true"
    out, err = io.StringIO(), io.StringIO()

    def alarm(_sig, _frame):
        raise Hang()

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, deadline_s)
    code, exc = None, None
    try:
        with _stub_replay(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([str(a) for a in argv])
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except ReplayWouldStart:
        code = 0
    except BaseException as e:  # noqa: BLE001  (anything escaping main is a traceback for a user)
        exc = e
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return Run(code, out.getvalue(), err.getvalue(), exc)


def classify(run: Run, left: list[str] | None = None, damaged: list[str] | None = None) -> str:
    """The outcome of a run of a bad input (see the module docstring)."""
    if damaged:
        return "data-loss"
    if isinstance(run.exception, Hang):
        return "hang"
    if run.exception is not None:
        return f"traceback:{type(run.exception).__name__}"
    if run.code == 0:
        return "accepted"
    if left:
        return "left-output"
    if run.code == 2:
        lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
        return "clean" if len(lines) == 1 and "Traceback" not in run.stderr else "multi-line"
    return f"exit{run.code}"


# ---------------------------------------------------------------------- what must not change
def _digest(path: Path) -> str:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return "link:" + os.readlink(path)
    if stat.S_ISDIR(st.st_mode):
        return "dir:" + ",".join(sorted(os.listdir(path)))
    if not stat.S_ISREG(st.st_mode):
        return f"special:{stat.S_IFMT(st.st_mode)}"
    return f"file:{st.st_ino}:" + hashlib.sha256(path.read_bytes()).hexdigest()


class Guard:
    """Snapshots of the files a run must leave alone; :meth:`damaged` names those that changed."""

    def __init__(self, paths: Iterable[Path]):
        self.paths = [Path(p) for p in paths]
        self.before = {p: _digest(p) for p in self.paths}

    def damaged(self) -> list[str]:
        out = []
        for p in self.paths:
            try:
                now = _digest(p)
            except FileNotFoundError:
                now = "missing"
            if now != self.before[p]:
                out.append(str(p))
        return out


def leftovers(folder: Path) -> list[str]:
    """Every file under ``folder`` (an output folder that should be empty after an error)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def corpus_outcomes(root: Path, items, progress=None) -> list[tuple[str, str, str, str]]:
    """Run every (item, command) of a corpus built under ``root``; ``(kind, name, command, outcome)``."""
    import shutil

    from support import corpus

    base = root / "_base"
    fixtures = root / "outputs"
    results = []
    for item in items:
        for command, argv in item.runs.items():
            out = root / "_out"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            guard = Guard([*base.iterdir(), *(fixtures / n for n in corpus.FIXTURES)])
            run = run_cli_inprocess([a.replace("{out}", str(out)) for a in argv])
            damaged = guard.damaged()
            strays = [p for p in leftovers(fixtures) if ".tmp" in p or p.startswith("a_dir/")]
            outcome = classify(run, leftovers(out) + strays, damaged)
            if damaged or strays:
                shutil.rmtree(base, ignore_errors=True)
                corpus.write_base(root)
                for p in fixtures.glob("a_dir/*"):
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink()
                for p in fixtures.glob(".*tmp*"):
                    p.unlink()
                corpus.output_fixtures(fixtures, base)
            results.append((item.kind, item.name, command, outcome))
            if progress:
                progress(item, command, outcome, run)
    return results


def table(results, by: str = "kind") -> str:
    """A markdown table of outcome counts per input kind (``by="kind"``) or per command."""
    from collections import Counter, defaultdict

    cols = ["clean", "traceback", "accepted", "multi-line", "left-output", "data-loss", "hang", "other"]
    rows: dict[str, Counter] = defaultdict(Counter)
    for kind, _name, command, outcome in results:
        key = kind if by == "kind" else command
        col = outcome.split(":")[0]
        rows[key][col if col in cols else "other"] += 1
    lines = [f"| {by} | runs | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    total: Counter = Counter()
    for key in sorted(rows):
        c = rows[key]
        total.update(c)
        lines.append(f"| {key} | {sum(c.values())} | " + " | ".join(str(c[k]) for k in cols) + " |")
    lines.append(f"| **all** | {sum(total.values())} | " + " | ".join(str(total[k]) for k in cols) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run benchmarks/robustness.py")
