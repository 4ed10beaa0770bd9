"""Kill tests: every long-running command, started as a user would and sent SIGINT, SIGTERM or
SIGKILL while it works, leaves nothing behind.

After the signal: the exit status is 130 (SIGINT), death by SIGTERM (143 in a shell) or by
SIGKILL; the output folder is empty (no partial output, no named temporary file); the private
``TMPDIR`` holds no ``moe-place-validate-*`` / ``pymp-*`` folder; and no process the command
started (ranks, the fork server, the resource tracker, the reaper) is still alive a few seconds
later. "While it works" is a moment observed, not a guessed delay: the command has an unnamed
output or scratch file open in the output folder (import, profile, collect), its ranks run
(validate), or it has spent some seconds of CPU in its solver (solve, plan, compare: METIS runs
there; the SIGTERM-during-METIS case repeats). SIGINT goes to the process group, as Ctrl-C in
a terminal sends it; SIGTERM and SIGKILL to the command alone, as ``kill`` and the OOM killer do.
"""

from __future__ import annotations

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

pytestmark = pytest.mark.slow

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


def alive(procs: set[tuple[int, str]]) -> set[tuple[int, str]]:
    return {(p, s) for p, s in procs if (st := _stat(p)) is not None and st[0] != "Z" and st[19] == s}


def cpu_s(pid: int) -> float:
    st = _stat(pid)
    return 0.0 if st is None else (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")


def open_in(pid: int, folder: Path) -> bool:
    """Whether ``pid`` has a file open in ``folder`` (an unnamed O_TMPFILE shows as ``folder/#N (deleted)``)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(f"{folder}/"):
                return True
        except OSError:
            pass
    return False


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
                                     stdout=subprocess.DEVNULL, stderr=self.log, env=env, start_new_session=True)
        self.seen: set[tuple[int, str]] = set()

    def wait_until(self, working: Callable[["Run"], bool]) -> None:
        end = time.monotonic() + WORK_TIMEOUT_S
        while not working(self):
            self.seen |= descendants(self.proc.pid)
            if self.proc.poll() is not None:
                pytest.fail(f"the command ended ({self.proc.returncode}) before it was seen working: {self.stderr()}")
            if time.monotonic() > end:
                self.proc.kill()
                pytest.fail(f"not seen working within {WORK_TIMEOUT_S} s")
            time.sleep(0.005)
        self.seen |= descendants(self.proc.pid)

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()[-2000:]

    def send(self, name: str) -> int:
        if name == "INT":
            os.killpg(self.proc.pid, signal.SIGINT)
        else:
            self.proc.send_signal(SIGNALS[name])
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"SIGINT/SIGTERM ignored for 60 s: {self.stderr()}")

    def assert_nothing_left(self) -> None:
        end = time.monotonic() + 15
        while alive(self.seen) and time.monotonic() < end:
            time.sleep(0.05)
        assert not alive(self.seen), f"processes outlived the command: {sorted(alive(self.seen))}"
        assert sorted(os.listdir(self.out)) == [], "left in the output folder"
        assert sorted(os.listdir(self.tmpdir)) == [], "left in TMPDIR"
        with pytest.raises(ProcessLookupError):
            os.killpg(self.proc.pid, 0)          # the process group is gone


# ------------------------------------------------------------------------------ the commands
def writing(run: Run) -> bool:
    return open_in(run.proc.pid, run.out)


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
    small = Trace(ids[:, :4096], E, seq_offsets=np.linspace(0, 4096, 5).astype(np.int64))
    small.save(folder / "small.npz")
    subprocess.run([sys.executable, "-m", "placer", "solve", folder / "small.npz", "--gpus", "4", "--solver", "contiguous",
                    "-o", folder / "p4.json"], check=True, capture_output=True,
                   env=dict(os.environ, PYTHONPATH=str(REPO)))
    (folder / "prompts.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 4000)
    return folder


def commands(f: Path) -> dict[str, tuple[list[str], Callable[[Run], bool]]]:
    big, small = str(f / "big.npz"), str(f / "small.npz")
    return {
        "import": (["import", big, "-o", "{out}/t.npz"], writing),
        "profile": (["profile", big, "-o", "{out}/p.npz"], writing),
        "solve": (["solve", big, "--gpus", "8", "--solver", "partition", "--time-limit", "60", "-o", "{out}/p.json"], busy(4)),
        "plan": (["plan", big, "--gpus", "8", "--solvers", "partition", "--time-limit", "60", "--csv", "{out}/plan.csv"],
                 busy(4)),
        "compare": (["compare", big, "contiguous", "partition", "--gpus", "8", "--time-limit", "60"], busy(4)),
        "validate": (["validate", small, str(f / "p4.json"), "--tokens", "4096", "--iters", "200", "--warmup", "0",
                      "--hidden-size", "64", "--ffn-size", "64", "--timeout", "600"], ranks_running(4)),
        "collect": (["collect", "olmoe", "--from-config", "num_experts=4,num_hidden_layers=2,hidden_size=32,"
                     "intermediate_size=32,num_attention_heads=2,num_key_value_heads=2",
                     "--prompts", str(f / "prompts.txt"), "-o", "{out}/t.npz", "--device", "cpu", "--max-tokens", "100000",
                     "--batch-size", "8"], writing),
    }


@pytest.mark.parametrize("sig", list(SIGNALS))
@pytest.mark.parametrize("command", ["import", "profile", "solve", "plan", "compare", "validate", "collect"])
def test_killed_command_leaves_nothing(command, sig, inputs, tmp_path):
    if command in ("validate", "collect"):
        pytest.importorskip("torch")
    argv, working = commands(inputs)[command]
    run = Run(tmp_path, argv)
    run.wait_until(working)
    code = run.send(sig)
    assert code == STATUS[sig], f"exit {code}: {run.stderr()}"
    if sig != "KILL":
        assert "Traceback" not in run.stderr(), run.stderr()
    run.assert_nothing_left()


@pytest.mark.parametrize("attempt", range(4))
def test_sigterm_while_metis_runs_is_never_swallowed(attempt, inputs, tmp_path):
    """METIS traps SIGTERM while it runs: the command must still die of it, not crash or finish."""
    run = Run(tmp_path, ["solve", str(inputs / "big.npz"), "--gpus", "8", "--solver", "partition", "--time-limit", "60",
                         "--seed", str(attempt), "-o", "{out}/p.json"])
    run.wait_until(busy(3 + 0.7 * attempt))
    assert run.send("TERM") == -signal.SIGTERM, run.stderr()
    run.assert_nothing_left()
