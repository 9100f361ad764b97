"""Run directories and the recommendation API: ``fit_run``, ``load_run``, ``Run.recommend``.

A run directory ``runs/NAME/`` holds everything one shop's model needs:

=====================  =====================================================================
path                   content
=====================  =====================================================================
``config.toml``        the campaign config (:meth:`CampaignConfig.save`)
``run.json``           data fingerprint, source, frequency, items, created-at, versions,
                       seeds, forecaster validation metrics, the simulator's price response
                       on the held-out periods (:func:`price_response_check`)
``history.parquet``    the validated training history (canonical frame)
``forecaster/``        the fitted forecaster (:meth:`TransformerForecaster.save`, or
                       :meth:`EnsembleForecaster.save` of several seeds: ``fit --seeds``)
``market.json``        optional: the true market when the history was simulated (scoring)
``agents/NAME/``       trained agents (:mod:`promogym.agents.train`)
=====================  =====================================================================

Besides the trained agents, every run has the ``planner`` (:data:`PLANNER`): the exact
dynamic-programming optimum of the learned simulator's demand, computed when asked
(:mod:`promogym.agents.planner`).

:func:`fit_run` builds the directory in a temporary sibling and renames it into place, so a
failure leaves nothing behind. :func:`load_run` opens it; :meth:`Run.recommend` answers
"what should the next period of the campaign be?" from the shop's latest history:

>>> import promogym  # doctest: +SKIP
>>> run = promogym.load_run("runs/demo")  # doctest: +SKIP
>>> rec = run.recommend(history_df, item_id="sku-1", inventory=60, pipeline=[40, 0])  # doctest: +SKIP
>>> rec.discount, rec.order_quantity, rec.expected_profit, rec.profit_interval  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import math
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from promogym.config import CampaignConfig, load_config
from promogym.errors import PromogymInputError
from promogym.response import (
    ResponseBin,
    ResponseRows,
    average_rows,
    caution,
    evidence,
    response_bins,
    response_summary,
    with_stock,
)

if TYPE_CHECKING:
    import torch

    from promogym.data import SalesHistory
    from promogym.envs.core import CampaignParams, CampaignState
    from promogym.envs.forecaster_demand import ForecasterDemand
    from promogym.envs.market import ReferenceMarket
    from promogym.envs.rollout import Policy
    from promogym.forecasters.ensemble import EnsembleForecaster
    from promogym.forecasters.transformer import TransformerConfig, TransformerForecaster

RUN_FORMAT = "promogym-run/1"
INVENTORY_SCALE_PERIODS = 13
"""Recent periods whose median sales :func:`_check_inventory_scale` compares with capacity."""
EXTRAPOLATION_MARGIN = 0.025
"""A recommended discount this far beyond the item's deepest in the history gets a warning;
periods within this distance of it count as its evidence (:data:`THIN_EVIDENCE_PERIODS`)."""
THIN_EVIDENCE_PERIODS = 5
"""A recommended sale depth with fewer of the item's recorded periods within
:data:`EXTRAPOLATION_MARGIN` of it whose demand was seen (not sold out) gets a warning: the
simulator's response there rests on other depths and items. It counts periods, not separate
sales: one 5-day sale on a daily shop is enough, where a weekly shop needs five sale weeks."""
VERSION_PACKAGES = (
    "promogym",
    "torch",
    "numpy",
    "pandas",
    "gymnasium",
    "stable-baselines3",
    "sb3-contrib",
    "transformers",
)
AGENT_PREFERENCE = ("maskable-ppo", "ppo", "dqn")
PLANNER = "planner"
"""Name of the built-in decision maker of every run: the exact DP over the learned
simulator's demand (:mod:`promogym.agents.planner`); it needs no training and is the
default of :meth:`Run.recommend`."""


def package_versions(packages: Sequence[str] = VERSION_PACKAGES) -> dict[str, str]:
    """Python and the versions of ``packages`` (default: those a run depends on).

    A package that is not installed is reported as ``"not installed"``.
    """
    out = {"python": sys.version.split()[0]}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# ---- fit ------------------------------------------------------------------------------------
def mean_metrics(metrics: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Metric by metric mean of several fits' validation metrics (one fit: its own).

    >>> mean_metrics([{"mape": 0.4, "n_periods": 10}, {"mape": 0.6, "n_periods": 10}])
    {'mape': 0.5, 'n_periods': 10}
    """
    if len(metrics) == 1:
        return dict(metrics[0])
    out = {}
    for key, first in metrics[0].items():
        values = [m[key] for m in metrics if key in m]
        mean = sum(values) / len(values)
        out[key] = type(first)(mean) if isinstance(first, int) else mean
    return out


