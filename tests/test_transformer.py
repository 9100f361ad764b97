"""Transformer forecaster: tiny configs (2+2 layers, d_model 16, context 14)."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_FORECASTER
from transformers.modeling_outputs import Seq2SeqTSPredictionOutput

from promogym.config import CampaignConfig
from promogym.data import SalesHistory, history_from_frame
from promogym.envs.core import CampaignParams
from promogym.envs.market import ReferenceMarket, random_market_params
from promogym.errors import ConfigError, DataError
from promogym.forecasters.base import DemandContext
from promogym.forecasters.features import time_features
from promogym.forecasters.likelihood import (
    LIKELIHOODS,
    LOG_NORMAL,
    discretised_log_normal_log_prob,
    log_normal_as_nb,
    log_normal_moments,
    log_normal_quantile,
    mixture_quantiles,
    nb_quantile,
    negative_binomial_survival,
)
from promogym.forecasters.transformer import (
    BASE_WEIGHTS_DIR,
    BASE_WEIGHTS_DIRS,
    RECALIBRATION_LEVELS,
    TransformerConfig,
    TransformerForecaster,
    Windows,
    build_network,
    impute_censored,
    observed_targets,
    series_from_frame,
    to_days,
    window_loss,
    with_group_prices,
)
from promogym.simulate import simulate_history

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dataclasses.replace(TINY_FORECASTER, epochs=2, windows_per_epoch=128, num_samples=32)


def make_history(n_items: int = 2, periods: int = 90, seed: int = 0, **ranges) -> SalesHistory:
    params = random_market_params(n_items, np.random.default_rng(seed), **ranges)
    frame = simulate_history(ReferenceMarket(params, "D"), periods, "2024-01-01", seed)
    return history_from_frame(frame, "toy")


def future_frame(history: SalesHistory, horizon: int, discounts=(0.0, 0.2, 0.4)) -> pd.DataFrame:
    last = history.frame["date"].max()
    rows = []
    for item in history.item_ids:
        lp = float(history.item(item)["list_price"].iloc[-1])
        for h in range(horizon):
            d = discounts[h % len(discounts)]
            rows.append(
                {"item_id": item, "date": last + pd.Timedelta(days=h + 1), "price": lp * (1 - d)}
            )
    return pd.DataFrame(rows)


def context_of(history: SalesHistory, c: int, items: list[int]) -> DemandContext:
    """One-step contexts: the last ``c`` periods of the given items (vocabulary indices)."""
    ids = history.item_ids
    tails = [history.item(ids[i]).iloc[-c:] for i in items]

    def stack(col: str, dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor(np.stack([t[col].to_numpy(np.float64) for t in tails]), dtype=dtype)

    last = [int(to_days(t["date"])[-1]) for t in tails]
    return DemandContext(
        past_units=stack("units_sold", torch.float32),
        past_observed=~torch.tensor(np.stack([t["censored"].to_numpy(bool) for t in tails])),
        past_discount=stack("discount", torch.float32),
        past_promo=stack("promo", torch.float32),
        past_day=torch.tensor(np.stack([to_days(t["date"]) for t in tails])),
        item=torch.tensor(items),
        day=torch.tensor(last) + 1,
    )


@pytest.fixture(scope="module")
def history() -> SalesHistory:
    return make_history()


@pytest.fixture(scope="module")
def fitted(history: SalesHistory) -> TransformerForecaster:
    return TransformerForecaster(TINY, from_scratch=True).fit(history)


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="heads"):
        TransformerConfig(d_model=16, heads=3)
    with pytest.raises(ConfigError, match="context_length"):
        TransformerConfig(context_length=7, lags=(1, 7))
    with pytest.raises(ConfigError, match="unknown key"):
        TransformerConfig.from_dict({"d_modle": 3})
    with pytest.raises(ConfigError, match="set recalibrate_by_promo=False"):
        TransformerConfig(recalibrate_by_promo=True, recalibrate_quantiles=False)
    with pytest.raises(ConfigError, match="censored_loss must be 'survival' or 'drop'"):
        TransformerConfig(censored_loss="ignore")
    with pytest.raises(ConfigError, match="likelihood must be one of"):
        TransformerConfig(likelihood="poisson")
    assert TransformerConfig.from_dict(TINY.to_dict()) == TINY


def test_shapes(fitted: TransformerForecaster, history: SalesHistory) -> None:
    assert fitted.context_length == 14
    assert set(fitted.validation_metrics) >= {"nll", "mape", "pinball", "coverage80"}
    pred = fitted.predict(history, future_frame(history, 3), 3, quantiles=(0.1, 0.5, 0.9))
    assert list(pred.columns) == ["item_id", "date", "mean", "q0.1", "q0.5", "q0.9"]
    assert len(pred) == 2 * 3 and (pred["mean"] > 0).all()
    assert (pred["q0.1"] <= pred["q0.5"]).all() and (pred["q0.5"] <= pred["q0.9"]).all()
    paths = fitted.sample(history, future_frame(history, 3), 3, n_samples=5, seed=1)
    assert paths.shape == (2, 5, 3) and (paths >= 0).all()
    mean, disp = fitted.one_step(context_of(history, 14, [0, 1, 1]), torch.tensor([0.0, 0.3]))
    assert mean.shape == disp.shape == (3, 2) and mean.dtype == torch.float64
    assert bool((mean > 0).all() and (disp > 0).all())


def test_one_step_matches_predict_horizon_one(
    fitted: TransformerForecaster, history: SalesHistory
) -> None:
    ladder = (0.0, 0.2, 0.4)
    mean, _ = fitted.one_step(context_of(history, 14, [0, 1]), torch.tensor(ladder))
    for a, d in enumerate(ladder):
        pred = fitted.predict(history, future_frame(history, 1, (d,)), 1)
        np.testing.assert_allclose(mean[:, a].numpy(), pred["mean"].to_numpy(), rtol=1e-5)
    # Per-context candidates (B, A) give the same numbers as a shared ladder.
    per_row = fitted.one_step(context_of(history, 14, [0, 1]), torch.tensor([ladder, ladder]))[0]
    torch.testing.assert_close(per_row, mean, rtol=1e-6, atol=1e-9)


def test_save_load_round_trip_is_exact(
    fitted: TransformerForecaster, history: SalesHistory, tmp_path: Path
) -> None:
    fitted.save(tmp_path / "m")
    loaded = TransformerForecaster.load(tmp_path / "m")
    assert loaded.item_ids == fitted.item_ids and loaded.config.device == "auto"  # the loader's
    assert dataclasses.replace(loaded.config, device=fitted.config.device) == fitted.config
    assert loaded.validation_metrics == fitted.validation_metrics
    fut = future_frame(history, 3)
    pd.testing.assert_frame_equal(loaded.predict(history, fut, 3), fitted.predict(history, fut, 3))
    ctx = context_of(history, 14, [0, 1])
    ladder = torch.tensor([0.0, 0.1, 0.5])
    assert torch.equal(loaded.one_step(ctx, ladder)[0], fitted.one_step(ctx, ladder)[0])
    # A model fitted on a GPU loads where there is none: the device is the loader's choice.
    meta_path = tmp_path / "m" / "config.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["device"] = "cuda:1"
    meta_path.write_text(json.dumps(meta))
    on_gpu_once = TransformerForecaster.load(tmp_path / "m")
    assert on_gpu_once.config.device == "auto"
    assert torch.equal(on_gpu_once.one_step(ctx, ladder)[0], fitted.one_step(ctx, ladder)[0])
    assert TransformerForecaster.load(tmp_path / "m", device="cpu").device == torch.device("cpu")


def test_the_simulator_mixes_promotion_and_none_by_the_historys_rates(
    history: SalesHistory, tmp_path: Path
) -> None:
    """Where the history ran promotions on only some discounted periods, the simulator's
    candidate is the mixture; where promotions are the discounts (simulated shops), the rule."""
    from promogym.forecasters.features import default_promo_rates

    frame = history.frame.copy()
    on_sale = frame["discount"] > 0
    frame["promo"] = (on_sale & (np.arange(len(frame)) % 2 == 0)).astype(float)  # half of them
    mixed = dataclasses.replace(history, frame=frame)
    model = TransformerForecaster(dataclasses.replace(TINY, epochs=1), from_scratch=True)
    model.fit(mixed)
    rates = model.promo_rates
    assert rates is not None and rates[0] == 0.0 and rates != default_promo_rates()
    assert all(0.0 < r <= 1.0 for r in rates[1:]) and min(rates[1:]) < 0.8
    model.save(tmp_path / "m")
    assert TransformerForecaster.load(tmp_path / "m").promo_rates == rates
    ctx = context_of(mixed, 14, [0, 1])
    ladder = torch.tensor([0.0, 0.2, 0.4])

    def one_step_at(rate: float) -> tuple[torch.Tensor, torch.Tensor]:
        model.promo_rates = [0.0] + [rate] * (len(rates) - 1)
        return model.one_step(ctx, ladder)

    (on, r_on), (off, r_off), (mix, r_mix) = (one_step_at(x) for x in (1.0, 0.0, 0.3))
    torch.testing.assert_close(mix, 0.3 * on + 0.7 * off)
    torch.testing.assert_close(mix[:, 0], on[:, 0])  # no discount: no promotion either way
    assert not torch.allclose(on[:, 1:], off[:, 1:])
    # the NB with the mixture's variance: E[Var] + Var[E] over promotion or not
    variance = 0.3 * (on + on**2 / r_on) + 0.7 * (off + off**2 / r_off) + 0.21 * (on - off) ** 2
    torch.testing.assert_close(mix + mix**2 / r_mix, variance)
    # the environment records a simulated period's promo flag as its probability
    from promogym.envs.core import initial_state
    from promogym.envs.forecaster_demand import ForecasterDemand

    model.promo_rates = rates
    env_demand = ForecasterDemand(model, mixed)
    params = CampaignParams.from_config(CampaignConfig(), device="cpu")
    lo, _ = env_demand.windows.start_range(env_demand.context_length)
    state = initial_state(params, torch.tensor([0, 1]), env_demand.windows.day_of(torch.tensor(lo)))
    memory = env_demand.initial_memory(state)
    discount = torch.tensor([0.0, 0.2])
    units = torch.tensor([3.0, 4.0])
    after = env_demand.update_memory(memory, state, discount, units, units)
    assert after["past_promo"][:, -1].tolist() == pytest.approx(
        model.promo_probability(discount).tolist()
    )
    assert after["past_promo"][1, -1].item() == pytest.approx(rates[3])  # 20% off: bin 15-25%
    model.promo_rates = None  # a model saved before the rates: every discount is a promotion
    torch.testing.assert_close(model.one_step(ctx, ladder)[0], on)
    assert model.promo_probability(discount).tolist() == [0.0, 1.0]
    fitted_rule = TransformerForecaster(dataclasses.replace(TINY, epochs=1), from_scratch=True)
    assert fitted_rule.fit(history).promo_rates == default_promo_rates()


def test_predict_without_a_promo_column_takes_the_historys_usual_flag_at_each_depth(
    fitted: TransformerForecaster, history: SalesHistory
) -> None:
    """A planned price without a promo flag is a promotion when the history's periods at
    its depth mostly were: a 2% price move is not one where the history's were not."""
    future = future_frame(history, 3, discounts=(0.0, 0.02, 0.2))
    rates = fitted.promo_rates
    try:
        fitted.promo_rates = [0.0, 0.1, 0.3, 0.9, 0.9, 0.9, 0.9]  # 0-5%: 10%; 15-25%: 90%
        flagged = future.assign(promo=[0.0, 0.0, 1.0] * len(history.item_ids))
        pd.testing.assert_frame_equal(
            fitted.predict(history, future, 3), fitted.predict(history, flagged, 3)
        )
        fitted.promo_rates = None  # no rates: every discount is a promotion (price < list)
        flagged = future.assign(promo=[0.0, 1.0, 1.0] * len(history.item_ids))
        pd.testing.assert_frame_equal(
            fitted.predict(history, future, 3), fitted.predict(history, flagged, 3)
        )
    finally:
        fitted.promo_rates = rates


