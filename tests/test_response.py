"""The held-out price-response check: known answers, its invariances, and the transformer's
rows matching what the simulator's ``one_step`` says for the same periods."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from test_transformer import TINY, context_of, make_history

from promogym.data import history_from_frame
from promogym.forecasters.transformer import TransformerForecaster
from promogym.response import (
    TITLE,
    ResponseBin,
    ResponseRows,
    average_rows,
    bin_of,
    evidence,
    format_response,
    response_bins,
    response_summary,
    with_stock,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def shop(n_items: int = 4, true_lift: float = 2.0, simulated_lift: float = 2.5) -> ResponseRows:
    """Every item: 3 regular periods (10 units expected and sold) and 2 at 20% off (the
    market lifts by ``true_lift``, the simulator by ``simulated_lift``)."""
    item = np.repeat([f"i{k}" for k in range(n_items)], 5)
    discount = np.tile([0.0, 0.0, 0.0, 0.2, 0.2], n_items)
    on_sale = discount > 0
    return ResponseRows(
        item=item,
        discount=discount,
        actual=np.where(on_sale, 10.0 * true_lift, 10.0),
        mean=np.where(on_sale, 10.0 * simulated_lift, 10.0),
        mean_regular=np.full(len(item), 10.0),
    )


def test_known_lifts_and_ratio() -> None:
    regular, sale = response_bins(shop())
    assert (regular.label, regular.periods, regular.items) == ("0%", 12, 4)
    assert regular.lift_ratio == 1.0 and regular.lift_ratio_ci is None
    assert regular.actual_over_mean == pytest.approx(1.0)
    assert (sale.label, sale.periods, sale.items) == ("20%", 8, 4)
    assert sale.mean_discount == pytest.approx(0.2)
    assert sale.simulated_lift == pytest.approx(2.5)
    assert sale.observed_lift == pytest.approx(2.0)
    assert sale.lift_ratio == pytest.approx(0.8)
    assert sale.within_tolerance is False
    assert response_bins(shop(simulated_lift=2.1))[1].within_tolerance is True


def test_a_common_level_shock_does_not_move_the_lift_ratio() -> None:
    """Held-out weeks 30% below the simulator everywhere: the level says so, the lift does
    not."""
    rows = shop()
    shocked = dataclasses.replace(rows, actual=rows.actual * 0.7)
    regular, sale = response_bins(shocked)
    assert regular.actual_over_mean == pytest.approx(0.7)
    assert sale.lift_ratio == pytest.approx(0.8)
    assert sale.observed_lift == pytest.approx(2.0)


def test_interval_resamples_periods() -> None:
    rng = np.random.default_rng(0)
    rows = shop(n_items=12)
    noisy = dataclasses.replace(rows, actual=rows.actual * rng.lognormal(0.0, 0.2, len(rows)))
    sale = response_bins(noisy)[1]
    low, high = sale.lift_ratio_ci
    assert low < sale.lift_ratio < high
    # no spread between items -> a degenerate interval
    assert response_bins(shop(n_items=12))[1].lift_ratio_ci == pytest.approx((0.8, 0.8))
    # too few periods in the bin (4) for an interval
    assert response_bins(shop(n_items=2))[1].lift_ratio_ci is None


def test_without_regular_periods_the_shallowest_bin_with_sales_sets_the_level() -> None:
    rows = shop()
    keep = rows.discount > 0
    fields = {f.name: getattr(rows, f.name) for f in dataclasses.fields(rows)}
    sale_only = ResponseRows(**{k: v[keep] for k, v in fields.items() if v is not None})
    (sale,) = response_bins(sale_only)
    assert sale.sets_level and sale.lift_ratio == 1.0 and sale.lift_ratio_ci is None
    assert sale.simulated_lift == pytest.approx(2.5)
    assert sale.actual_over_mean == pytest.approx(0.8)
    assert response_summary([sale]).startswith("The 20% bin sets the level and no other")
    assert "1 (sets the level)" in format_response([sale])
    # a deeper bin is then compared with it: 40% off where the simulator is right
    deeper = ResponseRows(
        item=np.concatenate([sale_only.item, sale_only.item]),
        discount=np.concatenate([sale_only.discount, np.full(len(sale_only), 0.4)]),
        actual=np.concatenate([sale_only.actual, np.full(len(sale_only), 50.0)]),
        mean=np.concatenate([sale_only.mean, np.full(len(sale_only), 50.0)]),
        mean_regular=np.concatenate([sale_only.mean_regular, sale_only.mean_regular]),
    )
    level, deep = response_bins(deeper)
    assert level.label == "20%" and level.sets_level and not deep.sets_level
    assert deep.lift_ratio == pytest.approx(1.0 / 0.8)  # relative to the 20% bin's accuracy
    summary = response_summary([level, deep])
    assert "level in the 20% bin (too few regular-price periods with sales" in summary
    assert "in 0 of 1 discount bins" in summary
    assert evidence([level, deep], 0.2).startswith("near 20% off (sets the level) actual / ")
    assert evidence([level, deep], 0.4).startswith(
        "near 40% off observed / simulated lift vs the 20% bin 1.25"
    )


def test_summary_counts_bins_within_tolerance() -> None:
    bins = response_bins(shop(n_items=6, simulated_lift=2.1))
    text = response_summary(bins)
    assert "within +-10% in 1 of 1 discount bins" in text
    assert "actual / simulated units 1.00 (18 periods)" in text
    out = format_response(bins)
    assert out.splitlines()[0] == f"{TITLE}:"
    assert "1 (sets the level)" in out


def test_bins_round_trip_through_json_dicts() -> None:
    bins = response_bins(shop(n_items=5))
    for b in bins:
        assert ResponseBin.from_dict(b.to_dict()) == b
    # run.json files written before a deeper bin could set the level have no "sets_level":
    # there the regular-price bin set it whenever it had a lift ratio
    old = [{k: v for k, v in b.to_dict().items() if k != "sets_level"} for b in bins]
    assert [ResponseBin.from_dict(d) for d in old] == bins
    assert bins[0].sets_level and not bins[1].sets_level


def test_average_rows_averages_the_members_means() -> None:
    a, b = shop(simulated_lift=2.0), shop(simulated_lift=3.0)
    both = average_rows([a, b], [1.0, 1.0])
    np.testing.assert_allclose(both.mean, (a.mean + b.mean) / 2)
    np.testing.assert_array_equal(both.actual, a.actual)
    with pytest.raises(ValueError, match="held-out periods differ"):
        average_rows([a, shop(n_items=3)], [1.0, 1.0])


def test_bad_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="ResponseRows.mean has 1 rows, not 2"):
        ResponseRows(
            item=np.array(["a", "b"]),
            discount=np.zeros(2),
            actual=np.ones(2),
            mean=np.ones(1),
            mean_regular=np.ones(2),
        )


def test_transformer_rows_are_the_simulators_one_step() -> None:
    """The rows of each item's last held-out period equal ``one_step`` on the context before
    it, at the period's discount and at none (the network is not refitted here)."""
    history = make_history(n_items=3, periods=80, seed=1)
    model = TransformerForecaster(dataclasses.replace(TINY, refit=False), from_scratch=True)
    model.fit(history)
    rows = model.held_out_response
    assert rows is not None
    vp = model.config.validation_periods
    held = pd.concat([history.item(i).iloc[-vp:] for i in history.item_ids])
    assert held["censored"].any()  # periods that sold out are kept, at the units sold
    assert len(rows) == len(held) == model.validation_metrics["n_periods"] + held["censored"].sum()
    np.testing.assert_array_equal(rows.actual, held["units_sold"].to_numpy(np.float64))
    c = model.context_length
    for i, item in enumerate(history.item_ids):
        frame = history.item(item)
        assert not frame["censored"].iloc[-1]
        last = np.flatnonzero(rows.item == item)[-1]
        assert rows.actual[last] == frame["units_sold"].iloc[-1]
        discount = float(frame["discount"].iloc[-1])
        assert rows.discount[last] == pytest.approx(discount)
        truncated = dataclasses.replace(history, frame=history.frame.drop(frame.index[-1]))
        mean, _ = model.one_step(context_of(truncated, c, [i]), torch.tensor([discount, 0.0]))
        np.testing.assert_allclose(
            [rows.mean[last], rows.mean_regular[last]], mean[0].numpy(), rtol=1e-5
        )


