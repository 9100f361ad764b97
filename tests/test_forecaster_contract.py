"""One conformance check for every forecaster (forecasters/base.py), plus baseline specifics.

Each forecaster is fitted once per module on a tiny synthetic daily history (3 items x 70 days,
promotions lift demand) and then checked: fit returns self, predict's columns / rows /
quantile order, exact save-load round trip, sample shapes, one-step shapes, and bad futures.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from promogym.data import SalesHistory, history_from_frame
from promogym.distributions import negative_binomial_pmf
from promogym.errors import DataError, PromogymInputError
from promogym.forecasters.base import DemandContext, Forecaster
from promogym.forecasters.baselines import (
    SeasonalNaive,
    forecast_dates,
    negative_binomial_quantiles,
)

HORIZON = 3
QUANTILES = (0.1, 0.5, 0.9)
ITEMS = ("apple", "kiwi", "pear")


def synthetic_history(days: int = 70, seed: int = 0) -> SalesHistory:
    """Daily sales of 3 items with a weekday pattern; 20% / 40% discounts lift demand."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2024-01-01", periods=days)
    rows = []
    for k, item in enumerate(ITEMS):
        base = 5.0 + 4.0 * k
        discount = rng.choice([0.0, 0.0, 0.0, 0.2, 0.4], size=days)
        weekday = 1.0 + 0.3 * np.sin(2 * np.pi * dates.day_of_week.to_numpy() / 7)
        mean = base * weekday * (1.0 - discount) ** -2.0
        rows.append(
            pd.DataFrame(
                {
                    "date": dates.strftime("%Y-%m-%d"),
                    "item_id": item,
                    "units_sold": rng.poisson(mean),
                    "price": 10.0 * (1.0 - discount),
                    "list_price": 10.0,
                    "category": "fruit" if k < 2 else "other",
                }
            )
        )
    return history_from_frame(pd.concat(rows, ignore_index=True), categorical=["category"])


def future_frame(history: SalesHistory, horizon: int = HORIZON, items=ITEMS) -> pd.DataFrame:
    dates = forecast_dates(history, horizon)
    grid = pd.MultiIndex.from_product([list(items), dates], names=["item_id", "date"])
    out = grid.to_frame(index=False)
    out["price"] = 8.0
    out["list_price"] = 10.0
    out["promo"] = 1
    return out


def _seasonal_naive() -> Forecaster:
    return SeasonalNaive()


def _lightgbm() -> Forecaster:
    pytest.importorskip("lightgbm")
    from promogym.forecasters.baselines import LightGBMForecaster

    return LightGBMForecaster(
        max_horizon=HORIZON,
        n_lags=3,
        windows=(3,),
        holdout_periods=7,
        num_boost_round=30,
        early_stopping_rounds=5,
        params={"min_data_in_leaf": 5, "num_leaves": 7},
        num_threads=1,
    )


def _transformer(seed: int = 0, likelihood: str = "negative_binomial") -> Forecaster:
    module = pytest.importorskip("promogym.forecasters.transformer")
    config = module.TransformerConfig(
        context_length=14,
        prediction_length=3,
        lags=(1, 2, 7),
        d_model=16,
        encoder_layers=2,
        decoder_layers=2,
        heads=2,
        ffn_dim=16,
        epochs=1,
        batch_size=16,
        windows_per_epoch=32,
        validation_periods=7,
        num_samples=20,
        likelihood=likelihood,
        seed=seed,
    )
    return module.TransformerForecaster(config, from_scratch=True)


def _ensemble() -> Forecaster:
    from promogym.forecasters.ensemble import EnsembleForecaster

    # Two seeds of one model: the simulator's use (its one_step needs one vocabulary).
    return EnsembleForecaster([_transformer(0), _transformer(1)], weights=(0.3, 0.7))


FACTORIES: dict[str, Callable[[], Forecaster]] = {
    "seasonal_naive": _seasonal_naive,
    "lightgbm": _lightgbm,
    "transformer": _transformer,
    "transformer_log_normal": lambda: _transformer(likelihood="log_normal"),
    "ensemble": _ensemble,
}


@pytest.fixture(scope="module")
def history() -> SalesHistory:
    return synthetic_history()


