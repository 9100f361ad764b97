"""The planner: distilling a learned simulator into a DP table, and acting on it."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch
from conftest import MarketOracle

from promogym.agents.planner import (
    PlannerPolicy,
    learned_demand_table,
    longest_sale_runs,
    on_grid,
)
from promogym.config import CampaignConfig
from promogym.data import history_from_frame
from promogym.envs import dp
from promogym.envs.core import CampaignParams, initial_state
from promogym.envs.demand import MarketDemand
from promogym.envs.forecaster_demand import ForecasterDemand
from promogym.envs.market import MAX_STREAK, ReferenceMarket, day_date, default_market
from promogym.envs.rollout import simulate
from promogym.simulate import simulate_history

pytestmark = pytest.mark.usefixtures("one_torch_thread")

START_DAY = 20788  # 2026-12-01


def oracle_simulator(market: ReferenceMarket, until: int = START_DAY) -> ForecasterDemand:
    """A learned simulator that knows the market (it reads the streak off its context), over
    60 periods of history ending the period before ``until``, its last 7 periods without a
    sale."""
    days = 7 if market.freq == "W" else 1
    frame = simulate_history(market, periods=60, start_date=day_date(until - 60 * days), seed=1)
    last = frame["date"] > frame["date"].max() - pd.Timedelta(days=7 * days)
    frame.loc[last, "price"] = frame.loc[last, "list_price"]
    frame.loc[last, "promo"] = 0
    return ForecasterDemand(MarketOracle(market), history_from_frame(frame))


def campaign(lead_time: int = 2) -> tuple[ReferenceMarket, CampaignParams]:
    config = CampaignConfig().replace(
        campaign={"horizon": 8, "discounts": [0.0, 0.2, 0.4], "max_sale_periods": 4},
        inventory={
            "capacity": 40,
            "initial": 20,
            "order_quantities": [0, 10, 20],
            "lead_time": lead_time,
        },
    )
    return default_market(), CampaignParams.from_config(config, list_price=20.0)


def test_table_of_a_streak_model_is_its_exact_demand() -> None:
    market, params = campaign()
    start = initial_state(params, torch.tensor([1]), torch.tensor([START_DAY]))
    table = learned_demand_table(oracle_simulator(market), params, start)
    truth = dp.DemandTable.from_market(market, 1, params, START_DAY)
    assert table.mean.shape == (params.horizon, params.n_discounts, MAX_STREAK + 1)
    # every streak a campaign can reach by period t (s <= t) is exact
    for t in range(params.horizon):
        reach = slice(0, t + 1)
        torch.testing.assert_close(table.mean[t, :, reach], truth.mean[t, :, reach])
        torch.testing.assert_close(table.dispersion[t, :, reach], truth.dispersion[t, :, reach])


@pytest.mark.parametrize("lead_time", [0, 1, 2, 3])
def test_planner_on_an_exact_table_is_the_dp_optimum(lead_time: int) -> None:
    market, params = campaign(lead_time)
    start = initial_state(params, torch.tensor([1]), torch.tensor([START_DAY]))
    optimum = dp.solve(market, 1, params, START_DAY)
    table = learned_demand_table(oracle_simulator(market), params, start)
    planned = dp.solve_table(table, params, START_DAY, item=1)
    assert planned.expected_profit == pytest.approx(optimum.expected_profit, rel=1e-12)
    truth = MarketDemand(market)
    planner = PlannerPolicy(oracle_simulator(market))
    a = simulate(planner, truth, params, start, n_episodes=64, seed=3)
    b = simulate(optimum.policy(), truth, params, start, n_episodes=64, seed=3)
    assert (a.profit == b.profit).all()
    assert (a.periods["discount"] == b.periods["discount"]).all()


def test_weekly_planner_is_the_dp_optimum() -> None:
    market = ReferenceMarket(default_market().params, freq="W")
    _, daily = campaign()
    params = dataclasses.replace(daily, period_days=7)
    start = initial_state(params, torch.tensor([2]), torch.tensor([START_DAY]))
    planner = PlannerPolicy(oracle_simulator(market))
    optimum = dp.solve(market, 2, params, START_DAY)
    assert planner.solution(start, params).expected_profit == pytest.approx(
        optimum.expected_profit, rel=1e-12
    )
    truth = MarketDemand(market)
    a = simulate(planner, truth, params, start, n_episodes=32, seed=5)
    b = simulate(optimum.policy(), truth, params, start, n_episodes=32, seed=5)
    assert (a.profit == b.profit).all()


def test_mid_campaign_table_repeats_its_first_row_before_the_state() -> None:
    market, params = campaign()
    start = initial_state(
        params,
        torch.tensor([0]),
        torch.tensor([START_DAY + 3]),
        t=torch.tensor([3]),
    )
    simulator = oracle_simulator(market, until=START_DAY + 3)
    table = learned_demand_table(simulator, params, start)
    assert table.mean.shape[0] == params.horizon
    assert torch.equal(table.mean[0], table.mean[3])
    truth = dp.DemandTable.from_market(market, 0, params, START_DAY)
    torch.testing.assert_close(table.mean[3:, :, 0], truth.mean[3:, :, 0])
    with pytest.raises(ValueError, match="one campaign state"):
        learned_demand_table(simulator, params, start.index(torch.tensor([0, 0])))


def test_off_grid_states_snap_to_the_nearest_dp_state() -> None:
    _, params = campaign()  # lead time 2: one tracked pipeline slot, ladder 0/10/20
    state = initial_state(
        params,
        torch.tensor([0, 0, 0]),
        torch.tensor([START_DAY] * 3),
        on_hand=torch.tensor([7.4, 55.0, 0.0]),
        pipeline=torch.tensor([[12.0, 0.0], [3.0, 4.0], [20.0, 20.0]]),
    )
    snapped = on_grid(state, params)
    # tracked slot -> nearest ladder quantity; the rest of the units count as on hand
    assert snapped.pipeline.tolist() == [[10.0, 0.0], [0.0, 0.0], [20.0, 0.0]]
    assert snapped.on_hand.tolist() == [9.0, 40.0, 20.0]  # 7.4 + 2; 55 + 7 capped; 0 + 20
    _, lead1 = campaign(lead_time=1)  # nothing tracked: the next arrival counts as on hand
    one = initial_state(
        lead1, torch.tensor([0]), torch.tensor([START_DAY]), pipeline=torch.tensor([[20.0]])
    )
    snapped = on_grid(one, lead1)
    assert snapped.on_hand.tolist() == [40.0] and snapped.pipeline.tolist() == [[0.0]]
    d, o = PlannerPolicy(oracle_simulator(default_market())).act(state, params, {})
    assert d.shape == o.shape == (3,)


def test_longest_sale_runs_counts_consecutive_periods_per_item() -> None:
    dates = pd.date_range("2024-01-01", periods=8, freq="D")
    price = {
        "a": [20, 18, 18, 18, 20, 18, 20, 20],  # runs of 3 and 1
        "b": [20, 18, 20, 18, 18, 20, 20, 18],  # runs of 1, 2 and 1
        "c": [20] * 8,  # never on sale: the longest run of any item
    }
    frame = pd.DataFrame(
        [
            {"date": d, "item_id": item, "units_sold": 5, "price": p, "list_price": 20.0}
            for item, prices in price.items()
            for d, p in zip(dates, prices, strict=True)
        ]
    )
    history = history_from_frame(frame)
    assert longest_sale_runs(history, ["a", "b", "c"]) == [3, 2, 3]


def test_max_sale_run_keeps_plans_within_the_history_s_sales() -> None:
    market, params = campaign()
    start = initial_state(params, torch.tensor([1]), torch.tensor([START_DAY]))
    truth = MarketDemand(market)
    planner = PlannerPolicy(oracle_simulator(market), max_sale_run=[1] * 8)
    short = simulate(planner, truth, params, start, n_episodes=64)
    on_sale = short.periods["discount"] > 0
    assert on_sale.any() and not (on_sale[:, 1:] & on_sale[:, :-1]).any()
    assert (
        planner.solution(start, params).expected_profit
        <= dp.solve(market, 1, params, START_DAY).expected_profit
    )


def test_table_of_any_demand_model_follows_the_streak_of_its_paths() -> None:
    market, params = campaign()  # MarketDemand reads the streak from the state, not memory
    start = initial_state(params, torch.tensor([1]), torch.tensor([START_DAY]))
    table = learned_demand_table(MarketDemand(market), params, start)
    truth = dp.DemandTable.from_market(market, 1, params, START_DAY)
    for t in range(params.horizon):
        torch.testing.assert_close(table.mean[t, :, : t + 1], truth.mean[t, :, : t + 1])


def test_a_sale_run_limit_above_the_streak_cap_still_ends_sales() -> None:
    _, params = campaign()
    params = dataclasses.replace(params, horizon=12, sale_budget=12)
    shape = (12, params.n_discounts, MAX_STREAK + 1)
    mean = torch.full(shape, 1.0, dtype=torch.float64)
    mean[:, 1:] = 30.0  # every sale pays, at every streak
    table = dp.DemandTable(mean, torch.full(shape, 5.0, dtype=torch.float64), max_sale_run=9)
    actions = dp.solve_table(table, params, START_DAY).actions
    on_sale_at_cap = actions[:, :, :, MAX_STREAK] // params.n_orders > 0
    assert not bool(on_sale_at_cap.any())  # at most MAX_STREAK sale periods in a row
    assert bool((actions[:, :, :, 0] // params.n_orders > 0).any())


def test_a_planner_plans_again_for_other_campaign_params() -> None:
    market, params = campaign()
    start = initial_state(params, torch.tensor([1]), torch.tensor([START_DAY]))
    planner = PlannerPolicy(oracle_simulator(market))
    first = planner.solution(start, params)
    assert planner.solution(start, params) is first  # cached
    dear = dataclasses.replace(params, unit_cost=params.unit_cost + 5.0)
    again = planner.solution(start, dear)
    assert again is not first and again.expected_profit < first.expected_profit


def test_plans_of_an_item_use_its_own_list_price() -> None:
    market, one_price = campaign()
    config = CampaignConfig().replace(
        campaign={"horizon": 8, "discounts": [0.0, 0.2, 0.4], "max_sale_periods": 4},
        inventory={"capacity": 40, "initial": 20, "order_quantities": [0, 10, 20]},
        economics={"list_price": None},
    )
    prices = [20.0] * len(market.item_ids)
    prices[1] = 35.0
    params = CampaignParams.from_config(config, item_list_price=prices)
    own = CampaignParams.from_config(config, list_price=35.0)
    start = initial_state(params, torch.tensor([1]), torch.tensor([START_DAY]))
    table = learned_demand_table(oracle_simulator(market), params, start)
    per_item = dp.solve_table(table, params, START_DAY, item=1)
    assert per_item.params.list_price == 35.0
    assert per_item.expected_profit == dp.solve_table(table, own, START_DAY, 1).expected_profit
    assert per_item.expected_profit > dp.solve_table(table, one_price, START_DAY, 1).expected_profit
    planner = PlannerPolicy(oracle_simulator(market))
    first = planner.solution(start, params)
    assert first.params.list_price == 35.0 and planner.solution(start, params) is first


def test_planner_plans_on_stock_lots_when_every_unit_does_not_fit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    market, params = campaign()  # capacity 40, orders [0, 10, 20]: lots of 1, 2, 5 or 10
    monkeypatch.setattr(dp, "DP_MEMORY_LIMIT", 1)
    monkeypatch.setattr(dp, "DP_LOT_MEMORY", dp.dp_memory_bytes(params, 5))
    assert dp.dp_lot(params) == 5
    start = initial_state(params, torch.tensor([1]), torch.tensor([START_DAY]))
    planner = PlannerPolicy(oracle_simulator(market))
    truth = MarketDemand(market)
    planned = simulate(planner, truth, params, start, n_episodes=400, seed=5)
    assert planner.solution(start, params).lot == 5
    optimum = dp.solve(market, 1, params, START_DAY, lot=1)
    best = simulate(optimum.policy(), truth, params, start, n_episodes=400, seed=5)
    assert planned.summary()["mean_profit"] >= 0.98 * best.summary()["mean_profit"]