def test_promo_rates_come_from_before_validation_then_every_period_with_the_refit(
    history: SalesHistory,
) -> None:
    """Deals only in the held-out periods: the held-out model's rates do not see them (the
    check stays honest), the refitted simulator's do."""
    frame = history.frame.copy()
    late = frame.groupby("item_id").cumcount(ascending=False) < TINY.validation_periods
    frame["promo"] = ((frame["discount"] > 0) & late).astype(float)
    deals_late = dataclasses.replace(history, frame=frame)
    rates = {}
    for refit in (False, True):
        config = dataclasses.replace(TINY, epochs=1, refit=refit)
        model = TransformerForecaster(config, from_scratch=True)
        rates[refit] = model.fit(deals_late).promo_rates
    on_sale_bins = [k for k in range(1, len(rates[False])) if rates[False][k] < 1.0]
    assert on_sale_bins  # discounts before validation were not deals
    assert all(rates[True][k] >= rates[False][k] for k in on_sale_bins)
    assert any(rates[True][k] > rates[False][k] for k in on_sale_bins)


def test_same_seed_same_model(history: SalesHistory) -> None:
    cfg = dataclasses.replace(TINY, epochs=1)
    a = TransformerForecaster(cfg, from_scratch=True).fit(history)
    b = TransformerForecaster(cfg, from_scratch=True).fit(history)
    ctx = context_of(history, 14, [0, 1])
    assert torch.equal(
        a.one_step(ctx, torch.tensor([0.0, 0.3]))[0], b.one_step(ctx, torch.tensor([0.0, 0.3]))[0]
    )


def _toy_windows(censored_value: float) -> Windows:
    g = torch.Generator().manual_seed(0)
    n, t = 4, 16
    units = torch.poisson(torch.full((n, t), 8.0), generator=g)
    observed = torch.ones(n, t, dtype=torch.bool)
    observed[0, 3] = observed[1, 10] = observed[2, 15] = observed[3, 14] = False  # past + future
    units = torch.where(observed, units, torch.full_like(units, censored_value))
    discount = (torch.rand(n, t, generator=g) < 0.3) * 0.2
    return Windows(
        units=units,
        observed=observed,
        discount=discount.float(),
        promo=(discount > 0).float(),
        day=19_700 + torch.arange(t).expand(n, t),
        item=torch.tensor([1, 1, 2, 2]),
        daily=torch.ones(n),
    )


def test_missing_periods_do_not_change_loss_or_gradients() -> None:
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, dropout=0.0)
    model = build_network(cfg, 2)
    grads = []
    losses = []
    for value in (0.0, 3.0, 500.0, math.nan):  # whatever a missing period holds
        model.zero_grad()
        loss = window_loss(model, _toy_windows(value), cfg)
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append(
            torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        )
    assert losses[0] == losses[1] == losses[2] == losses[3]
    assert all(torch.equal(grads[0], g) for g in grads[1:])
    # Sanity: an observed period's value does change the loss (the test can fail).
    w = _toy_windows(0.0)
    w2 = dataclasses.replace(w, units=w.units.clone())
    w2.units[0, 15] += 5
    assert float(window_loss(model, w2, cfg).detach()) != losses[0]


def _censored_windows(stock: float) -> Windows:
    """The toy windows with window 0's last period a stock-out at ``stock`` units."""
    w = _toy_windows(0.0)
    units, observed, censored = w.units.clone(), w.observed.clone(), w.censored.clone()
    units[0, 15], observed[0, 15], censored[0, 15] = stock, False, True
    return dataclasses.replace(w, units=units, observed=observed, censored=censored)


def _teacher_forced(
    model: torch.nn.Module, w: Windows, values: torch.Tensor, c: int
) -> Seq2SeqTSPredictionOutput:
    """Hugging Face's own forward pass over windows ``w`` with the network's input ``values``
    (units or log units): the reference the loss tests rebuild their terms from."""
    feats = time_features(w.discount, w.promo, w.day, w.observed, w.daily, c, w.extra)
    return model(
        past_values=values[:, :c],
        past_time_features=feats[:, :c],
        past_observed_mask=w.observed[:, :c].float(),
        static_categorical_features=w.item.unsqueeze(1),
        future_values=values[:, c:],
        future_time_features=feats[:, c:],
        future_observed_mask=w.observed[:, c:].float(),
    )