@pytest.fixture(scope="module", params=list(FACTORIES))
def fitted(request: pytest.FixtureRequest, history: SalesHistory) -> Forecaster:
    model = FACTORIES[request.param]()
    returned = model.fit(history)
    assert returned is model, "fit must return self"
    return model


def test_predict_columns_rows_and_quantile_order(fitted: Forecaster, history: SalesHistory):
    pred = fitted.predict(history, future_frame(history), HORIZON, QUANTILES)
    assert list(pred.columns) == ["item_id", "date", "mean", "q0.1", "q0.5", "q0.9"]
    dates = forecast_dates(history, HORIZON)
    expected = pd.MultiIndex.from_product([sorted(ITEMS), dates])
    got = pd.MultiIndex.from_arrays([pred["item_id"], pd.to_datetime(pred["date"])])
    assert got.equals(expected), "one row per item and forecast period, item then date order"
    values = pred[["mean", "q0.1", "q0.5", "q0.9"]].to_numpy(dtype=np.float64)
    assert np.isfinite(values).all()
    assert (pred["mean"] >= 0).all()
    assert (pred["q0.1"] <= pred["q0.5"]).all() and (pred["q0.5"] <= pred["q0.9"]).all()
    assert (pred["q0.9"] > pred["q0.1"]).any(), "a probabilistic forecast has spread"


def test_save_load_reproduces_predictions_exactly(
    fitted: Forecaster, history: SalesHistory, tmp_path: Path
):
    future = future_frame(history)
    before = fitted.predict(history, future, HORIZON, QUANTILES)
    fitted.save(tmp_path / "model")
    loaded = type(fitted).load(tmp_path / "model")
    after = loaded.predict(history, future, HORIZON, QUANTILES)
    pd.testing.assert_frame_equal(before, after, check_exact=True)


def test_sample_shape_and_seed(fitted: Forecaster, history: SalesHistory):
    if not fitted.probabilistic:
        pytest.skip(f"{fitted.name} is not probabilistic")
    future = future_frame(history)
    draws = fitted.sample(history, future, HORIZON, n_samples=16, seed=3)
    assert draws.shape == (len(ITEMS), 16, HORIZON)
    assert np.isfinite(draws).all() and (draws >= 0).all()
    again = fitted.sample(history, future, HORIZON, n_samples=16, seed=3)
    np.testing.assert_array_equal(draws, again)


def _context(model: Forecaster, history: SalesHistory) -> DemandContext:
    width = int(getattr(model, "context_length", 14))
    frame = history.frame
    days = (frame["date"].to_numpy().astype("datetime64[D]").astype(np.int64)).reshape(
        len(ITEMS), -1
    )[:, -width:]

    def last(column: str) -> torch.Tensor:
        values = frame[column].to_numpy(dtype=np.float32).reshape(len(ITEMS), -1)
        return torch.from_numpy(values[:, -width:].copy())

    vocab = getattr(model, "items_", None) or getattr(model, "item_ids", None)
    return DemandContext(
        past_units=last("units_sold"),
        past_observed=torch.ones(len(ITEMS), width, dtype=torch.bool),
        past_discount=last("discount"),
        past_promo=last("promo"),
        past_day=torch.from_numpy(days.copy()),
        item=torch.tensor([list(vocab).index(i) for i in ITEMS]),
        day=torch.from_numpy(days[:, -1] + 1),
    )


def test_one_step_shape(fitted: Forecaster, history: SalesHistory):
    context = _context(fitted, history)
    discounts = torch.tensor([0.0, 0.2, 0.4])
    try:
        mean, dispersion = fitted.one_step(context, discounts)
    except NotImplementedError:
        pytest.skip(f"{fitted.name} has no one-step face")
    assert mean.shape == dispersion.shape == (len(ITEMS), 3)
    assert mean.dtype == dispersion.dtype == torch.float64
    assert (mean >= 0).all() and (dispersion > 0).all()
    for bad in ([0.0, 1.0], [-0.1], [float("nan")], [[0.0, 0.2]]):  # last: wrong batch size
        with pytest.raises(DataError, match="one_step: discount"):
            fitted.one_step(context, torch.tensor(bad))


