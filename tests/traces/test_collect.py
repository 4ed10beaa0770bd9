"""The transformers collector: recorded routing equals the routers' own decisions.

For each architecture a tiny random-weight model is built offline from its config. The
reference is computed independently of the collector: every prompt is run alone (no padding,
batch of one) with pre-hooks capturing each router's input, and the router's choice is
recomputed from its weights (top-k of the logits; Switch: argmax plus the capacity rule by
hand). DeepSeek-V3's bias-corrected, group-limited choice cannot be recomputed from logits, so
its reference is the index tensor its experts module receives. Comparing a padded, batched
collection with these one-by-one runs also shows padding never enters the trace.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from placer.errors import PlacerError  # noqa: E402
from placer.traces import collect as col  # noqa: E402
from placer.traces.collect.collector import forward  # noqa: E402
from placer.traces.collect.hooks import layer_of  # noqa: E402
from placer.traces.collect.models import parse_overrides  # noqa: E402
from placer.traces.collect.prompts import batches, byte_tokens, token_sequences  # noqa: E402
from placer.model.trace import Trace  # noqa: E402
from support.cli import assert_user_error, run_python  # noqa: E402

# Prompts of very different lengths, so a batch of 3 is heavily padded.
PROMPTS = [
    "Beautiful is better than ugly.",
    "Hi",
    "Explicit is better than implicit. Simple is better than complex. Complex is better than complicated.",
    "Sparse is better than dense. Readability counts.",
    "x",
]

# Overrides on top of col.TINY_CONFIGS: more experts and top-k > 2 where the model allows it,
# and a small Switch capacity so that tokens are dropped.
ARCHS = {
    "mixtral": dict(num_hidden_layers=3, num_local_experts=8, num_experts_per_tok=2),
    "qwen2_moe": dict(num_hidden_layers=3, num_experts=16, num_experts_per_tok=4),
    "qwen3_moe": dict(num_hidden_layers=3, num_experts=16, num_experts_per_tok=4),
    "olmoe": dict(num_hidden_layers=3, num_experts=16, num_experts_per_tok=4),
    "deepseek_v3": dict(num_hidden_layers=4, n_routed_experts=16, num_experts_per_tok=4,
                        n_group=4, topk_group=2, first_k_dense_replace=1),
    "gpt_oss": dict(num_hidden_layers=3, num_local_experts=8, num_experts_per_tok=2),
    "granitemoe": dict(num_hidden_layers=3, num_local_experts=8, num_experts_per_tok=2),
    "switch_transformers": dict(num_layers=4, num_decoder_layers=4, num_sparse_encoder_layers=2,
                                num_sparse_decoder_layers=2, num_experts=4, expert_capacity=8),
}
EXPECTED_MOE_LAYERS = {"deepseek_v3": [1, 2, 3], "switch_transformers": [1, 3, 5, 7]}


def overrides(arch: str) -> str:
    return ",".join(f"{k}={json.dumps(v)}" for k, v in ARCHS[arch].items())


@torch.no_grad()
def reference(loaded: col.LoadedModel, prompts: list[str]):
    """Per prompt, run alone: ids [L, n, K] (sorted per token), weights normalised over the
    picks [L, n, K] in the same order, dropped [L, n] (Switch) or None, and the plain top-k of
    the logits [L, n, K] (sorted; Switch: the argmax)."""
    net, config = loaded.model, loaded.config
    sites = col.find_routers(net, config)
    inputs: dict[int, torch.Tensor] = {}
    received: dict[int, torch.Tensor] = {}
    handles = []
    for i, s in enumerate(sites):
        handles.append(s.module.register_forward_pre_hook(lambda m, a, i=i: inputs.__setitem__(i, a[0])))
        experts = dict(net.named_modules()).get(s.path.rsplit(".", 1)[0] + ".experts")
        if s.kind == "topk" and experts is not None:
            handles.append(experts.register_forward_pre_hook(lambda m, a, i=i: received.__setitem__(i, a[1])))
    out = []
    try:
        for text in prompts:
            ids = torch.tensor([loaded.encode(text)])
            with torch.no_grad():
                forward(net, config, ids, torch.ones_like(ids))
            per_layer_ids, per_layer_w, per_layer_drop, per_layer_plain = [], [], [], []
            for i, s in enumerate(sites):
                h = inputs[i].reshape(-1, inputs[i].shape[-1]).float()
                if s.kind == "switch":
                    logits = s.module.classifier(h)
                    choice = logits.argmax(-1)
                    cap = s.module.expert_capacity
                    seen = np.zeros(logits.shape[-1], int)
                    drop = []
                    for e in choice.tolist():  # tokens in order; beyond capacity -> dropped
                        seen[e] += 1
                        drop.append(seen[e] > cap)
                    per_layer_ids.append(choice[:, None].numpy())
                    per_layer_w.append(torch.ones_like(logits[:, :1]).numpy())
                    per_layer_drop.append(np.array(drop))
                    per_layer_plain.append(choice[:, None].numpy())
                    continue
                logits = torch.nn.functional.linear(h, s.module.weight.float(), getattr(s.module, "bias", None))
                k = int(s.module.top_k)
                if type(s.module).__name__ == "DeepseekV3TopkRouter":
                    idx = received[i].reshape(-1, k)
                    score = logits.sigmoid()
                else:
                    idx = logits.topk(k, dim=-1).indices
                    score = logits.exp()
                idx, _ = idx.sort(dim=-1)
                per_layer_plain.append(logits.topk(k, dim=-1).indices.sort(dim=-1)[0].numpy())
                w = score.gather(1, idx)
                per_layer_ids.append(idx.numpy())
                per_layer_w.append((w / w.sum(-1, keepdim=True)).numpy())
            out.append((np.stack(per_layer_ids), np.stack(per_layer_w),
                        np.stack(per_layer_drop) if per_layer_drop else None, np.stack(per_layer_plain)))
    finally:
        for h in handles:
            h.remove()
    return out


@pytest.fixture(scope="module", params=sorted(ARCHS))
def arch_model(request):
    arch = request.param
    return arch, col.load_model(arch, from_config=overrides(arch), seed=3)


@pytest.mark.slow
def test_collected_ids_match_router_recomputed_one_by_one(arch_model, tmp_path):
    arch, loaded = arch_model
    out = tmp_path / "t.npz"
    res = col.collect(loaded, PROMPTS, out, batch_size=3, gate_weights=True, seed=3)
    trace = Trace.load(out)
    assert isinstance(trace.expert_ids, np.memmap)  # the assembled file is memory-mappable
    lens = [len(loaded.encode(p)) for p in PROMPTS]
    assert trace.num_tokens == res.num_tokens == sum(lens)  # no padded position recorded
    assert trace.offsets.tolist() == np.concatenate([[0], np.cumsum(lens)]).tolist()
    cfg = ARCHS[arch]
    K = 1 if arch == "switch_transformers" else cfg["num_experts_per_tok"]
    E = next(v for k, v in cfg.items() if k in ("num_local_experts", "num_experts", "n_routed_experts"))
    L = len(EXPECTED_MOE_LAYERS.get(arch, range(cfg.get("num_hidden_layers", 0))))
    assert (trace.num_layers, trace.top_k, trace.num_experts) == (L, K, E)
    assert trace.moe_layers == EXPECTED_MOE_LAYERS.get(arch, list(range(L)))
    # Switch: encoder and decoder blocks are numbered one after the other
    assert trace.num_hidden_layers == (8 if arch == "switch_transformers" else cfg["num_hidden_layers"])
    assert trace.gate_weights.shape == trace.expert_ids.shape

    refs = reference(loaded, PROMPTS)
    ids = np.asarray(trace.expert_ids).astype(np.int64)
    w = np.asarray(trace.gate_weights)
    order = np.argsort(ids, axis=2, kind="stable")
    ids_sorted = np.take_along_axis(ids, order, axis=2)
    w_sorted = np.take_along_axis(w, order, axis=2)
    for s, (rid, rw, rdrop, _) in enumerate(refs):
        a, b = trace.offsets[s], trace.offsets[s + 1]
        np.testing.assert_array_equal(ids_sorted[:, a:b], rid, err_msg=f"{arch} sequence {s}")
        if arch == "switch_transformers":
            np.testing.assert_array_equal(np.asarray(trace.dropped)[:, a:b], rdrop)
            # the recorded weight is the router's probability of its chosen expert
            assert np.all((w[:, a:b] > 1.0 / E - 1e-6) & (w[:, a:b] <= 1.0 + 1e-6))
        else:
            # relative weights of the picks are the router's (softmax, or sigmoid for DeepSeek)
            np.testing.assert_allclose(w_sorted[:, a:b] / w_sorted[:, a:b].sum(-1, keepdims=True),
                                       rw, rtol=1e-4, atol=1e-5)
    if arch == "switch_transformers":
        assert res.dropped_tokens == int(np.asarray(trace.dropped).sum()) > 0
    else:
        assert trace.dropped is None
    if arch == "deepseek_v3":
        # why DeepSeek-V3 needs the router hook: every token stays within topk_group of the
        # n_group expert groups, and plain top-k of the logits would have recorded other experts
        group = cfg["n_routed_experts"] // cfg["n_group"]
        groups_used = np.array([[len(set(row)) for row in layer] for layer in ids_sorted // group])
        assert groups_used.max() <= cfg["topk_group"]
        plain = np.concatenate([r[3] for r in refs], axis=1)
        assert np.any(plain != ids_sorted)


@pytest.fixture(scope="module")
def olmoe_model():
    return col.load_model("olmoe", from_config=overrides("olmoe"), seed=1)


@pytest.mark.slow
def test_shards_max_tokens_and_determinism(olmoe_model, tmp_path):
    loaded = olmoe_model
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    col.collect(loaded, PROMPTS, a, batch_size=2, gate_weights=True)
    # tiny shards force many shard files; assembly must give the same bytes
    col.collect(loaded, PROMPTS, b, batch_size=2, gate_weights=True, shard_tokens=7)
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as zf:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    c = tmp_path / "c.npz"
    res = col.collect(loaded, PROMPTS, c, batch_size=2, max_tokens=30)
    t = Trace.load(c)
    assert res.num_tokens == t.num_tokens == 30
    full = Trace.load(a)
    np.testing.assert_array_equal(np.asarray(t.expert_ids), np.asarray(full.expert_ids[:, :30]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npz", "c.npz"]


@pytest.mark.slow
def test_interrupted_collection_leaves_nothing(olmoe_model, tmp_path):
    loaded = olmoe_model
    calls = []

    def advance(n):
        calls.append(n)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        col.collect(loaded, PROMPTS, tmp_path / "t.npz", batch_size=2, advance=advance, shard_tokens=5)
    assert list(tmp_path.iterdir()) == []


def test_model_without_hookable_router_names_the_classes():
    nn = torch.nn

    class FooSparseMoeBlock(nn.Module):  # a 4.x-style block: the gate is a plain Linear
        def __init__(self):
            super().__init__()
            self.gate = nn.Linear(4, 8)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([FooSparseMoeBlock()])

    with pytest.raises(PlacerError, match="FooSparseMoeBlock"):
        col.find_routers(Net())
    with pytest.raises(PlacerError, match="no MoE layers"):
        col.find_routers(nn.Sequential(nn.Linear(2, 2)))


def test_layer_numbers_from_paths():
    assert layer_of("model.layers.12.mlp.gate") == 12
    assert layer_of("layers.3.block_sparse_moe.router") == 3
    assert layer_of("encoder.block.5.layer.1.mlp.router", 12) == 5
    assert layer_of("decoder.block.5.layer.2.mlp.router", 12) == 17


def test_prompt_files_and_overrides(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("one\n\n  \ntwo words\n")
    assert list(col.read_prompts(txt)) == ["one", "two words"]
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"text": "a"}\n{"text": "b", "x": 1}\n')
    assert list(col.read_prompts(jl)) == ["a", "b"]
    jl2 = tmp_path / "q.txt"
    jl2.write_text('{"prompt": "hello"}\n')
    assert list(col.read_prompts(jl2, text_field="prompt")) == ["hello"]
    with pytest.raises(PlacerError, match=":1: no string field 'text'"):
        list(col.read_prompts(jl2, text_field="text"))
    assert parse_overrides('num_experts=16,mlp_only_layers=[1,2],name=abc,flag=true') == {
        "num_experts": 16, "mlp_only_layers": [1, 2], "name": "abc", "flag": True}
    with pytest.raises(PlacerError, match="key=value"):
        parse_overrides("num_experts")
    assert byte_tokens("é", 100) == [0xC3 % 100, 0xA9 % 100]


# ------------------------------------------------------------------------------ CLI
@pytest.mark.slow
def test_cli_collects_and_prints_json(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "t.npz"
    proc = _run_inprocess(capsys, "collect", "qwen3_moe", "--from-config", overrides("qwen3_moe"),
                          "--prompts", prompts, "-o", out, "--batch-size", "4", "--device", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    trace = Trace.load(out)
    assert summary["num_tokens"] == trace.num_tokens == sum(len(p.encode()) for p in PROMPTS)
    assert summary["num_sequences"] == len(PROMPTS) and trace.gate_weights is None


def _run_inprocess(capsys, *args):
    """Run the CLI in this process (torch is already imported here, so it is fast)."""
    from placer.cli import main
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    cap = capsys.readouterr()
    return type("P", (), {"returncode": code, "stderr": cap.err, "stdout": cap.out})()


def test_collect_command_does_not_import_torch_until_it_runs():
    code = ("import sys, placer, placer.cli, placer.commands.collect, placer.traces.collect; "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    assert run_python(code).split() == ["False", "False"]


def test_cli_empty_prompt_file_as_a_subprocess(cli, tmp_path):
    """The real entry point (fails before torch is imported, so this subprocess is cheap)."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n\n")
    proc = cli("collect", "olmoe", "--from-config", "", "--prompts", prompts, "-o", tmp_path / "t.npz")
    assert_user_error(proc, "no prompts")
    assert list(tmp_path.iterdir()) == [prompts]


