"""``moe-place import SRC... -o OUT``: convert routing dumps into the native trace format.

Several sources are concatenated along tokens (their sequences kept apart). Aggregate-only
inputs (counts) are written as a profile ``.npz`` instead of a trace.
"""

from __future__ import annotations

import json

import click

from placer.commands.options import import_options, load_kwargs
from placer.commands.types import OUTPUT_FILE, POSITIVE_INT
from placer.errors import PlacerError


def _list_formats(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from placer.traces.importers.registry import formats
    for imp in formats().values():
        kind = "counts -> profile" if imp.aggregate else "trace"
        click.echo(f"{imp.name:16s} {'/'.join(imp.extensions):22s} {kind:18s} {imp.summary}")
    ctx.exit(0)


@click.command("import")
@click.argument("sources", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("-o", "--output", required=True, type=OUTPUT_FILE, help="Output .npz (trace, or profile for counts).")
@import_options
@click.option("--model", default=None, help="Model name to record in the metadata.")
@click.option("--gpus", type=POSITIVE_INT, default=None,
              help="Placement files only: EP ranks G (SGLang maps do not record it).")
@click.option("--gpus-per-node", type=POSITIVE_INT, default=None, help="Placement files only: GPUs per node.")
@click.option("--moe-layers", default=None, help="Placement files only: SGLang map rows that are MoE layers, e.g. 1-26.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("--list-formats", is_flag=True, expose_value=False, is_eager=True, callback=_list_formats,
              help="List the input formats and exit.")
def command(sources: tuple[str, ...], output: str, model: str | None, as_json: bool,
            gpus: int | None, gpus_per_node: int | None, moe_layers: str | None, **kw) -> None:
    """Convert and concatenate routing traces SOURCES into a native trace (or profile) OUTPUT.

    An engine placement file (SGLang --init-expert-location map, vllm-ascend expert map, the CSV of
    'moe-place export') is imported as a moe-place placement JSON instead (same as
    'moe-place import-placement'), so a running deployment can be evaluated and improved.
    """
    from placer.export import looks_like_placement

    if any(looks_like_placement(s) for s in sources):
        if len(sources) != 1:
            raise PlacerError("give one placement file at a time; placements cannot be concatenated")
        from placer.commands.import_placement import import_placement
        summary, text = import_placement(sources[0], output, kw.get("num_experts"), gpus, gpus_per_node, moe_layers)
        click.echo(json.dumps(summary) if as_json else text)
        return
    if gpus is not None or gpus_per_node is not None or moe_layers is not None:
        raise PlacerError("--gpus, --gpus-per-node and --moe-layers apply to placement files only; "
                          "drop them when importing routing traces")
    from placer.model.profile import Profile
    from placer.traces.load import load_any

    if not output.endswith(".npz"):
        raise PlacerError(f"{output}: the output must be an .npz file; name it e.g. trace.npz")
    data = load_any(list(sources), **load_kwargs(kw))
    if model:
        data.model = model
    data.save(output)
    kind = "profile" if isinstance(data, Profile) else "trace"
    summary = {"output": output, "kind": kind, "sources": list(sources), "layers": data.num_layers,
               "experts": data.num_experts, "top_k": data.top_k,
               "tokens": data.num_tokens, "moe_layers": list(data.moe_layers)}
    if kind == "trace":
        summary["sequences"] = data.num_sequences
    if as_json:
        click.echo(json.dumps(summary))
    else:
        what = data.describe() if kind == "trace" else (
            f"counts of {data.num_layers} MoE layers x {data.num_experts} experts, top-{data.top_k}, "
            f"{data.num_tokens} tokens{'' if data.trans_top1 is not None or data.trans is not None else ', loads only'}")
        click.echo(f"wrote {kind} {output}: {what}")
