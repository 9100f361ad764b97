"""The ``promogym`` command: a thin layer over the library API.

Each command parses its options, calls one library function and prints the result. A user
error (:class:`promogym.errors.PromogymInputError`) is printed as one line on stderr and the
command exits with code 2, leaving no partial output behind; so is a usage error (unknown
option, missing or malformed value) when run through the console entry point (:func:`run`).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from promogym.errors import PromogymInputError

try:  # typer 0.29 vendors click
    from typer._click import exceptions as _click_errors
except ImportError:  # pragma: no cover - typer on the click package
    from click import exceptions as _click_errors

ClickException = _click_errors.ClickException
UsageError = _click_errors.UsageError
# click < 8.2 has no NoArgsIsHelpError (it printed the help and exited 0 itself).
NoArgsIsHelpError: Any = getattr(_click_errors, "NoArgsIsHelpError", ())

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


DataOption = Annotated[Path, typer.Option("--data", "-d", help="Sales history (.csv or .parquet).")]
ColumnsOption = Annotated[
    str | None,
    typer.Option(help="Column map CONTRACT=SOURCE,..., e.g. units_sold=move,date=week_start."),
]
FillGapsOption = Annotated[
    str | None,
    typer.Option(
        help="Gap policy: 'missing' (no record, demand unknown), 'zero' (nothing sold) or "
        "'drop' (each item's last run without gaps)."
    ),
]
CategoricalOption = Annotated[
    str | None, typer.Option(help="Extra categorical columns to keep, comma-separated.")
]


def parse_categorical(text: str | None) -> tuple[str, ...] | None:
    """``--categorical store,brand`` -> ``("store", "brand")``; ``None`` when not given."""
    if text is None:
        return None
    return tuple(c.strip() for c in text.split(",") if c.strip())


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Campaign TOML (default: the built-in campaign)."),
]
RunConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Campaign TOML; must be the run's campaign (default: the run's config.toml).",
    ),
]
RefitOption = Annotated[
    bool,
    typer.Option(
        "--refit/--no-refit",
        help="After early stopping, train the forecaster again on every period, the held-out "
        "validation periods included (about twice the fitting time).",
    ),
]
QuantileMapsOption = Annotated[
    bool,
    typer.Option(
        "--quantile-maps/--no-quantile-maps",
        help="After training, remap each forecast quantile level to the share of validation "
        "actuals it held (fixes a mis-shaped tail). The maps rest on the few validation "
        "periods; where series share shocks they can hurt (Dominick's OJ with log_normal).",
    ),
]
LikelihoodOption = Annotated[
    str,
    typer.Option(
        help="The forecaster's distribution: negative_binomial (counts) or log_normal "
        "(log units; multiplicative promotion lifts, fine-tunes its own shipped base).",
    ),
]


@app.command("check-config")
@user_errors
def check_config(config: ConfigOption = None) -> None:
    """Validate a campaign TOML and print it with defaults filled in.

    Example: promogym check-config --config campaign.toml
    """
    from promogym.config import load_config

    loaded = load_config(config)
    if config is None:
        typer.echo(
            "# the built-in campaign; without --config, fit prices each item from its data and "
            "scales the other money terms to the items' median list price (the [economics] "
            "below is the demo shop's, a 20.0 item's)"
        )
    typer.echo(loaded.to_toml())
    for key in ("list_price", "unit_cost"):
        if getattr(loaded.economics, key) is None:
            typer.echo(f"# economics.{key}: from the data (each item's latest {key})")


@app.command("simulate-history")
@user_errors
def simulate_history_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .csv or .parquet file.")],
    items: Annotated[int, typer.Option(min=1, help="Number of items in the market.")] = 8,
    periods: Annotated[int, typer.Option(min=2, help="Periods (days) per item.")] = 730,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the market and the simulation.")] = 0,
    start_date: Annotated[str, typer.Option(help="Date of the first period (ISO).")] = (
        "2024-01-01"
    ),
    config: ConfigOption = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing OUT and its market file.")
    ] = False,
) -> None:
    """Simulate a shop's sales history on the reference market; write the market beside it.

    Writes OUT (the sales-history contract) and OUT.market.json (the market's true parameters,
    for scoring). Example: promogym simulate-history --items 8 --periods 730 --seed 0 --out data.csv
    """
    from promogym.config import load_config
    from promogym.simulate import write_simulated_history

    market = out.with_name(out.name + ".market.json")
    existing = [p for p in (out, market) if p.exists() and not p.is_dir()]
    if existing and not overwrite:
        raise PromogymInputError(
            f"--out {out}: {existing[0]} exists; pass --overwrite to replace it, or pick "
            "another name"
        )

    summary = write_simulated_history(
        out,
        n_items=items,
        periods=periods,
        seed=seed,
        start_date=start_date,
        config=load_config(config),
    )
    typer.echo(summary)


@app.command("check-data")
@user_errors
def check_data(
    data: DataOption,
    columns: ColumnsOption = None,
    fill_gaps: FillGapsOption = None,
    categorical: CategoricalOption = None,
    config: ConfigOption = None,
) -> None:
    """Validate a sales-history file against the contract and print a one-screen summary.

    Options override the data table of the config TOML. Example: promogym check-data --data
    data.csv --columns units_sold=move,date=week_start --fill-gaps missing
    """
    from promogym.config import load_config
    from promogym.data import load_history_with_config

    history = load_history_with_config(
        data,
        load_config(config) if config is not None else None,
        columns=parse_columns(columns),
        fill_gaps=fill_gaps,  # type: ignore[arg-type]  # validated by load_history
        categorical=parse_categorical(categorical),
    )
    from promogym.forecasters import TRANSFORMER_CONTEXT_LENGTH

    typer.echo(history.describe(min_periods=TRANSFORMER_CONTEXT_LENGTH))


@app.command("solve")
@user_errors
def solve_command(
    config: ConfigOption = None,
    item: Annotated[str, typer.Option(help="Item of the default market.")] = "sku-0",
    market_seed: Annotated[int, typer.Option(min=0, help="Seed of the default market.")] = 0,
    episodes: Annotated[
        int, typer.Option(min=2, help="Monte-Carlo campaigns per policy scored.")
    ] = 2000,
    tune_episodes: Annotated[
        int, typer.Option(min=2, help="Campaigns per candidate when tuning baselines.")
    ] = 400,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the random numbers.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Solve a campaign exactly (DP) on the default market and compare tuned baselines.

    Example: promogym solve --item sku-0 --episodes 2000
    """
    from promogym.config import load_config
    from promogym.envs.dp import format_optimum_report, optimum_report
    from promogym.io import dumps

    typer.echo("solving the DP and tuning baselines by simulation ...", err=True)
    report = optimum_report(
        load_config(config),
        item=item,
        market_seed=market_seed,
        episodes=episodes,
        tune_episodes=tune_episodes,
        seed=seed,
    )
    typer.echo(dumps(report) if as_json else format_optimum_report(report))