@torch.no_grad()
def test_loss_terms_match_hugging_face_and_censored_periods_count_as_at_least_stock() -> None:
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, dropout=0.0)
    model = build_network(cfg, 2)
    c = cfg.context_length
    w = _censored_windows(9.0)
    loss = window_loss(model, w, cfg)
    # Rebuild every term from the network's distribution: the observed ones are HF's loss.
    units = impute_censored(w.units, w.observed, c)
    out = _teacher_forced(model, w, units, c)
    total_count, logits = out.params
    nb = torch.distributions.NegativeBinomial(total_count, logits=logits)
    obs = w.observed[:, c:]
    log_p = nb.log_prob(units[:, c:])
    torch.testing.assert_close(-log_p[obs].mean(), out.loss)
    # The stock-out adds -log P(Y >= 9) = -log(1 - sum_{k<9} P(Y = k)).
    t, lg = total_count[0, -1], logits[0, -1]
    below = sum(
        float(torch.exp(nb.log_prob(torch.tensor(float(k))).detach()[0, -1])) for k in range(9)
    )
    expected = (-float(log_p[obs].sum().detach()) - np.log(1.0 - below)) / (int(obs.sum()) + 1)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    surv = negative_binomial_survival(t[None], lg[None], torch.tensor([9.0])).detach()
    assert float(surv) == (pytest.approx(1.0 - below, rel=1e-5))
    # A larger stock at the stock-out is a larger loss (the model should have predicted more).
    terms = [float(window_loss(model, _censored_windows(s), cfg)) for s in (3.0, 9.0, 30.0)]
    assert terms[0] < terms[1] < terms[2]
    # Dropping it instead gives HF's loss over the observed periods only.
    drop = dataclasses.replace(cfg, censored_loss="drop")
    assert float(window_loss(model, w, drop)) == pytest.approx(float(out.loss), rel=1e-6)


@torch.no_grad()
def test_log_normal_loss_is_the_probability_of_the_counts_and_censoring_counts() -> None:
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, dropout=0.0, likelihood="log_normal", price_head=False)
    model = build_network(cfg, 2)
    c = cfg.context_length
    w = _toy_windows(0.0)
    out = _teacher_forced(model, w, torch.log1p(impute_censored(w.units, w.observed, c)), c)
    # Each observed count adds -log P(log(y + 0.5) <= X < log(y + 1.5)), X the network's normal.
    loc, sigma = out.params
    normal = torch.distributions.Normal(
        (out.loc + out.scale * loc).double(), (out.scale * sigma).double()
    )
    obs = w.observed[:, c:]
    y = w.units[:, c:].double()
    prob = normal.cdf(torch.log(y + 1.5)) - normal.cdf(torch.log(y + 0.5))
    expected = -torch.log(prob)[obs].mean()
    assert float(window_loss(model, w, cfg)) == pytest.approx(float(expected), rel=1e-5)
    # The price head's path (all zeros at the start) gives the same loss.
    head = dataclasses.replace(cfg, price_head=True)
    with_head = build_network(head, 2)
    with_head.load_state_dict(model.state_dict(), strict=False)
    assert float(window_loss(with_head, w, head)) == pytest.approx(float(expected), rel=1e-5)
    # A stock-out adds -log P(X >= log(stock + 0.5)), growing with the stock.
    terms = [float(window_loss(model, _censored_windows(s), cfg)) for s in (3.0, 9.0, 30.0)]
    assert terms[0] < terms[1] < terms[2]
    surv = 1.0 - normal.cdf(torch.log(torch.tensor(9.5, dtype=torch.float64)))[0, -1]
    # Period (0, -1) moves from the observed terms to the censored one.
    n_obs = int(obs.sum())
    own = float(torch.log(prob[0, -1]))
    censored = (float(expected) * n_obs + own - float(torch.log(surv))) / n_obs
    assert terms[1] == pytest.approx(censored, rel=1e-5)


def test_discretised_log_normal_probabilities_sum_to_one_and_are_bounded() -> None:
    mu = torch.tensor([-1.0, 0.5, 3.0, 9.0], dtype=torch.float64)
    sigma = torch.tensor([0.05, 0.7, 1.5, 0.2], dtype=torch.float64)
    k = torch.arange(0, 200_000, dtype=torch.float64)
    p = torch.exp(discretised_log_normal_log_prob(k[:, None], mu, sigma))
    torch.testing.assert_close(p.sum(0), torch.ones(4, dtype=torch.float64), atol=2e-3, rtol=0)
    assert bool((p <= 1.0).all())
    # A zero under a nearly certain zero is nearly free: no reward for shrinking sigma further.
    assert float(discretised_log_normal_log_prob(torch.tensor(0.0), mu[:1], sigma[:1])) > -1e-6


FAMILY_PARAMS = {  # (first, second) of two moderate-count distributions per family
    "negative_binomial": ([30.0, 60.0], [5.0, 20.0]),
    "log_normal": ([math.log(30.0), math.log(60.0)], [0.5, 0.3]),
}


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_every_likelihood_agrees_with_its_own_draws(name: str) -> None:
    lik = LIKELIHOODS[name]
    first, second = (torch.tensor(v, dtype=torch.float64) for v in FAMILY_PARAMS[name])
    n = 200_000
    g = torch.Generator().manual_seed(0)
    y = lik.sample(first[:, None].expand(-1, n), second[:, None].expand(-1, n), g)
    torch.testing.assert_close(lik.mean(first, second), y.mean(1), rtol=0.01, atol=0.0)
    for q in (0.1, 0.5, 0.9):
        got = lik.quantile(q, first, second)
        torch.testing.assert_close(got, torch.quantile(y, q, dim=1), atol=1.0, rtol=0.0)
    # The PIT of the draws is (nearly) uniform: what the quantile recalibration relies on.
    pit = lik.pit(y, first[:, None], second[:, None])
    assert bool(((pit.mean(1) - 0.5).abs() < 0.02).all())
    assert bool((((pit < 0.1).double().mean(1)) - 0.1).abs().lt(0.02).all())
    # nll is -log P(Y = y): the probabilities of the support sum to one.
    k = torch.arange(0, 2_000, dtype=torch.float64)[:, None]
    total = torch.exp(-lik.nll(k, first, second)).sum(0)
    torch.testing.assert_close(total, torch.ones(2, dtype=torch.float64), atol=1e-3, rtol=0.0)
    # The simulator's NB has the family's mean.
    torch.testing.assert_close(lik.as_nb(first, second)[0], lik.mean(first, second))


def test_log_normal_helpers_match_its_draws() -> None:
    g = torch.Generator().manual_seed(0)
    # Large, medium and small counts (the floor at 0 and the rounding matter for the last two).
    mu = torch.tensor([math.log(60.0), math.log(3.0), 0.0, -0.5], dtype=torch.float64)
    sigma = torch.tensor([0.4, 0.8, 1.0, 0.8], dtype=torch.float64)
    n = 400_000
    y = LOG_NORMAL.sample(mu[:, None].expand(-1, n), sigma[:, None].expand(-1, n), g)
    mean, var = log_normal_moments(mu, sigma)
    torch.testing.assert_close(mean, y.mean(1), rtol=0.01, atol=0.003)
    torch.testing.assert_close(var, y.var(1), rtol=0.05, atol=0.003)  # heavy tails: MC noise
    nb_mean, disp = log_normal_as_nb(mu, sigma)
    torch.testing.assert_close(nb_mean, mean)
    torch.testing.assert_close(nb_mean + nb_mean**2 / disp, var.clamp_min(mean), rtol=1e-6, atol=0)
    for q in (0.1, 0.5, 0.9):
        expected = torch.quantile(y, q, dim=1)
        torch.testing.assert_close(log_normal_quantile(q, mu, sigma), expected, atol=1.0, rtol=0.0)
    # Draws of the mixture quantile function follow the same law.
    m, s = mu.view(4, 1, 1).expand(4, 64, 1), sigma.view(4, 1, 1).expand(4, 64, 1)
    got = mixture_quantiles([0.1, 0.9], m, s, 64, g, likelihood=LOG_NORMAL)
    for i, q in enumerate((0.1, 0.9)):
        exact = log_normal_quantile(q, mu, sigma)
        assert bool(((got[i, :, 0] - exact).abs() <= 0.1 * exact + 1.0).all())