def fit_run(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: CampaignConfig | str | os.PathLike[str] | None = None,
    *,
    columns: Mapping[str, str] | None = None,
    fill_gaps: str | None = None,
    categorical: Sequence[str] | None = None,
    from_scratch: bool = False,
    epochs: int | None = None,
    seed: int | None = None,
    forecaster_seeds: int = 1,
    forecaster_config: TransformerConfig | None = None,
    market: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
    show_response: bool = True,
) -> Run:
    """Validate ``data``, fit the forecaster and write the run directory ``out``.

    Args:
        data: sales history (.csv or .parquet).
        out: run directory to create (an existing one is an error unless ``overwrite``).
        config: campaign config, or a path to its TOML (default: the built-in campaign with
            each item's list price and unit cost from the data and its money terms scaled to
            the items' prices, :meth:`~promogym.config.CampaignConfig.scaled_to_prices`).
        columns, fill_gaps, categorical: as for :func:`promogym.data.load_history_with_config`;
            the run's ``config.toml`` keeps them in its ``[data]`` section, so ``recommend``
            reads a newer history of the same layout the same way.
        from_scratch: train the forecaster from random weights instead of the shipped base.
        epochs: maximum forecaster epochs (default: the forecaster config's).
        seed: forecaster seed (default: ``forecaster_config.seed``, else 0); given, it
            replaces ``forecaster_config.seed``.
        forecaster_seeds: fit this many forecasters (seeds ``seed``, ``seed + 1``, ...) and
            simulate with their :class:`~promogym.forecasters.ensemble.EnsembleForecaster`
            (equal weights): it averages out each fit's item-level errors in the price
            response (held-out market: 70% of item x discount lifts within +-10% for three
            seeds, 63% for one), at that many times the fitting and simulation cost.
        forecaster_config: full forecaster config (tests pass tiny ones).
        market: the true market's JSON (default: ``<data>.market.json`` if it exists, as
            written by ``promogym simulate-history``); copied to ``market.json``.
        overwrite: replace an existing run directory (only once the new one is complete);
            a non-empty directory that is not a run is never replaced.
        progress: ``callable(str)`` for status lines, warnings and, last (with
            ``show_response``), the held-out price-response check
            (:func:`promogym.response.format_response`; the CLI prints it on stdout itself).
    """

    from promogym.data import load_history_with_config
    from promogym.forecasters.ensemble import EnsembleForecaster
    from promogym.forecasters.transformer import TransformerConfig, fit_forecaster
    from promogym.io import atomic_directory, atomic_write_text, check_output_path

    say = progress or (lambda _msg: None)
    out = Path(out)
    check_output_path(out, directory=True)
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise PromogymInputError(
                f"--out {out}: the run directory already exists; pick another name, delete it "
                "or pass --overwrite"
            )
        if not (out / "run.json").is_file():
            raise PromogymInputError(
                f"--out {out}: not a run directory (no run.json), so --overwrite will not "
                "replace it; pick another name"
            )
    built_in = config is None
    if config is None:
        config = CampaignConfig()  # priced from the data below, once it is read
    elif not isinstance(config, CampaignConfig):
        config = load_config(config)
    # The run remembers how its history was read (column map, gap policy, categorical
    # columns), so a newer history of the same layout needs no options in recommend.
    section = config.data.merged(columns, fill_gaps, categorical)
    config = dataclasses.replace(config, data=section)
    history = load_history_with_config(data, config)
    prices, costs = history.latest("list_price"), history.latest("unit_cost")
    if built_in:
        demo = config
        config = demo.scaled_to_prices(prices, costs)
        if config.economics != demo.priced_from_data().economics:
            say(_scaled_note(config, demo, prices))
    if unused := history.unused_note():  # as check-data says
        say(unused)
    from promogym.envs.core import CampaignParams

    # Before any fitting: every item needs a list price and a unit cost (config or data).
    CampaignParams.from_config(
        config, item_list_price=prices, item_unit_cost=costs, item_ids=history.item_ids
    )
    if note := _check_config_prices(config, history):
        say(f"warning: {note}")
    if note := _check_inventory_scale(config, history):
        say(f"warning: {note}")
    market_path = Path(market) if market is not None else _market_beside(Path(data))
    if market is not None and not market_path.is_file():
        raise PromogymInputError(f"--market {market_path}: file not found")
    true_market = _read_market(market_path, history.freq, history.item_ids)  # fail early
    fc_config = forecaster_config or TransformerConfig()
    if seed is not None:
        fc_config = dataclasses.replace(fc_config, seed=seed)
    if epochs is not None:
        fc_config = dataclasses.replace(fc_config, epochs=epochs)
    if forecaster_seeds < 1:
        raise PromogymInputError(f"forecaster_seeds (--seeds) must be >= 1, got {forecaster_seeds}")
    members = []
    for k in range(forecaster_seeds):
        member_config = dataclasses.replace(fc_config, seed=fc_config.seed + k)
        which = f" (seed {member_config.seed}, {k + 1}/{forecaster_seeds})" * (forecaster_seeds > 1)
        say(
            f"fitting the forecaster{which} on {history.source} ({len(history.item_ids)} items) ..."
        )
        members.append(
            fit_forecaster(history, member_config, from_scratch=from_scratch, progress=say)
        )
    forecaster = members[0] if forecaster_seeds == 1 else EnsembleForecaster(members)
    short = _short_items(history, members[0])
    if short:
        say(f"warning: {short}")
    response = price_response_check(members, history, true_market)

    with atomic_directory(out) as tmp:  # replaces a previous run only once this one is whole
        config.save(tmp / "config.toml")
        history.frame.to_parquet(tmp / "history.parquet", index=False)
        forecaster.save(tmp / "forecaster")
        if market_path is not None and market_path.is_file():
            shutil.copyfile(market_path, tmp / "market.json")
        summary = history.summary()
        info = {
            "format": RUN_FORMAT,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "data": {
                "source": str(Path(data).resolve()),
                "fingerprint": summary["fingerprint"],
                "freq": history.freq,
                "items": history.item_ids,
                "start": summary["start"],
                "end": summary["end"],
                "rows": summary["rows"],
                "categorical": list(history.categorical),
            },
            "forecaster": {
                "kind": forecaster.name,
                "from_scratch": from_scratch,
                "config": members[0].config.to_dict(),
                # With several seeds: the members' mean (the ensemble has no validation run).
                "validation_metrics": mean_metrics([m.validation_metrics for m in members]),
                "training": {k: v for k, v in members[0].training.items() if k != "losses"},
                **(
                    {
                        "seeds": [m.config.seed for m in members],
                        "members_validation_metrics": [m.validation_metrics for m in members],
                    }
                    if forecaster_seeds > 1
                    else {}
                ),
            },
            "price_response": response,
            "market": "market.json" if (tmp / "market.json").exists() else None,
            "seeds": {"forecaster": fc_config.seed},
            "packages": package_versions(),
        }
        atomic_write_text(tmp / "run.json", json.dumps(info, indent=2, default=str) + "\n")
    say(f"wrote {out}")
    run = load_run(out)
    if show_response and (bins := run.price_response()):
        from promogym.response import format_response

        say(format_response(bins))  # the held-out check, with its caution if it rejects
    return run


def unknown_item(item: str | None, vocab: Sequence[str]) -> PromogymInputError:
    """The one-line error for ``--item`` missing or not among the run's items ``vocab``.

    >>> str(unknown_item(None, [f"s{i}" for i in range(9)]))
    "--item is required: the run knows 9 items: 's0', 's1', 's2', 's3', 's4', ..."
    """
    names = ", ".join(repr(v) for v in vocab[:5]) + (", ..." if len(vocab) > 5 else "")
    known = f"the run knows {len(vocab)} item{'s' if len(vocab) != 1 else ''}: {names}"
    if item is None:
        return PromogymInputError(f"--item is required: {known}")
    return PromogymInputError(f"--item: unknown item {item!r}; {known}")


def held_out_rows(
    members: Sequence[TransformerForecaster],
    history: SalesHistory,
    market: ReferenceMarket | None = None,
) -> ResponseRows | None:
    """The members' held-out periods (:attr:`TransformerForecaster.held_out_response`) as
    their equal-weight ensemble simulates them (:func:`promogym.response.average_rows`), with
    each period's stock in ``history`` (:func:`promogym.response.with_stock`); with the true
    ``market`` of a simulated ``history``, its means too. ``None`` if a member held out no
    observed period."""
    rows = [m.held_out_response for m in members]
    if any(r is None for r in rows):
        return None
    first: ResponseRows = rows[0]  # type: ignore[assignment]
    stock = _at_periods(history.frame, history.frame["stock"], first)
    average = average_rows([with_stock(r, stock) for r in rows], [1.0] * len(rows))  # type: ignore[arg-type]
    if market is not None:
        average = with_true_means(average, market, history)
    return average