def test_true_means_match_the_market_after_the_same_sales() -> None:
    """With the market known, each period's true means are the market's after the run of sale
    periods before it: the same numbers the market oracle's simulator face gives from the
    context (which reads the streak off the past discounts)."""
    from conftest import MarketOracle

    from promogym.envs.market import ReferenceMarket, day_numbers, random_market_params
    from promogym.run import with_true_means
    from promogym.simulate import simulate_history

    params = random_market_params(2, np.random.default_rng(3))
    market = ReferenceMarket(params, "D")
    history = history_from_frame(simulate_history(market, 60, "2024-01-01", 3), "toy")
    oracle = MarketOracle(market)
    c = oracle.context_length
    picked = []  # (item index, row of the frame) of each item's last 12 periods
    for i, item in enumerate(history.item_ids):
        picked += [(i, r) for r in history.item(item).index[-12:]]
    frame = history.frame
    rows = ResponseRows(
        item=frame.loc[[r for _, r in picked], "item_id"].to_numpy(),
        discount=frame.loc[[r for _, r in picked], "discount"].to_numpy(),
        actual=np.ones(len(picked)),
        mean=np.ones(len(picked)),
        mean_regular=np.ones(len(picked)),
        day=day_numbers(frame.loc[[r for _, r in picked], "date"]),
    )
    true = with_true_means(rows, market, history)
    streaks = 0
    for k, (i, r) in enumerate(picked):
        before = dataclasses.replace(history, frame=frame[frame["date"] < frame.loc[r, "date"]])
        context = context_of(before, c, [i])
        streaks += int((context.past_discount[0, -1] > 0).item())
        expected, _ = oracle.one_step(context, torch.tensor([rows.discount[k], 0.0]))
        np.testing.assert_allclose(
            [true.true_mean[k], true.true_mean_regular[k]], expected[0].numpy(), rtol=1e-12
        )
    assert streaks > 0  # some periods follow a sale


