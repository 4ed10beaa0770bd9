"""``moe-place collect``: record a routing trace from a transformers MoE model (router hooks)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from typing import Callable, Iterator

import click

from placer.commands.types import OUTPUT_FILE, POSITIVE_INT
from placer.errors import PlacerError
from placer.progress import interactive


@contextlib.contextmanager
def _token_progress(total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar with tokens/s on a terminal; nothing when piped.

    Local rather than placer.progress.progress because that bar has no rate column.
    """
    if not interactive():
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    rate = TextColumn("{task.completed:,.0f} tokens  {task.fields[rate]}")
    with Progress(TextColumn("collecting"), BarColumn(), rate, TimeElapsedColumn(),
                  transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("collect", total=total, rate="")

        def advance(n: int) -> None:
            bar.advance(task, n)
            speed = bar.tasks[0].speed
            bar.update(task, rate=f"{speed:,.0f} tokens/s" if speed else "")
        yield advance


@click.command("collect")
@click.argument("model")
@click.option("--prompts", "prompts_file", required=True, type=click.Path(dir_okay=False),
              help="Plain text (one prompt per line) or JSONL (see --text-field).")
@click.option("-o", "--output", required=True, type=OUTPUT_FILE, help="Trace to write (.npz).")
@click.option("--max-tokens", type=POSITIVE_INT, default=None, help="Stop after this many tokens in all.")
@click.option("--batch-size", type=POSITIVE_INT, default=8, show_default=True, help="Prompts per forward pass.")
@click.option("--seq-len", type=POSITIVE_INT, default=512, show_default=True, help="Truncate each prompt to this many tokens.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="auto", show_default=True)
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp32"]), default=None,
              help="Model dtype [default: bf16 on cuda, fp32 on cpu].")
@click.option("--gate-weights", is_flag=True, help="Also record the router's weight for each pick.")
@click.option("--text-field", default=None, help="JSONL field holding the prompt text [default: text].")
@click.option("--from-config", "from_config", default=None,
              help="Build MODEL (a model_type, e.g. olmoe) with random weights from a tiny config plus "
                   "these key=value,... overrides; no download. Text is tokenised one byte per token.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for random weights (--from-config).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def command(model: str, prompts_file: str, output: str, max_tokens: int | None, batch_size: int,
            seq_len: int, device: str, dtype: str | None, gate_weights: bool, text_field: str | None,
            from_config: str | None, seed: int, as_json: bool) -> None:
    """Record which experts every token picks, by hooking the router modules of MODEL.

    MODEL is a local checkpoint directory (config, weights, tokenizer) or, with --from-config,
    a transformers model_type built offline with random weights. Padding never enters the trace;
    prompt boundaries are kept. Example: moe-place collect olmoe --from-config num_experts=16
    --prompts prompts.txt -o trace.npz
    """
    from placer.traces import collect as col

    prompts = col.read_prompts(prompts_file, text_field)
    try:
        first = next(prompts)
    except StopIteration:
        raise PlacerError(f"{prompts_file}: the prompt file has no prompts; give at least one non-empty line") from None
    col.import_torch_transformers()
    dev = col.resolve_device(device)
    loaded = col.load_model(model, from_config=from_config, seed=seed, device=dev, dtype=dtype)
    with _token_progress(max_tokens) as advance:
        result = col.collect(loaded, _chain(first, prompts), output, batch_size=batch_size,
                             seq_len=seq_len, max_tokens=max_tokens, gate_weights=gate_weights,
                             device=dev, seed=seed, advance=advance,
                             extra={"prompts": str(prompts_file), "device": dev,
                                    "dtype": dtype or ("bf16" if dev == "cuda" else "fp32")})
    summary = dataclasses.asdict(result)
    summary["tokens_per_s"] = result.num_tokens / result.seconds if result.seconds > 0 else None
    if as_json:
        click.echo(json.dumps(summary))
        return
    dropped = "" if result.dropped_tokens is None else f", {result.dropped_tokens} dropped token-layers"
    click.echo(f"wrote {output}: {result.num_layers} MoE layers {result.moe_layers} x {result.num_tokens} tokens "
               f"x top-{result.top_k} of {result.num_experts} experts, {result.num_sequences} sequences{dropped} "
               f"({result.seconds:.1f} s, {summary['tokens_per_s'] or 0:,.0f} tokens/s)")


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest
