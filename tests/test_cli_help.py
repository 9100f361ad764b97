"""Every command documents itself: --help works and shows an example (sqlite-utils style)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from promogym.cli import app, run

COMMANDS = sorted(info.name for info in typer.main.get_command(app).commands.values())  # type: ignore[attr-defined]


def test_there_are_commands() -> None:
    assert {"check-config", "simulate-history", "check-data"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_command_help_has_example(name: str) -> None:
    result = CliRunner().invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output and f"promogym {name}" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["simulate-history", "--items", "2", "--periods", "30", "--seed", "-1", "--out", "x.csv"],
        ["solve", "--market-seed", "-1"],
        ["evaluate", "--seed", "-1", "--out", "r"],
    ],
)
def test_negative_seeds_are_usage_errors(args: list[str], tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    assert run(args) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: promogym {args[0]}: Invalid value for '--") and err.count("\n") == 1
    )
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["fit", "--bogus"], "promogym fit: No such option: --bogus"),
        (["fit", "--data"], "promogym fit: Option '--data' requires an argument"),
        (["fit"], "promogym fit: Missing option '--data'"),
        (["bogus"], "promogym: No such command 'bogus'"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], line: str, capsys) -> None:  # type: ignore[no-untyped-def]
    """The console entry point prints click's usage errors as one line, like user errors."""
    assert run(args) == 2
    out, err = capsys.readouterr()
    command = line.split(":")[0]
    assert not out and err.startswith(f"error: {line}") and err.count("\n") == 1
    assert err.endswith(f"; see '{command} --help'\n")


def test_run_returns_the_commands_exit_code(capsys) -> None:  # type: ignore[no-untyped-def]
    assert run(["check-config", "--help"]) == 0
    assert "Example" in capsys.readouterr().out
    assert run(["check-data", "--data", "/nonexistent/h.csv"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_outputs_under_a_file_or_into_a_full_directory_fail_before_any_work(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "h.csv"
    data.write_text("date,item_id,units_sold,price\n2024-01-01,a,3,10\n2024-01-02,a,4,10\n")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    for args, fragment in (
        (["simulate-history", "--periods", "30", "--out", f"{data}/x.csv"], "is a file"),
        (["fit-forecaster", "--data", str(data), "--out", f"{data}/model"], "is a file"),
        (["fit-forecaster", "--data", str(data), "--out", str(full)], "not empty"),
        (
            ["fit-forecaster", "--data", str(data), "--out", str(full), "--overwrite"],
            "not a saved forecaster",
        ),
        (["evaluate", "--episodes", "2", "--out", f"{data}/report"], "is a file"),
        (["pretrain", "--series", "8", "--epochs", "1", "--out", str(data)], "not a directory"),
        (["pretrain", "--series", "8", "--epochs", "1", "--out", str(full)], "'keep.txt'"),
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert fragment in result.output and result.output.count("\n") == 1, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "h.csv"]
    assert [p.name for p in full.iterdir()] == ["keep.txt"]


def test_pretrain_replaces_a_previous_base_whole(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The shipped base's own directory is a valid ``--out``: the new base replaces it."""
    out = tmp_path / "base"
    out.mkdir()
    (out / "config.json").write_text("{}")
    args = ["pretrain", "--series", "8", "--epochs", "1", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert (out / "config.json").read_text() != "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["base"]  # no temp directory left


def test_no_arguments_prints_the_help(capsys) -> None:  # type: ignore[no-untyped-def]
    assert run([]) == 2
    assert "Usage" in capsys.readouterr().out


def test_solve_json_is_strict_json_when_the_optimum_is_a_loss(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Shares of a negative optimum are not numbers: JSON gets null, never a bare NaN."""
    import json

    config = tmp_path / "loss.toml"
    config.write_text(
        "[campaign]\nhorizon = 4\n[inventory]\ninitial = 160\n"
        "[economics]\nlist_price = 1.0\nunit_cost = 30.0\nholding_cost = 3.0\n"
        "salvage_value = 0.0\n"
    )
    args = ["solve", "--config", str(config), "--json", "--episodes", "20"]
    assert run([*args, "--tune-episodes", "4"]) == 0

    def no_constants(name: str) -> None:
        raise AssertionError(f"not JSON: {name}")

    data = json.loads(capsys.readouterr().out, parse_constant=no_constants)
    assert data["expected_profit"] < 0
    assert data["best_ratio"] is None
    assert all(row["ratio"] is None for row in data["baselines"].values())


def test_fit_passes_its_data_options_to_the_library(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import promogym.run

    seen: dict[str, object] = {}

    def fake_fit_run(*args: object, **kwargs: object) -> None:
        seen.update(kwargs)
        raise promogym.run.PromogymInputError("stop here")

    monkeypatch.setattr(promogym.run, "fit_run", fake_fit_run)
    args = ["fit", "--data", "h.csv", "--out", str(tmp_path / "r"), "--fill-gaps", "missing"]
    result = CliRunner().invoke(app, [*args, "--categorical", "store, brand"])
    assert result.exit_code == 2 and "stop here" in result.output
    assert seen["categorical"] == ("store", "brand") and seen["fill_gaps"] == "missing"