def test_unknown_item_is_a_data_error(fitted: Forecaster, history: SalesHistory):
    future = future_frame(history, items=("apple", "durian"))
    with pytest.raises(DataError, match="durian"):
        fitted.predict(history, future, HORIZON, QUANTILES)


def test_bad_predict_arguments_are_clear_errors(fitted: Forecaster, history: SalesHistory):
    """Every forecaster checks the contract's arguments the same way, before any work."""
    future = future_frame(history)
    for quantiles in ((0.1, 1.5), (-0.2,), (0.0,), (float("nan"),), (), "0.5", (None,)):
        with pytest.raises(PromogymInputError, match="quantiles must be a sequence of numbers"):
            fitted.predict(history, future, HORIZON, quantiles)
    for horizon in (0, 1.5, None, "2"):
        with pytest.raises(PromogymInputError, match="horizon must be a whole number"):
            fitted.predict(history, future, horizon, QUANTILES)  # type: ignore[arg-type]
    doubled = pd.concat([future, future.iloc[[2]].assign(price=5.0)], ignore_index=True)
    with pytest.raises(DataError, match="has two rows for"):
        fitted.predict(history, doubled, HORIZON, QUANTILES)
    for column, value in (("list_price", np.nan), ("list_price", -5.0), ("promo", np.nan)):
        bad = future.copy()
        bad.loc[0, column] = value
        with pytest.raises(DataError, match=column):
            fitted.predict(history, bad, HORIZON, QUANTILES)
    weekly_frame = history.frame[history.frame["date"].dt.day_of_week == 0]
    weekly = history_from_frame(weekly_frame, categorical=list(history.categorical))
    with pytest.raises(DataError, match="weekly data, but .* fitted on daily data"):
        fitted.predict(weekly, future_frame(weekly), HORIZON, QUANTILES)
    if fitted.probabilistic:
        with pytest.raises(PromogymInputError, match="n_samples must be a whole number"):
            fitted.sample(history, future, HORIZON, 0)
        for seed in (None, -1, 0.5):
            with pytest.raises(PromogymInputError, match="seed must be a whole number >= 0"):
                fitted.sample(history, future, HORIZON, 4, seed=seed)  # type: ignore[arg-type]


# ---- baseline specifics ----------------------------------------------------------------------
def test_seasonal_naive_one_step_matches_predict(history: SalesHistory):
    model = SeasonalNaive().fit(history)
    pred = model.predict(history, future_frame(history, horizon=1), 1)
    context = _context(model, history)
    mean, _ = model.one_step(context, torch.tensor([0.0, 0.5]))
    np.testing.assert_array_equal(mean[:, 0].numpy(), pred["mean"].to_numpy())
    assert torch.equal(mean[:, 0], mean[:, 1]), "seasonal naive is price-blind"
    import dataclasses

    unknown = dataclasses.replace(context, item=torch.full_like(context.item, -1))
    _, disp = model.one_step(unknown, torch.tensor([0.0]))
    assert torch.all(disp == torch.as_tensor(model.dispersion_).median())  # not the last item's
    with pytest.raises(DataError, match="out of range"):
        model.one_step(dataclasses.replace(context, item=context.item + 10), torch.tensor([0.0]))


def test_missing_forecast_period_is_a_data_error(history: SalesHistory):
    model = SeasonalNaive().fit(history)
    future = future_frame(history).iloc[1:]
    with pytest.raises(DataError, match="no row for forecast period"):
        model.predict(history, future, HORIZON)


def test_nb_quantiles_gamma_branch_matches_exact_cdf():
    mean, r = np.array([3000.0, 20000.0]), np.array([40.0, 8.0])
    approx = negative_binomial_quantiles(mean, r, [0.1, 0.5, 0.9])
    for k in range(2):
        support = int(mean[k] * 3)
        pmf = negative_binomial_pmf(torch.tensor([mean[k]]), torch.tensor([r[k]]), support)
        cdf = torch.cumsum(pmf[0], 0).numpy()
        exact = np.array([(cdf < q).sum() for q in (0.1, 0.5, 0.9)])
        assert np.abs(approx[k] - exact).max() <= 0.002 * mean[k]