@app.command("evaluate")
@user_errors
def evaluate_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Report directory to write.")],
    run: Annotated[
        Path | None,
        typer.Option(
            help="Fitted run directory: adds its planner and trained agent (default: "
            "baselines only)."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Campaign TOML (default: the run's config.toml with --run, else the built-in "
            "campaign).",
        ),
    ] = None,
    item: Annotated[
        str | None,
        typer.Option(
            help="Item whose campaign is evaluated (default: sku-0, the demo shop's; with --run, "
            "required unless the run has sku-0 or one item)."
        ),
    ] = None,
    policy: Annotated[
        str, typer.Option(help="Run's agent model: best, last, or PATH (RUN/agents/NAME).")
    ] = "best",
    episodes: Annotated[int, typer.Option(min=2, help="Campaigns per policy.")] = 1000,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the common random numbers.")] = 0,
    market: Annotated[
        str | None,
        typer.Option(
            help="Demand model: reference, learned or both (default: reference; with --run, "
            "both if the run knows its true market, else learned)."
        ),
    ] = None,
    tune_episodes: Annotated[
        int, typer.Option(min=2, help="Campaigns per candidate when tuning baselines.")
    ] = 400,
) -> None:
    """Score policies with common random numbers; write report.html, report.md, report.json.

    Example: promogym evaluate --episodes 1000 --seed 0 --out reports/demo
    """
    from promogym.config import load_config
    from promogym.evaluate import evaluate_campaign

    report = evaluate_campaign(
        out,
        load_config(config) if config is not None else None,
        item=item,
        run=run,
        policy=policy,
        market=market,
        episodes=episodes,
        seed=seed,
        tune_episodes=tune_episodes,
        log=lambda msg: typer.echo(msg, err=True),
    )
    for line in report.verdicts():
        typer.echo(line)
    typer.echo(f"report: {out / 'report.html'}")


