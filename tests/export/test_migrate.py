"""The migration report's shape errors name the option that fixes them."""

from __future__ import annotations

import numpy as np
import pytest

from placer.errors import PlacerError
from placer.export import migration_cost
from placer.model.placement import Placement


def _placement(L: int, E: int = 8, G: int = 2, report: dict | None = None) -> Placement:
    return Placement.from_gpu_of(np.tile(np.arange(E) % G, (L, 1)), G, report=report)


def test_a_layer_count_mismatch_suggests_moe_layers_with_the_targets_numbering():
    engine_rows = _placement(27)                  # one row per decoder layer, dense layer 0 too
    target = _placement(26, report={"input": {"moe_layers": list(range(1, 27))}})
    with pytest.raises(PlacerError, match=r"27 vs 26.*--moe-layers 1-26"):
        migration_cost(engine_rows, target)


def test_without_recorded_numbering_the_hint_still_names_moe_layers():
    with pytest.raises(PlacerError, match="--moe-layers"):
        migration_cost(_placement(5), _placement(4))
    with pytest.raises(PlacerError, match="--num-experts 8"):
        migration_cost(_placement(4, E=6), _placement(4))
