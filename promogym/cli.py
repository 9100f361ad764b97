"""The ``promogym`` command: a thin layer over the library API.

Each command parses its options, calls one library function and prints the result. A user
error (:class:`promogym.errors.PromogymInputError`) is printed as one line on stderr and the
command exits with code 2, leaving no partial output behind.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from promogym.errors import PromogymInputError

app = typer.Typer(
    name="promogym",
    help=(
        "Learn a shop's demand simulator from its sales history and train agents to run "
        "its promotions.\n\nExample: promogym demo --out demo-out"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Turn user errors into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PromogymInputError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def parse_columns(spec: str | None) -> dict[str, str]:
    """Parse ``--columns units_sold=move,date=week_start`` into ``{contract: source}``."""
    if not spec:
        return {}
    out: dict[str, str] = {}
    for part in spec.split(","):
        name, sep, source = part.partition("=")
        if not sep or not name.strip() or not source.strip():
            raise PromogymInputError(
                f"--columns: bad entry {part!r}; write CONTRACT=SOURCE, e.g. units_sold=move"
            )
        out[name.strip()] = source.strip()
    return out


@app.callback()
def _root() -> None:
    """Learn a shop's demand simulator from its sales history; train agents to run its promotions.

    Example: promogym demo --out demo-out
    """


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Campaign TOML (default: the built-in campaign)."),
]


@app.command("check-config")
@user_errors
def check_config(config: ConfigOption = None) -> None:
    """Validate a campaign TOML and print it with defaults filled in.

    Example: promogym check-config --config campaign.toml
    """
    from promogym.config import load_config

    typer.echo(load_config(config).to_toml())


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="promogym")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
