"""Our SGLang files against SGLang's own code, when ``sglang`` is importable (skipped otherwise).

- SGLang's ``compute_initial_expert_location_metadata`` reads our ``--init-expert-location`` file
  and the tensors it builds (``physical_to_logical_map``, ``logical_to_all_physical_map``) are
  our placement's; ``sglang-counts`` goes through its ``init_by_eplb``.
- The architecture lists of :mod:`placer.export.sglang_models` are re-derived from the installed
  SGLang's ``srt/models`` when it is the version they record.

The one stub on CPU: SGLang reads its server state through ``sglang.srt.runtime_context``
(``get_exec()``, ``get_parallel()``, ``get_device()``) and the model's expert shape through
``ModelConfigForExpertLocation.from_model_config`` (which needs the model registry and a Hugging
Face config); the test replaces those four with the values a server launched with our printed
flags would hold (EP size G, R redundant experts, ``--moe-a2a-backend deepep``, device cpu). On
this machine it ran against sglang 0.5.23 from PyPI unpacked with ``--no-deps`` plus the pure-Python
modules its import needs (orjson, psutil, pybase64, requests, triton, starlette, msgspec, pyzmq,
IPython, aiohttp and their dependencies) on PYTHONPATH.
"""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from placer.export import EXPORTERS, WriteOptions
from placer.export import sglang_models
from placer.export.sglang import sglang_map
from support.generate import random_placement

expert_location = pytest.importorskip("sglang.srt.eplb.expert_location",
                                      reason="sglang is not installed: SGLang's own loader is not run")
torch = pytest.importorskip("torch")

E, G, R, DENSE = 16, 4, 4, 1


@pytest.fixture
def served(monkeypatch):
    """SGLang's expert-location module as a server launched with our flags would run it."""

    def serve(path: Path, placement, rank: int = 0, backend: str = "deepep"):
        H = placement.num_layers + DENSE
        moe = SimpleNamespace(init_expert_location=str(path), ep_num_redundant_experts=placement.num_replicas,
                              moe_a2a_backend=backend, ep_dispatch_algorithm="static" if backend != "none" else "dynamic",
                              ep_join_mode="none", eplb_algorithm="auto")
        parallel = SimpleNamespace(ep_size=placement.num_gpus, tp_size=placement.num_gpus, nnodes=1,
                                   elastic_ep_initial_size=None, ep_join_rank_offset=0)
        monkeypatch.setattr(expert_location, "get_exec", lambda: SimpleNamespace(moe=moe))
        monkeypatch.setattr(expert_location, "get_parallel", lambda: parallel)
        monkeypatch.setattr(expert_location, "get_device", lambda: SimpleNamespace(device="cpu"))
        monkeypatch.setattr(expert_location.ModelConfigForExpertLocation, "from_model_config",
                            staticmethod(lambda cfg: expert_location.ModelConfigForExpertLocation(
                                num_layers=H, num_logical_experts=E, num_groups=None)))
        return expert_location.compute_initial_expert_location_metadata(None, moe_ep_rank=rank)

    return serve


@pytest.mark.parametrize("replicas", [0, R])
def test_sglang_rebuilds_our_map(served, tmp_path, replicas):
    pl = random_placement(np.random.default_rng(replicas), 3, E, G, replicas=replicas)
    path = tmp_path / "map.json"
    layers = tuple(range(DENSE, DENSE + pl.num_layers))
    written = EXPORTERS.get("sglang").write(pl, path, WriteOptions(moe_layers=layers))
    flags = written.fields["launch_flags"]
    assert f"--ep-size {G}" in flags and "--moe-a2a-backend deepep" in flags
    assert ("--ep-num-redundant-experts" in flags) == bool(replicas)
    ours = sglang_map(pl, layers)
    S = pl.slots_per_gpu
    for rank in range(G):
        meta = served(path, pl, rank)
        assert meta is not None and meta.ep_size == G
        np.testing.assert_array_equal(meta.physical_to_logical_map.numpy(), ours)
        allp = meta.logical_to_all_physical_map.numpy()
        dispatch = meta.logical_to_rank_dispatch_physical_map.numpy()
        for h, l in enumerate(layers):
            for e in range(E):
                slots = [int(p) for p in pl.log2phy[h, e] if p >= 0]
                local = [p for p in slots if p // S == rank]
                # with an a2a backend each rank keeps its own copy when it has one, else all copies
                want = local[:1] or slots
                got = [int(p) for p in allp[l, e] if p >= 0]
                assert got == want, (rank, h, e)
                assert int(dispatch[l, e]) in (local[:1] or slots)


def test_sglang_balances_our_counts(served, tmp_path):
    pl = random_placement(np.random.default_rng(1), 3, E, G, replicas=R)
    load = np.random.default_rng(2).integers(1, 500, size=(3, E))
    pl.report["load"] = load.tolist()
    path = tmp_path / "counts.json"
    layers = tuple(range(DENSE, DENSE + 3))
    EXPORTERS.get("sglang-counts").write(pl, path, WriteOptions(moe_layers=layers))
    meta = served(path, pl, backend="none")     # SGLang's own EPLB: no per-rank tables to build
    phy = meta.physical_to_logical_map.numpy()
    assert phy.shape == (3 + DENSE, E + R)
    assert all(set(row) == set(range(E)) for row in phy)


def _scan(models: Path) -> dict[str, str]:
    """Each ``EntryClass`` of SGLang's models and whether its class (or a base in that folder)
    defines ``get_model_config_for_expert_location``: ``yes``, ``cond`` (returns None for some
    configs), ``none`` (returns None) or absent."""
    classes, entries = {}, []
    for f in sorted(models.glob("*.py")):
        for node in ast.parse(f.read_text()).body:
            if isinstance(node, ast.ClassDef):
                bases = [getattr(b, "id", getattr(b, "attr", "?")) for b in node.bases]
                kind = None
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "get_model_config_for_expert_location":
                        rets = [r.value for r in ast.walk(item) if isinstance(r, ast.Return)]
                        nones = [isinstance(v, ast.Constant) and v.value is None for v in rets]
                        kind = "none" if all(nones) else ("cond" if any(nones) else "yes")
                classes.setdefault(node.name, (bases, kind))
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EntryClass" for t in node.targets):
                v = node.value
                entries += [e.id for e in getattr(v, "elts", [v]) if isinstance(e, ast.Name)]

    def resolve(name, seen=()):
        if name not in classes or name in seen:
            return None
        bases, kind = classes[name]
        return kind or next((k for b in bases if (k := resolve(b, seen + (name,)))), None)

    return {name: resolve(name) for name in entries}


def test_architecture_lists_match_the_installed_sglang():
    import sglang
    version = getattr(sglang, "__version__", None)
    if version != sglang_models.SGLANG_VERSION:
        pytest.skip(f"installed sglang {version}, the lists record {sglang_models.SGLANG_VERSION}")
    found = _scan(Path(expert_location.__file__).parents[1] / "models")
    assert {n for n, k in found.items() if k == "yes"} == sglang_models.HONOURS
    assert {n for n, k in found.items() if k == "cond"} == sglang_models.CONDITIONAL
    assert sglang_models.KNOWN_MOE_IGNORED <= {n for n, k in found.items() if k in (None, "none")}
