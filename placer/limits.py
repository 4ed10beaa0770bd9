"""The limits every reader checks before it allocates: a memory budget and a JSON nesting depth.

A file or an option declares sizes (``num_experts``, an array's shape in its ``.npy`` header, a
slot number in a CSV, ``--gpus``); what they would make the tool allocate is computed here from
the declared numbers, and refused with one line naming the field and the fix when it exceeds
the budget, instead of failing inside numpy (or, with overcommit, being killed by the kernel).

- :data:`DEFAULT_MEMORY_BUDGET` (16 GiB), or ``MOE_PLACE_MEMORY_BUDGET`` (``64GiB``, ``1e10``):
  the most any one declared structure may take.
- What the structures cost, in bytes (int64 counts, float64 matrices):
  :func:`profile_bytes` = ``8 (L E + (3 L - 2) E^2)``: ``load [L, E]``, ``trans`` and
  ``trans_top1 [L-1, E, E]``, ``coact [L, E, E]``; :func:`topology_bytes` = ``17 G^2``: hop and
  bandwidth ``[G, G]`` float64 plus a ``[G, G]`` bool.
- :data:`MAX_JSON_DEPTH` (64): JSON nested deeper is refused before it is parsed (the parser
  recurses; every format here nests at most 4 deep). :data:`JSON_EXPANSION` (40): bytes of
  Python objects per byte of JSON text of small numbers, so a JSON document is refused when
  ``40 x its size`` exceeds the budget (readers stream one layer or one line at a time where
  the format allows).
"""

from __future__ import annotations

import os
import re
from typing import IO

import numpy as np

from placer.errors import PlacerError

BUDGET_ENV = "MOE_PLACE_MEMORY_BUDGET"
DEFAULT_MEMORY_BUDGET = 16 * 2**30
MAX_JSON_DEPTH = 64
JSON_EXPANSION = 40

_UNITS = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def memory_budget() -> int:
    """Bytes one declared structure may take: ``MOE_PLACE_MEMORY_BUDGET`` or 16 GiB."""
    text = os.environ.get(BUDGET_ENV, "").strip().lower()
    if not text:
        return DEFAULT_MEMORY_BUDGET
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)", text)
    if not m or m.group(2) not in _UNITS or not float(m.group(1)) > 0:
        raise PlacerError(f"{BUDGET_ENV}={os.environ[BUDGET_ENV]!r} is not a size; write e.g. 64GiB or 1e10")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def human(nbytes: float) -> str:
    """``nbytes`` as ``12.3 GiB``."""
    if nbytes >= 2**80:
        return "over 2^80 bytes"
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.3g} {unit}"
    return f"{int(nbytes)} bytes"


def check_budget(nbytes: int, what: str, fix: str) -> None:
    """Refuse ``what`` (e.g. ``"t.npz: num_experts 2147483648 (a profile of 2 x E x E counts)"``)
    when ``nbytes`` exceeds :func:`memory_budget`; ``fix`` ends the message."""
    budget = memory_budget()
    if nbytes > budget:
        raise PlacerError(f"{what} would need {human(nbytes)}, over the memory budget of {human(budget)} "
                          f"({BUDGET_ENV}); {fix}")


def profile_bytes(num_layers: int, num_experts: int) -> int:
    """Bytes of the routing profile of L layers and E experts (see the module docstring)."""
    L, E = int(num_layers), int(num_experts)
    return 8 * (L * E + max(3 * L - 2, 1) * E * E)


def check_experts(name: str, num_layers: int, num_experts: int, field: str = "num_experts") -> None:
    """Refuse an expert count whose profile would exceed the budget (``field`` names where it came from)."""
    check_budget(profile_bytes(num_layers, num_experts),
                 f"{name}: {field} {num_experts} (a routing profile of {num_layers} layers x E x E counts)",
                 "check the expert count (or the largest expert id) or pass the right --num-experts")


def topology_bytes(num_gpus: int) -> int:
    """Bytes of a topology of G GPUs (see the module docstring)."""
    return 17 * int(num_gpus) ** 2


# Layer numbers (MoE and decoder) beyond this are corrupt: no model has a million layers, and
# a decoder layer count sizes SGLang's [H, P] map.
MAX_LAYER_NUMBER = 2**20 - 1


def npy_header(fh: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` that an ``.npy`` stream declares, read without its data
    (the stream is left at the data), so a reader checks them against the budget before it
    allocates. Raises what numpy's header parser raises on a cut or altered header (ValueError,
    EOFError, SyntaxError, tokenize.TokenError): each reader turns that into its one line."""
    version = np.lib.format.read_magic(fh)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return reader(fh)