def test_evidence_names_the_recommended_discounts_bin() -> None:
    assert [bin_of(d) for d in (0.0, 0.049, 0.05, 0.2, 0.25, 0.44, 0.45, 0.9, 1.0)] == [
        "0%",
        "0%",
        "10%",
        "20%",
        "30%",
        "40%",
        "50%+",
        "50%+",
        "50%+",
    ]
    bins = response_bins(shop(n_items=4))
    assert (
        evidence(bins, 0.0)
        == "at regular price actual / simulated units 1.00 (12 held-out periods, 4 items)"
    )
    assert evidence(bins, 0.2).startswith(
        "near 20% off observed / simulated lift 0.80 [0.80, 0.80]"
    )
    assert evidence(bins, 0.4).startswith("no held-out period near 40% off")


@pytest.mark.slow
def test_intervals_cover_a_right_simulator_about_95_percent() -> None:
    """Shops of 8 items whose simulator is right (NB noise, dispersion 3): the 30%-off bin's
    interval holds 1 in about 95% of 200 shops (measured 92.5% over 600, module docstring)."""
    rng = np.random.default_rng(0)
    covered = tried = 0
    for rep in range(200):
        item, discount, mean = [], [], []
        for i in range(8):
            base = rng.uniform(5, 30)
            n_sale = int(rng.integers(0, 5))
            item += [f"i{i}"] * (18 + n_sale)
            discount += [0.0] * 18 + [0.3] * n_sale
            mean += [base] * 18 + [4 * base] * n_sale
        m, d = np.array(mean), np.array(discount)
        rows = ResponseRows(
            item=np.array(item),
            discount=d,
            actual=rng.negative_binomial(3.0, 3.0 / (3.0 + m)).astype(float),
            mean=m,
            mean_regular=np.where(d > 0, m / 4, m),
        )
        sale = response_bins(rows, n_resamples=400, seed=rep)[-1]
        if sale.lift_ratio_ci is not None:
            tried += 1
            covered += sale.lift_ratio_ci[0] <= 1.0 <= sale.lift_ratio_ci[1]
    assert tried > 150
    assert 0.85 <= covered / tried <= 0.99