def test_log_normal_moments_match_exact_sums_across_the_closed_form_tail() -> None:
    # Counts below, around and far above the 32 exactly summed terms.
    mu = torch.tensor([-0.5, 1.5, 3.0, 3.45, 5.0, 9.0], dtype=torch.float64)
    sigma = torch.tensor([0.8, 1.0, 0.4, 0.3, 0.5, 0.3], dtype=torch.float64)
    k = torch.arange(0, 1_000_000, dtype=torch.float64)[:, None]
    cdf = torch.distributions.Normal(mu, sigma).cdf(torch.log(k[1:] + 0.5))
    zeros, ones = torch.zeros(1, 6, dtype=torch.float64), torch.ones(1, 6, dtype=torch.float64)
    p = torch.diff(torch.cat((zeros, cdf, ones)), dim=0)  # P(Y = k)
    mean = (k * p).sum(0)
    var = (k * k * p).sum(0) - mean**2
    got_mean, got_var = log_normal_moments(mu, sigma)
    torch.testing.assert_close(got_mean, mean, rtol=1e-4, atol=0.0)
    torch.testing.assert_close(got_var, var, rtol=1e-3, atol=0.0)


def test_log_normal_forecaster_fits_predicts_and_needs_a_matching_base(
    history: SalesHistory, tmp_path: Path
) -> None:
    cfg = dataclasses.replace(TINY, likelihood="log_normal")
    model = TransformerForecaster(cfg, from_scratch=True).fit(history)
    fut = future_frame(history, 3)
    pred = model.predict(history, fut, 3, quantiles=(0.1, 0.5, 0.9))
    assert (pred["mean"] > 0).all() and (pred["q0.1"] <= pred["q0.9"]).all()
    # one_step is the NB with the log-normal's moments, and predict's first period mean.
    ladder = (0.0, 0.2, 0.4)
    mean, disp = model.one_step(context_of(history, 14, [0, 1]), torch.tensor(ladder))
    assert bool((disp > 0).all())
    for a, d in enumerate(ladder):
        first = model.predict(history, future_frame(history, 1, (d,)), 1)
        np.testing.assert_allclose(mean[:, a].numpy(), first["mean"].to_numpy(), rtol=1e-5)
    # ... and its variance is that of the draws sample() makes (the simulator's spread).
    draws = model.sample(history, future_frame(history, 1, (0.2,)), 1, n_samples=4000, seed=0)
    var = mean[:, 1] + mean[:, 1] ** 2 / disp[:, 1]
    np.testing.assert_allclose(draws[:, :, 0].mean(1), mean[:, 1].numpy(), rtol=0.05)
    np.testing.assert_allclose(draws[:, :, 0].var(1), var.numpy(), rtol=0.15)
    assert model.dispersion_scale == 1.0  # the log-normal is not rescaled behind predict's back
    model.save(tmp_path / "ln")
    loaded = TransformerForecaster.load(tmp_path / "ln")
    assert loaded.config.likelihood == "log_normal"
    pd.testing.assert_frame_equal(loaded.predict(history, fut, 3), model.predict(history, fut, 3))
    with pytest.raises(ConfigError, match="pretrained with likelihood 'negative_binomial'"):
        TransformerForecaster(cfg, base_dir=BASE_WEIGHTS_DIR).fit(history)


def test_censored_term_pushes_the_mean_up() -> None:
    total_count = torch.tensor([4.0, 4.0])
    logits = torch.tensor([0.5, 0.5], requires_grad=True)
    surv = negative_binomial_survival(total_count, logits, torch.tensor([6.0, 20.0]))
    (-torch.log(surv).sum()).backward()
    assert bool(torch.all(logits.grad < 0))  # higher logit = higher mean = smaller loss
    assert float(surv[0].detach()) > float(surv[1].detach())


def test_one_step_ignores_censored_units(
    fitted: TransformerForecaster, history: SalesHistory
) -> None:
    ctx = context_of(history, 14, [0, 1])
    observed = ctx.past_observed.clone()
    observed[:, [3, 12]] = False
    a = dataclasses.replace(ctx, past_observed=observed)
    units = ctx.past_units.clone()
    units[:, [3, 12]] = 0.0
    b = dataclasses.replace(a, past_units=units)
    ladder = torch.tensor([0.0, 0.3])
    assert torch.equal(fitted.one_step(a, ladder)[0], fitted.one_step(b, ladder)[0])


def test_periods_censored_at_zero_stock_teach_nothing(history: SalesHistory) -> None:
    """``fill_gaps="missing"`` periods (stock 0): whatever units they record, the fit, its
    checks and its forecasts are the same."""
    frame = history.frame.copy()
    gap = frame.groupby("item_id").nth([30, 31, 85]).index  # in training and validation
    frame.loc[gap, "stock"], frame.loc[gap, "censored"] = 0.0, True
    fits = []
    for units in (0, 500):
        frame.loc[gap, "units_sold"] = units
        changed = dataclasses.replace(history, frame=frame.copy())
        fits.append(TransformerForecaster(TINY, from_scratch=True).fit(changed))
    zero, many = fits
    for a, b in zip(
        zero.model.state_dict().values(), many.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    assert zero.validation_metrics == many.validation_metrics
    assert zero.recalibration == many.recalibration and zero.held_out_response is not None
    rows = zero.held_out_response  # the held-out days of 2 items but the one missing each
    assert len(rows.actual) == 2 * (zero.config.validation_periods - 1) and np.array_equal(
        rows.actual, many.held_out_response.actual
    )


def test_fine_tuning_step_lowers_loss() -> None:
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, dropout=0.0)
    model = build_network(cfg, 2)
    w = _toy_windows(0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = float(window_loss(model, w, cfg).detach())
    for _ in range(5):
        opt.zero_grad()
        window_loss(model, w, cfg).backward()
        opt.step()
    assert float(window_loss(model, w, cfg).detach()) < before


@pytest.mark.parametrize("likelihood", ["negative_binomial", "log_normal"])
def test_deeper_discount_predicts_more_demand(likelihood: str) -> None:
    history = make_history(
        n_items=3, periods=240, seed=3, elasticity=(3.0, 3.5), urgency=(0.0, 0.1), dip=(0.0, 0.05)
    )
    cfg = dataclasses.replace(
        TINY, epochs=4, windows_per_epoch=768, learning_rate=3e-3, likelihood=likelihood
    )
    model = TransformerForecaster(cfg, from_scratch=True).fit(history)
    ctx = context_of(history, 14, [0, 1, 2])
    mean, _ = model.one_step(ctx, torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4, 0.5]))
    assert bool((mean[:, 1:] > mean[:, :-1]).all()), mean
    assert bool((mean[:, -1] > 1.5 * mean[:, 0]).all()), mean


def test_bad_inputs(fitted: TransformerForecaster, history: SalesHistory) -> None:
    short = SalesHistory(
        history.frame.groupby("item_id").head(20).reset_index(drop=True), "D", "short.csv"
    )
    with pytest.raises(DataError, match="too short"):
        TransformerForecaster(TINY, from_scratch=True).fit(short)
    tiny = SalesHistory(
        history.frame.groupby("item_id").tail(10).reset_index(drop=True), "D", "tiny.csv"
    )
    with pytest.raises(DataError, match="context_length"):
        fitted.predict(tiny, future_frame(tiny, 1), 1)
    unknown = future_frame(history, 1).assign(item_id="nope")
    with pytest.raises(DataError, match="unknown item 'nope'"):
        fitted.predict(history, unknown, 1)
    nan_future = future_frame(history, 2)
    nan_future.loc[1, "price"] = np.nan
    with pytest.raises(DataError, match="'price'"):
        fitted.predict(history, nan_future, 2)
    frame = history.frame.copy()
    frame.loc[frame.index[-3], "discount"] = np.nan
    with pytest.raises(DataError, match="'discount'"):
        fitted.predict(SalesHistory(frame, "D"), future_frame(history, 1), 1)
    with pytest.raises(DataError, match="not enough|after the history"):
        fitted.predict(history, future_frame(history, 1), 3)
    # A forecast that starts past the context: nothing recorded to forecast from.
    c = fitted.context_length
    later = future_frame(history, 1).assign(date=lambda f: f["date"] + pd.Timedelta(days=c))
    with pytest.raises(DataError, match=f"after {c} periods without rows.*none of the {c} periods"):
        fitted.predict(history, later, 1)
    # The gap does not count as history: a short item stays too short.
    with pytest.raises(DataError, match="has 10 periods of history"):
        fitted.predict(
            tiny, future_frame(tiny, 1).assign(date=lambda f: f["date"] + pd.Timedelta(days=40)), 1
        )
    # A price above the list price is a new regular price (the forecaster contract), so the
    # forecast is the regular-price one.
    dearer = future_frame(history, 1, discounts=(-0.5,))
    regular = future_frame(history, 1, discounts=(0.0,))
    pd.testing.assert_frame_equal(
        fitted.predict(history, dearer, 1).drop(columns="date"),
        fitted.predict(history, regular, 1).drop(columns="date"),
    )
    bad_item = dataclasses.replace(context_of(history, 14, [0, 1]), item=torch.tensor([0, 7]))
    with pytest.raises(DataError, match="out of range"):
        fitted.one_step(bad_item, torch.tensor([0.0]))
    with pytest.raises(DataError, match="context_length"):
        fitted.one_step(context_of(history, 10, [0]), torch.tensor([0.0]))
    # Single-line messages.
    with pytest.raises(DataError) as info:
        fitted.predict(history, unknown, 1)
    assert "\n" not in str(info.value)


