"""The ``tandem`` command: assembles the sub-commands of ``tandem.commands``.

User mistakes arrive here as ``TandemError`` and are printed as one line on stderr with a
non-zero exit status; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from typer.core import TyperOption

from tandem import __version__
from tandem.commands import (
    bench,
    demo,
    experiment,
    plan,
    predict,
    profile,
    serve,
    simulate,
    trace,
)
from tandem.errors import TandemError


def _flag_takes_no_value() -> None:
    """Help shows a flag (``--json``) bare: typer 0.29 prints ``--json <bool>``, as if the
    flag took a value (it does not: ``--json true`` is refused)."""
    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: object) -> str | None:
        return None if self.is_flag else shown(self, ctx)  # type: ignore[arg-type]

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flag_takes_no_value()

app = typer.Typer(
    name="tandem",
    help="Plan, simulate and schedule prefill/decode disaggregated LLM serving.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(trace.app, name="trace")
app.add_typer(profile.app, name="profile")
app.add_typer(predict.app, name="predict")
app.add_typer(experiment.app, name="experiment")
app.add_typer(bench.app, name="bench")
app.command("demo")(demo.demo)
app.command("simulate")(simulate.simulate_command)
app.command("plan")(plan.plan_command)
app.command("serve")(serve.serve_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tandem {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Plan, simulate and schedule prefill/decode disaggregated LLM serving."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    try:
        app(args=argv, standalone_mode=True)
    except TandemError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
