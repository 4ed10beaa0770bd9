"""The ``moe-place`` command line: a click group whose subcommands load lazily.

Each subcommand lives in ``placer/commands/<module>.py`` as a click command named ``command``;
the group imports a module only when its command runs (``moe-place --help`` stays fast, and
torch is imported only by the commands that need it).

Every :class:`~placer.errors.PlacerError` becomes one line on stderr and exit status 2, and so
do the operating system's refusals (a full disk, a read-only file system) and running out of
memory. Before a command runs, every output it was given (an option of type
:class:`~placer.commands.options.OutputFile`) is compared with every input path it was given:
an output that is one of them (the same file, through a link or not) is refused, so no command
ever overwrites what it reads. As the program's entry point, :func:`main` first sets up SIGTERM
handling (:mod:`placer.interrupt`): a SIGTERM ends the process at once with its status.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import Any, Callable

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
        command = importlib.import_module(f"placer.commands.{COMMANDS[name]}").command
        if not getattr(command, "_outputs_guarded", False):
            command.callback = _guard_outputs(command, command.callback)
            command._outputs_guarded = True
        return command


def _paths(value: Any) -> list[str]:
    items = value if isinstance(value, (list, tuple)) else [value]
    return [os.fspath(v) for v in items if isinstance(v, (str, os.PathLike)) and str(v)]


def _guard_outputs(command: click.Command, callback: Callable) -> Callable:
    """``callback`` preceded by the check that no output names one of the inputs."""
    from placer.commands.types import OutputFile

    outputs = [p for p in command.params if isinstance(p.type, OutputFile)]

    @functools.wraps(callback)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        inputs = [(p, path) for p in command.params if p not in outputs and p.name in kwargs
                  for path in _paths(kwargs[p.name]) if os.path.exists(path)]
        written: dict[str, str] = {}
        for out in outputs:
            for path in _paths(kwargs.get(out.name)):
                if not os.path.exists(path):
                    continue
                flag = out.opts[-1] if out.opts else out.name
                for param, src in inputs:
                    if os.path.samefile(path, src):
                        raise PlacerError(f"{flag} {path} is the input {src}; writing it would destroy what the "
                                          f"command reads, choose another output path")
                for other, seen in written.items():
                    if os.path.samefile(path, seen):
                        raise PlacerError(f"{flag} {path} is also {other}; give each output its own path")
                written[flag] = path
        return callback(*args, **kwargs)

    return guarded


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="moe-place")
def cli() -> None:
    """Place the experts of a Mixture-of-Experts model on GPUs from routing traces.

    Typical flow: moe-place import dump.json -o trace.npz; moe-place inspect trace.npz;
    moe-place solve trace.npz --gpus 8 -o placement.json; moe-place export placement.json
    --format sglang -o expert_location.json.
    """


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"moe-place: error: {' '.join(str(message).split())}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None, own_process: bool | None = None) -> None:
    """Entry point: run the CLI, turning user errors into one line and exit status 2.

    ``own_process`` (default: when ``argv`` is None, i.e. the console script or ``python -m
    placer``): this process is the program, so SIGTERM handling is installed first.
    """
    if own_process if own_process is not None else argv is None:
        from placer.interrupt import install
        install()
    try:
        cli.main(args=argv, prog_name="moe-place", standalone_mode=False)
    except PlacerError as exc:
        _fail(str(exc), exc.exit_code)
    except click.exceptions.Abort:
        click.echo("moe-place: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        # one line, as for every user error: what is wrong and where the help is
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        _fail(f"{exc.format_message()}{where}", exc.exit_code)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("moe-place: interrupted; no output was written", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except MemoryError:
        _fail("ran out of memory; the input is larger than this machine can hold at once: use a smaller input "
              "(fewer tokens, --tokens, a sample) or a machine with more memory")
    except OSError as exc:
        # what the operating system refused while reading or writing (a full disk, a read-only
        # file system, a vanished folder): the input, the place or the machine, never a bug to show
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}; check the path, its permissions and the free space")
