"""The shipped synthetic trace: regenerates byte for byte, and its planted placement keeps what
the generator promises (and no more than the locality bound)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from support import REPO
from placer.model.profile import Profile
from placer.analysis.stats import locality_bound
from placer.model.trace import Trace


def test_regenerates_byte_identical(tmp_path):
    out = tmp_path / "s.npz"
    subprocess.run([sys.executable, str(REPO / "traces" / "make_synthetic.py"), "-o", str(out), "--seed", "0"],
                   check=True, capture_output=True)
    assert out.read_bytes() == (REPO / "traces" / "synthetic.npz").read_bytes()


def test_planted_groups_keep_p_stay():
    t = Trace.load(REPO / "traces" / "synthetic.npz")
    planted = np.array(t.extra["planted_group"])              # [L, E] group = GPU
    top1 = t.top1()
    L = t.num_layers
    gpu = planted[np.arange(L)[:, None], top1]                 # [L, T]
    kept = float((gpu[1:] == gpu[:-1]).mean())
    p, C = t.extra["p_stay"], t.extra["groups"]
    assert abs(kept - (p + (1 - p) / C)) < 0.02                # stay, or jump back by chance
    assert locality_bound(Profile.from_trace(t, coact=False).trans_top1, C) >= kept
