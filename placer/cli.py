"""The ``moe-place`` command line: a click group whose subcommands load lazily.

Each subcommand lives in ``placer/commands/<module>.py`` as a click command named ``command``;
the group imports a module only when its command runs (``moe-place --help`` stays fast, and
torch is imported only by the commands that need it).

Every :class:`~placer.errors.PlacerError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import importlib
import sys

import click

from placer.errors import PlacerError

# command name -> module under placer.commands
COMMANDS: dict[str, str] = {
    "import": "import_",
    "import-placement": "import_placement",
    "inspect": "inspect",
    "profile": "profile",
    "evaluate": "evaluate",
    "compare": "compare",
    "solve": "solve",
    "collect": "collect",
    "validate": "validate",
    "export": "export",
    "plan": "plan",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(f"placer.commands.{COMMANDS[name]}")
        return module.command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="moe-place")
def cli() -> None:
    """Place the experts of a Mixture-of-Experts model on GPUs from routing traces.

    Typical flow: moe-place import dump.json -o trace.npz; moe-place inspect trace.npz;
    moe-place solve trace.npz --gpus 8 -o placement.json; moe-place export placement.json
    --format sglang -o expert_location.json.
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning user errors into one line and exit status 2."""
    try:
        cli.main(args=argv, prog_name="moe-place", standalone_mode=False)
    except PlacerError as exc:
        click.echo(f"moe-place: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("moe-place: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        # one line, as for every user error: what is wrong and where the help is
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"moe-place: error: {' '.join(exc.format_message().split())}{where}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"moe-place: error: {' '.join(exc.format_message().split())}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("moe-place: interrupted; no output was written", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
