"""Property-based fuzzing of every input kind: a valid file (tests/robust/fuzz_seeds.py), mutated
by hypothesis, through every command that reads it, in this process. Every run ends either in
exit 0 with a valid output (the file it wrote reads back) or in exit 2 with one line and no
output file; never a traceback, a hang, a multi-line error or a changed input.

Mutations: the structure (a JSON value, an array member or a metadata field replaced by a
hostile value: extreme or fractional numbers, NaN, strings, nesting deeper than any format,
other dtypes and shapes, a header that declares a huge array; a key, row, cell or member
dropped or repeated), then sometimes the bytes (truncated, a byte flipped, bytes inserted).

Runs are derandomized (the same cases every time). ``FUZZ_EXAMPLES`` sets the cases per kind
(default 8 in the slow tests, to keep CI short; the fast subset runs 8 cases of kinds drawn at random); ``FUZZ_SURVEY=FILE`` records every failing
case as a JSON line there and goes on instead of stopping at the first (the survey of
docs/robustness.md: ``FUZZ_EXAMPLES=250 FUZZ_SURVEY=/tmp/fuzz.jsonl pytest -m slow
tests/robust/test_fuzz.py``).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fuzz_seeds import SEEDS, Deep, Seed, write
from support import corpus
from support.inproc import Guard, classify, leftovers, memory_cap, run_cli_inprocess

SURVEY = os.environ.get("FUZZ_SURVEY")
COUNT = {"cases": 0, "runs": 0}

INTS = st.one_of(st.integers(-3, 12), st.sampled_from([2**31, 2**32, 2**40, 2**53 + 1, 2**62, 2**63 - 1, 2**63,
                                                        2**64, -2**63 - 1, 10**30]))
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.5, 1.5, -0.0, 1e-300, 1e300]))
SCALARS = st.one_of(INTS, FLOATS, st.booleans(), st.none(), st.text(max_size=4),
                    st.sampled_from(["1", "four", "1,3", "", "nan", "-1"]))
VALUES = st.one_of(st.recursive(SCALARS, lambda c: st.one_of(st.lists(c, max_size=4),
                                                             st.dictionaries(st.text(max_size=3), c, max_size=3)),
                                max_leaves=6),
                   st.builds(Deep, st.integers(65, 3000)))
CELLS = st.one_of(SCALARS.map(str), st.sampled_from(["1e11", "0x10", "1_000", " 2", "inf"]))
DTYPES = ["i1", "u1", "i2", "i4", "<i8", ">i8", "u8", "f2", "f4", "f8", "c8", "?", "U3", "S2", "M8[s]", "O"]


# ------------------------------------------------------------------------------ mutations
def nodes(obj: Any, path: tuple = ()) -> list[tuple]:
    """Every node's path in a tree of dicts and lists (arrays are leaves)."""
    out = [path]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += nodes(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += nodes(v, path + (i,))
    return out


def get(obj: Any, path: tuple) -> Any:
    for k in path:
        obj = obj[k]
    return obj


def mutate_array(data, arr: np.ndarray, form: str) -> Any:
    op = data.draw(st.sampled_from(["dtype", "shape", "slice", "element", "element", "replace", "bomb", "scalar"]))
    try:
        if op == "dtype":
            dt = data.draw(st.sampled_from(DTYPES))
            if dt == "O":
                return np.array(arr.tolist(), dtype=object)
            with np.errstate(invalid="ignore", over="ignore"):   # the mutation means to cast badly
                return arr.astype(dt)
        if op == "shape":
            return data.draw(st.sampled_from([arr.ravel(), arr[None], arr[..., None], arr.T, arr.reshape(-1, arr.shape[-1])
                                              if arr.ndim else arr.ravel()]))
        if op == "slice" and arr.ndim:
            axis = data.draw(st.integers(0, arr.ndim - 1))
            n = data.draw(st.integers(0, arr.shape[axis] + 2))
            return np.resize(np.moveaxis(arr, axis, 0), (n, *np.moveaxis(arr, axis, 0).shape[1:])).swapaxes(0, axis) \
                if n > arr.shape[axis] else np.take(arr, range(n), axis=axis)
        if op == "element" and arr.size:
            value = data.draw(st.one_of(INTS, FLOATS))
            out = np.array(arr)
            flat = out.reshape(-1)
            i = data.draw(st.integers(0, out.size - 1))
            try:
                flat[i] = value
                if flat[i] != value and not (isinstance(value, float) and np.isnan(value)):
                    raise OverflowError
            except (OverflowError, ValueError, TypeError):
                out = out.astype(np.result_type(out, np.min_scalar_type(value)) if isinstance(value, int) and abs(value) < 2**64
                                 else np.float64)
                out.reshape(-1)[i] = value
            return out
        if op == "replace":
            dt = data.draw(st.sampled_from(["i1", "u1", "i8", "u8", "f4", "f8", "?"]))
            return data.draw(hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=4, max_side=5)))
        if op == "bomb" and form != "pt":
            shape = list(arr.shape) or [1]
            shape[data.draw(st.integers(0, len(shape) - 1))] = data.draw(st.sampled_from([10**6, 10**9, 10**12, 2**40, -3]))
            return corpus.npy_header(arr.dtype.str if arr.dtype.kind != "O" else "<i8", tuple(shape), bytes(64))
        if op == "scalar":
            return np.array(data.draw(st.one_of(INTS, FLOATS)))
    except (ValueError, TypeError, OverflowError):
        pass
    return arr