def test_lightgbm_load_names_a_missing_booster(history: SalesHistory, tmp_path: Path):
    pytest.importorskip("lightgbm")
    _lightgbm().fit(history).save(tmp_path / "m")
    (tmp_path / "m" / "booster_h2.txt").unlink()
    from promogym.forecasters.baselines import LightGBMForecaster

    with pytest.raises(PromogymInputError, match="missing booster_h2.txt"):
        LightGBMForecaster.load(tmp_path / "m")


def test_lightgbm_requires_extra_numeric_covariates(history: SalesHistory):
    pytest.importorskip("lightgbm")
    frame = history.frame.assign(feat=(history.frame["promo"] * 0.5).astype(np.float64))
    with_feat = SalesHistory(frame=frame, freq="D", categorical=history.categorical)
    model = _lightgbm().fit(with_feat)
    with pytest.raises(DataError, match="'feat'"):
        model.predict(with_feat, future_frame(with_feat), HORIZON)
    pred = model.predict(with_feat, future_frame(with_feat).assign(feat=0.5), HORIZON)
    assert pred.shape[0] == len(ITEMS) * HORIZON
    with pytest.raises(DataError, match="no column 'feat', a covariate"):  # history lacks it
        model.predict(history, future_frame(history).assign(feat=0.5), HORIZON)


# ---- ensemble specifics ----------------------------------------------------------------------
def test_ensemble_is_the_weighted_quantile_average_of_its_members(history: SalesHistory):
    from promogym.forecasters.ensemble import EnsembleForecaster

    members = [_seasonal_naive(), _transformer()]
    ensemble = EnsembleForecaster(members, weights=(1.0, 3.0)).fit(history)
    future = future_frame(history)
    got = ensemble.predict(history, future, HORIZON, QUANTILES)
    a, b = (m.predict(history, future, HORIZON, QUANTILES) for m in members)
    for column in ("mean", "q0.1", "q0.5", "q0.9"):
        np.testing.assert_allclose(got[column], 0.25 * a[column] + 0.75 * b[column])
    pd.testing.assert_frame_equal(got[["item_id", "date"]], a[["item_id", "date"]])


def test_ensemble_bad_weights_and_mismatched_members_are_clear_errors(history: SalesHistory):
    from promogym.errors import ConfigError
    from promogym.forecasters.ensemble import EnsembleForecaster, combine_predictions

    with pytest.raises(ConfigError, match="one per member"):
        EnsembleForecaster([SeasonalNaive(), SeasonalNaive()], weights=(1.0,))
    with pytest.raises(ConfigError, match="one per member"):
        EnsembleForecaster([SeasonalNaive()], weights=(-1.0,))
    model = SeasonalNaive().fit(history)
    pred = model.predict(history, future_frame(history), HORIZON, QUANTILES)
    with pytest.raises(DataError, match="same quantiles"):
        combine_predictions([pred, pred.drop(columns="q0.9")], (1, 1))
    with pytest.raises(DataError, match="other rows"):
        combine_predictions([pred, pred.iloc[::-1]], (1, 1))


