"""Every command documents itself: --help works and shows an example (sqlite-utils style)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from promogym.cli import app

COMMANDS = sorted(info.name for info in typer.main.get_command(app).commands.values())  # type: ignore[attr-defined]


def test_there_are_commands() -> None:
    assert {"check-config", "simulate-history", "check-data"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_command_help_has_example(name: str) -> None:
    result = CliRunner().invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output and f"promogym {name}" in result.output
