"""Starting the ranks: spawned by the command itself, or one rank of a ``torchrun`` job.

Spawned runs start fresh interpreters (``torch.multiprocessing``'s ``forkserver`` context with
torch preloaded, or ``spawn`` where there is no fork server; see :func:`_context`) and a ``file://`` rendezvous in a
private temporary folder. Each rank's stdout and stderr go to a log file there, so the command's
own output stays clean. The parent polls the ranks (and shows progress on a terminal): the
first rank that exits non-zero (or the ``timeout_s`` deadline) stops the run, every other rank
gets SIGTERM, then SIGKILL after a grace period, and the command ends with one line naming the
rank and its last error. Collectives also carry ``timeout_s``, so a rank whose peer vanished
cannot wait forever even without the parent.

If the command itself is killed (SIGTERM, SIGKILL), the ranks and the fork server die with it
(parent-death signal) and the reaper (:mod:`placer.validate.reaper`) removes the run's folders,
so no process and no temporary folder outlives it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from placer.errors import PlacerError
from placer.validate.worker import ReplayConfig, check_failure, run_rank

GRACE_S = 3.0
POLL_S = 0.05


class ReplayFailed(PlacerError):
    """The replay itself failed (a rank died, a deadline passed): not the user's input, exit 1."""

    exit_code = 1