def test_the_level_needs_enough_periods_that_sold() -> None:
    """With fewer than 5 regular-price periods (or none that sold) the next bin that has them
    sets the level (one regular period gave 20% coverage)."""
    rows = shop(n_items=4)
    regular = np.flatnonzero(rows.discount == 0)
    keep = np.ones(len(rows), bool)
    keep[regular[4:]] = False  # 4 regular periods left
    fields = {f.name: getattr(rows, f.name) for f in dataclasses.fields(rows)}
    few = ResponseRows(**{k: v[keep] for k, v in fields.items() if v is not None})
    regular, sale = response_bins(few)
    assert regular.periods == 4 and not regular.sets_level and sale.sets_level
    assert sale.lift_ratio == 1.0 and sale.lift_ratio_ci is None
    assert regular.lift_ratio == pytest.approx(1.25) and regular.lift_ratio_ci is None
    assert "in 0 of 0 discount bins" not in response_summary([regular, sale])  # 0% not counted
    assert response_summary([regular, sale]).startswith("The 20% bin sets the level")
    unsold = dataclasses.replace(rows, actual=np.where(rows.discount > 0, rows.actual, 0.0))
    assert response_bins(unsold)[1].sets_level
    nothing = dataclasses.replace(rows, actual=np.zeros(len(rows)))
    assert all(b.lift_ratio is None and not b.sets_level for b in response_bins(nothing))
    assert response_summary(response_bins(nothing)).startswith("No discount bin has 5")


def test_float32_discounts_land_in_the_ladder_values_bin() -> None:
    """35% off recorded as float32 (0.34999999) is in the same bin as the ladder's 0.35."""
    stored = float(np.float32(1.0 - 13.0 / 20.0))
    assert stored < 0.35 and bin_of(stored) == bin_of(0.35) == "40%"
    rows = dataclasses.replace(shop(), discount=np.where(shop().discount > 0, stored, 0.0))
    bins = response_bins(rows)
    assert [b.label for b in bins] == ["0%", "40%"]
    assert evidence(bins, 0.35).startswith("near 35% off observed / simulated lift 0.80")


