"""``moe-place profile TRACE -o profile.npz``: count loads, transitions and co-activations.

Reads the trace chunk by chunk (memory-mapped), so memory is bounded by ``--chunk-tokens``.
"""

from __future__ import annotations

import json

import click

from placer.commands.options import import_options, load_kwargs
from placer.commands.types import OUTPUT_FILE, POSITIVE_INT
from placer.errors import PlacerError
from placer.model.trace import DEFAULT_CHUNK_TOKENS


@click.command("profile")
@click.argument("sources", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("-o", "--output", required=True, type=OUTPUT_FILE, help="Output profile .npz.")
@import_options
@click.option("--chunk-tokens", type=POSITIVE_INT, default=DEFAULT_CHUNK_TOKENS, show_default=True,
              help="Tokens read per chunk (bounds memory).")
@click.option("--no-coact", is_flag=True, help="Skip intra-layer co-activation counts [L, E, E].")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def command(sources: tuple[str, ...], output: str, chunk_tokens: int, no_coact: bool, as_json: bool, **kw) -> None:
    """Build the routing profile of SOURCES (a trace, or anything importable) into OUTPUT."""
    from placer.traces.load import load_input, profile_of

    if not output.endswith(".npz"):
        raise PlacerError(f"{output}: the output must be an .npz file; name it e.g. profile.npz")
    data = load_input(list(sources), **load_kwargs(kw))
    prof = profile_of(data, chunk_tokens, coact=not no_coact)
    prof.save(output)
    summary = {"output": output, "layers": prof.num_layers, "experts": prof.num_experts, "top_k": prof.top_k,
               "tokens": prof.num_tokens, "has_trans": prof.trans is not None,
               "has_trans_top1": prof.trans_top1 is not None, "has_coact": prof.coact is not None}
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"wrote profile {output}: {prof.num_layers} MoE layers x {prof.num_experts} experts, "
                   f"top-{prof.top_k}, {prof.num_tokens} tokens")
