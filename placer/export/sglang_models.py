"""Which model architectures SGLang builds expert-location metadata for, per SGLang version.

SGLang honours ``--init-expert-location`` (a ``physical_to_logical_map``, or ``logical_count``
loads for its own EPLB) only through ``ExpertLocationMetadata._init_common``, which asks
``ModelConfigForExpertLocation.from_model_config``: the model class of the config's
``architectures[0]`` must define ``get_model_config_for_expert_location``. For any other class
``compute_initial_expert_location_metadata`` returns None and SGLang runs the trivial layout,
silently: the file is ignored.

How the lists were made (sglang 0.5.23 from PyPI, ``python/sglang/_version.py`` says 0.5.23):
every ``EntryClass`` of ``sglang/srt/models/*.py``, classes resolved through their bases in that
folder; :data:`HONOURS` are those whose ``get_model_config_for_expert_location`` always returns a
config, :data:`CONDITIONAL` those that return None for some configs (the Transformers fallback:
when its config has no expert count). Every other architecture is ignored; :data:`KNOWN_MOE_IGNORED`
lists the MoE ones among them, to say so by name. Add a version by re-running that scan.
"""

from __future__ import annotations

SGLANG_VERSION = "0.5.23"

HONOURS = frozenset({
    "BailingMoEForCausalLM", "BailingMoeForCausalLM", "BailingMoeV2ForCausalLM", "BailingMoeV2_5ForCausalLM",
    "BailingMoeV3ForCausalLM", "BailingMoeV3VLForConditionalGeneration", "DeepseekV2ForCausalLM",
    "DeepseekV32ForCausalLM", "DeepseekV3ForCausalLM", "DeepseekV3ForCausalLMNextN", "DeepseekV4ForCausalLM",
    "DeepseekV4ForCausalLMNextN", "DotsVLMForCausalLM", "ExaoneMoEForCausalLM", "ExaoneMoEForCausalLMMTP",
    "ExaoneMoeForCausalLM", "Glm4MoeForCausalLM", "Glm4MoeForCausalLMNextN", "Glm4MoeLiteForCausalLM",
    "Glm4MoeLiteForCausalLMNextN", "Glm5NextForConditionalGeneration", "Glm5NextForConditionalGenerationNextN",
    "GlmMoeDsaForCausalLM", "GlmMoeDsaForCausalLMNextN", "GptOssForCausalLM",
    "InternS1ProForConditionalGeneration", "InternS2PreviewForConditionalGeneration",
    "KimiK25ForConditionalGeneration", "LLaDA2MoeModelLM", "LongcatFlashForCausalLM",
    "LongcatFlashForCausalLMNextN", "MellumForCausalLM", "MiMoV2FlashForCausalLM", "MiMoV2ForCausalLM",
    "MiMoV2MTP", "MiniMaxM2ForCausalLM", "MiniMaxM3SparseForCausalLM",
    "MiniMaxM3SparseForConditionalGeneration", "MistralLarge3ForCausalLM", "MistralLarge3ForCausalLMEagle",
    "NemotronHForCausalLM", "NemotronHForCausalLMMTP", "NemotronHPuzzleForCausalLM",
    "NemotronH_Nano_Omni_Reasoning_V3", "NemotronH_Nano_VL_V2", "NemotronH_Omni_Reasoning_V3",
    "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM", "Qwen3MoeForCausalLMMTP", "Qwen3NextForCausalLM",
    "Qwen3NextForCausalLMMTP", "Qwen3VLMoeForConditionalGeneration", "Qwen3_5ForCausalLM",
    "Qwen3_5ForCausalLMMTP", "Qwen3_5MoeForCausalLM", "Qwen3_5MoeForConditionalGeneration",
    "Qwen4ExpForCausalLMMTP", "SDARMoeForCausalLM", "SarvamMLAForCausalLM", "SarvamMoEForCausalLM",
    "Step3VLForConditionalGeneration", "Step3p5ForCausalLM", "Step3p5MTP", "Step3p7ForConditionalGeneration",
})

CONDITIONAL = frozenset({
    "K2HorizonForCausalLM", "MindSporeForCausalLM", "Qwen4ExpForConditionalGeneration",
    "TransformersMoEEmbeddingModel", "TransformersMoEForCausalLM", "TransformersMoEForSequenceClassification",
    "TransformersMultiModalMoEEmbeddingModel", "TransformersMultiModalMoEForCausalLM",
    "TransformersMultiModalMoEForSequenceClassification", "XllmForCausalLM",
})

KNOWN_MOE_IGNORED = frozenset({
    "AfmoeForCausalLM", "BailingMoeForCausalLMNextN", "Cohere2MoeForCausalLM", "Ernie4_5_MoeForCausalLM",
    "Ernie4_5_MoeForCausalLMMTP", "Ernie4_5_VLMoeForConditionalGeneration", "Glm4vMoeForConditionalGeneration",
    "GraniteMoeForCausalLM", "GraniteMoeHybridForCausalLM", "GraniteMoeSWAForCausalLM",
    "GraniteMoeSharedForCausalLM", "HunYuanMoEV1ForCausalLM", "Lfm2MoeForCausalLM", "MixtralForCausalLM",
    "OlmoeForCausalLM", "PhiMoEForCausalLM", "QuantMixtralForCausalLM", "Qwen3OmniMoeForConditionalGeneration",
    "XverseMoeForCausalLM",
})

# Model names seen in trace metadata (lower case, "_" as "-") and the architecture they have;
# the first fragment a name contains wins.
NAME_HINTS = (
    ("mixtral", "MixtralForCausalLM"), ("deepseek-v2", "DeepseekV2ForCausalLM"), ("esft", "DeepseekV2ForCausalLM"),
    ("deepseek-v3", "DeepseekV3ForCausalLM"), ("deepseek-r1", "DeepseekV3ForCausalLM"),
    ("olmoe", "OlmoeForCausalLM"), ("qwen3-next", "Qwen3NextForCausalLM"), ("qwen3", "Qwen3MoeForCausalLM"),
    ("qwen2-moe", "Qwen2MoeForCausalLM"), ("qwen1.5-moe", "Qwen2MoeForCausalLM"), ("gpt-oss", "GptOssForCausalLM"),
)


def architecture_of_name(name: str | None) -> str | None:
    """The architecture of a model name from trace metadata (an architecture name as it is, or a
    hint of :data:`NAME_HINTS`), or None."""
    if not name:
        return None
    if name in HONOURS or name in CONDITIONAL or name in KNOWN_MOE_IGNORED or name.endswith(("ForCausalLM",
                                                                                             "ForConditionalGeneration")):
        return name
    key = name.lower().replace("_", "-")
    return next((arch for hint, arch in NAME_HINTS if hint in key), None)


def support(architecture: str | None) -> str:
    """``honoured``, ``conditional``, ``ignored`` or ``unknown`` (no architecture given)."""
    if architecture is None:
        return "unknown"
    if architecture in HONOURS:
        return "honoured"
    return "conditional" if architecture in CONDITIONAL else "ignored"
