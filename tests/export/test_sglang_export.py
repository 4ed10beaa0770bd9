"""The SGLang writers: the architecture check (per SGLang version) and the launch line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from placer.errors import PlacerError
from placer.export import EXPORTERS, WriteOptions, sglang_models
from placer.export.sglang import sglang_launch_flags
from support.cli import assert_user_error
from support.generate import random_placement


def _placement(replicas=0, model=None):
    pl = random_placement(np.random.default_rng(0), 2, 8, 4, replicas=replicas)
    pl.report = {"input": {"model": model}, "load": [[10] * 8] * 2}
    return pl


def test_the_lists_record_their_version():
    assert sglang_models.SGLANG_VERSION == "0.5.23"
    for arch in ("DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM", "Qwen3MoeForCausalLM", "Qwen2MoeForCausalLM"):
        assert sglang_models.support(arch) == "honoured"
    for arch in ("MixtralForCausalLM", "OlmoeForCausalLM"):
        assert sglang_models.support(arch) == "ignored"
    assert not (sglang_models.HONOURS & sglang_models.KNOWN_MOE_IGNORED)
    assert sglang_models.architecture_of_name("mistralai/Mixtral-8x7B-v0.1") == "MixtralForCausalLM"
    assert sglang_models.architecture_of_name("deepseek-ai/DeepSeek-V2-Lite") == "DeepseekV2ForCausalLM"
    assert sglang_models.architecture_of_name("Mixtral-8x7B-v0.1") == "MixtralForCausalLM"   # fiddler's key
    assert sglang_models.architecture_of_name(None) is None


@pytest.mark.parametrize("fmt", ["sglang", "sglang-counts"])
def test_mixtral_from_config_is_refused_from_a_name_warned(tmp_path, fmt):
    out = tmp_path / "m.json"
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"architectures": ["MixtralForCausalLM"]}))
    with pytest.raises(PlacerError, match="ignores --init-expert-location for MixtralForCausalLM") as err:
        EXPORTERS.get(fmt).write(_placement(), out, WriteOptions(model_config=str(cfg)))
    assert "\n" not in str(err.value) and not out.exists()
    # a model name is a guess: the file is written, with the reason
    written = EXPORTERS.get(fmt).write(_placement(model="Mixtral-8x7B-v0.1"), out, WriteOptions())
    assert out.exists() and "ignores --init-expert-location for MixtralForCausalLM" in written.fields["warnings"][0]
    assert written.fields["warnings"][0] in written.message


def test_model_config_names_the_architecture(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"architectures": ["DeepseekV2ForCausalLM"]}))
    written = EXPORTERS.get("sglang").write(_placement(model="Mixtral-8x7B-v0.1"), tmp_path / "m.json",
                                            WriteOptions(model_config=str(cfg)))
    assert written.fields["warnings"] == [] and written.fields["sglang_version_checked"] == "0.5.23"
    cfg.write_text(json.dumps({"architectures": ["OlmoeForCausalLM"]}))
    with pytest.raises(PlacerError, match="OlmoeForCausalLM"):
        EXPORTERS.get("sglang").write(_placement(), tmp_path / "m.json", WriteOptions(model_config=str(cfg)))
    cfg.write_text(json.dumps({"model_type": "x"}))
    with pytest.raises(PlacerError, match="architectures"):
        EXPORTERS.get("sglang").write(_placement(), tmp_path / "m.json", WriteOptions(model_config=str(cfg)))


def test_unknown_architecture_warns(tmp_path):
    written = EXPORTERS.get("sglang").write(_placement(), tmp_path / "m.json", WriteOptions())
    assert len(written.fields["warnings"]) == 1 and "--model-config" in written.message


@pytest.mark.parametrize("replicas", [0, 4])
def test_launch_line_is_complete(replicas):
    flags = sglang_launch_flags(_placement(replicas), "loc.json").split()
    assert flags[flags.index("--ep-size") + 1] == "4" and flags[flags.index("--tp-size") + 1] == "4"
    assert flags[flags.index("--moe-a2a-backend") + 1] == "deepep"
    assert flags[flags.index("--init-expert-location") + 1] == "loc.json"
    if replicas:
        assert flags[flags.index("--ep-num-redundant-experts") + 1] == "4"
    else:
        assert "--ep-num-redundant-experts" not in flags


def test_cli_refuses_mixtral_in_one_line(cli, tmp_path):
    _placement().save(tmp_path / "p.json")
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["MixtralForCausalLM"]}))
    proc = cli("export", tmp_path / "p.json", "--format", "sglang", "-o", tmp_path / "m.json",
               "--model-config", tmp_path / "config.json")
    assert_user_error(proc, "SGLang 0.5.23 ignores", "MixtralForCausalLM")
    assert not (tmp_path / "m.json").exists()
