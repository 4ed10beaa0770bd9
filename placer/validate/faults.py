"""Test hooks of the replay: faults and mutations a test injects to show the checks catch them.

Both travel in the :class:`~placer.validate.worker.ReplayConfig` (set by the caller from the
environment: ranks forked by an already-running fork server would see its old environment).

- ``MOE_PLACE_VALIDATE_FAIL_RANK`` = ``RANK`` or ``RANK:LAYER``: that rank exits (status 3) at
  that layer (default 1) of its first replay, as a crash would.
- ``MOE_PLACE_VALIDATE_MUTATE`` = one of :data:`MUTATIONS`: the replay is broken on purpose, and
  ``validate`` must fail:

  - ``serve-home``: every pick is served on the token's home rank (``placer.cost.serving_gpus``
    replaced, in the replay and in the byte prediction alike: bytes 0 = 0, and an unrestricted
    expert bank would compute every expert there and match the reference);
  - ``route``: rank 0's dispatch metadata names the wrong token for its first remote rows, so
    the destination computes another token's picks;
  - ``expert``: rank 0 computes its first held expert of layer 0 with wrong weights (another
    seed), as a mis-loaded expert would.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FAIL_ENV = "MOE_PLACE_VALIDATE_FAIL_RANK"
MUTATE_ENV = "MOE_PLACE_VALIDATE_MUTATE"
MUTATIONS = ("serve-home", "route", "expert")


def fail_point(spec: str | None, rank: int) -> int | None:
    """The layer at which the fault hook (``FAIL_ENV``'s value) kills this rank, or None."""
    if not spec:
        return None
    r, _, layer = spec.partition(":")
    return int(layer or 1) if int(r) == rank else None


def serve_home(ids: np.ndarray, home: np.ndarray, *_args: Any, **_kw: Any) -> np.ndarray:
    """``serving_gpus`` broken on purpose: ``[T, K]`` every pick on its token's home rank."""
    return np.repeat(np.asarray(home, np.int64)[:, None], np.asarray(ids).shape[1], axis=1)


def apply(mutation: str | None, rank: int, banks: dict[str, Any], ids: np.ndarray) -> None:
    """Break this rank's replay as ``mutation`` says (called once, before the replay);
    ``ids [L, T, K]`` are the replayed picks (``expert`` breaks the most picked expert)."""
    if mutation == "serve-home":
        import placer.cost
        import placer.cost.ep
        placer.cost.serving_gpus = serve_home
        placer.cost.ep.serving_gpus = serve_home
    elif mutation == "expert" and rank == 0:
        for bank in banks.values():
            picks = np.bincount(np.asarray(ids[0]).ravel(), minlength=int(np.asarray(ids).max()) + 1)
            mine = sorted((k for k in (bank.allowed or ()) if k[0] == 0), key=lambda k: -picks[k[1]])
            if mine:
                wrong, original = mine[0], bank.arrays
                bank.arrays = lambda l, e: (original(l, e) if (l, e) != wrong
                                            else [a * np.float32(1.5) for a in original(l, e)])


def corrupt_route(mutation: str | None, rank: int, layer: int, meta: Any, send: np.ndarray) -> Any:
    """``route``: on rank 0 at layer 0, the first two rows sent off-rank swap their token ids."""
    if mutation != "route" or rank != 0 or layer != 0:
        return meta
    first = int(send[0])               # rank 0's rows to itself come first
    rows = meta.clone()
    if rows.shape[0] >= first + 2:
        rows[first, 0], rows[first + 1, 0] = meta[first + 1, 0], meta[first, 0]
    elif rows.shape[0] >= 1:
        rows[0, 0] = (meta[0, 0] + 1) % max(int(meta[:, 0].max()) + 1, 2)
    return rows
