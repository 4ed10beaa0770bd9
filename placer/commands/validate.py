"""``moe-place validate``: replay a placement on real torch.distributed all-to-all."""

from __future__ import annotations

import json

import click

from placer.commands.options import json_option
from placer.commands.types import NON_NEGATIVE_INT, POSITIVE_INT, SECONDS
from placer.fileio import to_jsonable


@click.command("validate")
@click.argument("trace", type=click.Path(dir_okay=False))
@click.argument("placement", type=click.Path(dir_okay=False))
@click.option("--baseline", default="contiguous", show_default=True,
              help="Placement to compare against: 'contiguous' or a placement JSON file.")
@click.option("--mode", type=click.Choice(["ep", "coherent"]), default="ep", show_default=True,
              help="ep: two all-to-alls per layer, tokens return home; coherent: one per layer transition.")
@click.option("--world-size", type=POSITIVE_INT, default=None,
              help="Ranks to spawn; must equal the placement's GPUs (default: the placement's GPUs).")
@click.option("--dist-backend", "backend", type=click.Choice(["gloo", "nccl"]), default="gloo", show_default=True,
              help="torch.distributed backend: gloo (CPU) or nccl (GPUs).")
@click.option("--hidden-size", type=POSITIVE_INT, default=64, show_default=True,
              help="Hidden size H of the replayed model.")
@click.option("--ffn-size", type=POSITIVE_INT, default=128, show_default=True, help="Expert FFN size F.")
@click.option("--ffn-type", type=click.Choice(["swiglu", "gelu"]), default="swiglu", show_default=True)
@click.option("--tokens", type=NON_NEGATIVE_INT, default=2048, show_default=True,
              help="Replay the first N tokens of the trace (0 = all).")
@click.option("--iters", type=POSITIVE_INT, default=3, show_default=True, help="Timed iterations (median reported).")
@click.option("--warmup", type=NON_NEGATIVE_INT, default=1, show_default=True, help="Untimed iterations first.")
@click.option("--seed", type=NON_NEGATIVE_INT, default=0, show_default=True, help="Seeds weights and activations.")
@click.option("--timeout", "timeout_s", type=SECONDS, default=600.0, show_default=True,
              help="Seconds before a stuck run (or collective) is stopped.")
@json_option
def command(trace, placement, baseline, mode, world_size, backend, hidden_size, ffn_size, ffn_type,
            tokens, iters, warmup, seed, timeout_s, as_json):
    """Replay PLACEMENT on G torch.distributed ranks with the tokens of TRACE.

    Checks that the placement was followed (each rank builds only its experts, every pick is
    computed once, on a rank that holds it), that outputs equal a single-process reference with
    the trace's gate weights and with unit weights, that the bytes sent rank to rank equal the
    cost model's prediction, and times the placement against the baseline; exits 1 when any
    check fails. Spawns the ranks itself, or runs as one rank under torchrun (python -m
    placer.validate ...).
    """
    from placer.model.placement import Placement
    from placer.traces.load import load_trace
    from placer.validate.api import validate

    tr = load_trace(trace, "the replay")
    pl = Placement.load(placement)
    report = validate(tr, pl, baseline, mode=mode, world_size=world_size, backend=backend,
                      hidden_size=hidden_size, ffn_size=ffn_size, ffn_type=ffn_type, tokens=tokens,
                      iters=iters, warmup=warmup, seed=seed, timeout_s=timeout_s,
                      placement_name=str(placement))
    if report is None:  # a torchrun rank other than 0
        return
    if as_json:
        click.echo(json.dumps(to_jsonable(report), indent=1))
    else:
        _print(report)
    if not report["passed"]:
        click.echo(f"moe-place: validate failed: {', '.join(report['failed_checks'])}", err=True)
        raise SystemExit(1)


def _print(r: dict) -> None:
    """The report for people: what was replayed, each check, bytes, then times (one consistent sample)."""
    click.echo(f"{r['mode']} replay on {r['world_size']} {r['backend']} ranks: {r['tokens']} tokens x "
               f"{r['layers']} layers, top-{r['top_k']}, H={r['hidden_size']} fp32")
    p = r["placement"]
    click.echo(f"outputs match the single-process reference: {r['outputs_match']} (max abs error "
               f"{p['max_abs_error']:.2e}); with unit gate weights: {r['outputs_match_unit_weights']} "
               f"({p['max_abs_error_unit_weights']:.2e})")
    click.echo(f"placement followed: every pick computed once, on a rank holding its expert: "
               f"{r['picks_served_once'] and r['experts_only_local']}")
    click.echo(f"bytes off-rank: measured {r['bytes_measured']:,}, predicted {r['bytes_predicted']:,} "
               f"({p['predicted_by']}): {'equal' if r['bytes_match'] else 'DIFFERENT'}")
    click.echo(f"baseline {r['baseline']}: measured {r['baseline_bytes_measured']:,} bytes; "
               f"placement/baseline bytes {r['bytes_ratio']:.3f}" if r['bytes_ratio'] is not None else
               f"baseline {r['baseline']}: no off-rank bytes")
    click.echo(f"median iteration (slowest rank): placement {r['time_placement_s'] * 1e3:.1f} ms, of which "
               f"{r['comm_time_placement_s'] * 1e3:.1f} ms in collectives; baseline {r['time_baseline_s'] * 1e3:.1f} ms, "
               f"{r['comm_time_baseline_s'] * 1e3:.1f} ms in collectives (time ratio {r['time_ratio']:.3f})")
    for note in r.get("notes", []):
        click.echo(f"note: {note}")