def test_a_right_simulator_passes_when_stock_runs_out() -> None:
    """A simulator that is the market itself (its means and dispersion) on a shop whose stock
    often runs out at deep discounts: counting the sold-out periods against the units the
    simulator expects to sell with their stock, the lift ratios are about 1. Without the stock
    (the sold-out periods left out, as the check once did) they read as if the simulator
    promised too much."""
    from promogym.config import CampaignConfig
    from promogym.envs.market import ReferenceMarket, day_numbers, random_market_params
    from promogym.run import with_true_means
    from promogym.simulate import simulate_history

    config = CampaignConfig.from_dict(
        {"inventory": {"initial": 30, "order_quantities": [0, 30], "lead_time": 0, "capacity": 30}}
    )
    params = random_market_params(8, np.random.default_rng(1))
    market = ReferenceMarket(params, "D")
    history = history_from_frame(simulate_history(market, 400, "2024-01-01", 1, config), "toy")
    f = history.frame
    rows = ResponseRows(
        item=f["item_id"].to_numpy(object),
        discount=f["discount"].to_numpy(np.float64),
        actual=f["units_sold"].to_numpy(np.float64),
        mean=np.ones(len(f)),
        mean_regular=np.ones(len(f)),
        day=day_numbers(f["date"]),
    )
    true = with_true_means(rows, market, history)
    index = torch.tensor([market.item_index(i) for i in rows.item])
    right = dataclasses.replace(
        true,
        mean=true.true_mean,
        mean_regular=true.true_mean_regular,
        dispersion=market.dispersion(index).numpy(),
    )
    deep = f["discount"] >= 0.25
    assert f.loc[deep, "censored"].mean() > 0.2  # stock runs out often on deep discounts
    bins = response_bins(with_stock(right, f["stock"].to_numpy(np.float64)))
    sale = [b for b in bins if b.label != "0%" and b.periods >= 100]
    assert len(sale) >= 3
    assert all(abs(b.lift_ratio - 1.0) < 0.08 for b in sale), [
        (b.label, b.lift_ratio) for b in sale
    ]
    for b in sale:  # observed lift = ratio x simulated lift; simulated = the market's own
        assert b.observed_lift == pytest.approx(b.lift_ratio * b.simulated_lift)
        assert b.simulated_lift == pytest.approx(b.true_lift)
    # A simulator promising twice the market's lift is caught where stock runs out too: the
    # sold-out periods say demand was at least the stock, not that it was what the
    # simulator expects to sell there.
    on_sale = right.discount > 0
    wrong = dataclasses.replace(right, mean=np.where(on_sale, 2.0, 1.0) * right.mean)
    for b in response_bins(with_stock(wrong, f["stock"].to_numpy(np.float64))):
        if b.label in ("30%", "40%"):
            assert b.lift_ratio is not None and 0.35 < b.lift_ratio < 0.7, (b.label, b.lift_ratio)
            assert b.lift_ratio_ci is not None and b.lift_ratio_ci[1] < 0.9
    sold = ~f["censored"].to_numpy()
    kept = ResponseRows(
        **{k: v[sold] for k, v in dataclasses.asdict(right).items() if v is not None}
    )
    biased = [b for b in response_bins(kept) if b.label in ("30%", "40%")]
    assert all(b.lift_ratio < 0.9 for b in biased), [(b.label, b.lift_ratio) for b in biased]


def test_caution_names_the_bins_whose_interval_excludes_1() -> None:
    from promogym.response import ResponseBin, caution, format_response

    def rated(label: str, ratio: float, ci: tuple[float, float]) -> ResponseBin:
        return ResponseBin(label, 0.0, 0.0, 20, 4, 0.2, 2.0, 2.0 * ratio, ratio, ci, 1.0)

    level = ResponseBin("0%", 0.0, 0.05, 30, 4, 0.0, 1.0, 1.0, None, None, 1.0, sets_level=True)
    fine = [level, rated("20%", 1.05, (0.9, 1.2)), rated("30%", 0.82, (0.68, 0.99))]
    assert caution(fine) is None and "warning" not in format_response(fine)  # one near miss
    over = [*fine, rated("40%", 0.6, (0.45, 0.8))]
    text = caution(over)
    assert text is not None and "overstates the lift at 30%, 40% off" in text  # 0.6: far off
    assert "over-use those discounts" in text and "understates" not in text
    two_near = [*fine, rated("40%", 0.85, (0.75, 0.97))]
    assert "overstates the lift at 30%, 40% off" in caution(two_near)  # type: ignore[operator]
    both = [*over, rated("10%", 1.5, (1.2, 1.9))]
    assert "misjudge" in caution(both)  # type: ignore[operator]
    assert format_response(both).splitlines()[-1].startswith("warning: the held-out check")
    # one bin alone: far off, and with the periods for its interval to mean it
    far = rated("40%", 0.58, (0.35, 0.91))
    assert "overstates the lift at 40% off" in caution([level, far])  # type: ignore[operator]
    few = dataclasses.replace(far, periods=6)  # six held-out weeks that drew low
    assert caution([level, few]) is None