def price_response_check(
    members: Sequence[TransformerForecaster],
    history: SalesHistory,
    market: ReferenceMarket | None = None,
) -> dict[str, Any] | None:
    """The simulator's price response on the held-out periods of the fit
    (:func:`held_out_rows`): :mod:`promogym.response`'s bins and summary, JSON-ready.
    ``None`` if a member held out no observed period."""
    average = held_out_rows(members, history, market)
    if average is None:
        return None
    bins = response_bins(average)
    return {
        "bins": [b.to_dict() for b in bins],
        "summary": response_summary(bins),
        "periods": "the last validation_periods of each item, predicted one step ahead by the "
        + (
            "network before its refit (which then trains on them too)"
            if members[0].config.refit
            else "network, which never trained on them (no refit)"
        ),
    }


def with_true_means(
    rows: ResponseRows, market: ReferenceMarket, history: SalesHistory
) -> ResponseRows:
    """``rows`` with ``market``'s expected units at each period's discount and at none: same
    item, day and run of sale periods (``discount > 0``) right before it in ``history``."""
    import torch

    from promogym.envs.market import MAX_STREAK

    frame = history.frame.sort_values(["item_id", "date"])
    on_sale = (frame["discount"] > 0).astype(np.int64)
    run = on_sale.groupby([frame["item_id"], (on_sale == 0).cumsum()]).cumsum()
    before = run.groupby(frame["item_id"]).shift(1, fill_value=0)
    streak = _at_periods(frame, before, rows)
    item = torch.tensor([market.item_index(i) for i in rows.item])
    day = torch.tensor(rows.day)
    streak_t = torch.as_tensor(np.nan_to_num(streak).astype(np.int64)).clamp(max=MAX_STREAK)
    mean = [
        market.mean_demand(item, day, torch.tensor(d), streak_t).numpy()
        for d in (rows.discount, np.zeros_like(rows.discount))
    ]
    return dataclasses.replace(rows, true_mean=mean[0], true_mean_regular=mean[1])


def _at_periods(frame: pd.DataFrame, values: pd.Series, rows: ResponseRows) -> np.ndarray:
    """``values`` (aligned with ``frame``'s rows) at each of ``rows``' periods, matched by
    item and calendar day (NaN where the history has no such row), float64."""
    from promogym.envs.market import day_numbers

    by_period = pd.Series(
        values.to_numpy(np.float64),
        index=pd.MultiIndex.from_arrays([frame["item_id"], day_numbers(frame["date"])]),
    )
    return by_period.reindex(pd.MultiIndex.from_arrays([rows.item, rows.day])).to_numpy()


def _read_market(path: Path | None, freq: str, item_ids: Sequence[str]) -> ReferenceMarket | None:
    """The true market in ``path`` (a simulated history's ``market.json``), if any, with its
    items in ``item_ids`` order (the run's vocabulary, which sorts ids as text: ``sku-10``
    before ``sku-2``), so an item index means the same item in the market and the run."""
    from promogym.envs.market import MarketParams, ReferenceMarket

    if path is None or not path.is_file():
        return None
    try:
        params = MarketParams.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, TypeError, KeyError) as err:  # JSONDecodeError is a ValueError
        raise PromogymInputError(
            f"{path}: not a market file written by promogym simulate-history ({err}); remove it "
            "or pass the right one with --market"
        ) from err
    missing = [i for i in item_ids if i not in params.item_ids]
    if missing:
        raise PromogymInputError(
            f"{path}: no item {missing[0]!r} ({len(missing)} of the history's {len(item_ids)} "
            "items are missing), so it is not this history's market; remove it or pass the "
            "right one with --market"
        )
    return ReferenceMarket(params.subset([params.item_ids.index(i) for i in item_ids]), freq)


PRICE_MISMATCH = 0.10
"""How far (relative) a config's ``[economics]`` price may be from an item's own before
:func:`fit_run` refuses it (list price) or warns (unit cost)."""


WIDE_PRICE_RANGE = 3.0
"""Highest / lowest list price above which the scaled built-in campaign's note says one set of
money terms serves items of very different prices."""


def _scaled_note(config: CampaignConfig, demo: CampaignConfig, prices: np.ndarray) -> str:
    """What :meth:`CampaignConfig.scaled_to_prices` did to ``demo``'s money terms, for items
    of latest list prices ``prices``."""
    eco, base = config.economics, demo.economics
    median, low, high = (float(f(prices)) for f in (np.nanmedian, np.nanmin, np.nanmax))
    scale = demo.price_scale(prices)
    capped = eco.salvage_value < base.salvage_value * scale - 1e-12
    spread = (
        f"; the items' list prices run from {low:.4g} to {high:.4g}, and one set of money "
        "terms serves them all"
        if high > WIDE_PRICE_RANGE * low
        else ""
    )
    return (
        f"campaign: the built-in one (a {base.list_price:g} item's), its money terms x"
        f"{scale:.4g} for the items' median list price {median:.4g}: holding cost "
        f"{eco.holding_cost:.4g}, order fixed cost {eco.order_fixed_cost:.4g}, lost-sale "
        f"penalty {eco.lost_sale_penalty:.4g}, salvage value {eco.salvage_value:.4g} per unit"
        + (
            f" (capped at {base.salvage_value / base.unit_cost:.2g} of the cheapest unit cost)"
            if capped
            else ""
        )
        + spread
        + "; set them in a campaign TOML's [economics] (--config) if they are not your shop's"
    )


def _check_config_prices(config: CampaignConfig, history: SalesHistory) -> str | None:
    """Refuse a config ``list_price`` more than :data:`PRICE_MISMATCH` away from an item's
    latest list price in ``history``: the simulator learned demand at the history's prices,
    so its units at the config's price would be wrong (the config's price is every item's).
    Returns a warning for a ``unit_cost`` that far from the history's, if the history has
    one (a cost may have changed since; the config's wins)."""
    eco = config.economics

    ids = np.asarray(history.item_ids, dtype=object)

    def far(value: float | None, column: str) -> tuple[np.ndarray, np.ndarray]:
        """The items' latest ``column`` and which are more than the mismatch off ``value``."""
        data = history.latest(column)
        if value is None:
            return np.zeros(len(data), dtype=bool), data
        return np.isfinite(data) & (np.abs(data - value) > PRICE_MISMATCH * np.abs(data)), data

    def listing(off: np.ndarray, data: np.ndarray) -> str:
        shown = ", ".join(f"{i} {v:g}" for i, v in zip(ids[off][:3], data[off][:3], strict=True))
        more = ", ..." if off.sum() > 3 else ""
        return f"{int(off.sum())} of {len(ids)} items ({shown}{more})"

    off, data = far(eco.list_price, "list_price")
    if off.any():
        raise PromogymInputError(
            f"[economics] list_price {eco.list_price:g} is more than {PRICE_MISMATCH:.0%} off "
            f"the latest list price in {history.source} of {listing(off, data)}; the "
            "simulator learned demand at the history's prices, so leave list_price out of "
            "[economics] to price each item from its own data"
        )
    off, data = far(eco.unit_cost, "unit_cost")
    if off.any():
        return (
            f"[economics] unit_cost {eco.unit_cost:g} replaces the history's unit cost of "
            f"{listing(off, data)}; leave unit_cost out of [economics] to use each item's own"
        )
    return None


