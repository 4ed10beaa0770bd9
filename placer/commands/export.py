"""``moe-place export PLACEMENT --format F -o OUT``: write a placement for a serving engine."""

from __future__ import annotations

import json
from pathlib import Path

import click

from placer.commands.types import OUTPUT_FILE, POSITIVE_INT, Registered
from placer.export import EXPORTERS, WriteOptions, export_formats, parse_layers
from placer.model.placement import Placement


@click.command("export")
@click.argument("placement_path", metavar="PLACEMENT", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=Registered("export format", export_formats), required=True,
              help="Output format.")
@click.option("-o", "--output", "out", type=OUTPUT_FILE, required=True,
              help="Output file (eplb: .npz, or .pt with torch installed).")
@click.option("--moe-layers", default=None,
              help="Decoder layer number of each placement layer, e.g. 1-26 or 0,2,4 (default: from the "
                   "placement's trace metadata, else 0..L-1).")
@click.option("--num-hidden-layers", type=POSITIVE_INT, default=None,
              help="All decoder layers of the model, dense ones included (default: from the trace metadata, "
                   "else last MoE layer + 1).")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False), default=None,
              help="sglang-counts: the trace (or counts profile) whose per-expert loads to write.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary to stdout.")
def command(placement_path: str, fmt: str, out: str, moe_layers: str | None, num_hidden_layers: int | None,
            trace_path: str | None, as_json: bool) -> None:
    """Export PLACEMENT (a moe-place placement JSON) for a serving engine.

    Formats: sglang (--init-expert-location file; prints the launch flags), sglang-counts
    (expert loads for SGLang's own balancer), eplb (phy2log/log2phy/logcnt arrays), vllm-ascend
    (expert map JSON), csv (layer,gpu,slot,expert).
    """
    placement = Placement.load(placement_path)
    layers = tuple(parse_layers(moe_layers)) if moe_layers is not None else None
    out_path = Path(out)
    written = EXPORTERS.get(fmt).write(placement, out_path, WriteOptions(layers, num_hidden_layers, trace_path))
    summary = {"format": fmt, "output": str(out_path), "layers": placement.num_layers,
               "experts": placement.num_experts, "gpus": placement.num_gpus,
               "redundant_experts": placement.num_replicas, **written.fields}
    click.echo(json.dumps(summary) if as_json else written.message)
