"""Kill tests: every long-running command, started as a user would and sent SIGINT, SIGTERM or
SIGKILL while it works, leaves nothing behind.

After the signal: the exit status is 130 (SIGINT), death by SIGTERM (143 in a shell) or by
SIGKILL; the output folder is empty (no partial output, no named temporary file); the private
``TMPDIR`` holds no ``moe-place-validate-*`` / ``pymp-*`` folder; and no process the command
started (ranks, the fork server, the resource tracker, the reaper) is still alive a few seconds
later. "While it works" is a moment observed, not a guessed delay: the command has an unnamed
output file open in the output folder (import), it has the trace mapped (profile), its ranks
run (validate), or it has spent more CPU time than its start and input take (solve, plan,
compare: the partition search, METIS included; collect: the forward passes). The
SIGTERM-during-METIS case runs four times at different moments. A signal that lands just
after the output was linked into place finds the command done: the complete output may stay. SIGINT goes to the process group, as Ctrl-C in
a terminal sends it; SIGTERM and SIGKILL to the command alone, as ``kill`` and the OOM killer do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from support import REPO

# serial: CPU competition from a parallel worker makes "seen working" and wall budgets flaky,
# and xdist's deeper temporary paths push gloo's AF_UNIX socket path over its limit
pytestmark = [pytest.mark.slow, pytest.mark.serial]

SIGNALS = {"INT": signal.SIGINT, "TERM": signal.SIGTERM, "KILL": signal.SIGKILL}
STATUS = {"INT": 130, "TERM": -signal.SIGTERM, "KILL": -signal.SIGKILL}
WORK_TIMEOUT_S = 120


# ------------------------------------------------------------------------------ processes
def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()      # fields from the state on


def descendants(pid: int) -> set[tuple[int, str]]:
    """Living descendants of ``pid`` as (pid, start time) (the start time tells a reused pid)."""
    children: dict[int, list[int]] = {}
    starts = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None and st[0] != "Z":
            children.setdefault(int(st[1]), []).append(int(entry))
            starts[int(entry)] = st[19]
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add((c, starts[c]))
            todo.append(c)
    return out


def group_members(pgid: int) -> list[int]:
    """Living (not zombie) processes of the process group ``pgid``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None and st[0] != "Z" and int(st[2]) == pgid:
            out.append(int(entry))
    return out


def alive(procs: set[tuple[int, str]]) -> set[tuple[int, str]]:
    return {(p, s) for p, s in procs if (st := _stat(p)) is not None and st[0] != "Z" and st[19] == s}


def cpu_s(pid: int) -> float:
    st = _stat(pid)
    return 0.0 if st is None else (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")


def open_in(pid: int, folder: Path) -> bool:
    """Whether ``pid`` has an unnamed file open in ``folder`` (O_TMPFILE shows as ``folder/#N (deleted)``):
    it is writing its output or a scratch file there."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith(f"{folder}/") and target.endswith("(deleted)"):
                return True
        except OSError:
            pass
    return False


def complete(path: Path) -> None:
    """``path`` reads back whole (every array of an .npz, a whole JSON or CSV file)."""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            for k in z.files:
                z[k]
    elif path.suffix == ".json":
        json.loads(path.read_text())
    else:
        assert path.read_text().endswith("\n")


def _terminal_signals() -> None:
    """In the child before exec: SIGINT as a terminal's foreground job has it. A runner started in
    the background of a non-interactive shell (nohup, ``cmd &``) ignores SIGINT, the command
    rightly keeps ignoring an inherited SIG_IGN, and Ctrl-C would not be what is tested."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Run:
    """A ``moe-place`` subprocess in its own session with a private TMPDIR and output folder."""

    def __init__(self, tmp: Path, argv: list[str]):
        self.out = tmp / "out"
        self.tmpdir = tmp / "tmpdir"
        self.out.mkdir()
        self.tmpdir.mkdir()
        env = dict(os.environ, TMPDIR=str(self.tmpdir), CI="true",
                   PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.log = open(tmp / "stderr.txt", "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "placer", *[a.replace("{out}", str(self.out)) for a in argv]],
                                     stdout=subprocess.DEVNULL, stderr=self.log, env=env, start_new_session=True,
                                     preexec_fn=_terminal_signals)
        self.seen: set[tuple[int, str]] = set()
        self.output = next((Path(a.replace("{out}", str(self.out))) for a in argv if "{out}" in a), self.out / "-")

    def poll_working(self, working: Callable[["Run"], bool]) -> bool:
        """Whether the command is working now (noting its processes); fails if it ended first."""
        self.seen |= descendants(self.proc.pid)
        if working(self):
            self.seen |= descendants(self.proc.pid)
            return True
        if self.proc.poll() is not None:
            pytest.fail(f"the command ended ({self.proc.returncode}) before it was seen working: {self.stderr()}")
        return False

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()[-2000:]

    def send(self, name: str) -> None:
        if name == "INT":
            os.killpg(self.proc.pid, signal.SIGINT)
        else:
            self.proc.send_signal(SIGNALS[name])

    def wait(self) -> int:
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"the signal was ignored for 60 s: {self.stderr()}")

    def assert_nothing_left(self) -> None:
        end = time.monotonic() + 15
        while alive(self.seen) and time.monotonic() < end:
            time.sleep(0.05)
        assert not alive(self.seen), f"processes outlived the command: {sorted(alive(self.seen))}"
        left = sorted(os.listdir(self.out))
        # a signal that lands after the output was linked into place finds the command done:
        # the complete output may stay, nothing else
        assert left in ([], [self.output.name]), f"left in the output folder: {left}"
        if left:
            complete(self.output)
        # torchinductor_USER is torch's own compile cache, kept across runs by design
        assert [n for n in os.listdir(self.tmpdir) if not n.startswith("torchinductor_")] == [], "left in TMPDIR"
        assert group_members(self.proc.pid) == [], "the process group still has living members"


# ------------------------------------------------------------------------------ the commands
def writing(run: Run) -> bool:
    return open_in(run.proc.pid, run.out)


def reading(path: Path) -> Callable[[Run], bool]:
    """The command has ``path`` mapped (a trace is memory-mapped while it is worked on)."""
    def check(run: Run) -> bool:
        try:
            return str(path) in Path(f"/proc/{run.proc.pid}/maps").read_text()
        except OSError:
            return False
    return check


def busy(seconds: float) -> Callable[[Run], bool]:
    return lambda run: cpu_s(run.proc.pid) >= seconds


def ranks_running(world: int) -> Callable[[Run], bool]:
    return lambda run: any(p.name.startswith("moe-place-validate-") for p in run.tmpdir.iterdir()) and \
        len(descendants(run.proc.pid)) >= world + 2 and cpu_s(run.proc.pid) > 0


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A trace big enough to keep every command busy for seconds, and a placement of it."""
    from placer.model.trace import Trace
    folder = tmp_path_factory.mktemp("inputs")
    L, T, K, E = 8, 200_000, 4, 64
    rng = np.random.default_rng(0)
    ids = np.argsort(rng.random((L, T // 20, E)), axis=-1)[..., :K].astype(np.uint8)
    ids = np.concatenate([np.roll(ids, i, axis=1) for i in range(20)], axis=1)
    trace = Trace(ids, E, gate_weights=rng.random((L, T, K)).astype(np.float32),
                  seq_offsets=np.linspace(0, T, 101).astype(np.int64))
    trace.save(folder / "big.npz")
    Trace(ids[:, :40_000], E, seq_offsets=np.linspace(0, 40_000, 21).astype(np.int64)).save(folder / "mid.npz")
    small = Trace(ids[:, :4096], E, seq_offsets=np.linspace(0, 4096, 5).astype(np.int64))
    small.save(folder / "small.npz")
    subprocess.run([sys.executable, "-m", "placer", "solve", folder / "small.npz", "--gpus", "4", "--solver", "contiguous",
                    "-o", folder / "p4.json"], check=True, capture_output=True,
                   env=dict(os.environ, PYTHONPATH=str(REPO)))
    (folder / "prompts.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 4000)
    return folder


def commands(f: Path) -> dict[str, tuple[list[str], Callable[[Run], bool]]]:
    big, mid, small = str(f / "big.npz"), str(f / "mid.npz"), str(f / "small.npz")
    return {
        "import": (["import", big, "-o", "{out}/t.npz"], writing),
        "profile": (["profile", big, "-o", "{out}/p.npz"], reading(f / "big.npz")),
        "solve": (["solve", mid, "--gpus", "8", "--solver", "partition", "--time-limit", "60", "-o", "{out}/p.json"], busy(3.5)),
        "plan": (["plan", mid, "--gpus", "8", "--solvers", "partition", "--time-limit", "60", "--csv", "{out}/plan.csv"],
                 busy(3.5)),
        "compare": (["compare", mid, "contiguous", "partition", "--gpus", "8", "--time-limit", "60"], busy(3.5)),
        "validate": (["validate", small, str(f / "p4.json"), "--tokens", "4096", "--iters", "200", "--warmup", "0",
                      "--hidden-size", "64", "--ffn-size", "64", "--timeout", "600"], ranks_running(4)),
        "collect": (["collect", "olmoe", "--from-config", "num_experts=4,num_hidden_layers=2,hidden_size=32,"
                     "intermediate_size=32,num_attention_heads=2,num_key_value_heads=2",
                     "--prompts", str(f / "prompts.txt"), "-o", "{out}/t.npz", "--device", "cpu", "--max-tokens", "100000",
                     "--batch-size", "8"], busy(12)),
    }


def kill_when_working(runs: dict[str, "Run"], working: Callable[[Run], bool] | dict[str, Callable[[Run], bool]],
                      signals: dict[str, str]) -> None:
    """Send each run its signal (``signals``: run name -> INT/TERM/KILL) as soon as it is seen
    working, then check each: its exit status, no traceback, nothing left."""
    todo, end = dict(runs), time.monotonic() + WORK_TIMEOUT_S
    while todo:
        for name, run in list(todo.items()):
            if run.poll_working(working if callable(working) else working[name]):
                run.send(signals[name])
                del todo[name]
        if time.monotonic() > end:
            for run in runs.values():
                run.proc.kill()
            pytest.fail(f"{sorted(todo)} not seen working within {WORK_TIMEOUT_S} s")
        time.sleep(0.005)
    for name, run in runs.items():
        code, sig = run.wait(), signals[name]
        assert code == STATUS[sig], f"{name}: SIG{sig}: exit {code}: {run.stderr()}"
        if sig != "KILL":
            assert "Traceback" not in run.stderr(), run.stderr()
        run.assert_nothing_left()


def start(tmp_path: Path, argvs: dict[str, list[str]]) -> dict[str, Run]:
    runs = {}
    for name, argv in argvs.items():
        (tmp_path / name).mkdir()
        runs[name] = Run(tmp_path / name, argv)
    return runs


@pytest.mark.parametrize("command", ["import", "profile", "solve", "plan", "compare", "validate", "collect"])
def test_killed_command_leaves_nothing(command, inputs, tmp_path):
    """SIGINT, SIGTERM and SIGKILL, each to its own run of the command (the three side by side)."""
    if command in ("validate", "collect"):
        pytest.importorskip("torch")
    argv, working = commands(inputs)[command]
    # collect costs ~10 s of CPU to start (torch, transformers): SIGTERM's path there is every
    # command's (the sigwait thread), so it gets SIGINT (its own cleanup) and SIGKILL only
    sigs = ["INT", "KILL"] if command == "collect" else list(SIGNALS)
    kill_when_working(start(tmp_path, {sig: argv for sig in sigs}), working, {sig: sig for sig in sigs})


def test_sigterm_while_metis_runs_is_never_swallowed(inputs, tmp_path):
    """METIS traps SIGTERM while it runs: solve and plan must still die of it, not crash or
    finish (four runs side by side, each signalled at another moment of its partition search)."""
    big = str(inputs / "mid.npz")
    argvs = [["solve", big, "--gpus", "8", "--solver", "partition", "--time-limit", "60", "--seed", "1", "-o", "{out}/p.json"],
             ["plan", big, "--gpus", "8", "--solvers", "partition", "--time-limit", "60", "--csv", "{out}/plan.csv"]] * 2
    runs = start(tmp_path, {f"{argv[0]}{i}": argv for i, argv in enumerate(argvs)})
    working = {name: busy(3.5 + 0.7 * i) for i, name in enumerate(runs)}
    kill_when_working(runs, working, {name: "TERM" for name in runs})