def test_unknown_items_can_use_the_generic_row(
    fitted: TransformerForecaster, history: SalesHistory
) -> None:
    generic = TransformerForecaster(dataclasses.replace(fitted.config, unknown_items="generic"))
    generic.model, generic.item_ids, generic.freq = fitted.model, fitted.item_ids, fitted.freq
    fut = future_frame(history, 1)
    renamed = SalesHistory(history.frame.assign(item_id=history.frame["item_id"] + "-new"), "D")
    pred = generic.predict(renamed, fut.assign(item_id=fut["item_id"] + "-new"), 1)
    ctx = dataclasses.replace(context_of(history, 14, [0, 1]), item=torch.tensor([-1, -1]))
    np.testing.assert_allclose(
        pred["mean"].to_numpy(),
        generic.one_step(ctx, torch.tensor([0.0]))[0][:, 0].numpy(),
        rtol=1e-5,
    )


@pytest.mark.parametrize("likelihood", sorted(BASE_WEIGHTS_DIRS))
def test_shipped_base_loads_and_fine_tuning_starts_from_it(
    history: SalesHistory, likelihood: str
) -> None:
    base_dir = BASE_WEIGHTS_DIRS[likelihood]
    size = sum(p.stat().st_size for p in base_dir.iterdir())
    assert size <= 10 * 2**20
    base = TransformerForecaster.load(base_dir)
    assert base.item_ids == [] and base.config.unknown_items == "generic"
    assert base.config.likelihood == likelihood
    assert TransformerForecaster(TransformerConfig(likelihood=likelihood)).base_dir == base_dir
    ctx = context_of(history, base.context_length, [0, 1])
    generic_ctx = dataclasses.replace(ctx, item=torch.tensor([-1, -1]))
    mean, disp = base.one_step(generic_ctx, torch.tensor([0.0, 0.2, 0.4]))
    assert bool(torch.isfinite(mean).all() and torch.isfinite(disp).all() and (mean > 0).all())
    # A fine-tuned model starts from exactly the base's forecasts for every item.
    tuned = TransformerForecaster(dataclasses.replace(base.config, unknown_items="error"))
    tuned.item_ids, tuned.freq = history.item_ids, "D"
    tuned.model = build_network(tuned.config, len(tuned.item_ids))
    tuned._init_from_base(base)
    tuned.model.eval()
    torch.testing.assert_close(tuned.one_step(ctx, torch.tensor([0.0, 0.2, 0.4]))[0], mean)


def test_pretraining_is_reproducible(tmp_path: Path) -> None:
    from promogym.forecasters.corpus import pretrain

    cfg = dataclasses.replace(TINY, epochs=1, unknown_items="generic")
    a = pretrain(tmp_path / "a", seed=3, n_series=8, config=cfg)
    b = pretrain(None, seed=3, n_series=8, config=cfg)
    assert a.item_ids == [] and a.training["corpus"]["series"] == 8
    # By default the base learns from the full demand (as shipped); on request from the sales.
    assert a.training["corpus"]["full_demand"] and a.training["corpus"]["censored_share"] == 0
    c = pretrain(None, seed=3, n_series=8, config=cfg, full_demand=False)
    assert not c.training["corpus"]["full_demand"] and c.training["corpus"]["censored_share"] > 0
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    loaded = TransformerForecaster.load(tmp_path / "a")
    assert loaded.config.unknown_items == "generic" and loaded.context_length == 14


# ---- gaps, extra covariates, quantile calibration ------------------------------------------------


def _gappy_and_filled(history: SalesHistory) -> tuple[pd.DataFrame, pd.DataFrame, list[int]]:
    """The history with rows of item 0 dropped (a gap in and before the last context, and the
    last period), and the same calendar with those rows kept but unobserved (censored, junk
    units), price carried forward, promo 0: what the missing periods must be read as."""
    frame = history.frame
    rows = frame.index[frame["item_id"] == history.item_ids[0]]
    drop = [int(rows[30]), int(rows[-9]), int(rows[-5]), int(rows[-1])]
    gappy = frame.drop(index=drop).reset_index(drop=True)
    filled = frame.copy()
    prices = ["price", "list_price", "discount"]
    filled.loc[drop, prices] = frame.loc[[d - 1 for d in drop], prices].to_numpy()
    filled.loc[drop, ["promo", "units_sold", "censored"]] = [0, 999, True]
    return gappy, filled, drop


def test_missing_periods_read_as_unobserved_calendar_periods(
    fitted: TransformerForecaster, history: SalesHistory
) -> None:
    gappy, filled, drop = _gappy_and_filled(history)
    b, _ = series_from_frame(filled, "D", None)
    end_day = b.day[torch.arange(2), b.length - 1].numpy()  # item 0's last period is missing
    a, _ = series_from_frame(gappy, "D", None, end_day=end_day)
    # The gap is not collapsed: same calendar, lags reach the right days.
    assert int(a.length[0]) == int(history.frame["item_id"].eq(history.item_ids[0]).sum())
    for name in ("observed", "discount", "promo", "day", "length"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not bool(a.observed[0, 30]) and bool(torch.all(torch.diff(a.day[0]) == 1))
    assert torch.equal(a.units[a.observed], b.units[b.observed])
    # The same forecasts (the last period is missing too: the calendar runs up to the forecast).
    fut = future_frame(history, 3)
    pd.testing.assert_frame_equal(
        fitted.predict(SalesHistory(gappy, "D", "gappy"), fut, 3),
        fitted.predict(SalesHistory(filled, "D", "filled"), fut, 3),
    )


def test_missing_periods_are_excluded_from_the_loss(history: SalesHistory) -> None:
    gappy, filled, drop = _gappy_and_filled(history)
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, dropout=0.0)
    model = build_network(cfg, 2)
    window = cfg.context_length + cfg.prediction_length
    # Windows of item 0 whose context and targets cover the gaps at rows[-9] and rows[-5].
    n = int(history.frame["item_id"].eq(history.item_ids[0]).sum())
    index = torch.tensor([[0, n - 1 - window], [0, n - 6 - window + 2]])
    drop = dataclasses.replace(cfg, censored_loss="drop")
    losses = []
    for frame, config in (
        (gappy, cfg),
        (gappy, drop),
        (filled, drop),
        (filled.assign(units_sold=filled["units_sold"].mask(filled["censored"], 5)), drop),
    ):
        data, _ = series_from_frame(frame, "D", None)
        losses.append(float(window_loss(model, data.windows(index, window), config).detach()))
    # Missing periods add nothing; censored ones add nothing only when dropped.
    assert losses[0] == losses[1] == losses[2] == losses[3]
    data, _ = series_from_frame(filled, "D", None)
    assert float(window_loss(model, data.windows(index, window), cfg).detach()) != losses[0]
    # A target period that is missing everywhere yields no training window.
    data, _ = series_from_frame(gappy, "D", None)
    last = torch.tensor([[0, n - 1 - window + 1]])  # targets: 1 observed, 1 missing
    assert observed_targets(data, last, window, 1).shape[0] == 0
    assert observed_targets(data, last, window, 2).shape[0] == 1