@app.command("pretrain")
@user_errors
def pretrain_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the base weights.")],
    seed: Annotated[int, typer.Option(min=0, help="Seed of the corpus and the training.")] = 0,
    series: Annotated[int, typer.Option(min=8, help="Synthetic series in the corpus.")] = 2400,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Training epochs (default: the base's).")
    ] = None,
    threads: Annotated[int, typer.Option(min=1, help="CPU threads (1 = reproducible).")] = 1,
    likelihood: LikelihoodOption = "negative_binomial",
    full_demand: Annotated[
        bool,
        typer.Option(
            "--full-demand/--censored-sales",
            help="Train on the demand the corpus' markets drew (the default and the shipped "
            "bases: no stock-outs in pre-training), or on their sales capped by the stock, "
            "stock-outs as censored periods.",
        ),
    ] = True,
) -> None:
    """Pre-train the transformer base on a synthetic promotional-demand corpus.

    Writes OUT/config.json and OUT/model.safetensors, replacing a previous base there once
    the new one is whole. Example (the shipped base): promogym pretrain --out
    forecasters/weights/base --seed 0
    """
    import torch

    from promogym.forecasters.corpus import pretrain
    from promogym.forecasters.transformer import CONFIG_FILE, WEIGHTS_FILE
    from promogym.io import atomic_directory, check_output_path

    check_output_path(out, directory=True)
    others = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    others = [name for name in others if name not in (CONFIG_FILE, WEIGHTS_FILE)]
    if others:
        raise PromogymInputError(
            f"--out {out}: holds {others[0]!r}"
            + (f" and {len(others) - 1} more files" if len(others) > 1 else "")
            + f", not only a base's {CONFIG_FILE} and {WEIGHTS_FILE}, and the new base replaces "
            "the directory; pick a new or empty one"
        )
    torch.set_num_threads(threads)
    base = pretrain(
        None,
        seed=seed,
        n_series=series,
        epochs=epochs,
        likelihood=likelihood,
        progress=lambda m: typer.echo(m, err=True),
        full_demand=full_demand,
    )
    with atomic_directory(out) as tmp:
        base.save(tmp)
    nll = base.training["best_val_nll"]
    typer.echo(
        f"wrote {out}: best validation NLL {'n/a' if nll is None else f'{nll:.4f}'} after "
        f"{base.training['epochs_run']} epochs, {base.training['seconds']:.0f} s"
    )


@app.command("fit-forecaster")
@user_errors
def fit_forecaster_command(
    data: DataOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the fitted model.")],
    from_scratch: Annotated[
        bool, typer.Option("--from-scratch", help="Train from random weights, not the base.")
    ] = False,
    epochs: Annotated[int | None, typer.Option(min=1, help="Maximum epochs.")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the training.")] = 0,
    likelihood: LikelihoodOption = "negative_binomial",
    refit: RefitOption = True,
    quantile_maps: QuantileMapsOption = True,
    columns: ColumnsOption = None,
    fill_gaps: FillGapsOption = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace a saved forecaster in --out."),
    ] = False,
) -> None:
    """Fit the transformer forecaster (fine-tuning the shipped base) and print its metrics.

    Example: promogym fit-forecaster --data data.csv --out model
    """
    import dataclasses

    from promogym.data import load_history
    from promogym.forecasters.transformer import TransformerConfig, fit_forecaster
    from promogym.io import atomic_directory, check_output_path
    from promogym.run import held_out_rows

    check_output_path(out, directory=True)
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise PromogymInputError(
                f"--out {out}: exists and is not empty; pick another name or pass --overwrite"
            )
        if not (out / "model.safetensors").is_file():
            raise PromogymInputError(
                f"--out {out}: not a saved forecaster (no model.safetensors), so --overwrite "
                "will not replace it; pick another name"
            )
    config = TransformerConfig(
        seed=seed, likelihood=likelihood, refit=refit, recalibrate_quantiles=quantile_maps
    )
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
    history = load_history(data, columns=parse_columns(columns), fill_gaps=fill_gaps)  # type: ignore[arg-type]
    if unused := history.unused_note():
        typer.echo(unused, err=True)
    model = fit_forecaster(
        history, config, from_scratch=from_scratch, progress=lambda m: typer.echo(m, err=True)
    )
    with atomic_directory(out) as tmp:
        model.save(tmp)
    metrics = ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
        for k, v in model.validation_metrics.items()
    )
    typer.echo(f"wrote {out}: validation {metrics}")
    rows = held_out_rows([model], history)
    if rows is not None:
        from promogym.response import format_response, response_bins

        typer.echo(format_response(response_bins(rows)))


