"""Baseline policies: their rules, their feasibility, and tuning by simulation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from promogym.config import CampaignConfig
from promogym.envs.baselines import (
    FixedDiscount,
    NoPromotion,
    PeriodicFlashSale,
    RandomPolicy,
    base_stock_grid,
    base_stock_order,
    baseline_suite,
    best_fixed_discount,
    best_flash_sale,
    mean_profit,
    torch_threads,
    tune_base_stock,
)
from promogym.envs.core import CampaignParams, CampaignState, action_masks, initial_state
from promogym.envs.demand import DemandModel, MarketDemand, Memory
from promogym.envs.market import default_market, weekday
from promogym.envs.rollout import Policy, simulate

START_DAY = 20788  # 2026-12-01, a Tuesday


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Rollouts on tiny tensors: one intra-op thread is fastest on a shared 2-core machine."""
    with torch_threads(1):
        yield


class ElasticDemand(DemandModel):
    """Toy memoryless demand: ``level * (1 - d) ** -elasticity``, dispersion 10."""

    def __init__(self, level: float, elasticity: float) -> None:
        self.level = level
        self.elasticity = elasticity

    def distribution(
        self, state: CampaignState, memory: Memory, discounts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        d = discounts.to(torch.float64)
        if d.dim() == 1:
            d = d.unsqueeze(0).expand(state.batch_size, -1)
        mean = self.level * (1.0 - d) ** (-self.elasticity)
        return mean, torch.full_like(mean, 10.0)


def small_params(**campaign: object) -> CampaignParams:
    cfg = CampaignConfig().replace(
        campaign={"horizon": 10, **campaign},
        inventory={"capacity": 40, "initial": 20, "order_quantities": [0, 10, 20]},
    )
    return CampaignParams.from_config(cfg)


def start_of(params: CampaignParams) -> CampaignState:
    return initial_state(params, torch.tensor([0]), torch.tensor([START_DAY]))


def test_base_stock_orders_smallest_quantity_reaching_level() -> None:
    params = small_params()
    state = initial_state(
        params,
        torch.zeros(5, dtype=torch.long),
        torch.full((5,), START_DAY),
        on_hand=torch.tensor([30.0, 22.0, 15.0, 5.0, 0.0]),
        pipeline=torch.tensor([[0.0, 0], [0, 0], [5, 0], [0, 0], [0, 0]], dtype=torch.float64),
    )
    # level 30: positions 30, 22, 20, 5, 0 need 0, 8, 10, 25, 30 units
    order = base_stock_order(state, params, 30)
    assert order.tolist() == [0, 1, 1, 2, 2]
    assert params.order_quantities[order].tolist() == [0.0, 10.0, 10.0, 20.0, 20.0]


def test_base_stock_orders_nothing_that_would_land_after_the_campaign() -> None:
    """An order placed in the last ``lead_time`` periods would arrive after the campaign, which
    neither delivers nor salvages it: the rules order nothing then, whatever the level."""
    params = small_params()
    t = torch.arange(params.horizon)
    state = initial_state(params, torch.zeros_like(t), torch.full_like(t, START_DAY)).replace(t=t)
    order = base_stock_order(state, params, 1000)
    useful = t + params.lead_time < params.horizon
    assert (order[useful] == params.n_orders - 1).all() and (order[~useful] == 0).all()
    assert int((~useful).sum()) == params.lead_time > 0
    demand = MarketDemand(default_market(8, 0))
    run = simulate(
        NoPromotion(base_stock=40), demand, params, start_of(params), n_episodes=20, seed=0
    )
    late = run.periods["order_quantity"][:, params.horizon - params.lead_time :]
    assert (late == 0).all()


def test_no_promotion_never_discounts_and_fixed_discount_respects_budget() -> None:
    params = small_params(max_sale_periods=4)
    demand = MarketDemand(default_market(8, 0))
    start = start_of(params)
    plain = simulate(NoPromotion(base_stock=25), demand, params, start, n_episodes=50, seed=0)
    assert (plain.periods["discount"] == 0).all()
    fixed = simulate(
        FixedDiscount(base_stock=25, discount_idx=2), demand, params, start, n_episodes=50, seed=0
    )
    expected = [0.2] * 4 + [0.0] * 6  # the budget of 4 sale periods, then regular price
    assert fixed.periods["discount"] == pytest.approx(np.tile(expected, (50, 1)))


def test_periodic_and_weekend_flash_sales_follow_the_calendar() -> None:
    params = small_params()
    state = initial_state(
        params,
        torch.zeros(10, dtype=torch.long),
        START_DAY + torch.arange(10),
        t=torch.arange(10),
    )
    every3 = PeriodicFlashSale(base_stock=0, discount_idx=3, every=3)
    d, _ = every3.act(state, params, {})
    assert d.tolist() == [3, 0, 0, 3, 0, 0, 3, 0, 0, 3]
    weekend = PeriodicFlashSale(base_stock=0, discount_idx=1, weekdays=(5, 6))
    d, _ = weekend.act(state, params, {})
    on_weekend = [int(weekday(torch.tensor(START_DAY + i))) in (5, 6) for i in range(10)]
    assert d.tolist() == [1 if w else 0 for w in on_weekend]
    assert on_weekend.index(True) == 4  # Tue 1 Dec 2026 + 4 days = Sat 5 Dec
    assert "Sat+Sun" in weekend.describe(params) and "30% off every 3" in every3.describe(params)
    no_sales = small_params(max_sale_periods=0)  # the rules never apply: say so
    for rule in (weekend, every3, FixedDiscount(base_stock=0, discount_idx=2)):
        assert rule.describe(no_sales).startswith("never on sale (no sale periods allowed)")
    # A sale budget shorter than the campaign cuts the rules short: the description says so.
    two = small_params(max_sale_periods=2)
    assert ", at most 2 sale periods (then the list price)" in every3.describe(two)
    assert (
        FixedDiscount(discount_idx=1)
        .describe(two)
        .startswith("always 10% off, at most 2 sale periods")
    )
    assert "at most" not in every3.describe(params)
    assert "at most" not in every3.describe(small_params(max_sale_periods=4))  # 4 sales in 10
    assert "at most 3" in every3.describe(small_params(max_sale_periods=3))
    # The ladder's first step is no discount: a 0% "sale" is the list price.
    for zero in (FixedDiscount(discount_idx=0), PeriodicFlashSale(discount_idx=0, every=2)):
        assert zero.describe(params).startswith("always the list price (never on sale)")


def test_random_policy_is_feasible_and_seeded() -> None:
    params = small_params(max_sale_periods=2)
    demand = MarketDemand(default_market(8, 0))
    start = start_of(params)

    class Checked(Policy):
        def __init__(self, inner: Policy) -> None:
            self.inner = inner

        def reset(self, state, params, seed=None) -> None:  # type: ignore[no-untyped-def]
            self.inner.reset(state, params, seed)

        def act(self, state, params, memory):  # type: ignore[no-untyped-def]
            d, o = self.inner.act(state, params, memory)
            d_mask, o_mask = action_masks(state, params)
            assert bool(d_mask.gather(1, d[:, None]).all())
            assert bool(o_mask.gather(1, o[:, None]).all())
            return d, o

    one = simulate(Checked(RandomPolicy(seed=3)), demand, params, start, n_episodes=64, seed=0)
    two = simulate(Checked(RandomPolicy(seed=3)), demand, params, start, n_episodes=64, seed=0)
    other = simulate(Checked(RandomPolicy(seed=4)), demand, params, start, n_episodes=64, seed=0)
    assert (one.profit == two.profit).all()
    assert not (one.profit == other.profit).all()
    assert ((one.periods["discount"] > 0).sum(axis=1) <= 2).all()
    assert (one.periods["discount"] > 0).any()


def test_tune_base_stock_picks_best_simulated_level() -> None:
    params = small_params()
    demand = ElasticDemand(level=6.0, elasticity=1.0)
    start = start_of(params)
    levels = [0, 10, 20, 30, 40]
    tuned = tune_base_stock(
        lambda s: NoPromotion(base_stock=s),
        demand,
        params,
        start,
        n_episodes=100,
        seed=1,
        levels=levels,
        refine=False,
    )
    scores = {
        s: mean_profit(NoPromotion(base_stock=s), demand, params, start, n_episodes=100, seed=1)
        for s in levels
    }
    assert tuned.base_stock == max(scores, key=scores.__getitem__)
    assert tuned.tuned_profit == pytest.approx(max(scores.values()))
    assert tuned.base_stock > 0  # never ordering cannot be best with 20 units for 60 demand
    refined = tune_base_stock(
        lambda s: NoPromotion(base_stock=s),
        demand,
        params,
        start,
        n_episodes=100,
        seed=1,
        levels=levels,
    )
    assert refined.tuned_profit >= tuned.tuned_profit


def test_best_fixed_discount_follows_the_demand_model() -> None:
    params = small_params()
    start = start_of(params)
    kwargs = {"n_episodes": 100, "seed": 0, "levels": [25], "discount_indices": [0, 2, 4]}
    # Inelastic demand: a discount only gives money away.
    flat = best_fixed_discount(ElasticDemand(5.0, elasticity=0.0), params, start, **kwargs)
    assert flat.discount_idx == 0
    # Very elastic demand: discounting raises revenue (price^(1-e) with e = 4).
    steep = best_fixed_discount(ElasticDemand(1.0, elasticity=4.0), params, start, **kwargs)
    assert steep.discount_idx > 0
    assert isinstance(steep, FixedDiscount) and steep.tuned_profit is not None


def test_best_flash_sale_searches_schedules_and_depths() -> None:
    params = small_params()
    start = start_of(params)
    best = best_flash_sale(
        MarketDemand(default_market(8, 0)),
        params,
        start,
        n_episodes=60,
        seed=0,
        every=(2, 5),
        discount_indices=[1, 3],
        levels=[10, 30],
        finalists=2,
    )
    assert best.every in (2, 5) and best.discount_idx in (1, 3)
    assert best.base_stock in range(0, 41)


def test_baseline_suite_names_and_weekly_data() -> None:
    params = small_params()
    demand = ElasticDemand(4.0, elasticity=2.0)
    kwargs = {"n_episodes": 40, "levels": [20]}
    daily = baseline_suite(demand, params, start_of(params), seed=0, **kwargs)
    assert list(daily) == [
        "no-promotion",
        "best-fixed-discount",
        "periodic-flash-sale",
        "weekend-flash-sale",
        "random",
    ]
    weekly_params = CampaignParams.from_config(
        CampaignConfig().replace(
            campaign={"horizon": 6},
            inventory={"capacity": 40, "initial": 20, "order_quantities": [0, 10, 20]},
        ),
        period_days=7,
    )
    weekly = baseline_suite(demand, weekly_params, start_of(weekly_params), seed=0, **kwargs)
    assert "weekend-flash-sale" not in weekly and "periodic-flash-sale" in weekly
    # the fixed discount is a sale every period, as recommend's (0% is no-promotion's row)
    flat = baseline_suite(ElasticDemand(4.0, elasticity=0.0), params, start_of(params), **kwargs)
    assert flat["best-fixed-discount"].discount_idx >= 1
    no_sales = dataclasses.replace(params, discounts=params.discounts[:1])
    assert list(baseline_suite(demand, no_sales, start_of(no_sales), **kwargs)) == [
        "no-promotion",
        "random",
    ]


def test_base_stock_grid_covers_capacity() -> None:
    assert base_stock_grid(7) == [0, 1, 2, 3, 4, 5, 6, 7]
    assert base_stock_grid(45)[-1] == 45


@pytest.mark.parametrize("refine", [True, False])
def test_room_to_spare_does_not_make_a_rule_worse(refine: bool) -> None:
    """A capacity far above the item's demand (room used as "unlimited") leaves the tuned
    base-stock rule as good as a tight one: the grid zooms in where it is too coarse."""
    market = MarketDemand(default_market(8, 0))
    found = {}
    for capacity in (160, 10_000):
        params = CampaignParams.from_config(
            CampaignConfig().replace(inventory={"capacity": capacity})
        )
        start = initial_state(params, torch.tensor([0]), torch.tensor([START_DAY]))
        policy = tune_base_stock(
            lambda s: NoPromotion(base_stock=s),
            market,
            params,
            start,
            n_episodes=100,
            levels=base_stock_grid(capacity, 11 if refine else 5),
            refine=refine,
        )
        found[capacity] = policy
    assert found[10_000].base_stock <= 2 * found[160].base_stock
    assert found[10_000].tuned_profit >= 0.99 * found[160].tuned_profit