def test_ensemble_combines_many_quantiles_without_fragmenting_the_frame():
    """99 quantile columns (as benchmarks/bench_oj.py asks for) combine in one frame: no
    pandas PerformanceWarning, the same column order, the weighted values."""
    import warnings

    from promogym.forecasters.ensemble import combine_predictions

    levels = [f"q{k / 100:g}" for k in range(1, 100)]
    keys = pd.DataFrame({"item_id": ["a", "b"], "date": pd.to_datetime(["2024-01-01"] * 2)})
    a = pd.concat([keys, pd.DataFrame(1.0, index=keys.index, columns=["mean", *levels])], axis=1)
    b = a.assign(**{c: 5.0 for c in ["mean", *levels]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.PerformanceWarning)
        got = combine_predictions([a, b], (3, 1))
    assert list(got.columns) == list(a.columns)
    np.testing.assert_allclose(got[["mean", *levels]].to_numpy(), 2.0)
    pd.testing.assert_frame_equal(got[["item_id", "date"]], keys)


def test_ensemble_one_step_is_the_moment_matched_mixture(history: SalesHistory):
    from promogym.forecasters.ensemble import EnsembleForecaster

    members = [_transformer(0).fit(history), _transformer(1).fit(history)]
    context, discounts = _context(members[0], history), torch.tensor([0.0, 0.2, 0.4])
    (m0, r0), (m1, r1) = (m.one_step(context, discounts) for m in members)
    mean, r = EnsembleForecaster(members, (0.25, 0.75)).one_step(context, discounts)
    torch.testing.assert_close(mean, 0.25 * m0 + 0.75 * m1)
    second = 0.25 * (m0 + m0**2 / r0 + m0**2) + 0.75 * (m1 + m1**2 / r1 + m1**2)
    torch.testing.assert_close(mean + mean**2 / r, second - mean**2)  # mixture variance
    alone, r_alone = EnsembleForecaster(members[:1]).one_step(context, discounts)
    torch.testing.assert_close(alone, m0)
    torch.testing.assert_close(r_alone, r0)
    mixed = EnsembleForecaster([SeasonalNaive().fit(history), members[0]])
    with pytest.raises(DataError, match="differ in") as err:
        mixed.one_step(context, discounts)
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


def test_ensemble_save_load_keeps_the_weights_exactly(history: SalesHistory, tmp_path: Path):
    from promogym.forecasters.ensemble import EnsembleForecaster

    members = [SeasonalNaive().fit(history) for _ in range(7)]  # 1/7 does not round-trip twice
    ensemble = EnsembleForecaster(members)
    ensemble.save(tmp_path / "e")
    assert EnsembleForecaster.load(tmp_path / "e").weights == ensemble.weights


def test_lightgbm_item_scales_follow_each_items_spread(history: SalesHistory):
    pytest.importorskip("lightgbm")
    from promogym.forecasters.baselines import LightGBMForecaster

    # The formula: own squared residuals plus k pseudo-residuals at the pooled mean square.
    model = LightGBMForecaster(scale_shrinkage=2.0)
    residuals = np.array([[0.1, -0.1, np.nan], [1.0, -1.0, 1.0], [np.nan, np.nan, np.nan]])
    pooled = (0.01 * 2 + 1.0 * 3) / 5
    expected = np.sqrt([(0.02 + 2 * pooled) / 4, (3.0 + 2 * pooled) / 5, pooled])
    np.testing.assert_allclose(model._item_scales(residuals), expected)
    assert (LightGBMForecaster(residual_scale="global")._item_scales(residuals) == 1).all()
    # A noisy item gets wider log-space intervals than a quiet one; "global" gives all the same.
    rng = np.random.default_rng(1)
    noise = np.where(
        history.frame["item_id"] == "pear", rng.lognormal(0, 1.2, len(history.frame)), 1
    )
    frame = history.frame.assign(units_sold=np.round(history.frame["units_sold"] * noise))
    noisy = SalesHistory(frame=frame, freq="D", categorical=history.categorical)
    future = future_frame(noisy)
    widths = {}
    for scale in ("item", "global"):
        fitted = _lightgbm()
        fitted.residual_scale, fitted.scale_shrinkage = scale, 1.0
        pred = fitted.fit(noisy).predict(noisy, future, HORIZON, QUANTILES)
        width = np.log1p(pred["q0.9"]) - np.log1p(pred["q0.1"])
        widths[scale] = width.groupby(pred["item_id"]).mean()
    assert widths["item"]["pear"] > 1.3 * widths["item"][["apple", "kiwi"]].max()
    np.testing.assert_allclose(widths["global"], widths["global"].mean())
    with pytest.raises(PromogymInputError, match="residual_scale"):
        LightGBMForecaster(residual_scale="per-item")


def test_lightgbm_loads_a_directory_saved_before_item_scales(history: SalesHistory, tmp_path: Path):
    import json

    pytest.importorskip("lightgbm")
    from promogym.forecasters.baselines import META_FILE, LightGBMForecaster

    model = _lightgbm()
    model.residual_scale = "global"
    model.fit(history)
    model.save(tmp_path)
    meta = json.loads((tmp_path / META_FILE).read_text())
    del meta["item_scales"], meta["config"]["residual_scale"], meta["config"]["scale_shrinkage"]
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    loaded = LightGBMForecaster.load(tmp_path)
    assert loaded.residual_scale == "global"
    future = future_frame(history)
    pd.testing.assert_frame_equal(
        loaded.predict(history, future, HORIZON), model.predict(history, future, HORIZON)
    )