@app.command("fit")
@user_errors
def fit_command(
    data: DataOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to create.")],
    config: ConfigOption = None,
    columns: ColumnsOption = None,
    fill_gaps: FillGapsOption = None,
    categorical: CategoricalOption = None,
    from_scratch: Annotated[
        bool, typer.Option("--from-scratch", help="Train the forecaster from random weights.")
    ] = False,
    epochs: Annotated[int | None, typer.Option(min=1, help="Maximum forecaster epochs.")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the forecaster training.")] = 0,
    seeds: Annotated[
        int,
        typer.Option(
            min=1,
            help="Fit this many forecasters (seeds SEED, SEED+1, ...) and simulate with their "
            "average: a more faithful price response at that many times the cost.",
        ),
    ] = 1,
    likelihood: LikelihoodOption = "negative_binomial",
    refit: RefitOption = True,
    quantile_maps: QuantileMapsOption = True,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing run directory.")
    ] = False,
) -> None:
    """Fit the forecaster on a sales history and write a run directory.

    Without --config, the built-in campaign with each item's list price and unit cost taken
    from the data, and its money terms (holding, order and lost-sale costs, salvage value)
    scaled to the items' median list price. Writes OUT/config.toml, run.json, history.parquet, forecaster/ (and market.json when
    DATA.market.json exists). Example: promogym fit --data history.csv --config campaign.toml
    --out runs/shop
    """
    from promogym.forecasters.transformer import TransformerConfig
    from promogym.run import fit_run

    run = fit_run(
        data,
        out,
        config,
        columns=parse_columns(columns) or None,
        fill_gaps=fill_gaps,
        categorical=parse_categorical(categorical),
        from_scratch=from_scratch,
        epochs=epochs,
        seed=seed,
        forecaster_seeds=seeds,
        forecaster_config=TransformerConfig(
            seed=seed, likelihood=likelihood, refit=refit, recalibrate_quantiles=quantile_maps
        ),
        overwrite=overwrite,
        progress=lambda m: typer.echo(m, err=True),
        show_response=False,
    )
    metrics = run.info["forecaster"]["validation_metrics"]
    shown = ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
    )
    which = f"the mean of its {seeds} seeds' validation" if seeds > 1 else "validation"
    typer.echo(f"run {out}: forecaster {which} {shown}")
    if bins := run.price_response():
        from promogym.response import format_response

        typer.echo(format_response(bins))  # on stdout: the answer fit gives


