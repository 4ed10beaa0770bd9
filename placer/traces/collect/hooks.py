"""Router hooks: find the router module of every MoE layer and record what it returns.

In transformers 5.x every MoE layer has a router module whose class name ends in ``TopKRouter``
(DeepSeek-V3: ``TopkRouter``) and whose forward returns ``(router_logits [N, E],
top_k_weights [N, K], top_k_index [N, K])`` with ``N = batch * seq`` flattened. A forward hook
records ``top_k_index`` and ``top_k_weights`` as the router returned them: exactly the indices
the experts receive, including DeepSeek-V3's bias-corrected, group-limited choice that the
logits alone cannot reproduce. Switch Transformers' ``SwitchTransformersTop1Router`` returns
``(one-hot dispatch [B, S, E] with capacity-dropped tokens all zero, max prob [B, S, 1],
logits [B, S, E])``: a token whose one-hot row is zero was dropped; its ``expert_ids`` entry is
the expert the router chose (argmax of its probabilities, computed as the router does) and
``dropped[l, t]`` is set.

Layer numbers come from the module path (``layers.{i}`` / ``block.{i}``). Switch is an
encoder-decoder: encoder block i is layer i and decoder block i is layer ``num_layers + i``.

transformers 4.x is not supported: there the routers are plain ``nn.Linear`` gates returning
logits only. Supporting it would mean hooking each MoE block's ``gate`` Linear and recomputing
top-k from the logits (softmax then top-k, the block's ``top_k``), which is exact for Mixtral,
Qwen-MoE, OLMoE, GraniteMoE and GPT-OSS but not for DeepSeek-V3 (its ids depend on the
correction bias and group limit inside the gate), so the collector refuses 4.x.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from placer.errors import PlacerError
from placer.traces.collect.models import config_value

ROUTER_SUFFIXES = ("TopKRouter", "TopkRouter")
SWITCH_ROUTER = "SwitchTransformersTop1Router"
# Class-name fragments of modules that belong to an MoE block; used only to tell "no MoE layers"
# from "MoE layers whose router we cannot hook" in the error message.
MOE_HINTS = ("moe", "expert", "router", "sparse", "switch")


@dataclass
class RouterSite:
    """One hooked router: module path, model layer number, kind (``topk`` or ``switch``)."""

    path: str
    layer: int
    kind: str
    module: Any = field(repr=False)


_LAYER_RE = re.compile(r"(?:^|\.)(?:layers|layer|block|blocks|h)\.(\d+)(?:\.|$)")


def layer_of(path: str, num_encoder_layers: int = 0) -> int:
    """The model layer number in a module path (first ``layers.{i}``/``block.{i}``); decoder
    blocks of an encoder-decoder are numbered after the ``num_encoder_layers`` encoder blocks."""
    m = _LAYER_RE.search(path)
    if m is None:
        raise PlacerError(f"router '{path}' has no layer number in its module path; this architecture is not supported by the collector")
    i = int(m.group(1))
    return i + num_encoder_layers if path.startswith("decoder.") or ".decoder." in path else i


def find_routers(model: Any, config: Any = None) -> list[RouterSite]:
    """The router modules of ``model``, ordered by layer; :class:`PlacerError` when there are none.

    The error says whether the model has no MoE layers at all or has MoE modules whose router
    class this collector does not know (naming the classes found).
    """
    n_enc = int(config_value(config, "num_layers") or 0) if getattr(config, "is_encoder_decoder", False) else 0
    sites, moe_classes = [], set()
    for path, mod in model.named_modules():
        cls = type(mod).__name__
        if cls.endswith(ROUTER_SUFFIXES):
            sites.append(RouterSite(path, layer_of(path, n_enc), "topk", mod))
        elif cls == SWITCH_ROUTER:
            sites.append(RouterSite(path, layer_of(path, n_enc), "switch", mod))
        elif any(h in cls.lower() for h in MOE_HINTS):
            moe_classes.add(cls)
    name = type(model).__name__
    if not sites:
        if moe_classes:
            raise PlacerError(
                f"{name}: found MoE modules ({', '.join(sorted(moe_classes))}) but no router class ending in "
                f"{'/'.join(ROUTER_SUFFIXES)} or {SWITCH_ROUTER}; this architecture's router cannot be hooked, use a supported model")
        raise PlacerError(f"{name}: the model has no MoE layers (no router modules); collect from a Mixture-of-Experts model")
    sites.sort(key=lambda s: s.layer)
    layers = [s.layer for s in sites]
    if len(set(layers)) != len(layers):
        raise PlacerError(f"{name}: several routers share a layer number ({layers}); this architecture is not supported by the collector")
    return sites


def num_experts_of(sites: list[RouterSite], config: Any) -> int:
    vals = {int(getattr(s.module, "num_experts", 0) or 0) for s in sites}
    if len(vals) == 1 and 0 not in vals:
        return vals.pop()
    e = config_value(config, "num_local_experts", "num_experts", "n_routed_experts")
    if e is None or len(vals - {0}) > 1:
        raise PlacerError("cannot tell the number of experts (routers disagree or the config names none); this architecture is not supported by the collector")
    return int(e)


class RouterRecorder:
    """Forward hooks on every router; after a forward pass, :meth:`take` returns the real tokens'
    routing as numpy arrays and clears the buffers.

    Hooks only keep references to the router's output tensors (no copy, no device sync), so the
    cost of recording is a few dictionary writes per layer.
    """

    def __init__(self, sites: list[RouterSite], gate_weights: bool):
        self.sites = sites
        self.gate_weights = gate_weights
        self.outputs: dict[int, tuple] = {}
        self.handles = [s.module.register_forward_hook(self._hook(i)) for i, s in enumerate(sites)]

    def _hook(self, i: int):
        def hook(module, inputs, output):
            if i in self.outputs:
                raise PlacerError(f"router '{self.sites[i].path}' ran twice in one forward pass; this architecture is not supported by the collector")
            self.outputs[i] = (module, output)
        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def take(self, mask: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Routing of the real tokens of the last forward: ``ids [L, n, K]``, ``weights [L, n, K]``
        (float32, or None), ``dropped [L, n]`` (bool, Switch only, else None); ``mask [B, S]``
        marks real tokens, n = mask.sum(), order = sequence by sequence."""
        import torch
        B, S = mask.shape
        flat = mask.reshape(-1)
        ids, weights, dropped = [], [], []
        for i, site in enumerate(self.sites):
            if i not in self.outputs:
                raise PlacerError(f"router '{site.path}' did not run in the forward pass; this architecture is not supported by the collector")
            module, out = self.outputs[i]
            if site.kind == "switch":
                one_hot, probs, logits = out
                routed = one_hot.reshape(B * S, -1).sum(-1) > 0
                # the router's own choice, computed as it does (softmax in its dtype, cast back)
                chosen = torch.softmax(logits, dim=-1, dtype=module.dtype).to(module.input_dtype).argmax(-1)
                idx = torch.where(routed, one_hot.reshape(B * S, -1).argmax(-1), chosen.reshape(-1))[:, None]
                w = probs.reshape(B * S, 1)
                dropped.append((~routed)[flat])
            else:
                _, w, idx = out
                idx, w = idx.reshape(B * S, -1), w.reshape(B * S, -1)
            ids.append(idx[flat])
            if self.gate_weights:
                weights.append(w[flat].float())
        self.outputs = {}
        ids_np = torch.stack(ids).cpu().numpy()
        w_np = torch.stack(weights).cpu().numpy().astype(np.float32) if self.gate_weights else None
        d_np = torch.stack(dropped).cpu().numpy() if dropped else None
        return ids_np, w_np, d_np