def _check_inventory_scale(config: CampaignConfig, history: SalesHistory) -> str | None:
    """A warning naming the items whose median sales per period (over the history's last
    :data:`INVENTORY_SCALE_PERIODS` periods, those with stock) exceed the campaign's shelf
    capacity: the
    ``[inventory]`` sizes are then not the shop's (the built-in campaign's, 60 on hand and
    orders of 40 / 80 for a capacity of 160, copied for a shop selling thousands a week),
    and every campaign would lose most of its sales.

    >>> from promogym.config import CampaignConfig
    >>> from promogym.data import history_from_frame
    >>> frame = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=3), "item_id": "a",
    ...                       "units_sold": [900, 1000, 1100], "price": 2.0})
    >>> _check_inventory_scale(CampaignConfig(), history_from_frame(frame))[:68]
    "1 of 1 items sell more per period than [inventory] capacity 160 ('a'"
    """
    from promogym.data import unrecorded

    frame = history.frame.groupby("item_id").tail(INVENTORY_SCALE_PERIODS)
    frame = frame[~unrecorded(frame)]
    median = frame.groupby("item_id")["units_sold"].median()
    over = median[median > config.inventory.capacity].sort_values(ascending=False)
    if over.empty:
        return None
    shown = ", ".join(f"{item!r} median {v:g}" for item, v in over.head(3).items())
    more = ", ..." if len(over) > 3 else ""
    return (
        f"{len(over)} of {len(median)} items sell more per period than [inventory] capacity "
        f"{config.inventory.capacity} ({shown}{more}); set [inventory] initial, "
        "order_quantities and capacity to the shop's sizes, or every campaign loses most "
        "of its sales"
    )


def _short_items(history: SalesHistory, forecaster: TransformerForecaster) -> str | None:
    """A warning naming the items too short for the forecaster to train on, if any: fewer
    periods than one training window (context plus forecast periods, plus the held-out
    periods without a refit). It forecasts them as a new item, from their own recent sales;
    those with fewer periods than its context cannot start a campaign in ``evaluate`` and
    ``recommend`` yet."""
    cfg = forecaster.config
    context = forecaster.context_length  # fine-tuned: the base's
    window = context + cfg.prediction_length + (0 if cfg.refit else cfg.validation_periods or 0)
    short = history.short_items(window)
    if not len(short):
        return None
    names = ", ".join(f"{item!r} ({n})" for item, n in short.head(5).items())
    more = f" and {len(short) - 5} more" if len(short) > 5 else ""
    dropped = " after fill_gaps=drop" if history.dropped_rows else ""
    unplannable = int((short < context).sum())
    text = (
        f"{len(short)} item{'s' * (len(short) != 1)} with fewer than {window} periods{dropped}: "
        f"{names}{more}; the forecaster trains on windows of {window} periods, so it did not "
        "learn these items and forecasts them as new ones from their recent sales"
    )
    if unplannable:
        text += (
            f"; {unplannable} of them {'has' if unplannable == 1 else 'have'} fewer than "
            f"{context}, which evaluate and recommend need to start an item's campaign"
        )
    return text


def _market_beside(data: Path) -> Path | None:
    path = data.with_name(data.name + ".market.json")
    return path if path.is_file() else None