@app.command("train")
@user_errors
def train_command(
    run: Annotated[Path, typer.Option("--run", "-r", help="Run directory (promogym fit).")],
    algo: Annotated[str, typer.Option(help="ppo, maskable-ppo or dqn.")] = "ppo",
    timesteps: Annotated[int, typer.Option(min=1, help="Total environment steps.")] = 3_000_000,
    n_envs: Annotated[int, typer.Option(min=1, help="Campaigns simulated in parallel.")] = 256,
    seed: Annotated[
        int, typer.Option(min=0, help="Seed of the env, the model and evaluations.")
    ] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run from its checkpoint.")
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace a trained agent of the same name."),
    ] = False,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Hyper-parameter override KEY=VALUE (repeatable)."),
    ] = None,
    hparams: Annotated[
        Path | None, typer.Option(help="TOML file of hyper-parameter overrides.")
    ] = None,
    demand: Annotated[
        str, typer.Option(help="learned (the run's forecaster) or reference (market.json).")
    ] = "learned",
    eval_episodes: Annotated[int, typer.Option(min=1, help="Campaigns per evaluation.")] = 64,
    threads: Annotated[int, typer.Option(min=1, help="CPU threads for torch.")] = 2,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train an SB3 agent in the run's learned simulator; writes RUN/agents/ALGO/.

    Defaults per algorithm: see `python -m pydoc promogym.agents.hparams`. Example: promogym
    train --run runs/shop --algo ppo --timesteps 200000 --n-envs 256 --seed 0 --set
    learning_rate=1e-4
    """
    import torch

    from promogym.agents.hparams import load_hparams_file, parse_set
    from promogym.agents.train import train_agent

    torch.set_num_threads(threads)
    overrides = load_hparams_file(hparams, algo) if hparams is not None else {}
    overrides.update(parse_set(set_ or []))
    result = train_agent(
        run,
        algo,
        timesteps=timesteps,
        n_envs=n_envs,
        seed=seed,
        device=device,
        resume=resume,
        overwrite=overwrite,
        hparams=overrides,
        demand=demand,
        eval_episodes=eval_episodes,
        progress_bar=progress,
        log=lambda m: typer.echo(m, err=True),
    )
    best = result.best_mean_reward
    typer.echo(
        f"agent {result.directory}: {result.timesteps:,} timesteps in {result.seconds:.0f} s, "
        f"best held-out mean profit {best:.2f}"
        if best is not None
        else f"agent {result.directory}: {result.timesteps:,} timesteps"
    )


@app.command("recommend")
@user_errors
def recommend_command(
    run: Annotated[Path, typer.Option("--run", "-r", help="Fitted run directory.")],
    history: Annotated[Path, typer.Option(help="Latest sales history (.csv or .parquet).")],
    item: Annotated[str, typer.Option(help="Item to recommend for.")],
    inventory: Annotated[int, typer.Option(help="Units on hand now.")],
    pipeline: Annotated[
        str, typer.Option(help="Units arriving in 1, 2, ... periods, comma-separated.")
    ] = "",
    day: Annotated[
        int | None, typer.Option(help="Index of the next period in the campaign.")
    ] = None,
    agent: Annotated[
        str | None,
        typer.Option(
            help="planner (default: exact DP over the learned simulator) or a trained agent "
            "(ppo, maskable-ppo, dqn)."
        ),
    ] = None,
    config: RunConfigOption = None,
    columns: ColumnsOption = None,
    fill_gaps: FillGapsOption = None,
    episodes: Annotated[int, typer.Option(min=2, help="Simulated campaigns.")] = 500,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the simulations.")] = 0,
    baselines: Annotated[bool, typer.Option(help="Also score the baseline rules.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Recommend the next period's discount and order for one item.

    Example: promogym recommend --run runs/shop --history latest.csv --item sku-1
    --inventory 60 --pipeline 40,0 --json
    """
    from promogym.config import load_config
    from promogym.io import dumps
    from promogym.run import load_run

    try:
        pipe = [int(p) for p in pipeline.split(",") if p.strip()]
    except ValueError:
        raise PromogymInputError(
            f"--pipeline {pipeline!r}: give whole numbers separated by commas, e.g. 40,0"
        ) from None
    rec = load_run(run).recommend(
        history,
        item,
        inventory,
        pipe,
        day,
        agent=agent,
        config=load_config(config) if config is not None else None,
        episodes=episodes,
        seed=seed,
        baselines=baselines,
        columns=parse_columns(columns) or None,
        fill_gaps=fill_gaps,
    )
    typer.echo(dumps(rec.to_dict()) if as_json else rec.format())


@app.command("demo")
@user_errors
def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("demo-out"),
    timesteps: Annotated[int, typer.Option(min=1, help="Agent training steps.")] = 1_000_000,
    algo: Annotated[str, typer.Option(help="ppo, maskable-ppo or dqn.")] = "ppo",
    seed: Annotated[int, typer.Option(min=0, help="Seed of everything.")] = 0,
    threads: Annotated[int, typer.Option(min=1, help="CPU threads for torch.")] = 2,
) -> None:
    """Simulate a shop, fit, train, evaluate against baselines and the optimum, recommend.

    Example: promogym demo --out demo-out
    """
    import torch

    from promogym.agents.demo import run_demo

    torch.set_num_threads(threads)
    run_demo(out, timesteps=timesteps, algo=algo, seed=seed, log=lambda m: typer.echo(m))


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return its exit code.

    A usage error (unknown option or command, missing or malformed value) is one line on
    stderr naming the command and where its help is, exit code 2, like every other user
    error; click's own format spreads it over a usage line, a hint and a framed box.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = app(args=args, prog_name="promogym", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        # Its message is the help; typer's rich formatter prints it while building it instead.
        if exc.format_message():
            typer.echo(exc.format_message())
        return 2
    except UsageError as exc:
        if exc.ctx is not None:
            command = exc.ctx.command_path
        else:  # an option's missing value is found before the command's context exists
            names = {
                c.name or c.callback.__name__.replace("_", "-")
                for c in app.registered_commands
                if c.callback
            }
            command = f"promogym {args[0]}" if args and args[0] in names else "promogym"
        message = " ".join(exc.format_message().split()).rstrip(".")
        typer.echo(f"error: {command}: {message}; see '{command} --help'", err=True)
        return exc.exit_code
    except ClickException as exc:
        typer.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
        return exc.exit_code
    except typer.Abort:
        typer.echo("Aborted!", err=True)
        return 1
    return result if isinstance(result, int) else 0


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(run())


if __name__ == "__main__":  # pragma: no cover
    main()
