"""Pre-training corpus of synthetic promotional demand, and the ``pretrain`` entry point.

The corpus is many random reference markets (:func:`promogym.envs.market.random_market_params`
with wide ranges) run under randomised behaviour policies
(:func:`promogym.simulate.simulate_history`): daily and weekly series, levels from about 0.5 to
500 units per period, elasticities 0.3-4, weekly and yearly seasonality, flash-sale urgency and
its fatigue, post-promotion dips, dispersion 1-50, various discount ladders, and shelf
capacities tight enough that some promotions sell out (censored periods; :func:`pretrain`
by default reads the demand drawn instead, ``full_demand``, so the base sees no stock-out). A
share :data:`PLAIN_MARKET_SHARE` of the markets has no promotion effect beyond the price (no
urgency, no dip), so the base does not expect every sale to start with a jump. Every draw
comes from one seeded generator, so ``pretrain(seed=s)`` rebuilds the same corpus and the same
weights on the same kind of CPU with the same thread count and library versions (recorded in
the saved ``training``: ``threads``, ``versions``, ``cpu``); elsewhere the weights differ by
rounding (the log-normal base rebuilt on another machine: relative differences about 1e-6,
the same losses to 8 digits).
"""

from __future__ import annotations

import math
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from promogym.config import CampaignConfig
from promogym.envs.market import (
    MarketParams,
    ReferenceMarket,
    day_numbers,
    random_market_params,
)
from promogym.forecasters.transformer import (
    Progress,
    SeriesData,
    TransformerConfig,
    TransformerForecaster,
    build_network,
    train_network,
)
from promogym.simulate import BehaviourPolicy, simulate_history

ITEMS_PER_MARKET = 8
PLAIN_MARKET_SHARE = 1 / 3
"""Share of the corpus' markets whose demand answers the price alone (urgency and dip 0)."""
LADDERS = (
    (0.0, 0.1, 0.2, 0.3, 0.4, 0.5),
    (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3),
    (0.0, 0.15, 0.3, 0.45, 0.6),
    (0.0, 0.1, 0.25, 0.4),
    (0.0, 0.2, 0.35, 0.5, 0.65),
)

BASE_CONFIG = TransformerConfig(
    windows_per_epoch=16384,
    batch_size=128,
    epochs=30,
    learning_rate=1e-3,
    patience=4,
    unknown_items="generic",
    # One generic item row: it is trained like every other weight.
    item_learning_rate_scale=1.0,
    item_weight_decay=1e-4,
    device="cpu",  # where the shipped bases were made: a GPU would not rebuild their bytes
)
"""The shipped base's settings (``promogym pretrain`` defaults)."""


def _market_params(rng: np.random.Generator) -> tuple[MarketParams, str, int, float]:
    """One random market's items, frequency, length in periods and demand level."""
    freq = "D" if rng.random() < 0.6 else "W"
    periods = int(rng.integers(240, 731)) if freq == "D" else int(rng.integers(100, 209))
    level = math.exp(rng.uniform(math.log(0.5), math.log(500.0)))
    plain = bool(rng.random() < PLAIN_MARKET_SHARE)
    params = random_market_params(
        ITEMS_PER_MARKET,
        rng,
        level=(level / 2.0, level * 2.0),
        elasticity=(0.3, 4.0),
        weekly_strength=(0.0, 0.6),
        yearly_amplitude=(0.0, 0.5),
        urgency=(0.0, 0.0) if plain else (0.0, 1.5),
        urgency_decay=(0.2, 0.9),
        dip=(0.0, 0.0) if plain else (0.0, 0.4),
        dispersion=(1.0, 50.0),
        list_price=(2.0, 50.0),
        cost_ratio=(0.3, 0.7),
    )
    return params, freq, periods, level