# ---- load -----------------------------------------------------------------------------------
def load_run(path: str | os.PathLike[str]) -> Run:
    """Open a run directory written by :func:`fit_run` (``promogym fit``)."""
    path = Path(path)
    if not path.is_dir():
        raise PromogymInputError(
            f"--run {path}: no such run directory; create it with promogym fit"
        )
    missing = [
        n
        for n in ("config.toml", "run.json", "history.parquet", "forecaster")
        if not (path / n).exists()
    ]
    if missing:
        raise PromogymInputError(
            f"--run {path}: not a run directory (missing {', '.join(missing)}); create it "
            "with promogym fit"
        )
    try:
        info = json.loads((path / "run.json").read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise PromogymInputError(
            f"{path / 'run.json'}: unreadable ({exc}); re-create the run with promogym fit"
        ) from None
    if not isinstance(info, dict) or info.get("format") != RUN_FORMAT:
        found = info.get("format") if isinstance(info, dict) else None
        raise PromogymInputError(
            f"{path / 'run.json'}: format {found!r} is not {RUN_FORMAT!r}; "
            "re-create the run with promogym fit"
        )
    return Run(path=path, config=load_config(path / "config.toml", saved=True), info=info)


@dataclass
class Recommendation:
    """What to do in the next period of a campaign, and what it is expected to earn.

    Attributes:
        discount: discount for the next period (from the campaign's ladder).
        price: the next period's price, ``list_price * (1 - discount)``.
        list_price: the item's list price the campaign is priced from (the config's, else the
            item's latest in the history given).
        stock_lot: for the planner, the stock step of its DP grid (1: every unit, exact; more
            for a capacity too large for every unit); ``None`` for trained agents.
        order_quantity: units to order now (from the order ladder).
        expected_profit: mean profit over the rest of the campaign under the policy, from
            simulated rollouts in the learned simulator (currency).
        profit_interval: 10th and 90th percentiles of that profit.
        plan: per remaining period, the policy's expected discount, sale probability,
            expected order and expected units sold.
        baselines: expected profit of each baseline policy from the same state, with the
            same random numbers.
        evidence: what the fit's held-out price-response check says about the simulator at
            the recommended discount (:func:`promogym.response.evidence`; empty if the run
            has no check).
        caution: the check's warning when it rejects the simulator's discount response at
            some depth (:func:`promogym.response.caution`; empty otherwise).
    """

    item_id: str
    day: int
    date: str
    discount: float
    order_quantity: int
    expected_profit: float
    profit_interval: tuple[float, float]
    plan: list[dict[str, Any]]
    baselines: dict[str, float]
    agent: str
    episodes: int
    seed: int
    state: dict[str, Any] = field(default_factory=dict)
    list_price: float = math.nan
    stock_lot: int | None = None
    evidence: str = ""
    caution: str = ""

    @property
    def price(self) -> float:
        return self.list_price * (1.0 - self.discount)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping of every field."""
        return {
            "item_id": self.item_id,
            "day": self.day,
            "date": self.date,
            "discount": self.discount,
            "price": self.price,
            "list_price": self.list_price,
            "stock_lot": self.stock_lot,
            "evidence": self.evidence,
            "caution": self.caution,
            "order_quantity": self.order_quantity,
            "expected_profit": self.expected_profit,
            "profit_interval": list(self.profit_interval),
            "plan": self.plan,
            "baselines": self.baselines,
            "agent": self.agent,
            "episodes": self.episodes,
            "seed": self.seed,
            "state": self.state,
        }

    def format(self) -> str:
        """A short human-readable summary."""
        lo, hi = self.profit_interval
        lines = [
            f"{self.item_id}, campaign period {self.day} ({self.date}), agent {self.agent}"
            + (f" (DP over {self.stock_lot}-unit stock lots)" if (self.stock_lot or 1) > 1 else "")
            + ":",
            f"  discount        {self.discount:.0%} (price {self.price:.2f}, list price "
            f"{self.list_price:.2f})",
            f"  order now       {self.order_quantity} units",
            f"  expected profit {self.expected_profit:.2f} (p10 {lo:.2f}, p90 {hi:.2f}) over "
            f"the remaining {len(self.plan)} period{'s' if len(self.plan) != 1 else ''} "
            "(stock on hand and on order counts as paid for)",
        ]
        if self.evidence:
            lines.append(f"  simulator check {self.evidence}")
        if self.caution:
            lines.append(f"  caution         {self.caution}")
        for name, value in sorted(self.baselines.items(), key=lambda kv: -kv[1]):
            lines.append(f"  baseline {name:<22} {value:.2f}")
        return "\n".join(lines)


@dataclass
class Run:
    """An opened run directory (see the module docstring)."""

    path: Path
    config: CampaignConfig
    info: dict[str, Any]

    # ---- contents -----------------------------------------------------------------------
    @functools.cached_property
    def history(self) -> SalesHistory:
        """The validated training history."""
        from promogym.data import load_history

        categorical = tuple(self.info.get("data", {}).get("categorical", ()))
        return load_history(self.path / "history.parquet", categorical=categorical)

    @functools.cached_property
    def forecaster(self) -> TransformerForecaster | EnsembleForecaster:
        """The fitted forecaster (on the GPU where present, else the CPU; its ``one_step``
        takes contexts on any device): a transformer, or the ensemble of several seeds'
        (``fit_run(forecaster_seeds=N)``)."""
        from promogym.forecasters.ensemble import ENSEMBLE_FILE, EnsembleForecaster
        from promogym.forecasters.transformer import TransformerForecaster

        directory = self.path / "forecaster"
        if (directory / ENSEMBLE_FILE).is_file():
            return EnsembleForecaster.load(directory)
        return TransformerForecaster.load(directory)

    def item_vocabulary(self) -> tuple[str, ...]:
        """Item ids in the forecaster's order (``CampaignState.item`` indexes them)."""
        return tuple(self.forecaster.item_ids)

    def list_prices(self, history: SalesHistory | None = None) -> np.ndarray:
        """Each vocabulary item's list price (float64, vocabulary order): the config's
        ``economics.list_price`` when it sets one, else the item's latest list price in
        ``history`` (e.g. the latest history given to :meth:`recommend`), for items it lacks
        in the run's history."""
        return self._economics("list_price", history)

    def unit_costs(self, history: SalesHistory | None = None) -> np.ndarray:
        """As :meth:`list_prices`, for ``unit_cost`` (NaN where no unit cost is known)."""
        return self._economics("unit_cost", history)

    def _economics(self, key: str, history: SalesHistory | None) -> np.ndarray:
        vocab = self.item_vocabulary()
        configured = getattr(self.config.economics, key)
        if configured is not None:
            return np.full(len(vocab), float(configured))
        values = self.history.latest(key, vocab)
        if history is not None:
            latest = history.latest(key, vocab)
            known = np.isin(vocab, history.item_ids) & np.isfinite(latest)
            values[known] = latest[known]
        return values

    def market(self) -> ReferenceMarket | None:
        """The true market the history was simulated from, if the run has ``market.json``,
        its items in :meth:`item_vocabulary` order (a state's item index means the same item
        in both)."""
        freq = self.info.get("data", {}).get("freq", "D")
        return _read_market(self.path / "market.json", freq, self.item_vocabulary())

    def demand_model(self, history: SalesHistory | None = None) -> ForecasterDemand:
        """The learned simulator: the forecaster rolled out from windows of ``history``."""
        from promogym.envs.forecaster_demand import ForecasterDemand

        return ForecasterDemand(
            self.forecaster,
            history if history is not None else self.history,
            item_ids=self.item_vocabulary(),
        )

    def params(
        self, device: str | torch.device = "cpu", history: SalesHistory | None = None
    ) -> CampaignParams:
        """Campaign parameters of the run's config, with :meth:`list_prices` of ``history``."""
        from promogym.envs.core import CampaignParams

        return CampaignParams.from_config(
            self.config,
            item_list_price=self.list_prices(history),
            item_unit_cost=self.unit_costs(history),
            item_ids=self.item_vocabulary(),
            period_days=self.history.period_days,
            device=device,
        )

    # ---- agents -------------------------------------------------------------------------
    def agents(self) -> list[str]:
        """Names of the trained agents (directories with a ``train.json``)."""
        root = self.path / "agents"
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if (p / "train.json").is_file())

    def agent_info(self, name: str) -> dict[str, Any]:
        """The agent's ``train.json`` (for the planner: its name, algo and demand)."""
        if name == PLANNER:
            return {
                "name": PLANNER,
                "algo": PLANNER,
                "demand": "learned",
                "timesteps": 0,
                "hparams": {},
            }
        self._check_agent(name)
        return json.loads((self.path / "agents" / name / "train.json").read_text("utf-8"))

    def learned_agents(self) -> list[str]:
        """The trained agents that learned in the learned simulator (not the true market)."""
        return [n for n in self.agents() if self.agent_info(n).get("demand") == "learned"]

    def default_agent(self) -> str:
        """The agent used when none is named: the only one, else by algorithm preference."""
        names = self.learned_agents()
        if not names:
            raise PromogymInputError(
                f"--run {self.path}: no trained agent; train one with "
                f"promogym train --run {self.path} --algo ppo"
            )
        for algo in AGENT_PREFERENCE:
            if algo in names:
                return algo
        return names[0]

    def _check_agent(self, name: str) -> None:
        if name != PLANNER and not (self.path / "agents" / name / "train.json").is_file():
            raise PromogymInputError(
                f"--agent {name}: no trained agent of that name in {self.path}; "
                f"trained: {self.agents() or 'none'} (and the built-in {PLANNER})"
            )

    def load_model(self, name: str | None = None, which: str = "best") -> Any:
        """The SB3 model of agent ``name`` (``which``: ``best`` or ``last``) on the CPU."""
        from promogym.agents.train import algo_class

        name = name or self.default_agent()
        if name == PLANNER:
            raise PromogymInputError(f"the {PLANNER} has no SB3 model; use Run.policy")
        info = self.agent_info(name)
        if which not in ("best", "last"):
            raise PromogymInputError(f"--policy must be 'best' or 'last', got {which!r}")
        return algo_class(info["algo"]).load(
            self.path / "agents" / name / f"{which}_model.zip", device="cpu"
        )

    def check_agent_config(self, name: str, config: CampaignConfig | None = None) -> None:
        """Refuse an agent trained for another campaign config than ``config`` (default the run's)."""
        from promogym.agents.train import config_digest

        config = config or self.config
        if name == PLANNER:
            if config_digest(config) != config_digest(self.config):
                raise PromogymInputError(
                    f"{self.path} was fitted for another campaign config, and the {PLANNER} "
                    "plans the run's own; fit a run with this config (promogym fit --config)"
                )
            return
        trained = self.agent_info(name).get("config_digest")
        if config_digest(config) != trained or config_digest(self.config) != trained:
            raise PromogymInputError(
                f"agent {name} in {self.path} was trained for another campaign config; "
                f"use that config or retrain with promogym train --run {self.path} "
                f"--algo {self.agent_info(name)['algo']}"
            )

    def policy(
        self,
        name: str | None = None,
        which: str = "best",
        *,
        context: SalesHistory | None = None,
        feature_model: Any = None,
        shared_memory: bool = False,
        device: str = "cpu",
    ) -> Policy:
        """Agent ``name`` as a batched :class:`~promogym.envs.rollout.Policy`.

        Args:
            name: agent name (default :meth:`default_agent`), or :data:`PLANNER` (a
                :class:`~promogym.agents.planner.PlannerPolicy` planning in
                ``feature_model``; ``which``, ``shared_memory`` and ``device`` do not apply).
            which: ``best`` or ``last`` model.
            context: history whose latest periods the agent sees at a campaign's first
                decision (default: the run's history).
            feature_model: demand model behind the expected-demand features (default: the
                learned simulator over ``context``, or the true market for an agent trained
                on it).
            shared_memory: read the simulating demand model's memory (it must be
                ``feature_model``); see :mod:`promogym.agents.policy`.
        """
        from promogym.agents.policy import AgentPolicy
        from promogym.agents.train import EnvSpec, training_history
        from promogym.envs.flash_sale import CampaignBatch
        from promogym.envs.forecaster_demand import HistoryWindows, sale_threshold

        name = name or self.default_agent()
        if name == PLANNER:
            from promogym.agents.planner import PlannerPolicy, longest_sale_runs

            context = context if context is not None else self.history
            return PlannerPolicy(
                feature_model or self.demand_model(context),
                max_sale_run=longest_sale_runs(
                    self.history,
                    self.item_vocabulary(),
                    sale_threshold(self.config.campaign.discounts),
                ),
            )
        info = self.agent_info(name)
        self.check_agent_config(name)
        spec = EnvSpec(**info["env"])
        context = context if context is not None else self.history
        if feature_model is None:
            if spec.demand == "reference":
                from promogym.agents.train import demand_model_for

                feature_model = demand_model_for(self, "reference")
            else:
                feature_model = self.demand_model(context)
        builder = CampaignBatch(
            feature_model,
            self.config,
            n_envs=1,
            history=training_history(self, spec.holdout_periods),
            item_ids=self.item_vocabulary(),
            list_price=self.list_prices(),
            unit_cost=self.unit_costs(),
            recent_periods=spec.recent_periods,
            expected_demand_obs=spec.expected_demand_obs,
            device=device,
        )
        return AgentPolicy(
            self.load_model(name, which),
            builder,
            feature_model,
            context=HistoryWindows(context, self.item_vocabulary()),
            flat=info["algo"] == "dqn",
            masked=info["algo"] == "maskable-ppo",
            shared_memory=shared_memory,
            name=name,
        )

    def price_response(self) -> list[ResponseBin] | None:
        """The fit's held-out price-response check (:func:`price_response_check`), per discount
        bin; ``None`` when the fit held out no observed period."""
        check = self.info.get("price_response")
        return [ResponseBin.from_dict(b) for b in check["bins"]] if check else None

    def provenance(self, name: str | None = None) -> dict[str, Any]:
        """Run description for reports: config, data, forecaster metrics, agent settings."""
        out: dict[str, Any] = {
            "run": str(self.path),
            "config": self.config.to_dict(),
            "data": self.info.get("data", {}),
            "forecaster": self.info.get("forecaster", {}),
        }
        if name is not None or self.learned_agents():
            agent = name or self.default_agent()
            info = self.agent_info(agent)
            out["algorithm"] = {k: info[k] for k in ("name", "algo", "timesteps", "hparams")}
            out["seeds"] = info.get("seeds", {})
        return out

    # ---- recommendation ---------------------------------------------------------------
    def next_campaign(self, item_id: str) -> CampaignState:
        """``item_id``'s state at the start of the next campaign, the one ``evaluate`` and the
        demo score: period 0 right after the item's own last period in the run's history,
        the config's initial stock, an empty pipeline, and the sale streak the history ends
        with (the reference market's dip and fatigue depend on it, as the simulator's memory
        does)."""
        return self.campaign_state(self.history, item_id, self.config.inventory.initial, (), day=0)

    def campaign_state(
        self,
        history: SalesHistory,
        item_id: str,
        inventory: int,
        pipeline: Sequence[int],
        day: int | None = None,
    ) -> CampaignState:
        """The campaign state of ``item_id`` right after ``history`` ends (see :meth:`recommend`)."""
        import torch

        from promogym.envs.core import initial_state
        from promogym.envs.forecaster_demand import (
            is_sale,
            sale_threshold,
            trailing_sale_streak,
        )
        from promogym.envs.market import MAX_STREAK, day_number

        cfg = self.config
        vocab = self.item_vocabulary()
        if item_id not in vocab:
            raise unknown_item(item_id, vocab)
        if history.freq != self.history.freq:
            raise PromogymInputError(
                f"--history {history.source}: {history.freq} data, but the run was fitted on "
                f"{self.history.freq} data; give the history at the run's frequency"
            )
        rows = history.frame[history.frame["item_id"] == item_id]
        need = self.forecaster.context_length
        if len(rows) < need:
            where = (
                f"--history {history.source}"
                if history is not self.history
                else str(history.source)
            )
            raise PromogymInputError(
                f"{where}: item {item_id!r} has {len(rows)} periods, the forecaster needs the "
                f"last {need} to start a campaign; give a longer history"
            )
        if isinstance(inventory, bool) or not isinstance(inventory, int | np.integer):
            raise PromogymInputError(f"--inventory must be a whole number, got {inventory!r}")
        if not 0 <= inventory <= cfg.inventory.capacity:
            raise PromogymInputError(
                f"--inventory {inventory}: must be in 0..{cfg.inventory.capacity} "
                "(inventory.capacity)"
            )
        pipeline = list(pipeline)
        lead = cfg.inventory.lead_time
        if len(pipeline) > lead:
            raise PromogymInputError(
                f"--pipeline {','.join(map(str, pipeline))}: {len(pipeline)} entries but "
                f"inventory.lead_time is {lead}; pipeline[k] = units arriving in k+1 periods"
            )
        if any(
            isinstance(q, bool) or not isinstance(q, int | np.integer) or q < 0 for q in pipeline
        ):
            raise PromogymInputError(f"--pipeline {pipeline}: entries must be whole numbers >= 0")
        if lead and len(pipeline) == lead and pipeline[-1] > 0:
            # An order lands in lead_time periods, so at a decision that slot is still empty.
            which = (
                f"arrivals in 1..{lead - 1} period{'s' if lead > 2 else ''} only (the last of "
                f"{lead} entries 0, or {lead - 1} entr{'ies' if lead > 2 else 'y'})"
                if lead > 1
                else "no pipeline, or 0 (orders arrive the next period)"
            )
            raise PromogymInputError(
                f"--pipeline {','.join(map(str, pipeline))}: {pipeline[-1]} units arriving in "
                f"{lead} period{'s' if lead != 1 else ''} (inventory.lead_time) would be an "
                "order placed this period, "
                f"which is what recommend decides; give {which}"
            )
        if inventory + sum(pipeline) > cfg.inventory.capacity:
            # Orders keep the inventory position (on hand + pipeline) within capacity: the
            # env's masks, the DP and the agents' sales tracking all assume it.
            raise PromogymInputError(
                f"--inventory {inventory} plus --pipeline {sum(pipeline)} units exceed "
                f"inventory.capacity {cfg.inventory.capacity}; the campaign model keeps on-hand "
                "plus ordered stock within capacity: raise inventory.capacity in the config and "
                "fit again"
            )
        last = pd.Timestamp(rows["date"].max())
        period = pd.Timedelta(days=history.period_days)
        next_date = last + period
        start = cfg.campaign.start_date
        explicit = day is not None
        if day is None:
            day = 0
            if start is not None:
                if pd.Timestamp(start) > next_date:
                    raise PromogymInputError(
                        f"--history {history.source}: campaign.start_date {start} is after the "
                        f"next period ({next_date.date()}), so the campaign has not started; "
                        "give the history up to the period before the start, or pass --day 0 "
                        f"to plan a campaign that starts on {next_date.date()}"
                    )
                day = int((next_date - pd.Timestamp(start)) / period)
        if isinstance(day, bool) or not isinstance(day, int | np.integer) or day < 0:
            raise PromogymInputError(f"--day must be an integer >= 0, got {day!r}")
        if day >= cfg.campaign.horizon:
            why = (
                "pass a --day inside it"
                if explicit
                else f"the history's last date {last.date()} is past the campaign's end: pass "
                "--day or update campaign.start_date"
            )
            raise PromogymInputError(
                f"--day {day}: the campaign has {cfg.campaign.horizon} periods (0.."
                f"{cfg.campaign.horizon - 1}); {why}"
            )
        sale_budget = cfg.campaign.sale_budget
        recent = rows.tail(max(day, MAX_STREAK))
        discounts = torch.tensor(recent["discount"].to_numpy(), dtype=torch.float32)
        # On sale: nearer a sale rung of the ladder than 0 (a 1% price move is not a sale).
        threshold = sale_threshold(cfg.campaign.discounts)
        streak = trailing_sale_streak(discounts[-MAX_STREAK:].unsqueeze(0), threshold)
        # The campaign's own past periods: the ``day`` periods before the next one, by date
        # (a gap in the history is a period without a recorded sale, not an earlier row).
        in_campaign = rows["date"] >= next_date - day * period
        sale_used = int(is_sale(rows.loc[in_campaign, "discount"], threshold).sum())
        slots = max(lead, 1)
        pipe = [float(q) for q in pipeline] + [0.0] * (slots - len(pipeline))
        return initial_state(
            self.params(),
            torch.tensor([vocab.index(item_id)]),
            torch.tensor([day_number(next_date)]),
            on_hand=torch.tensor([float(inventory)]),
            pipeline=torch.tensor([pipe]),
            t=torch.tensor([day]),
            streak=streak.long(),
            sale_used=torch.tensor([min(sale_used, sale_budget)]),
        )

    def recommend(
        self,
        history_df: pd.DataFrame | SalesHistory | str | os.PathLike[str],
        item_id: str,
        inventory: int,
        pipeline: Sequence[int] = (),
        day: int | None = None,
        *,
        agent: str | None = None,
        config: CampaignConfig | None = None,
        episodes: int = 500,
        seed: int = 0,
        baselines: bool = True,
        baseline_tune_episodes: int = 16,
        columns: Mapping[str, str] | None = None,
        fill_gaps: str | None = None,
    ) -> Recommendation:
        """Recommend the next period's discount and order for ``item_id``.

        Args:
            history_df: the shop's latest sales history (frame in the sales-history contract,
                a :class:`SalesHistory` or a file path); it may include the campaign's own
                past periods and must hold at least the forecaster's context length of
                ``item_id``.
            item_id: the item.
            inventory: units on hand now (after this period's arrivals).
            pipeline: ``pipeline[k]`` = units arriving in ``k + 1`` periods (at most
                ``lead_time`` entries; missing ones are 0). The last, arrivals in
                ``lead_time`` periods, must be 0: only this period's order lands then.
                ``inventory + sum(pipeline)`` must not exceed ``inventory.capacity``, as in
                the campaign model.
            day: index of the next period within the campaign (default: from
                ``campaign.start_date`` and the history's last date, else 0).
            agent: trained agent, or :data:`PLANNER` (the default): the exact DP over the
                learned simulator's demand, re-planned from this history.
            config: the campaign config the caller expects; an agent trained for another
                config is refused.
            episodes: simulated campaigns behind the expected profit (common random numbers
                for the agent and every baseline).
            seed: seed of those random numbers.
            baselines: also score the baseline rules (:func:`quick_baselines`, tuned in the
                learned simulator from this state with ``baseline_tune_episodes`` campaigns
                per candidate, on other random numbers than the scoring).
            columns, fill_gaps: how to read ``history_df`` where it differs from the run's
                history (:meth:`~promogym.config.DataSection.merged` over the run's
                ``[data]`` section, which already holds the ``fit`` options).
        """
        from promogym.data import SalesHistory, history_from_frame, load_history
        from promogym.envs.market import day_date
        from promogym.envs.rollout import simulate

        name = agent or PLANNER
        self.check_agent_config(name, config)
        if episodes < 2:
            raise PromogymInputError(f"episodes must be >= 2, got {episodes}")
        section = self.config.data.merged(columns, fill_gaps)
        if isinstance(history_df, SalesHistory):
            history = history_df
        elif isinstance(history_df, pd.DataFrame):
            history = history_from_frame(
                history_df,
                "history_df",
                fill_gaps=section.fill_gaps,  # type: ignore[arg-type]
                columns=section.columns,
                categorical=section.categorical,
            )
        else:
            history = load_history(
                history_df,
                columns=section.columns,
                fill_gaps=section.fill_gaps,  # type: ignore[arg-type]
                categorical=section.categorical,
            )
        start = self.campaign_state(history, item_id, inventory, pipeline, day)
        params = self.params(history=history)
        simulator = self.demand_model(history)
        policy = self.policy(name, context=history, feature_model=simulator, shared_memory=True)
        rollout = simulate(policy, simulator, params, start, n_episodes=episodes, seed=seed)
        first_d, first_o = policy_first_action(policy, start, params, simulator)
        solution = getattr(policy, "solution", None)  # the planner's DP (cached: no new solve)
        lot = solution(start, params).lot if callable(solution) else None
        scores: dict[str, float] = {}
        if baselines:
            suite = quick_baselines(simulator, params, start, seed + 1, baseline_tune_episodes)
            for base_name, base_policy in suite.items():
                out = simulate(
                    base_policy, simulator, params, start, n_episodes=episodes, seed=seed
                )
                scores[base_name] = float(out.profit.mean())
        t0 = int(start.t[0])
        first_day = int(start.day[0])
        plan = []
        periods = rollout.periods
        for k in range(periods["discount"].shape[1]):
            d = periods["discount"][:, k]
            plan.append(
                {
                    "period": t0 + k,
                    "date": day_date(first_day + k * params.period_days).isoformat(),
                    "expected_discount": float(d.mean()),
                    "sale_probability": float((d > 0).mean()),
                    "expected_order": float(periods["order_quantity"][:, k].mean()),
                    "expected_units_sold": float(periods["units_sold"][:, k].mean()),
                }
            )
        p10, p90 = np.percentile(rollout.profit, [10, 90])
        return Recommendation(
            item_id=item_id,
            day=t0,
            date=day_date(first_day).isoformat(),
            discount=float(params.discounts[first_d]),
            order_quantity=int(params.order_quantities[first_o]),
            expected_profit=float(rollout.profit.mean()),
            profit_interval=(float(p10), float(p90)),
            plan=plan,
            baselines=scores,
            agent=name,
            episodes=episodes,
            seed=seed,
            state={
                "on_hand": int(inventory),
                "pipeline": [int(q) for q in start.pipeline[0].tolist()],
                "streak": int(start.streak[0]),
                "sale_used": int(start.sale_used[0]),
            },
            list_price=float(params.price_of(start.item)[0]),
            stock_lot=lot,
            evidence=self._evidence(float(params.discounts[first_d]), item_id),
            caution=caution(self.price_response() or []) or "",
        )

    def _evidence(self, discount: float, item_id: str) -> str:
        """:func:`promogym.response.evidence` of the run's check at ``discount`` ("" if none),
        and a warning when ``discount`` is deeper than any in the history the simulator was
        fitted on (the run's, not the one passed to :meth:`recommend`) or when fewer than
        :data:`THIN_EVIDENCE_PERIODS` of the item's recorded periods near it saw their demand
        (sold-out periods say only that demand was at least the stock)."""
        from promogym.data import unrecorded

        bins = self.price_response()
        text = evidence(bins, discount) if bins else ""
        item = self.history.item(item_id)
        item = item[~unrecorded(item)]
        deepest = float(item["discount"].max())
        # the tolerance keeps a row exactly the margin away inside (0.2 vs 0.175000...04)
        near = (item["discount"] - discount).abs().to_numpy() <= EXTRAPOLATION_MARGIN + 1e-9
        seen = int((near & ~item["censored"].to_numpy()).sum())
        if discount > deepest + EXTRAPOLATION_MARGIN:
            text += (
                f"{'; ' if text else ''}deeper than this item's deepest discount in the fitted "
                f"history ({deepest:.0%}): the simulator extrapolates its response"
            )
        elif discount > 0 and seen < THIN_EVIDENCE_PERIODS:
            sold_out = int(near.sum()) - seen
            where = (
                f"period{'' if seen == 1 else 's'} within {100 * EXTRAPOLATION_MARGIN:g} points "
                f"of {discount:.0%} off in this item's fitted history"
            )
            text += (
                ("; " if text else "")
                + (f"no {where}" if seen == 0 else f"only {seen} {where}")
                + " showed the full demand"
                + (
                    f" ({sold_out} sold out, showing only that it reached the stock)"
                    if sold_out
                    else ""
                )
                + ": the simulator's lift there rests mostly on other depths and items"
            )
        return text


