"""The exact DP: brute-force agreement, Monte-Carlo agreement, grid look-ups, the CLI."""

from __future__ import annotations

import datetime as dt
import itertools
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from promogym.cli import app
from promogym.config import CampaignConfig
from promogym.envs.baselines import baseline_suite, torch_threads
from promogym.envs.core import CampaignParams, action_masks, initial_state, transition
from promogym.envs.demand import MarketDemand
from promogym.envs.dp import campaign_start_day, day_number, optimum_report, solve
from promogym.envs.market import MAX_STREAK, MarketParams, ReferenceMarket, default_market
from promogym.envs.rollout import simulate

START_DAY = 20788  # 2026-12-01, a Tuesday


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Rollouts on tiny tensors: one intra-op thread is fastest on a shared 2-core machine."""
    with torch_threads(1):
        yield


def tiny_market(base: float = 1.6) -> ReferenceMarket:
    """One item with low demand, so capacity-6 campaigns stock out and overflow."""
    return ReferenceMarket(
        MarketParams(
            item_ids=("tiny",),
            base_demand=np.array([base]),
            elasticity=np.array([2.0]),
            dow_profile=np.array([[0.7, 0.8, 0.9, 1.0, 1.2, 1.4, 1.0]]),
            yearly_amplitude=np.array([0.1]),
            yearly_peak=np.array([30.0]),
            urgency=np.array([0.8]),
            urgency_decay=np.array([0.5]),
            dip=np.array([0.2]),
            dispersion=np.array([4.0]),
            list_price=np.array([20.0]),
            unit_cost=np.array([9.0]),
        )
    )


def small_config(**inventory: object) -> CampaignConfig:
    inv = {"capacity": 6, "initial": 3, "order_quantities": [0, 2, 4], "lead_time": 2}
    inv.update(inventory)
    horizon = max(3, int(inv["lead_time"]) + 1)  # type: ignore[call-overload]  # an order can land
    return CampaignConfig().replace(
        campaign={"horizon": horizon, "discounts": [0.0, 0.2, 0.4]},
        inventory=inv,
        economics={"order_fixed_cost": 3.0, "holding_cost": 0.3},
    )


def brute_force_value(market: ReferenceMarket, params: CampaignParams, start_day: int) -> float:
    """Optimal value from the initial state by exhaustive enumeration of demand outcomes.

    Uses the simulator's own ``action_masks`` and ``transition``; demand is enumerated up to a
    support whose tail mass is below 1e-15.
    """
    support = 400
    memo: dict[tuple, float] = {}

    def value(t: int, on_hand: float, pipeline: tuple, streak: int, used: int) -> float:
        key = (t, on_hand, pipeline, streak, used)
        if t == params.horizon:
            return 0.0
        if key in memo:
            return memo[key]
        one = initial_state(
            params,
            torch.tensor([0]),
            torch.tensor([start_day + t]),
            on_hand=torch.tensor([on_hand]),
            pipeline=torch.tensor([pipeline], dtype=torch.float64),
            streak=torch.tensor([streak]),
            t=torch.tensor([t]),
            sale_used=torch.tensor([used]),
        )
        d_mask, o_mask = action_masks(one, params)
        best = -np.inf
        for d, o in itertools.product(range(params.n_discounts), range(params.n_orders)):
            if not (d_mask[0, d] and o_mask[0, o]):
                continue
            pmf = market.pmf(
                torch.tensor(0),
                torch.tensor(start_day + t),
                params.discounts[d],
                torch.tensor(streak),
                support,
            )
            assert 1.0 - pmf.sum().item() < 1e-15
            rows = torch.zeros(support, dtype=torch.long)
            batch = one.index(rows)
            nxt, reward, _, _ = transition(
                batch,
                params,
                torch.full((support,), d),
                torch.full((support,), o),
                torch.arange(support, dtype=torch.float64),
            )
            pm, rw = pmf.numpy(), reward.numpy()
            # only on_hand depends on the demand outcome; group outcomes by it
            assert (nxt.pipeline == nxt.pipeline[0]).all() and (nxt.streak == nxt.streak[0]).all()
            levels, where = np.unique(nxt.on_hand.numpy(), return_inverse=True)
            mass = np.bincount(where, weights=pm, minlength=len(levels))
            total = float((pm * rw).sum())
            for level, weight in zip(levels, mass, strict=True):
                total += weight * value(
                    t + 1,
                    float(level),
                    tuple(nxt.pipeline[0].tolist()),
                    int(nxt.streak[0]),
                    int(nxt.sale_used[0]),
                )
            best = max(best, total)
        memo[key] = best
        return best

    return value(0, float(params.initial_on_hand), (0.0,) * params.pipeline_slots, 0, 0)


@pytest.mark.parametrize(
    ("lead_time", "max_sale_periods"), [(0, None), (1, 1), (2, None), (2, 2), (3, None)]
)
def test_dp_matches_exhaustive_enumeration(lead_time: int, max_sale_periods: int | None) -> None:
    market = tiny_market()
    cfg = small_config(lead_time=lead_time)
    if max_sale_periods is not None:
        cfg = cfg.replace(campaign={"max_sale_periods": max_sale_periods})
    params = CampaignParams.from_config(cfg)
    dp = solve(market, "tiny", params, START_DAY)
    exact = brute_force_value(market, params, START_DAY)
    assert dp.expected_profit == pytest.approx(exact, rel=1e-10, abs=1e-9)


def mc_check(market: ReferenceMarket, item: str, params: CampaignParams, episodes: int) -> None:
    dp = solve(market, item, params, START_DAY)
    start = initial_state(
        params, torch.tensor([market.item_index(item)]), torch.tensor([START_DAY])
    )
    out = simulate(dp.policy(), MarketDemand(market), params, start, n_episodes=episodes, seed=11)
    summary = out.summary()
    half = 1.96 * summary["se_profit"]
    assert abs(summary["mean_profit"] - dp.expected_profit) <= half, (
        summary,
        dp.expected_profit,
    )


def test_dp_matches_monte_carlo_on_default_campaign() -> None:
    params = CampaignParams.from_config(CampaignConfig())
    mc_check(default_market(8, 0), "sku-0", params, episodes=4000)


def test_dp_matches_monte_carlo_on_small_campaign_with_budget() -> None:
    cfg = CampaignConfig().replace(
        campaign={"horizon": 12, "discounts": [0.0, 0.15, 0.35], "max_sale_periods": 3},
        inventory={"lead_time": 1, "capacity": 50, "initial": 20, "order_quantities": [0, 15, 30]},
    )
    mc_check(default_market(8, 0), "sku-2", CampaignParams.from_config(cfg), episodes=4000)


def test_full_size_solve_is_fast() -> None:
    params = CampaignParams.from_config(CampaignConfig())
    dp = solve(default_market(8, 0), "sku-0", params, START_DAY)
    assert dp.values.shape == (29, 161, 3, MAX_STREAK + 1, 1)
    assert dp.solve_seconds < 10.0


def test_dp_beats_every_tuned_baseline() -> None:
    market = default_market(8, 0)
    cfg = CampaignConfig().replace(
        campaign={"horizon": 10, "max_sale_periods": 5},
        inventory={"capacity": 40, "initial": 20, "order_quantities": [0, 10, 20]},
    )
    params = CampaignParams.from_config(cfg)
    dp = solve(market, 0, params, START_DAY)
    demand = MarketDemand(market)
    start = initial_state(params, torch.tensor([0]), torch.tensor([START_DAY]))
    suite = baseline_suite(demand, params, start, seed=0, n_episodes=100, levels=[0, 10, 20, 30])
    assert set(suite) >= {"no-promotion", "best-fixed-discount", "periodic-flash-sale", "random"}
    for name, policy in suite.items():
        out = simulate(policy, demand, params, start, n_episodes=1000, seed=5).summary()
        assert dp.expected_profit >= out["mean_profit"] - 3 * out["se_profit"], name


def test_sale_budget_binds_and_zero_budget_means_no_sale() -> None:
    market = tiny_market(base=4.0)
    base = small_config(capacity=20, initial=20, order_quantities=[0, 5, 10]).replace(
        campaign={"horizon": 6}
    )
    unlimited = solve(market, 0, CampaignParams.from_config(base), START_DAY)
    budget2 = solve(
        market,
        0,
        CampaignParams.from_config(base.replace(campaign={"max_sale_periods": 2})),
        START_DAY,
    )
    none = solve(
        market,
        0,
        CampaignParams.from_config(base.replace(campaign={"max_sale_periods": 0})),
        START_DAY,
    )
    no_ladder = solve(
        market,
        0,
        CampaignParams.from_config(base.replace(campaign={"discounts": [0.0]})),
        START_DAY,
    )
    assert not unlimited.budget_tracked and budget2.budget_tracked
    assert none.expected_profit == pytest.approx(no_ladder.expected_profit, rel=1e-12)
    assert none.expected_profit < budget2.expected_profit < unlimited.expected_profit
    # with the budget spent the policy never discounts
    assert bool((budget2.actions[..., 2] // 3 == 0).all())


def test_policy_is_feasible_and_value_lookup_matches_tables() -> None:
    market = tiny_market(base=3.0)
    cfg = small_config(capacity=12, initial=5).replace(
        campaign={"horizon": 5, "max_sale_periods": 2}
    )
    params = CampaignParams.from_config(cfg)
    dp = solve(market, 0, params, START_DAY)
    ladder = [0.0, 2.0, 4.0]
    grid = list(itertools.product(range(5), range(13), ladder, range(MAX_STREAK + 1), range(3)))
    t, x, p, s, u = (torch.tensor(col) for col in zip(*grid, strict=True))
    state = initial_state(
        params,
        torch.zeros(len(grid), dtype=torch.long),
        START_DAY + t,
        on_hand=x.double(),
        pipeline=torch.stack([p.double(), torch.zeros(len(grid), dtype=torch.float64)], 1),
        streak=s,
        t=t,
        sale_used=u,
    )
    d_idx, o_idx = dp.policy().act(state, params, {})
    d_mask, o_mask = action_masks(state, params)
    assert bool(d_mask.gather(1, d_idx[:, None]).all())
    assert bool(o_mask.gather(1, o_idx[:, None]).all())
    start = initial_state(params, torch.tensor([0]), torch.tensor([START_DAY]))
    assert dp.value(start).item() == dp.expected_profit
    assert dp.value(state).shape == (len(grid),)


def test_off_grid_states_raise_clear_errors() -> None:
    market = tiny_market()
    params = CampaignParams.from_config(small_config())
    dp = solve(market, 0, params, START_DAY)
    policy = dp.policy()
    ok = initial_state(params, torch.tensor([0]), torch.tensor([START_DAY]))
    with pytest.raises(ValueError, match="order ladder"):
        policy.act(ok.replace(pipeline=torch.tensor([[3.0, 0.0]], dtype=torch.float64)), params, {})
    with pytest.raises(ValueError, match="calendar"):
        policy.act(ok.replace(day=ok.day + 1), params, {})
    with pytest.raises(ValueError, match="whole units"):
        dp.value(ok.replace(on_hand=torch.tensor([2.5], dtype=torch.float64)))
    with pytest.raises(ValueError, match="empty"):
        dp.value(ok.replace(pipeline=torch.tensor([[0.0, 2.0]], dtype=torch.float64)))


def test_start_day_from_config() -> None:
    assert campaign_start_day(CampaignConfig()) == START_DAY
    assert day_number(dt.date(1970, 1, 2)) == 1
    cfg = CampaignConfig().replace(campaign={"start_date": "2027-01-05"})
    assert campaign_start_day(cfg) == START_DAY + 35


SMALL_TOML = """
[campaign]
horizon = 5
discounts = [0.0, 0.2, 0.4]
max_sale_periods = 3
[inventory]
initial = 20
capacity = 40
order_quantities = [0, 10, 20]
"""


def test_optimum_report_fields() -> None:
    cfg = CampaignConfig().replace(
        campaign={"horizon": 7, "max_sale_periods": 3},
        inventory={"initial": 20, "capacity": 40, "order_quantities": [0, 10, 20]},
    )
    report = optimum_report(cfg, episodes=300, tune_episodes=60)
    assert report["expected_profit"] == pytest.approx(
        solve(
            default_market(8, 0),
            "sku-0",
            CampaignParams.from_config(cfg),
            campaign_start_day(cfg),
        ).expected_profit
    )
    assert report["best_baseline"] in report["baselines"]
    assert report["best_ratio"] == max(b["ratio"] for b in report["baselines"].values())
    lo, hi = report["monte_carlo"]["ci95"]
    assert lo < report["monte_carlo"]["mean"] < hi


def test_solve_cli_json_and_bad_item(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(SMALL_TOML)
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["solve", "--config", str(path), "--episodes", "100", "--tune-episodes", "20", "--json"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["item"] == "sku-0" and data["expected_profit"] > 0
    assert "no-promotion" in data["baselines"]
    table = runner.invoke(
        app, ["solve", "--config", str(path), "--episodes", "100", "--tune-episodes", "20"]
    )
    assert table.exit_code == 0, table.output
    assert "expected profit" in table.stdout and "no-promotion" in table.stdout
    bad = runner.invoke(app, ["solve", "--item", "sku-99"])
    assert bad.exit_code == 2
    assert "sku-99" in bad.stderr


@pytest.mark.slow
def test_default_campaign_report_optimum_beats_tuned_baselines() -> None:
    report = optimum_report(episodes=2000, tune_episodes=400)
    assert report["monte_carlo"]["within_ci"]
    assert report["solve_seconds"] < 30.0
    for name, row in report["baselines"].items():
        margin = 3 * row["se"] / report["expected_profit"]
        assert row["ratio"] <= 1.0 + margin, name


def test_large_capacities_get_a_grid_of_lots_or_a_clear_error_before_any_allocation() -> None:
    from promogym.envs.dp import DP_LOT_MEMORY, DP_MEMORY_LIMIT, dp_lot, dp_memory_bytes, lot_sizes
    from promogym.errors import PromogymInputError

    small = CampaignParams.from_config(CampaignConfig())
    assert dp_memory_bytes(small) < 2**27  # the demo campaign: well under 128 MB
    assert dp_lot(small) == 1 and lot_sizes(small) == [1, 2, 4, 5, 8, 10, 20, 40]
    big_cfg = CampaignConfig().replace(
        inventory={"capacity": 60_000, "initial": 15_000, "order_quantities": [0, 5_000]}
    )
    big = CampaignParams.from_config(big_cfg)
    assert dp_memory_bytes(big) > DP_MEMORY_LIMIT  # every unit: terabytes
    assert dp_lot(big) == 100 and dp_memory_bytes(big, 100) <= DP_LOT_MEMORY  # 601 levels
    # Capacity and orders share no lot size: nothing fits, a one-line error and no solve.
    odd = CampaignParams.from_config(
        big_cfg.replace(inventory={"capacity": 60_001, "order_quantities": [0, 5_000]})
    )
    assert dp_lot(odd) is None
    # No lot fits the coarse grid's 1 GiB, but lot 2 fits under the unit grid's 8 GiB.
    mid = CampaignParams.from_config(
        CampaignConfig().replace(inventory={"capacity": 3_600, "order_quantities": [0, 2, 4]})
    )
    assert dp_memory_bytes(mid) > DP_MEMORY_LIMIT and dp_memory_bytes(mid, 2) > DP_LOT_MEMORY
    assert dp_lot(mid) == 2
    with pytest.raises(PromogymInputError, match="capacity 60,001.*case size") as err:
        solve(default_market(), "sku-0", odd, start_day=START_DAY)
    assert "\n" not in str(err.value)
    # Long lead times with many order quantities: the orders on their way are the cause, which
    # no lot size helps; the error says so.
    slow = CampaignParams.from_config(
        CampaignConfig().replace(
            inventory={
                "capacity": 160,
                "lead_time": 8,
                "order_quantities": [0, 20, 40, 60, 80, 100],
            }
        )
    )
    with pytest.raises(PromogymInputError, match="lead_time 8 with 6 order quantities.*279,936"):
        solve(default_market(), "sku-0", slow, start_day=START_DAY)
    with pytest.raises(ValueError, match="lot 3 must divide"):
        solve(default_market(), "sku-0", small, START_DAY, lot=3)


def test_a_grid_of_lots_is_close_to_the_exact_optimum() -> None:
    market, params = default_market(8, 0), CampaignParams.from_config(CampaignConfig())
    start = initial_state(params, torch.tensor([0]), torch.tensor([START_DAY]))
    exact = solve(market, "sku-0", params, START_DAY)
    assert exact.lot == 1 and exact.exact
    scores = {}
    for lot in (1, 4, 10):
        sol = exact if lot == 1 else solve(market, "sku-0", params, START_DAY, lot=lot)
        assert sol.lot == lot and sol.values.shape[1] == 160 // lot + 1
        assert sol.expected_profit == pytest.approx(exact.expected_profit, rel=0.005)
        out = simulate(sol.policy(), MarketDemand(market), params, start, n_episodes=500, seed=3)
        scores[lot] = out.summary()["mean_profit"]
    # Acting at the nearest stock level loses well under 1% (measured: 0.04% and 0.15%).
    assert scores[4] >= 0.995 * scores[1] and scores[10] >= 0.99 * scores[1]
    # Stock between two levels is valued between them (linear, as leftover units are split).
    odd = CampaignParams.from_config(CampaignConfig().replace(inventory={"initial": 65}))
    exact_65 = solve(market, "sku-0", odd, START_DAY).expected_profit
    on_lots = solve(market, "sku-0", odd, START_DAY, lot=10)
    low, high = on_lots.values[0, 6:8, 0, 0, 0].tolist()
    assert on_lots.expected_profit == pytest.approx((low + high) / 2)
    assert on_lots.expected_profit == pytest.approx(exact_65, rel=0.005)
    state = initial_state(odd, torch.tensor([0, 0]), torch.tensor([START_DAY] * 2))
    state = state.replace(on_hand=torch.tensor([65.0, 70.0], dtype=torch.float64))
    assert on_lots.value(state).tolist() == pytest.approx([(low + high) / 2, high])