def torchrun_env() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` when running under torchrun (or any env:// launcher)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        return rank, world, int(os.environ.get("LOCAL_RANK", rank))
    return None


def _device(backend: str, local_rank: int):
    import torch
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def check_backend(backend: str, local_ranks: int) -> None:
    """Fail early, as a user error, when the backend cannot run here."""
    import torch
    import torch.distributed as dist
    if not dist.is_available():
        raise PlacerError("this torch build has no torch.distributed; install a torch build with distributed support")
    if backend == "nccl":
        if not torch.cuda.is_available() or not dist.is_nccl_available():
            raise PlacerError("--dist-backend nccl needs CUDA GPUs and a torch build with NCCL; use --dist-backend gloo on CPU")
        if torch.cuda.device_count() < local_ranks:
            raise PlacerError(f"--dist-backend nccl with {local_ranks} ranks on this node needs {local_ranks} GPUs, "
                              f"found {torch.cuda.device_count()}; lower --world-size or launch with torchrun across nodes")
    elif not dist.is_gloo_available():
        raise PlacerError("this torch build has no gloo backend; use --dist-backend nccl on GPUs")


def run_torchrun(cfg: ReplayConfig) -> dict[str, Any] | None:
    """Run this process as one rank of a torchrun job; rank 0 returns the report, others None."""
    import torch
    import torch.distributed as dist
    rank, world, local_rank = torchrun_env()
    if world != cfg.world_size:
        raise PlacerError(f"the placement is for {cfg.world_size} GPUs but torchrun started {world} ranks; "
                          f"use --nproc-per-node/--nnodes giving {cfg.world_size} ranks")
    torch.set_num_threads(max(1, torch.get_num_threads() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))))
    dist.init_process_group(cfg.backend, init_method="env://", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=cfg.collective_timeout_s))
    try:
        return run_rank(cfg, rank, _device(cfg.backend, local_rank))
    finally:
        dist.destroy_process_group()


def _spawned_rank(rank: int, cfg: ReplayConfig, run_dir: str, init_method: str, threads: int) -> None:
    """Entry point of a spawned rank: logs to a file, writes rank 0's report, exits 0/1/2."""
    from placer.validate.reaper import die_with_parent
    die_with_parent()
    log = os.open(os.path.join(run_dir, f"rank{rank}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    code = 0
    try:
        import torch
        import torch.distributed as dist
        torch.set_num_threads(threads)
        dist.init_process_group(cfg.backend, init_method=init_method, rank=rank, world_size=cfg.world_size,
                                timeout=datetime.timedelta(seconds=cfg.collective_timeout_s))
        report = run_rank(cfg, rank, _device(cfg.backend, rank))
        if rank == 0:
            from placer.fileio import write_json
            write_json(os.path.join(run_dir, "report.json"), report)
        dist.destroy_process_group()
    except PlacerError as exc:
        code = exc.exit_code
        Path(run_dir, f"rank{rank}.err").write_text(str(exc))
    except BaseException as exc:  # noqa: BLE001  (any crash must reach the parent as one line)
        code = 1
        traceback.print_exc()
        text = str(exc) if check_failure(exc) else f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        Path(run_dir, f"rank{rank}.err").write_text(text)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _context():
    """A ``forkserver`` context that preloads torch, else ``spawn``.

    Both start ranks from a fresh interpreter, never from a fork of the caller (whose threads
    and state a fork would copy). The fork server imports torch once and forks every rank from
    that clean process: on a loaded 2-core machine ``import torch`` took 6.5 s per rank, and four
    ranks importing at once took 26 s (docs/benchmarks.md).
    """
    import torch.multiprocessing as mp
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["torch", "torch.distributed", "placer.validate.launch", "placer.validate.preload"])
        return ctx
    return mp.get_context("spawn")


def spawn(cfg: ReplayConfig, timeout_s: float) -> dict[str, Any]:
    """Spawn ``cfg.world_size`` ranks on this machine, wait, return rank 0's report.

    Raises :class:`ReplayFailed` (exit 1) naming the first rank that died, or the deadline.
    """
    import dataclasses

    import torch
    from multiprocessing import util

    from placer.progress import progress
    from placer.validate.reaper import Reaper
    ctx = _context()
    threads = max(1, torch.get_num_threads() // cfg.world_size)
    reaper = Reaper()
    try:
        with tempfile.TemporaryDirectory(prefix="moe-place-validate-") as run_dir:
            reaper.folder(run_dir)
            init = Path(run_dir, "rendezvous").as_uri()
            cfg = dataclasses.replace(cfg, progress_path=str(Path(run_dir, "progress")))
            procs = [ctx.Process(target=_spawned_rank, args=(r, cfg, run_dir, init, threads), daemon=True)
                     for r in range(cfg.world_size)]
            try:
                # registered before any rank starts: a kill while they start leaves nothing either
                reaper.folder(util.get_temp_dir())
                reaper.pid(_start_forkserver(ctx))
                for p in procs:
                    p.start()
                    reaper.pid(p.pid)
                with progress("replaying", total=cfg.passes, unit="passes") as advance:
                    _wait(procs, run_dir, timeout_s, advance)
            finally:
                _stop(procs)
            try:
                return json.loads(Path(run_dir, "report.json").read_text())
            except (OSError, ValueError):
                raise ReplayFailed("the ranks finished but rank 0 wrote no report; rerun, and report a bug if it repeats") from None
    finally:
        reaper.close()


def _start_forkserver(ctx) -> int | None:
    """Start the fork server now (it would start with the first rank) and return its pid."""
    if ctx.get_start_method() != "forkserver":
        return None
    from multiprocessing import forkserver
    forkserver.ensure_running()
    return getattr(forkserver._forkserver, "_forkserver_pid", None)


def _wait(procs: list, run_dir: str, timeout_s: float, advance=lambda n: None) -> None:
    deadline = time.monotonic() + timeout_s
    shown = 0
    while True:
        codes = [p.exitcode for p in procs]
        with contextlib.suppress(OSError):
            done = os.path.getsize(os.path.join(run_dir, "progress"))
            advance(done - shown)
            shown = done
        if all(c == 0 for c in codes):
            return
        failed = [r for r, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            # the first failure is the cause; the others usually die of its consequences
            r = min(failed, key=lambda i: _err_mtime(run_dir, i))
            _stop(procs)
            raise _failure(r, codes[r], run_dir)
        if time.monotonic() > deadline:
            alive = [r for r, c in enumerate(codes) if c is None]
            raise ReplayFailed(f"the replay did not finish within {timeout_s:g} s (ranks {alive} still running) "
                               f"and was stopped; raise --timeout or replay fewer --tokens")
        time.sleep(POLL_S)


def _err_mtime(run_dir: str, rank: int) -> float:
    p = Path(run_dir, f"rank{rank}.err")
    return p.stat().st_mtime if p.exists() else -1.0  # a rank that died without a word died first


def _failure(rank: int, code: int, run_dir: str) -> PlacerError:
    err = Path(run_dir, f"rank{rank}.err")
    if err.exists():
        msg = err.read_text().strip()
        if code == 2:
            return PlacerError(f"rank {rank}: {msg}")
        return ReplayFailed(f"rank {rank} failed ({msg}); the other ranks were stopped")
    how = f"signal {-code}" if code < 0 else f"exit code {code}"
    return ReplayFailed(f"rank {rank} died during the replay ({how}); the other ranks were stopped, no report was written")


def _stop(procs: list) -> None:
    """SIGTERM the ranks still alive, then SIGKILL those that ignore it; reap all."""
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.terminate()
    end = time.monotonic() + GRACE_S
    for p in alive:
        p.join(max(0.0, end - time.monotonic()))
    for p in alive:
        if p.is_alive():
            p.kill()
            p.join(GRACE_S)
    for p in procs:
        if p.exitcode is not None:
            p.join(0)