def policy_first_action(
    policy: Policy, start: CampaignState, params: CampaignParams, simulator: Any
) -> tuple[int, int]:
    """The policy's (deterministic) first action from the single state ``start``, made
    feasible as :func:`~promogym.envs.rollout.simulate` makes every action."""
    from promogym.envs.core import repair_actions

    policy.reset(start, params)
    d, o = policy.act(start, params, simulator.initial_memory(start))
    d, o = repair_actions(start, params, d, o)
    return int(d[0]), int(o[0])


def quick_baselines(
    simulator: Any, params: CampaignParams, start: CampaignState, seed: int, n_episodes: int
) -> dict[str, Any]:
    """The baseline rules of :mod:`promogym.envs.baselines`, tuned on a coarse grid.

    Base-stock levels on a 5-point grid, zoomed in only where the grid is too coarse for the
    item (its best level under one step, as with a capacity far above its demand; see
    :func:`~promogym.envs.baselines.tune_base_stock`): about 60 short simulations in all (up
    to about 190 for a capacity 60 times the demand) against about 300 for
    :func:`~promogym.envs.baselines.baseline_suite`, so a
    recommendation stays interactive: ``no-promotion``; ``best-fixed-discount`` (best sale
    depth and level); ``periodic-flash-sale`` (every 2, 3, 4 or 7 periods at the best depth,
    scored at the no-promotion level, then its own level); ``random``.
    """
    from promogym.envs.baselines import (
        FixedDiscount,
        NoPromotion,
        PeriodicFlashSale,
        RandomPolicy,
        base_stock_grid,
        mean_profit,
        tune_base_stock,
    )

    common = {
        "n_episodes": n_episodes,
        "seed": seed,
        "levels": base_stock_grid(params.capacity, 5),
        "refine": False,
    }
    no_promotion = tune_base_stock(
        lambda s: NoPromotion(base_stock=s), simulator, params, start, **common
    )
    suite: dict[str, Any] = {"no-promotion": no_promotion}
    depths = range(1, params.n_discounts)
    if depths:
        fixed = [
            tune_base_stock(
                lambda s, d=d: FixedDiscount(base_stock=s, discount_idx=d),
                simulator,
                params,
                start,
                **common,
            )
            for d in depths
        ]
        suite["best-fixed-discount"] = max(fixed, key=lambda p: p.tuned_profit)
        ranked = []
        for every in (2, 3, 4, 7):
            for d in depths:
                rule = PeriodicFlashSale(
                    base_stock=no_promotion.base_stock, discount_idx=d, every=every
                )
                score = mean_profit(
                    rule, simulator, params, start, n_episodes=n_episodes, seed=seed
                )
                ranked.append((score, every, d))
        _, every, d = max(ranked)
        periodic = tune_base_stock(
            lambda s: PeriodicFlashSale(base_stock=s, discount_idx=d, every=every),
            simulator,
            params,
            start,
            **common,
        )
        periodic.name = "periodic-flash-sale"
        suite["periodic-flash-sale"] = periodic
    suite["random"] = RandomPolicy(seed=seed)
    return suite