def test_extra_covariates_are_used_and_start_at_zero_weight(history: SalesHistory) -> None:
    rng = np.random.default_rng(0)
    frame = history.frame.assign(feat=rng.random(len(history.frame)))
    with_feat = SalesHistory(frame, "D", "feat.csv")
    fut = future_frame(history, 3)
    fut_feat = fut.assign(feat=rng.random(len(fut)))
    # Fine-tuning from the base (no extra covariates) adds a zero-weight input column.
    base = TransformerForecaster.load(BASE_WEIGHTS_DIR)
    tuned = TransformerForecaster(dataclasses.replace(base.config, unknown_items="error"))
    tuned.item_ids, tuned.freq, tuned.extra_columns = history.item_ids, "D", ("feat",)
    tuned.model = build_network(tuned.config, len(tuned.item_ids), 1)
    tuned._init_from_base(base)
    tuned.model.eval()
    a = tuned.predict(with_feat, fut_feat, 1)
    b = tuned.predict(with_feat, fut_feat.assign(feat=5.0), 1)
    np.testing.assert_allclose(a["mean"], b["mean"], rtol=1e-6)
    np.testing.assert_allclose(a["mean"], base.predict(history, fut, 1)["mean"], rtol=1e-5)
    # After fitting, the column is an input: found automatically, needed, saved.
    cfg = dataclasses.replace(TINY, epochs=1)
    model = TransformerForecaster(cfg, from_scratch=True).fit(with_feat)
    assert model.extra_columns == ("feat",)
    width = model.model.model.encoder.value_embedding.value_projection.weight.shape[1]
    assert (
        width
        == build_network(cfg, 2).model.encoder.value_embedding.value_projection.weight.shape[1] + 1
    )
    one = model.predict(with_feat, fut_feat, 1)["mean"].to_numpy()
    other = model.predict(with_feat, fut_feat.assign(feat=fut_feat["feat"] + 3.0), 1)["mean"]
    assert not np.allclose(one, other.to_numpy())
    with pytest.raises(DataError, match="'feat'"):
        model.predict(with_feat, fut, 1)
    with pytest.raises(DataError, match="no column 'feat', a covariate"):  # history lacks it
        model.predict(history, fut_feat, 1)
    with pytest.raises(DataError, match="extra covariates"):
        model.one_step(context_of(history, 14, [0]), torch.tensor([0.0]))
    ignored = TransformerForecaster(
        dataclasses.replace(cfg, extra_covariates=()), from_scratch=True
    ).fit(with_feat)
    assert ignored.extra_columns == ()


def test_group_price_covariates(history: SalesHistory, tmp_path: Path) -> None:
    frame = history.frame.assign(store="s1")
    grouped = SalesHistory(frame, "D", "stores.csv", categorical=("store",))
    cfg = dataclasses.replace(TINY, epochs=1, group_price_features=True)
    model = TransformerForecaster(cfg, from_scratch=True).fit(grouped)
    assert model.extra_columns == ("log_relative_price_store",)
    fut = future_frame(history, 3)  # the future needs no store column nor the derived one
    pred = model.predict(grouped, fut, 3)
    model.save(tmp_path / "m")
    pd.testing.assert_frame_equal(
        TransformerForecaster.load(tmp_path / "m").predict(grouped, fut, 3), pred
    )
    # Cheaper than its rival in the same store -> a negative relative price, and vice versa.
    cheap = fut.assign(
        price=np.where(fut["item_id"] == history.item_ids[0], 0.5, 2.0) * fut["price"]
    )
    rel = with_group_prices(cheap, ("store",), frame.groupby("item_id")[["store"]].last())
    first = rel["item_id"] == history.item_ids[0]
    assert (rel.loc[first, "log_relative_price_store"] < 0).all()
    assert (rel.loc[~first, "log_relative_price_store"] > 0).all()


def test_quantile_calibration(
    history: SalesHistory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import promogym.forecasters.transformer as module

    monkeypatch.setattr(module, "MIN_RECALIBRATION_POINTS", 2)  # the toy has 6 per step
    fitted = TransformerForecaster(dataclasses.replace(TINY, epochs=1), from_scratch=True).fit(
        history
    )
    assert fitted.dispersion_scale > 0 and len(fitted.recalibration) == TINY.prediction_length
    assert all(len(m) == len(RECALIBRATION_LEVELS) for m in fitted.recalibration)
    fitted.save(tmp_path / "m")
    assert TransformerForecaster.load(tmp_path / "m").recalibration == fitted.recalibration
    levels = fitted.model_levels((0.1, 0.5, 0.9), 3)
    assert levels.shape == (3, 3) and bool((torch.diff(levels, dim=0) >= 0).all())
    # Off: the model's own levels and dispersion.
    raw = TransformerForecaster(
        dataclasses.replace(TINY, calibrate_dispersion=False, recalibrate_quantiles=False),
        from_scratch=True,
    ).fit(history)
    assert raw.dispersion_scale == 1.0 and raw.recalibration == []
    assert torch.equal(
        raw.model_levels((0.1, 0.9), 2), torch.tensor([[0.1, 0.1], [0.9, 0.9]], dtype=torch.float64)
    )


def test_mixture_quantiles_match_the_exact_nb_quantiles() -> None:
    g = torch.Generator().manual_seed(0)
    mean = torch.full((3, 32, 2), 40.0, dtype=torch.float64)
    mean[1] = 400.0
    mean[2, :16] = 10.0  # a two-component mixture: its median lies between the two
    disp = torch.full_like(mean, 8.0)
    levels = (0.05, 0.5, 0.95)
    got = mixture_quantiles(levels, mean, disp, 64, g)
    for i, q in enumerate(levels):
        exact = nb_quantile(q, mean[:2, 0, 0], disp[:2, 0, 0])
        assert bool(((got[i, :2, 0] - exact).abs() <= 0.1 * exact + 1).all()), (q, got[i], exact)
    assert 10.0 < float(got[1, 2, 0]) < 40.0


def test_price_head_scales_the_mean_by_the_log_linear_response(
    fitted: TransformerForecaster, history: SalesHistory, tmp_path: Path
) -> None:
    ctx = context_of(history, fitted.context_length, [0, 1])
    ladder = torch.tensor([0.0, 0.2, 0.5])
    model = copy.deepcopy(fitted)
    head = model.model.price_response.weight
    with torch.no_grad():
        head.zero_()
        flat, _ = model.one_step(ctx, ladder)
        head[1] = torch.tensor([1.5, 0.3])  # item 0's row: elasticity 1.5, jump 0.3
        shaped, _ = model.one_step(ctx, ladder)
    promo = (ladder > 0).double()
    factor = (1.0 - ladder.double()) ** -1.5 * torch.exp(0.3 * promo)
    torch.testing.assert_close(shaped[0], flat[0] * factor.float().double(), rtol=1e-5, atol=0)
    torch.testing.assert_close(shaped[1], flat[1])  # item 1's row untouched
    # The multi-period path uses the same head: its first period is the one-step mean.
    fut = future_frame(history, 2, discounts=(0.5,))
    first = model.predict(history, fut, 2, [0.5]).groupby("item_id").head(1)
    item0 = first[first["item_id"] == history.item_ids[0]]["mean"].iloc[0]
    assert item0 == pytest.approx(float(shaped[0, 2]), rel=1e-4)
    # A directory saved before the head existed (no price_head key) loads without it.
    model.save(tmp_path / "new")
    assert TransformerForecaster.load(tmp_path / "new").config.price_head
    no_head = TransformerForecaster(dataclasses.replace(TINY, price_head=False), from_scratch=True)
    no_head = no_head.fit(history)
    no_head.save(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "config.json").read_text())
    del meta["config"]["price_head"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(meta))
    old = TransformerForecaster.load(tmp_path / "old")
    assert not old.config.price_head and not hasattr(old.model, "price_response")
    torch.testing.assert_close(old.one_step(ctx, ladder)[0], no_head.one_step(ctx, ladder)[0])