def mutate_tree(data, seed: Seed, obj: Any) -> Any:
    """One structural mutation of ``obj`` (a fresh copy is changed and returned)."""
    obj = copy.deepcopy(obj)
    if isinstance(obj, np.ndarray):
        return mutate_array(data, obj, seed.form)
    path = data.draw(st.sampled_from(nodes(obj)))
    node = get(obj, path)
    parent, key = (get(obj, path[:-1]), path[-1]) if path else (None, None)
    ops = (["replace", "replace", "delete", "duplicate", "add"] if parent is not None
           else ["add", "replace"] if seed.form not in ("npz", "pt", "jsonl") else ["add"])
    op = data.draw(st.sampled_from(ops))
    rows = seed.form in ("csv", "txt")
    value = st.lists(CELLS, max_size=6) if rows and len(path) < 2 else CELLS if rows else VALUES
    if op == "replace":
        new = mutate_array(data, node, seed.form) if isinstance(node, np.ndarray) else data.draw(value)
        if parent is None:
            return new
        parent[key] = new
    elif op == "delete":
        del parent[key]
    elif op == "duplicate":
        if isinstance(parent, list):
            parent.insert(key, copy.deepcopy(node))
        else:
            parent[f"{key}_copy"] = copy.deepcopy(node)
    elif op == "add":
        target = node if isinstance(node, (dict, list)) else parent
        inner = st.lists(CELLS, max_size=6) if rows and target is obj else CELLS if rows else VALUES
        if isinstance(target, dict):
            target[data.draw(st.sampled_from(["extra", "format", "num_experts", "top_k", "metadata", "x"]))] = data.draw(VALUES)
        elif isinstance(target, list):
            target.append(copy.deepcopy(target[-1]) if target and data.draw(st.booleans()) else data.draw(inner))
    return obj


def mutate_bytes(data, raw: bytes) -> bytes:
    op = data.draw(st.sampled_from(["truncate", "flip", "insert", "zero"]))
    n = len(raw)
    i = data.draw(st.integers(0, max(n - 1, 0)))
    if op == "truncate":
        return raw[:i]
    if op == "flip" and n:
        return raw[:i] + bytes([raw[i] ^ data.draw(st.integers(1, 255))]) + raw[i + 1:]
    if op == "insert":
        return raw[:i] + data.draw(st.binary(min_size=1, max_size=16)) + raw[i:]
    return raw[:i] + bytes(min(16, n - i)) + raw[i + 16:]


