"""Topology: hop costs and bandwidths from node shapes or a bandwidth matrix."""

from __future__ import annotations

import numpy as np
import pytest

from placer.errors import PlacerError
from placer.model.topology import Topology


def test_two_nodes_hops_and_default_ratio():
    t = Topology.uniform(4, gpus_per_node=2)
    assert t.num_nodes == 2
    # NVLink 900 GB/s over a 400 Gb/s NIC = 18
    assert t.hop[0, 1] == 1 and t.hop[0, 2] == pytest.approx(18.0) and t.hop[3, 3] == 0
    assert np.array_equal(t.hop, t.hop.T)
    assert t.bandwidth[0, 2] == pytest.approx(50e9) and np.isinf(t.bandwidth[1, 1])


def test_explicit_inter_node_cost_and_single_node():
    assert Topology.uniform(4, 2, inter_node_cost=2).hop[0, 3] == 2
    one = Topology.uniform(3)
    assert one.num_nodes == 1 and one.hop.sum() == 6


def test_bandwidth_matrix_file(tmp_path):
    f = tmp_path / "bw.txt"
    f.write_text("0 100 50\n100 0 25\n50 25 0\n")
    t = Topology.from_file(f)
    assert t.hop[0, 1] == 1 and t.hop[0, 2] == 2 and t.hop[1, 2] == 4 and t.hop[2, 2] == 0


@pytest.mark.parametrize("args", [dict(num_gpus=6, gpus_per_node=4), dict(num_gpus=0)])
def test_bad_shapes(args):
    with pytest.raises(PlacerError):
        Topology.uniform(**args)


def test_bad_matrix(tmp_path):
    f = tmp_path / "bw.txt"
    f.write_text("0 1\n-1 0\n")
    with pytest.raises(PlacerError, match="positive"):
        Topology.from_file(f)