def _market_frame(  # noqa: ANN202 - (frame, freq)
    rng: np.random.Generator, seed: int, with_demand: bool = False
):
    """One random market and its simulated history frame (with a ``demand`` column if
    ``with_demand``)."""
    params, freq, periods, level = _market_params(rng)
    ladder = LADDERS[int(rng.integers(len(LADDERS)))]
    # Shelf room from ~3 to ~30 periods of the biggest item's regular demand: tight shelves
    # make promotions sell out, so the sales corpus holds censored periods (the full-demand
    # corpus reads the same draws before the stock capped them).
    capacity = int(
        max(8, math.ceil(2.0 * level * math.exp(rng.uniform(math.log(3), math.log(30)))))
    )
    config = CampaignConfig.from_dict(
        {
            "campaign": {"discounts": list(ladder)},
            "inventory": {
                "initial": 0,
                "order_quantities": [0, capacity],
                "lead_time": int(rng.integers(0, 4)),
                "capacity": capacity,
            },
        }
    )
    low = rng.uniform(0.03, 0.3)
    policy = BehaviourPolicy(
        promo_rate=(low, min(0.6, low + rng.uniform(0.0, 0.2))),
        max_run=int(rng.integers(1, 7)),
        planned_elasticity=float(rng.uniform(0.5, 3.0)),
        planned_bump=float(rng.uniform(1.0, 2.0)),
    )
    market = ReferenceMarket(params, freq=freq)
    start = np.datetime64("2018-01-01") + int(rng.integers(0, 5 * 365))
    frame = simulate_history(
        market, periods, str(start), seed, config, policy=policy, with_demand=with_demand
    )
    return frame, freq