def test_split_calibration_calibrates_on_items_left_out_of_early_stopping(
    history: SalesHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import promogym.forecasters.transformer as module

    monkeypatch.setattr(module, "MIN_RECALIBRATION_POINTS", 1)
    cfg = dataclasses.replace(TINY, epochs=1)
    both = TransformerForecaster(cfg, from_scratch=True).fit(history)
    split = TransformerForecaster(
        dataclasses.replace(cfg, split_calibration=True), from_scratch=True
    ).fit(history)
    # The calibration (and the reported validation metrics) covers every other item only.
    n_items = len(history.item_ids)
    per_item = both.validation_metrics["n_periods"] // n_items
    assert both.validation_metrics["n_periods"] == per_item * n_items
    assert split.validation_metrics["n_periods"] == per_item * (n_items // 2)
    assert len(split.recalibration) == TINY.prediction_length
    assert split.dispersion_scale != both.dispersion_scale


class TrainingSpy:
    """Stands in for ``train_network``: records each call's windows, validation count and
    epochs (``runs``), the model's starting weights (``starts``) and the result (``logs``)."""

    def __init__(self, real) -> None:  # type: ignore[no-untyped-def]
        self.real = real
        self.runs: list[tuple[torch.Tensor, int, int]] = []
        self.starts: list[dict[str, torch.Tensor]] = []
        self.logs: list[dict] = []

    def __call__(self, model, data, train_idx, val_idx, config, progress=None):  # type: ignore[no-untyped-def]
        self.runs.append((train_idx, int(val_idx.shape[0]), config.epochs))
        self.starts.append(copy.deepcopy(model.state_dict()))
        self.logs.append(self.real(model, data, train_idx, val_idx, config, progress))
        return self.logs[-1]


def test_refit_trains_again_on_every_period_and_keeps_the_calibration(
    history: SalesHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import promogym.forecasters.transformer as module

    monkeypatch.setattr(module, "MIN_RECALIBRATION_POINTS", 1)
    cfg = dataclasses.replace(TINY, epochs=3, refit=False)
    plain = TransformerForecaster(cfg, from_scratch=True).fit(history)
    spy = TrainingSpy(module.train_network)
    monkeypatch.setattr(module, "train_network", spy)
    refit_cfg = dataclasses.replace(cfg, refit=True)
    refit = TransformerForecaster(refit_cfg, from_scratch=True).fit(history)
    runs, starts, logs = spy.runs, spy.starts, spy.logs
    (first, n_val, _), (again, n_again, epochs) = runs
    window = cfg.context_length + cfg.prediction_length
    # The second run has no validation windows, runs the chosen number of epochs, and its
    # windows reach the validation periods that the first run never trained on.
    assert n_val > 0 and n_again == 0
    assert epochs == refit.training["best_epoch"] + 1 == refit.training["refit_epochs"]
    # Without validation windows training runs every epoch and keeps the last.
    assert logs[1]["epochs_run"] == epochs and logs[1]["best_epoch"] == epochs - 1
    assert logs[1]["best_val_nll"] is None
    assert len(refit.training["refit_losses"]) == epochs
    # The second run starts again from the first run's starting weights.
    assert starts[0].keys() == starts[1].keys()
    assert all(torch.equal(starts[0][k], starts[1][k]) for k in starts[0])
    assert int((again[:, 1] + window).max()) - int((first[:, 1] + window).max()) == (
        cfg.validation_periods
    )
    # The early-stopped run is the plain fit's: same calibration and validation metrics ...
    assert refit.recalibration == plain.recalibration
    assert refit.dispersion_scale == plain.dispersion_scale
    assert refit.validation_metrics == plain.validation_metrics
    # ... but the weights are the refit's, and deterministic.
    ctx, ladder = context_of(history, 14, [0, 1]), torch.tensor([0.0, 0.3])
    assert not torch.equal(refit.one_step(ctx, ladder)[0], plain.one_step(ctx, ladder)[0])
    monkeypatch.setattr(module, "train_network", spy.real)
    lines: list[str] = []
    twice = TransformerForecaster(refit_cfg, from_scratch=True).fit(history, lines.append)
    torch.testing.assert_close(twice.one_step(ctx, ladder), refit.one_step(ctx, ladder))
    # Progress names the refit's epochs and never prints a NaN validation loss for them.
    refit_lines = [m for m in lines if m.startswith("refit epoch")]
    assert len(refit_lines) == epochs and all("no validation windows" in m for m in refit_lines)
    assert not any("nan" in m for m in lines)


def test_a_diverged_validation_loss_never_wins_early_stopping(
    history: SalesHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import promogym.forecasters.transformer as module

    real = module.window_loss

    def nan_on_validation(model, w, config):  # type: ignore[no-untyped-def]
        loss = real(model, w, config)
        return loss if model.training else loss * math.nan

    spy = TrainingSpy(module.train_network)
    monkeypatch.setattr(module, "window_loss", nan_on_validation)
    monkeypatch.setattr(module, "train_network", spy)
    cfg = dataclasses.replace(TINY, epochs=2, refit=True, recalibrate_quantiles=False)
    fit = TransformerForecaster(cfg, from_scratch=True).fit(history)
    # No epoch is chosen, so no refit runs and the starting weights are kept.
    assert fit.training["best_epoch"] == -1 and fit.training["best_val_nll"] is None
    assert len(spy.starts) == 1 and "refit_epochs" not in fit.training
    state = fit.model.state_dict()
    assert all(torch.equal(spy.starts[0][k], state[k]) for k in state)


def test_validation_pits_cover_every_origin_in_chunks(
    fitted: TransformerForecaster, history: SalesHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import promogym.forecasters.transformer as module

    data, _ = series_from_frame(history.frame, history.freq, fitted.vocab)
    cfg = fitted.config
    val_end = data.length - cfg.validation_periods
    series = list(range(data.length.shape[0]))
    whole = fitted._validation_pits(data, val_end, series)
    monkeypatch.setattr(module, "PIT_CHUNK", 3)
    chunked = fitted._validation_pits(data, val_end, series)
    assert whole is not None and chunked is not None
    origins = len(series) * (cfg.validation_periods - cfg.prediction_length + 1)
    assert whole[0].shape == chunked[0].shape == (origins, cfg.prediction_length)
    assert torch.equal(whole[1], chunked[1])
    assert torch.equal(torch.isnan(whole[0]), torch.isnan(chunked[0]))
    finite = chunked[0][~torch.isnan(chunked[0])]
    assert bool(((finite >= 0) & (finite <= 1)).all())
    # The first forecast step is the exact one-step distribution (no draws): chunking
    # leaves it unchanged; later steps carry each chunk's own Monte-Carlo noise.
    torch.testing.assert_close(chunked[0][:, 0], whole[0][:, 0], equal_nan=True)


def test_promo_recalibration_serves_each_period_by_its_promo_flag(
    fitted: TransformerForecaster, history: SalesHistory, tmp_path: Path
) -> None:
    model = copy.deepcopy(fitted)
    p = model.config.prediction_length
    identity = list(RECALIBRATION_LEVELS)
    lower = [0.5 * level for level in RECALIBRATION_LEVELS]
    fut = future_frame(history, 3)  # discounts 0, 0.2, 0.4: a regular period, then promotions

    def predict_with(pooled: list[float]) -> pd.DataFrame:
        model.recalibration, model.promo_recalibration = [pooled] * p, []
        return model.predict(history, fut, 3, (0.1, 0.5, 0.9))

    regular, promo = predict_with(identity), predict_with(lower)
    model.recalibration, model.promo_recalibration = [identity] * p, [[identity] * p, [lower] * p]
    both = model.predict(history, fut, 3, (0.1, 0.5, 0.9))
    is_promo = both["date"] > both["date"].min()
    pd.testing.assert_frame_equal(both[~is_promo], regular[~is_promo])
    pd.testing.assert_frame_equal(both[is_promo], promo[is_promo])
    assert (promo["q0.5"] <= regular["q0.5"]).all() and (promo["q0.5"] < regular["q0.5"]).any()
    model.save(tmp_path / "m")
    loaded = TransformerForecaster.load(tmp_path / "m")
    assert loaded.promo_recalibration == model.promo_recalibration
    pd.testing.assert_frame_equal(loaded.predict(history, fut, 3, (0.1, 0.5, 0.9)), both)


def test_recalibrate_by_promo_fits_a_map_per_kind_of_period(
    history: SalesHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import promogym.forecasters.transformer as module

    monkeypatch.setattr(module, "MIN_RECALIBRATION_POINTS", 1)
    cfg = dataclasses.replace(TINY, epochs=1, recalibrate_by_promo=True)
    model = TransformerForecaster(cfg, from_scratch=True).fit(history)
    assert len(model.promo_recalibration) == 2
    assert all(len(maps) == len(model.recalibration) for maps in model.promo_recalibration)
    assert model.promo_recalibration[0] != model.promo_recalibration[1]
    off = TransformerForecaster(
        dataclasses.replace(cfg, recalibrate_by_promo=False), from_scratch=True
    )
    assert off.fit(history).promo_recalibration == []


@pytest.mark.parametrize(("freq", "periods", "held_out"), [("W", 30, 8), ("D", 50, 28)])
def test_validation_periods_default_follows_the_frequency(
    freq: str, periods: int, held_out: int, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    step = 7 if freq == "W" else 1
    dates = pd.date_range("2024-01-01", periods=periods, freq=f"{step}D")
    frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "date": dates.strftime("%Y-%m-%d"),
                    "item_id": item,
                    "units_sold": rng.poisson(20, periods),
                    "price": 10.0,
                }
            )
            for item in ("a", "b")
        ]
    )
    history = history_from_frame(frame)
    assert history.freq == freq
    cfg = dataclasses.replace(TINY, epochs=1, validation_periods=None, refit=False)
    fitted = TransformerForecaster(cfg, from_scratch=True).fit(history)
    assert fitted.config.validation_periods == held_out
    fitted.save(tmp_path)
    assert TransformerForecaster.load(tmp_path).config.validation_periods == held_out
    # 28 weeks would not fit in 30 weeks of history: an explicit 28 is a clear error.
    if freq == "W":
        with pytest.raises(DataError, match="validation_periods 28"):
            TransformerForecaster(
                dataclasses.replace(cfg, validation_periods=28), from_scratch=True
            ).fit(history)
    with pytest.raises(ConfigError, match="validation_periods"):
        dataclasses.replace(cfg, validation_periods=1)


def test_validation_one_step_uses_the_recorded_promo_flag(
    history: SalesHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import promogym.forecasters.transformer as module
    from promogym.forecasters.features import next_period_features

    # The flag column of the features: discount > 0 by default, the given flags otherwise.
    past_promo, observed = torch.zeros(1, 5), torch.ones(1, 5, dtype=torch.bool)
    day, daily, discounts = torch.tensor([100]), torch.tensor([1.0]), torch.tensor([[0.0, 0.3]])
    default = next_period_features(past_promo, observed, day, discounts, daily)
    given = next_period_features(
        past_promo, observed, day, discounts, daily, promo=torch.tensor([[1.0, 0.0]])
    )
    assert default[0, :, 1].tolist() == [0.0, 1.0] and given[0, :, 1].tolist() == [1.0, 0.0]
    torch.testing.assert_close(default[..., 2:], given[..., 2:])
    # fit's validation one-step passes the periods' recorded flags.
    seen: list[torch.Tensor | None] = []

    def spy(*args: Any, **kwargs: Any) -> torch.Tensor:
        seen.append(args[6] if len(args) > 6 else kwargs.get("promo"))
        return next_period_features(*args, **kwargs)

    monkeypatch.setattr(module, "next_period_features", spy)
    TransformerForecaster(dataclasses.replace(TINY, epochs=1), from_scratch=True).fit(history)
    recorded = [p for p in seen if p is not None]
    assert recorded and all(p.shape[1] == 1 for p in recorded)


def test_device_auto_and_bad_device_names() -> None:
    """``device="auto"`` is CUDA where present, else the CPU; other names are checked early."""
    auto = TransformerForecaster(dataclasses.replace(TINY, device="auto"), from_scratch=True)
    assert auto.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="device must be"):
        dataclasses.replace(TINY, device="gpu")


def test_quantile_maps_count_sold_out_periods_above_their_stock(
    history: SalesHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A held-out period that sold out had demand of at least its stock: its PIT enters the
    quantile maps uniform above the stock's PIT, not left out (which would keep only the
    low-demand periods and shift the maps down)."""
    import promogym.forecasters.transformer as module

    monkeypatch.setattr(module, "MIN_RECALIBRATION_POINTS", 2)
    seen: list[torch.Tensor] = []
    maps = module.recalibration_maps
    monkeypatch.setattr(module, "recalibration_maps", lambda pit: seen.append(pit) or maps(pit))
    frame = history.frame.copy()
    late = frame["date"] >= frame["date"].max() - pd.Timedelta(days=27)
    frame.loc[late, "stock"] = frame.loc[late, "units_sold"]  # every held-out period sold out
    frame.loc[late, "censored"] = True
    sold_out = SalesHistory(frame, "D", "sold-out.csv")
    cfg = dataclasses.replace(TINY, epochs=1, refit=False)
    TransformerForecaster(cfg, from_scratch=True).fit(sold_out)
    pit = seen[-1]
    assert bool(torch.isfinite(pit).all())  # every validation period counts
    assert float(pit.mean()) > 0.5  # above the stocks' PITs


def test_dispersion_calibration_counts_sold_out_periods_by_their_sales() -> None:
    """Scoring the sales quantiles min(q, stock) on every period recovers the true dispersion
    factor however often stock runs out; leaving the sold-out periods out does not."""
    from promogym.distributions import sample_negative_binomial
    from promogym.forecasters.likelihood import calibrate_dispersion

    g = torch.Generator().manual_seed(0)
    mean = torch.full((8000,), 10.0, dtype=torch.float64)
    disp = torch.full_like(mean, 5.0)  # the truth: factor 1
    demand = sample_negative_binomial(mean, disp, g)
    for stock_level in (11.0, 9.0):  # about 40% and 55% of periods sell out
        stock = torch.full_like(mean, stock_level)
        sold = torch.minimum(demand, stock)
        assert 0.8 < calibrate_dispersion(mean, disp, sold, stock) < 1.25
        kept = demand < stock
        assert not 0.8 < calibrate_dispersion(mean[kept], disp[kept], sold[kept]) < 1.25
    # Unknown stock (inf): the plain calibration, unchanged.
    inf = torch.full_like(mean, math.inf)
    assert calibrate_dispersion(mean, disp, demand, inf) == calibrate_dispersion(mean, disp, demand)


def test_corpus_has_markets_without_promotion_effects() -> None:
    from promogym.forecasters.corpus import PLAIN_MARKET_SHARE, _market_params

    rng = np.random.default_rng(0)
    markets = [_market_params(rng)[0] for _ in range(90)]
    plain = [bool(np.all(m.urgency == 0) and np.all(m.dip == 0)) for m in markets]
    # about a third answer the price alone; the others have a sale-start jump on every item
    assert abs(np.mean(plain) - PLAIN_MARKET_SHARE) < 0.12
    assert all(np.all(m.urgency > 0) for m, p in zip(markets, plain, strict=True) if not p)


def test_full_demand_corpus_holds_the_draws_behind_the_sales() -> None:
    from promogym.forecasters.corpus import generate_corpus

    sales = generate_corpus(16, seed=1)
    demand = generate_corpus(16, seed=1, full_demand=True)
    inside = torch.arange(sales.units.shape[1]) < sales.length[:, None]
    assert bool((sales.censored & inside).any())  # the shop's record has stock-outs
    for key in ("discount", "promo", "day", "length", "daily"):
        assert torch.equal(getattr(sales, key), getattr(demand, key)), key
    # the same draws: equal where the stock sufficed, more where it sold out; nothing censored
    assert torch.equal(demand.units[sales.observed], sales.units[sales.observed])
    assert bool((demand.units[sales.censored] >= sales.units[sales.censored]).all())
    assert bool((demand.units[sales.censored] > sales.units[sales.censored]).any())
    assert bool(demand.observed[inside].all()) and not bool(demand.censored.any())


def test_base_dirs_finds_a_weights_layout(tmp_path: Path) -> None:
    from promogym.forecasters.transformer import BASE_WEIGHTS_DIRS, base_dirs, weights_record

    assert base_dirs() == BASE_WEIGHTS_DIRS
    with pytest.raises(ConfigError, match="no saved base in base/"):
        base_dirs(tmp_path)
    for name, shipped in BASE_WEIGHTS_DIRS.items():
        shutil.copytree(shipped, tmp_path / shipped.name)
        copy, original = weights_record(tmp_path / shipped.name), weights_record(shipped)
        assert copy["weights_sha256"] == original["weights_sha256"], name
        assert copy["dir"] == str(tmp_path / shipped.name) and len(copy["weights_sha256"]) == 16
    assert base_dirs(tmp_path) == {n: tmp_path / d.name for n, d in BASE_WEIGHTS_DIRS.items()}
