"""Typed values read from files: metadata fields, JSON records, scalar arrays, array kinds.

Files say what they hold in JSON metadata, JSON records and ``.npy`` headers; nothing there is
trusted until it is checked here. Each helper takes the value, ``where`` (``"t.npz: num_experts"``:
the file and the field) and returns the checked value or raises one :class:`PlacerError` line
naming the field and what it should be.

Integers: Python or numpy integers, 0-d integer arrays, or integral finite floats (some writers
print ``4.0``); never booleans, strings, lists or fractions. Arrays: numpy dtype kinds ``b``
(bool), ``i``/``u`` (integers), ``f`` (floats); complex, object, structured, datetime and text
arrays are refused wherever numbers are expected.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from placer.errors import PlacerError

INT_KINDS = "iu"
FLOAT_KINDS = "f"
NUMBER_KINDS = "iuf"
KIND_NAMES = {"b": "booleans", "i": "integers", "u": "unsigned integers", "f": "floats", "c": "complex numbers",
              "O": "Python objects", "V": "structured records", "M": "dates", "m": "time deltas",
              "U": "text", "S": "bytes"}


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def as_int(value: Any, where: str, lo: int | None = None, hi: int | None = None, fix: str = "fix the file") -> int:
    """``value`` as an int in ``[lo, hi]`` (either end optional), else a PlacerError naming ``where``."""
    v: int | None = None
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)):
        v = None
    elif isinstance(value, (int, np.integer)):
        v = int(value)
    elif isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        v = int(value)
    if v is None:
        raise PlacerError(f"{where} is {_describe(value)}, not an integer; {fix}")
    if abs(v) >= 2**63:
        raise PlacerError(f"{where} is {_describe(value)}, beyond 64 bits; {fix}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        bound = f">= {lo}" if hi is None else (f"<= {hi}" if lo is None else f"between {lo} and {hi}")
        raise PlacerError(f"{where} is {v}, but it must be {bound}; {fix}")
    return v


def as_optional_int(value: Any, where: str, lo: int | None = None, fix: str = "fix the file",
                    hi: int | None = None) -> int | None:
    return None if value is None else as_int(value, where, lo, hi, fix=fix)


def as_layer_count(value: Any, where: str, fix: str = "fix the file") -> int | None:
    """A decoder layer count (``num_hidden_layers``), or None."""
    from placer.limits import MAX_LAYER_NUMBER
    return as_optional_int(value, where, 1, fix, MAX_LAYER_NUMBER + 1)


def as_layer_list(value: Any, where: str, fix: str = "fix the file") -> list[int]:
    """Increasing layer numbers (``moe_layers``), each at most :data:`placer.limits.MAX_LAYER_NUMBER`."""
    from placer.limits import MAX_LAYER_NUMBER
    return as_int_list(value, where, 0, True, fix, MAX_LAYER_NUMBER)


def as_int_list(value: Any, where: str, lo: int | None = 0, increasing: bool = False,
                fix: str = "fix the file", hi: int | None = None) -> list[int]:
    """A list (or 1-d integer array) of ints in ``[lo, hi]``, strictly increasing when asked."""
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or (value.size and value.dtype.kind not in INT_KINDS + "f"):
            raise PlacerError(f"{where} must be a flat list of integers, got a {value.dtype} array of shape "
                              f"{list(value.shape)}; {fix}")
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise PlacerError(f"{where} is {_describe(value)}, not a list of integers; {fix}")
    out = [as_int(v, f"{where}[{i}]", lo, hi, fix=fix) for i, v in enumerate(value)]
    if increasing and any(b <= a for a, b in zip(out, out[1:])):
        raise PlacerError(f"{where} must be increasing, got {_describe(out)}; {fix}")
    return out


def as_text(value: Any, where: str, fix: str = "fix the file") -> str | None:
    """A string, or None."""
    if value is None or isinstance(value, str):
        return value
    raise PlacerError(f"{where} is {_describe(value)}, not a string; {fix}")


def as_dict(value: Any, where: str, fix: str = "fix the file") -> dict:
    """A JSON object (None reads as empty)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PlacerError(f"{where} is {_describe(value)}, not an object {{...}}; {fix}")
    return value


def check_kind(arr: np.ndarray, where: str, kinds: str, what: str, fix: str = "fix the file") -> np.ndarray:
    """``arr`` unless its dtype kind is outside ``kinds`` (``"iu"``, ``"f"``, ``"b"``...)."""
    kind = np.asarray(arr).dtype.kind if not isinstance(arr, np.ndarray) else arr.dtype.kind
    if kind not in kinds:
        raise PlacerError(f"{where} holds {KIND_NAMES.get(kind, kind)} ({arr.dtype}); it must hold {what}; {fix}")
    return arr


def int_scalar_array(arr: Any, where: str, lo: int | None = None, fix: str = "fix the file", hi: int | None = None) -> int:
    """An integer stored as a 0-d (or one-element) array: ``top_k``, ``num_tokens``."""
    a = np.asarray(arr)
    if a.ndim != 0:
        raise PlacerError(f"{where} is an array of shape {list(a.shape)}, not a single number; {fix}")
    if a.dtype.kind not in NUMBER_KINDS:
        raise PlacerError(f"{where} holds {KIND_NAMES.get(a.dtype.kind, a.dtype.kind)} ({a.dtype}), not a number; {fix}")
    return as_int(a[()], where, lo, hi, fix=fix)