# ------------------------------------------------------------------------------ the property
def output_problem(argv: list[str], out: Path) -> str | None:
    """Why the output of an accepted run does not read back (None when it does)."""
    files = leftovers(out)
    if any("{out}" in a for a in argv) and not files:
        return "exit 0 but no output file"
    for name in files:
        p = out / name
        if p.suffix == ".npz":
            check = run_cli_inprocess(["inspect", str(p)])
        elif p.suffix == ".json" and name != "loc.json":
            check = run_cli_inprocess(["import-placement", str(p), "-o", str(out / "_readback.json")])
            (out / "_readback.json").unlink(missing_ok=True)
        elif p.suffix == ".csv":
            rows = list(csv.reader(io.StringIO(p.read_text())))
            return None if len(rows) >= 2 else f"{name}: {len(rows)} rows"
        else:
            json.loads(p.read_text())
            continue
        if check.code != 0:
            return f"{name} does not read back: {check.stderr.strip()[-200:] or check.exception!r}"
    return None


def run_case(seed: Seed, raw: bytes, root: Path) -> list[str]:
    """Every command of ``seed`` on the file ``raw``; the problems found (empty: the property holds)."""
    src = root / f"input{seed.suffix}"
    src.write_bytes(raw)
    base = root / "_base"
    problems = []
    COUNT["cases"] += 1
    for command, argv in seed.runs.items():
        out = root / "_out"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        guard = Guard([src, *base.iterdir()])
        run = run_cli_inprocess([a.replace("{src}", str(src)).replace("{out}", str(out)).replace("{base}", str(base))
                                 for a in argv])
        COUNT["runs"] += 1
        outcome = classify(run, leftovers(out), guard.damaged())
        if outcome == "accepted":
            why = output_problem(argv, out)
            outcome = None if why is None else f"bad-output: {why}"
        elif outcome == "clean":
            outcome = None
        if outcome:
            tail = (run.stderr.strip().splitlines() or [repr(run.exception)])[-1][:200]
            problems.append(f"{seed.kind} [{command}]: {outcome}: {tail}")
        if guard.damaged():
            src.write_bytes(raw)
    return problems


@pytest.fixture(scope="module")
def root():
    with tempfile.TemporaryDirectory(prefix="moe-place-fuzz-") as tmp:
        corpus.write_base(Path(tmp))
        yield Path(tmp)


def fuzz_settings(default: int):
    return settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", default)), derandomize=True, database=None,
                    deadline=None, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])


def fuzz(seed: Seed, root: Path, data) -> None:
    obj = seed.make()
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        obj = mutate_tree(data, seed, obj)
    raw = write(seed, obj)
    if data.draw(st.integers(0, 4)) == 0:
        raw = mutate_bytes(data, raw)
    with memory_cap():
        problems = run_case(seed, raw, root)
    if problems and SURVEY:
        with open(SURVEY, "a") as fh:
            fh.write(json.dumps({"kind": seed.kind, "problems": problems, "input": raw[:4000].hex()}) + "\n")
        return
    assert not problems, "\n".join(problems)


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _needs_torch(seed: Seed):
    return pytest.importorskip("torch") if seed.form == "pt" or seed.kind == "sglang-pt" else None


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS, ids=[s.kind for s in SEEDS])
def test_seed_is_valid_for_every_command(seed, root):
    """The unmutated file is accepted by every command with an output that reads back (else the
    fuzzing would only ever reach the error paths)."""
    _needs_torch(seed)
    assert run_case(seed, write(seed, seed.make()), root) == []


def test_fuzz_sample(root):
    """The fast subset: a few cases of kinds drawn at random (torch's only where it is installed)."""
    seeds = [s for s in SEEDS if s.form != "pt" or _has_torch()]
    given(data=st.data())(fuzz_settings(8)(lambda data: fuzz(data.draw(st.sampled_from(seeds)), root, data)))()


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS, ids=[s.kind for s in SEEDS])
def test_fuzz(seed, root):
    _needs_torch(seed)
    COUNT.update(cases=0, runs=0)
    given(data=st.data())(fuzz_settings(8)(lambda data: fuzz(seed, root, data)))()
    if SURVEY:
        with open(SURVEY, "a") as fh:
            fh.write(json.dumps({"kind": seed.kind, "count": dict(COUNT)}) + "\n")