# slow: the first three load transformers configs
@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) for c in ("no_config", "no_moe", "unhookable")]
                         + ["empty_prompts", "cuda", "bad_override"])
def test_cli_bad_input(case, tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("hello\n")
    out = tmp_path / "t.npz"
    model, extra, fragments = "olmoe", ["--from-config", "num_hidden_layers=2"], ()
    if case == "no_config":
        (tmp_path / "ckpt").mkdir()
        model, extra, fragments = str(tmp_path / "ckpt"), [], ("config.json",)
    elif case == "no_moe":
        model, fragments = "llama", ("no MoE layers",)
    elif case == "unhookable":
        model, fragments = "llama4_text", ("Llama4Router", "cannot be hooked")
        extra = ["--from-config", "num_hidden_layers=2,num_local_experts=4,head_dim=16,intermediate_size_mlp=128"]
    elif case == "empty_prompts":
        prompts.write_text("\n  \n")
        fragments = ("no prompts",)
    elif case == "cuda":
        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
        extra += ["--device", "cuda"]
        fragments = ("no CUDA GPU", "--device cpu")
    elif case == "bad_override":
        extra = ["--from-config", "num_experts"]
        fragments = ("key=value",)
    proc = _run_inprocess(capsys, "collect", model, *extra, "--prompts", prompts, "-o", out)
    assert_user_error(proc, *fragments)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow
def test_local_checkpoint_directory(tmp_path, capsys):
    """A saved *ForCausalLM checkpoint with its tokenizer: the base model's routers are hooked,
    the tokenizer is used, and the trace equals collecting from the same model in memory."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    words = sorted({w for p in PROMPTS for w in p.split()})
    vocab = {"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]")
    ckpt = tmp_path / "ckpt"
    config = AutoConfig.for_model("olmoe", **{**col.TINY_CONFIGS["olmoe"], "num_hidden_layers": 2})
    torch.manual_seed(5)
    lm = AutoModelForCausalLM.from_config(config).eval()
    lm.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    out = tmp_path / "t.npz"
    proc = _run_inprocess(capsys, "collect", ckpt, "--prompts", prompts, "--text-field", "prompt",
                          "-o", out, "--batch-size", "2", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    trace = Trace.load(out)
    lens = [len(tok(p)["input_ids"]) for p in PROMPTS]
    assert trace.offsets.tolist() == np.concatenate([[0], np.cumsum(lens)]).tolist()
    assert trace.moe_layers == [0, 1] and trace.model == "ckpt"

    mem = col.LoadedModel(lm.model, config, "mem", lambda s: tok(s)["input_ids"], 0, "tok")
    col.collect(mem, PROMPTS, tmp_path / "m.npz", batch_size=2)
    np.testing.assert_array_equal(np.asarray(trace.expert_ids), np.asarray(Trace.load(tmp_path / "m.npz").expert_ids))


def test_token_sequences_cut_and_skip():
    enc = lambda s: [ord(c) for c in s]  # noqa: E731
    seqs = list(token_sequences(["abcdef", "", "gh", "ijklm"], enc, seq_len=4, max_tokens=None))
    assert seqs == [enc("abcd"), enc("gh"), enc("ijkl")]
    seqs = list(token_sequences(["abcdef", "", "gh", "ijklm"], enc, seq_len=4, max_tokens=7))
    assert seqs == [enc("abcd"), enc("gh"), enc("i")]
    assert [len(b) for b in batches(iter(range(7)), 3)] == [3, 3, 1]