def generate_corpus(
    n_series: int, seed: int = 0, progress: Progress | None = None, *, full_demand: bool = False
) -> SeriesData:
    """``n_series`` synthetic series (rounded up to whole markets of 8 items), all on the
    generic item row.

    By default a series holds what a shop would record: sales capped by the stock, sold-out
    periods censored. ``full_demand``: every period holds the demand the market drew (known in
    a synthetic corpus), none censored; the same draws, policies and prices either way.
    """
    rng = np.random.default_rng([seed, 0xC0_4B05])
    n_markets = max(1, math.ceil(n_series / ITEMS_PER_MARKET))
    series: list[dict[str, np.ndarray | float]] = []
    for m in range(n_markets):
        frame, freq = _market_frame(rng, seed * 1_000_003 + m, full_demand)
        n_items = frame["item_id"].nunique()
        periods = len(frame) // n_items
        shape = (n_items, periods)
        units = frame["demand" if full_demand else "units_sold"].to_numpy(np.float32).reshape(shape)
        # full demand: no period was capped, so none counts as sold out (units < inf)
        stock = (
            np.full(shape, np.inf)
            if full_demand
            else frame["stock"].to_numpy(np.float64).reshape(shape)
        )
        price = frame["price"].to_numpy(np.float64).reshape(shape)
        list_price = frame["list_price"].to_numpy(np.float64).reshape(shape)
        days = day_numbers(frame["date"]).reshape(shape)
        promo = frame["promo"].to_numpy(np.float32).reshape(shape)
        for i in range(n_items):
            series.append(
                {
                    "units": units[i],
                    "observed": units[i] < stock[i],
                    "censored": units[i] >= stock[i],
                    "discount": np.clip(1.0 - price[i] / list_price[i], 0.0, 0.99).astype(
                        np.float32
                    ),
                    "promo": promo[i],
                    "day": days[i],
                    "daily": 1.0 if freq == "D" else 0.0,
                }
            )
        if progress is not None and (m + 1) % 50 == 0:
            progress(f"corpus: {m + 1}/{n_markets} markets")
    t_max = max(len(s["units"]) for s in series)  # type: ignore[arg-type]

    def pad(key: str, dtype: type) -> torch.Tensor:
        out = np.zeros((len(series), t_max), dtype=dtype)
        for i, s in enumerate(series):
            v = s[key]
            out[i, : len(v)] = v  # type: ignore[arg-type]
        return torch.from_numpy(out)

    return SeriesData(
        units=pad("units", np.float32),
        observed=pad("observed", np.bool_),
        censored=pad("censored", np.bool_),
        discount=pad("discount", np.float32),
        promo=pad("promo", np.float32),
        day=pad("day", np.int64),
        item=torch.zeros(len(series), dtype=torch.long),
        daily=torch.tensor([s["daily"] for s in series], dtype=torch.float32),
        length=torch.tensor(
            [len(s["units"]) for s in series],  # type: ignore[arg-type]
            dtype=torch.long,
        ),
    )


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pretrain(
    out: str | os.PathLike[str] | None,
    *,
    seed: int = 0,
    n_series: int = 2400,
    epochs: int | None = None,
    config: TransformerConfig | None = None,
    likelihood: str | None = None,
    validation_series: float = 0.05,
    progress: Progress | None = None,
    full_demand: bool = True,
) -> TransformerForecaster:
    """Train the base model on a fresh corpus and save it to ``out`` (if given).

    ``likelihood`` overrides the config's (a ``log_normal`` base for fits with that likelihood).
    ``full_demand`` (default, as the shipped bases are built): train on the demand the
    corpus' markets drew instead of their sales capped by the stock (:func:`generate_corpus`),
    so the base sees no censored period; ``False`` trains on the sales, stock-outs censored.

    The base has an empty item vocabulary (every series uses the generic item row) and
    ``unknown_items="generic"``. A share ``validation_series`` of the series is held out
    whole for early stopping. Same ``seed`` -> same corpus and weights (single-threaded CPU).
    """
    started = time.perf_counter()
    cfg = config or BASE_CONFIG
    overrides: dict[str, Any] = {"seed": seed}
    if epochs is not None:
        overrides["epochs"] = epochs
    if likelihood is not None:
        overrides["likelihood"] = likelihood
    cfg = TransformerConfig.from_dict({**cfg.to_dict(), **overrides})
    data = generate_corpus(n_series, seed, progress, full_demand=full_demand)
    corpus_seconds = time.perf_counter() - started
    s = data.length.shape[0]
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(s, generator=gen)
    n_val = max(1, int(round(s * validation_series)))
    is_val = torch.zeros(s, dtype=torch.bool)
    is_val[perm[:n_val]] = True
    window = cfg.context_length + cfg.prediction_length
    all_idx = data.window_starts(window, window, data.length)
    val_mask = is_val[all_idx[:, 0]]
    train_idx = all_idx[~val_mask]
    val_idx = all_idx[val_mask]
    keep = torch.randperm(val_idx.shape[0], generator=gen)[:4096]
    val_idx = val_idx[keep.sort().values]
    forecaster = TransformerForecaster(cfg)
    torch.manual_seed(seed)
    model = build_network(cfg, 0).to(forecaster.device)
    log = train_network(model, data.to(forecaster.device), train_idx, val_idx, cfg, progress)
    forecaster.model = model
    forecaster.item_ids = []
    forecaster.freq = "D"
    forecaster.training = {
        **log,
        "base": "pretrained",
        "corpus": {
            "series": int(s),
            "seed": seed,
            "train_windows": int(train_idx.shape[0]),
            "validation_windows": int(val_idx.shape[0]),
            "daily_share": round(float(data.daily.mean()), 3),
            "plain_market_share": round(PLAIN_MARKET_SHARE, 4),
            "censored_share": round(
                float(
                    (
                        ~data.observed & (torch.arange(data.units.shape[1]) < data.length[:, None])
                    ).sum()
                    / data.length.sum()
                ),
                4,
            ),
            "seconds": round(corpus_seconds, 1),
            "full_demand": full_demand,
        },
        "seconds": round(time.perf_counter() - started, 1),
        "threads": torch.get_num_threads(),
        "versions": {name: metadata.version(name) for name in ("torch", "transformers", "numpy")},
        "cpu": cpu_name(),
    }
    if out is not None:
        forecaster.save(Path(out))
    return forecaster
