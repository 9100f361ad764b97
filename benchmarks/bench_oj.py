"""Dominick's orange juice, TSPerf retail protocol (OrangeJuice_Pt_3Weeks_Weekly).

Round ``i`` (0..11) fits on weeks 40..135+2i and forecasts weeks 137+2i and 138+2i: horizon 3
with the first forecast week skipped, using the known prices, deals and features (``feat``)
of the forecast weeks, and (by default; ``--no-rival`` leaves them out) the promotions of the
store's other brands in those weeks (:data:`RIVAL_COLUMNS`). Items with no record in a forecast
week get their last known covariates (the future frame needs one row per item and week); only
recorded store x brand x weeks are scored, as in TSPerf.

Scores over all scored rows of all rounds:

* ``MAPE`` (%) on units for three point forecasts: the predictive mean, the median, and the
  MAPE-optimal point ``argmin_c E|Y - c| / Y`` (the median of the predictive distribution
  reweighted by ``1/y``, computed from 99 predictive quantiles 0.01..0.99 as their weighted
  median with weights ``1/q``). The headline ``mape`` is the MAPE-optimal point; ``mape_19``
  is the same point from the 19 quantiles 0.05..0.95 only (the headline before 2026-11-30,
  fifth session: it leaves out the lowest 5%, whose ``1/y`` weights are the largest).
* ``coverage80``: share of actuals inside ``[q0.1, q0.9]`` (target 78-82%).
* ``crps``: CRPS approximated by twice the mean pinball loss over the 19 quantiles, in units and
  relative to the mean actual (``crps_rel``).
* wall seconds (fit + predict) per model over the round-set.

``--split validation`` shifts every round 24 weeks earlier (train up to week 111+2i, forecast
113+2i and 114+2i): no week it scores is a test week, so settings are tuned there.
``--split early`` shifts them 36 weeks (rounds 0-5 score weeks 101-112), a second tuning
split without the items too short for it (:data:`SPLIT_SHIFTS`).

Transformer settings are :data:`TFT_SETTINGS` (``--tft`` JSON overrides them). The NB
transformers' quantiles are recalibrated on their own validation weeks (the last 8 training
weeks), so no scored week is used; the log-normal ones (:data:`TFT_LN_SETTINGS`) are not.

Example: python benchmarks/bench_oj.py --models snaive,lgbm --rounds 12 --update-readme
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oj_data import date_to_week, load_oj, week_to_date  # noqa: E402

from promogym.data import SalesHistory  # noqa: E402
from promogym.errors import ConfigError  # noqa: E402
from promogym.forecasters.base import Forecaster  # noqa: E402
from promogym.forecasters.baselines import extra_numeric_columns, quantile_column  # noqa: E402
from promogym.forecasters.transformer import base_dirs, weights_record  # noqa: E402
from promogym.io import atomic_write_text  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parent / "README.md"
README_START = "<!-- bench_oj:start -->"
README_END = "<!-- bench_oj:end -->"
FIRST_WEEK = 40
N_ROUNDS = 12
HORIZON = 3
SKIP = 1  # the first forecast week is not scored
VALIDATION_SHIFT = 24
SPLIT_SHIFTS = {"test": 0, "validation": VALIDATION_SHIFT, "early": 36}
"""Weeks each ``--split`` moves the rounds back. ``validation`` rounds 0-5 score weeks 113-124
and ``early`` rounds 0-5 weeks 101-112, so neither scores a test week; ``early`` leaves out
the items with fewer than :data:`EARLY_MIN_WEEKS` recorded weeks by its first round's last
training week (stores 134 and 137, which start late)."""
EARLY_MIN_WEEKS = 42  # the transformers' context length
QUANTILES = tuple(round(0.05 * k, 2) for k in range(1, 20))
POINT_QUANTILES = tuple(round(0.01 * k, 2) for k in range(1, 100))
"""Levels the models are asked for (a superset of :data:`QUANTILES`): the MAPE-optimal point
is their ``1/q``-weighted median; coverage and CRPS use :data:`QUANTILES`."""
PUBLISHED = {  # TSPerf OrangeJuice_Pt_3Weeks_Weekly leaderboard, MAPE %
    "LightGBM": 36.28,
    "Dilated CNN": 37.09,
    "RNN encoder-decoder": 37.68,
    "Mean forecast": 70.74,
    "AutoARIMA": 70.80,
    "Naive": 109.67,
    "Seasonal naive": 165.06,
}
MODEL_NAMES = (
    "snaive",
    "lgbm",
    "tft",
    "tft-scratch",
    "tft-ln",
    "tft-ln-scratch",
    "tft+lgbm",
    "tft-ln+lgbm",
    "tft+tft-ln",
)

# The settings below were chosen by MAPE of the point from the 19 quantiles 0.05..0.95
# (``mape_19``; the headline until 2026-11-30, fifth session), before the transformers' refit.

# Every quantile average (EnsembleForecaster): its members' weights, chosen on the validation
# split, rounds 0-5 (MAPE %).
# "tft+lgbm": transformer alone 37.79, LightGBM alone 34.06; transformer weight 0.2: 32.78,
# 0.3: 32.56, 0.4: 32.54 (chosen), 0.5: 32.76.
# "tft+tft-ln": the two fine-tuned transformer heads: NB 37.79, log-normal 37.55, equal weights
# 36.48 (weight 0.4 on the log-normal: 36.53, 0.6: 36.48); three seeds of the log-normal head
# averaged 37.56 (seeds alone 37.55 / 37.72 / 38.88). On the test split it scored 37.59 against
# 36.99 for tft-ln alone (benchmarks/README.md, finding 7).
# "tft-ln+lgbm" (2026-11-30, sixth session; 99-quantile point, `tft-ln` without quantile maps):
# log-normal alone 34.34, LightGBM alone 33.84; log-normal weight 0.3: 32.28, 0.4: 32.03,
# 0.5: 31.95 (chosen), 0.6: 32.04.
# Both re-chosen with LightGBM's per-item residual scale and --rival (2026-11-30, eighth
# session; validation / early split, MAPE %): "tft+lgbm" NB weight 0.4: 32.91 / 34.17,
# 0.33: 32.70 / 33.71, 0.25: 32.56 / 33.27, 0.2: 32.53 / 33.07 (chosen), 0.17: 32.54 / 32.99;
# "tft-ln+lgbm" log-normal weight 0.6: 32.11 / 31.94, 0.5: 31.93 / 31.77, 0.4: 31.87 / 31.73
# (chosen), 0.33: 31.91 / 31.78.
ENSEMBLES: dict[str, dict[str, float]] = {
    "tft+lgbm": {"tft": 0.2, "lgbm": 0.8},
    "tft-ln+lgbm": {"tft-ln": 0.4, "lgbm": 0.6},
    "tft+tft-ln": {"tft": 0.5, "tft-ln": 0.5},
}

# Chosen on --split validation (weeks < 137 only); see benchmarks/README.md.
# Validation MAPE, rounds 0-5: defaults 34.68%; n_lags 12 + windows (4, 13, 26) 34.29%;
# learning_rate 0.03 + num_leaves 63 + min_data_in_leaf 100 34.10%; both 34.06% (chosen).
# Residual spread per item (the class default since 2026-11-30, eighth session; with --rival,
# MAPE % validation / early split): one global residual distribution 34.19 / 34.37; per item
# with scale_shrinkage 1: 32.77 / 33.50, 3: 32.89 / 33.01 (the default), 8: 33.23 / 32.93.
LGBM_SETTINGS: dict[str, Any] = {
    "n_lags": 12,
    "windows": (4, 13, 26),
    "holdout_periods": 8,
    "params": {"learning_rate": 0.03, "num_leaves": 63, "min_data_in_leaf": 100},
}


# Transformer settings (TransformerConfig keys). 8 validation weeks (early stopping and the
# dispersion calibration); store/brand-relative prices as covariates (cross-price competition,
# as LightGBM's relative-price features); 64 Monte-Carlo paths x 32 NB draws for quantiles.
# No price-response head here: on the validation split (rounds 0-2) it scored 40.75% MAPE
# against 38.80% without (OJ's "discount" is relative to a running-maximum price, and the
# group-relative prices already carry the price response).
TFT_SETTINGS: dict[str, Any] = {
    "validation_periods": 8,
    "group_price_features": True,
    "price_head": False,
    "patience": 4,  # as measured (12 rounds in 566 s); the class default is 10
    # Chosen on the validation split, rounds 0-5 (MAPE %, 80% coverage, CRPS): as before
    # 38.86 / 0.748 / 3258; early stopping on every other item, calibration on the rest
    # 38.75 / 0.758 / 3197; and separate quantile maps for deal and regular weeks (the fine-tuned
    # model's median deal lift was 1.26x the actual) 37.79 / 0.758 / 3150.
    "split_calibration": True,
    "recalibrate_by_promo": True,
    "num_samples": 64,
    "quantile_draws": 32,
}

# "tft-ln" / "tft-ln-scratch": TFT_SETTINGS with the log-normal likelihood (fine-tuned from its
# own shipped base / from scratch). Validation split, rounds 0-5 (MAPE %, coverage, CRPS):
# fine-tuned 37.41 / 0.738 / 3231 with the promo maps, 37.55 / 0.737 / 3219 without (a tie;
# kept without, one map fewer); from scratch without them 38.72 / 0.746 / 3403 (NB: 48.49).
# No quantile maps at all (2026-11-30, sixth session; 99-quantile point, MAPE % / coverage):
# the maps come from 8 validation weeks whose chain-wide shocks move every item's map at once
# (one round's 80% intervals covered 0.98 with them). With -> without: validation split
# rounds 0-5 seed 0 34.86 / 0.737 -> 34.34 / 0.765, seed 1 36.70 / 0.720 -> 35.78 / 0.731,
# from scratch 38.69 / 0.748 -> 37.14 / 0.802; 12 weeks earlier (fit on weeks 40..99+2i,
# stores 134 and 137 left out for their short history) 35.73 / 0.849 -> 34.35 / 0.840. A
# log-normal spread factor fitted to the one-step validation pinball loss instead (like the
# NB's dispersion) narrowed the intervals: 34.42 / 0.721 and 34.12 / 0.780; not kept.
TFT_LN_SETTINGS: dict[str, Any] = {
    "likelihood": "log_normal",
    "recalibrate_by_promo": False,
    "recalibrate_quantiles": False,
}


def make_model(
    name: str,
    seed: int,
    lgbm: dict[str, Any] | None = None,
    tft: dict[str, Any] | None = None,
    bases: dict[str, Path] | None = None,
) -> Forecaster:
    """A fresh forecaster for ``name`` (one of :data:`MODEL_NAMES`).

    ``lgbm`` overrides :data:`LGBM_SETTINGS` (keys of ``LightGBMForecaster``; ``params`` merge);
    ``tft`` overrides :data:`TFT_SETTINGS` (keys of ``TransformerConfig``; for ``tft-ln*``
    after :data:`TFT_LN_SETTINGS`). ``bases``: each likelihood's base directory, as
    :func:`~promogym.forecasters.transformer.base_dirs` (default: the shipped ones).
    """
    if name == "snaive":
        from promogym.forecasters.baselines import SeasonalNaive

        return SeasonalNaive()
    if name == "lgbm":
        from promogym.forecasters.baselines import LightGBMForecaster

        settings = {**LGBM_SETTINGS, **(lgbm or {})}
        settings["params"] = {**LGBM_SETTINGS["params"], **(lgbm or {}).get("params", {})}
        return LightGBMForecaster(max_horizon=HORIZON, seed=seed, **settings)
    if name in ENSEMBLES:
        from promogym.forecasters.ensemble import EnsembleForecaster

        weights = ENSEMBLES[name]
        members = [make_model(m, seed, lgbm, tft, bases) for m in weights]
        return EnsembleForecaster(members, list(weights.values()))
    if name in ("tft", "tft-scratch", "tft-ln", "tft-ln-scratch"):
        from promogym.forecasters.transformer import TransformerConfig, TransformerForecaster

        log_normal = TFT_LN_SETTINGS if name.startswith("tft-ln") else {}
        config = TransformerConfig(seed=seed, **{**TFT_SETTINGS, **log_normal, **(tft or {})})
        base_dir = (bases or base_dirs())[config.likelihood]
        return TransformerForecaster(
            config, from_scratch=name.endswith("-scratch"), base_dir=base_dir
        )
    raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")


RIVAL_COLUMNS = ("rival_promo", "rival_feat", "rival_deep")
"""``--rival`` covariates: per store and week, over the store's *other* brands, the share on
deal, their mean ``feat``, and the share at least :data:`DEEP_DISCOUNT` off (competitors'
promotions; known for the forecast weeks, like the item's own prices)."""
DEEP_DISCOUNT = 0.25


def with_rival_promotions(full: SalesHistory) -> SalesHistory:
    """``full`` plus the :data:`RIVAL_COLUMNS` (0 where a store has one brand that week)."""
    frame = full.frame.copy()
    keys = [frame["store"], frame["date"]]
    others = frame.groupby(keys)["promo"].transform("size").to_numpy() - 1
    sources = (frame["promo"], frame["feat"], frame["discount"] >= DEEP_DISCOUNT)
    for name, source in zip(RIVAL_COLUMNS, sources, strict=True):
        own = source.astype(np.float64)
        total = own.groupby(keys).transform("sum")
        frame[name] = ((total - own) / np.maximum(others, 1)).to_numpy()
    return SalesHistory(
        frame=frame,
        freq=full.freq,
        source=f"{full.source} + rival promotions",
        categorical=full.categorical,
    )


def with_history(full: SalesHistory, week: int, min_weeks: int) -> SalesHistory:
    """``full`` without the items that have fewer than ``min_weeks`` recorded weeks up to
    ``week``."""
    frame = full.frame
    recorded = pd.Series(date_to_week(frame["date"]) <= week).groupby(frame["item_id"]).sum()
    keep = frame["item_id"].isin(recorded.index[recorded >= min_weeks])
    return SalesHistory(
        frame=frame[keep].reset_index(drop=True),
        freq=full.freq,
        source=f"{full.source} (items with >= {min_weeks} weeks by week {week})",
        categorical=full.categorical,
    )


def round_weeks(i: int, shift: int = 0) -> tuple[int, list[int]]:
    """Last training week and the scored forecast weeks of round ``i``."""
    train_end = 135 + 2 * i - shift
    return train_end, [train_end + SKIP + 1 + k for k in range(HORIZON - SKIP)]


def split_round(
    full: SalesHistory, train_end: int
) -> tuple[SalesHistory, pd.DataFrame, pd.DataFrame]:
    """Training history, future covariates (all items x HORIZON weeks) and scored actuals."""
    frame = full.frame
    week = date_to_week(frame["date"])
    train = frame[(week >= FIRST_WEEK) & (week <= train_end)].reset_index(drop=True)
    history = SalesHistory(
        frame=train,
        freq=full.freq,
        source=f"{full.source} weeks {FIRST_WEEK}..{train_end}",
        categorical=full.categorical,
    )
    weeks = list(range(train_end + 1, train_end + HORIZON + 1))
    items = history.item_ids
    grid = pd.MultiIndex.from_product(
        [items, week_to_date(np.array(weeks))], names=["item_id", "date"]
    )
    covariates = ["price", "promo", *extra_numeric_columns(full)]
    known = frame[(week > train_end) & (week <= train_end + HORIZON)]
    future = known.set_index(["item_id", "date"])[covariates].reindex(grid)
    last = train.groupby("item_id")[covariates].last()
    # Weeks without a record: carry the item's last known covariates forward.
    future = future.groupby(level="item_id", group_keys=False).apply(lambda g: g.ffill())
    future = future.fillna(
        last.reindex(future.index.get_level_values("item_id")).set_axis(future.index)
    )
    future = future.reset_index()
    scored = week_to_date(np.array(weeks[SKIP:]))
    actual = known[known["date"].isin(scored) & known["item_id"].isin(items)]
    return history, future, actual[["item_id", "date", "units_sold"]].reset_index(drop=True)


def mape_optimal_point(quantile_values: np.ndarray) -> np.ndarray:
    """Weighted median (weights ``1/q``) of each row of equally spaced predictive quantiles."""
    q = np.maximum(quantile_values, 1.0)
    w = 1.0 / q
    cum = np.cumsum(w, axis=1) / w.sum(axis=1, keepdims=True)
    pick = (cum < 0.5).sum(axis=1)
    return q[np.arange(q.shape[0]), pick]


def score(rows: pd.DataFrame) -> dict[str, float]:
    """Metrics of scored rows holding ``units_sold``, ``mean`` and the quantile columns."""
    y = rows["units_sold"].to_numpy(dtype=np.float64)
    qv = rows[[quantile_column(q) for q in QUANTILES]].to_numpy(dtype=np.float64)
    fine = rows[[quantile_column(q) for q in POINT_QUANTILES]].to_numpy(dtype=np.float64)
    point = mape_optimal_point(fine)

    def mape(pred: np.ndarray) -> float:
        return float(np.mean(np.abs(y - pred) / y) * 100.0)

    levels = np.asarray(QUANTILES)
    diff = y[:, None] - qv
    pinball = np.maximum(levels * diff, (levels - 1.0) * diff)
    crps = float(2.0 * pinball.mean())
    return {
        "mape": mape(point),
        "mape_19": mape(mape_optimal_point(qv)),
        "mape_mean": mape(rows["mean"].to_numpy(dtype=np.float64)),
        "mape_median": mape(rows["q0.5"].to_numpy(dtype=np.float64)),
        "coverage80": float(np.mean((y >= rows["q0.1"]) & (y <= rows["q0.9"]))),
        "crps": crps,
        "crps_rel": crps / float(y.mean()),
        "rows": int(y.size),
    }


def run_model(
    name: str,
    full: SalesHistory,
    rounds: int,
    shift: int,
    seed: int,
    log: Callable[[str], None],
    lgbm: dict[str, Any] | None = None,
    tft: dict[str, Any] | None = None,
    bases: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """Fit and forecast every round with a fresh model; metrics, timings and per-round MAPE
    (and, under ``"rows"``, each round's scored rows: actuals beside the forecasts)."""
    scored, per_round, fit_s, predict_s = [], [], 0.0, 0.0
    for i in range(rounds):
        train_end, weeks = round_weeks(i, shift)
        history, future, actual = split_round(full, train_end)
        model = make_model(name, seed, lgbm, tft, bases)
        t0 = time.perf_counter()
        model.fit(history)
        t1 = time.perf_counter()
        pred = model.predict(history, future, HORIZON, POINT_QUANTILES)
        t2 = time.perf_counter()
        fit_s, predict_s = fit_s + t1 - t0, predict_s + t2 - t1
        rows = actual.merge(pred, on=["item_id", "date"], how="left", validate="one_to_one")
        if rows["mean"].isna().any():
            raise RuntimeError(f"{name}: round {i}: missing predictions for scored rows")
        scored.append(rows)
        metrics = score(rows)
        info = {"round": i, "train_end": train_end, "weeks": weeks, **metrics}
        info["fit_seconds"], info["predict_seconds"] = round(t1 - t0, 2), round(t2 - t1, 2)
        if hasattr(model, "best_rounds_"):
            info["best_rounds"] = list(model.best_rounds_)
        if getattr(model, "training", None):
            info["training"] = {k: v for k, v in model.training.items() if k != "losses"}
        per_round.append(info)
        log(
            f"{name:12s} round {i:2d} (train ..{train_end}, score {weeks}): "
            f"MAPE {metrics['mape']:.2f}%  cov80 {metrics['coverage80']:.3f}  "
            f"fit {t1 - t0:.1f}s"
        )
    total = score(pd.concat(scored, ignore_index=True))
    return {
        **total,
        "wall_seconds": round(fit_s + predict_s, 1),
        "fit_seconds": round(fit_s, 1),
        "predict_seconds": round(predict_s, 1),
        "per_round": per_round,
        "rows": scored,
    }


def combined_result(results: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    """The average ``name`` (of :data:`ENSEMBLES`) from the rounds of its members measured in
    the same run: their forecasts
    combined by :func:`~promogym.forecasters.ensemble.combine_predictions` (what
    ``EnsembleForecaster.predict`` returns), scored like a model; its time is theirs."""
    from promogym.forecasters.ensemble import combine_predictions

    weights = ENSEMBLES[name]
    members = list(weights)
    scored, per_round = [], []
    for i, parts in enumerate(zip(*(results[m]["rows"] for m in members), strict=True)):
        forecast = combine_predictions(
            [p.drop(columns="units_sold") for p in parts], list(weights.values())
        )
        rows = forecast.assign(units_sold=parts[0]["units_sold"].to_numpy())
        scored.append(rows)
        per_round.append({"round": i, **score(rows)})
    return {
        **score(pd.concat(scored, ignore_index=True)),
        **{
            key: round(sum(results[m][key] for m in members), 1)
            for key in ("wall_seconds", "fit_seconds", "predict_seconds")
        },
        "per_round": per_round,
        "members": dict(weights),
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table of the measured models, then the published board."""
    lines = [
        "| model | MAPE % (MAPE-optimal point) | MAPE % (point from 19 quantiles) | "
        "MAPE % (median) | MAPE % (mean) | 80% coverage | CRPS (units) | CRPS / mean | "
        "wall s (fit+predict, all rounds) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} | | | | | | | |")
            continue
        lines.append(
            f"| {name} | {r['mape']:.2f} | {r['mape_19']:.2f} | {r['mape_median']:.2f} | "
            f"{r['mape_mean']:.2f} | {r['coverage80']:.3f} | {r['crps']:.0f} | "
            f"{r['crps_rel']:.3f} | {r['wall_seconds']:.0f} |"
        )
    for name, value in PUBLISHED.items():
        lines.append(f"| TSPerf board: {name} | {value:.2f} | | | | | | | |")
    return "\n".join(lines)


def update_readme(markdown: str) -> None:
    """Replace the text between the bench_oj markers of benchmarks/README.md."""
    text = README.read_text(encoding="utf-8")
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    atomic_write_text(README, text[:start] + "\n" + markdown + "\n" + text[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="snaive,lgbm", help=f"comma list of {MODEL_NAMES}")
    parser.add_argument("--rounds", type=int, default=N_ROUNDS, help="rounds 0..N-1 (max 12)")
    parser.add_argument(
        "--split",
        choices=tuple(SPLIT_SHIFTS),
        default="test",
        help="test, or a tuning split that scores no test week (validation, early)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default results/)")
    parser.add_argument(
        "--lgbm", type=json.loads, default=None, help="JSON overrides of LGBM_SETTINGS (tuning)"
    )
    parser.add_argument(
        "--tft", type=json.loads, default=None, help="JSON overrides of TFT_SETTINGS (tuning)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch and LightGBM threads")
    parser.add_argument(
        "--rival",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the store's other brands' promotions as covariates (RIVAL_COLUMNS; default on)",
    )
    parser.add_argument(
        "--bases",
        type=Path,
        default=None,
        help="directory laid out as forecasters/weights (base/, base_log_normal/) whose bases "
        "the transformers fine-tune (default: the shipped ones)",
    )
    parser.add_argument("--update-readme", action="store_true", help="write the table into README")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in MODEL_NAMES:
            parser.error(f"unknown model {m!r}; choose from {', '.join(MODEL_NAMES)}")
    if not 1 <= args.rounds <= N_ROUNDS:
        parser.error(f"--rounds must be 1..{N_ROUNDS}")
    try:
        bases = base_dirs(args.bases)
    except ConfigError as exc:
        parser.error(f"--bases {exc}")
    shift = SPLIT_SHIFTS[args.split]
    out = args.out or RESULTS_DIR / (
        "bench_oj.json" if args.split == "test" else f"bench_oj_{args.split}.json"
    )

    import torch

    # One thread by default: on a shared 2-core machine 2 threads ran small ops up to 35x slower.
    torch.set_num_threads(args.threads)
    full = with_rival_promotions(load_oj()) if args.rival else load_oj()
    if args.split == "early":
        full = with_history(full, round_weeks(0, shift)[0], EARLY_MIN_WEEKS)
    results: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    for name in models:
        try:
            if name in ENSEMBLES and all("rows" in results.get(m, {}) for m in ENSEMBLES[name]):
                results[name] = combined_result(results, name)
                continue
            results[name] = run_model(
                name,
                full,
                args.rounds,
                shift,
                args.seed,
                print,
                {"num_threads": args.threads, **(args.lgbm or {})},
                args.tft,
                bases,
            )
        except Exception as exc:  # a model that fails is reported, the others still run
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    for r in results.values():
        r.pop("rows", None)
    markdown = table(results)
    print()
    print(markdown)
    payload = {
        "benchmark": "OrangeJuice_Pt_3Weeks_Weekly (TSPerf retail protocol)",
        "split": args.split,
        "rounds": args.rounds,
        "round_weeks": [round_weeks(i, shift) for i in range(args.rounds)],
        "horizon": HORIZON,
        "scored_steps": list(range(SKIP + 1, HORIZON + 1)),
        "quantiles": list(QUANTILES),
        "point_quantiles": list(POINT_QUANTILES),
        "point_forecast": "MAPE-optimal: weighted median (weights 1/q) of the 99 quantiles "
        "0.01..0.99 (mape_19: of the 19 quantiles 0.05..0.95)",
        "seed": args.seed,
        "rival_covariates": list(RIVAL_COLUMNS) if args.rival else [],
        "threads": args.threads,
        "command": "python benchmarks/bench_oj.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "seconds_total": round(time.perf_counter() - started, 1),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "published_mape": PUBLISHED,
        "lgbm_settings": {**LGBM_SETTINGS, **(args.lgbm or {})},
        "tft_settings": {**TFT_SETTINGS, **(args.tft or {})},
        "bases": {name: weights_record(d) for name, d in bases.items()},
        "models": results,
        "table": markdown,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(payload, indent=1))
    print(f"\nwrote {out}")
    failed = [name for name, r in results.items() if "error" in r]
    if failed:
        print(f"failed: {', '.join(failed)} (see above); README not updated", file=sys.stderr)
        return 1
    if args.update_readme:
        update_readme(markdown)
        print(f"updated {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
