"""FlashSale env: API checkers, determinism, batched == single, parity with the market and DP."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import MarketOracle
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from promogym.config import CampaignConfig
from promogym.data import SalesHistory, history_from_frame
from promogym.distributions import negative_binomial_icdf, negative_binomial_pmf
from promogym.envs.core import CampaignParams, CampaignState, initial_state, transition
from promogym.envs.demand import MarketDemand, Memory
from promogym.envs.flash_sale import ENV_ID, CampaignBatch, FlashSaleEnv, resolve_device
from promogym.envs.forecaster_demand import ForecasterDemand
from promogym.envs.market import (
    MAX_STREAK,
    ReferenceMarket,
    default_market,
    random_market_params,
)
from promogym.envs.rollout import Policy, simulate
from promogym.envs.vec_env import FlashSaleVecEnv
from promogym.errors import PromogymInputError
from promogym.simulate import simulate_history

pytestmark = pytest.mark.usefixtures("one_torch_thread")

START_DAY = 20788  # 2026-12-01


@pytest.fixture(scope="module")
def market() -> ReferenceMarket:
    return default_market(4, seed=0)


@pytest.fixture(scope="module")
def history(market: ReferenceMarket) -> SalesHistory:
    frame = simulate_history(market, periods=90, start_date="2026-06-01", seed=3)
    return history_from_frame(frame, source="<simulated>")


def small_config(**campaign: Any) -> CampaignConfig:
    return CampaignConfig().replace(campaign={"horizon": 6, **campaign})


def no_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [f"{w.category.__name__}: {w.message}" for w in record]


# ---- API checkers ------------------------------------------------------------------------------
@pytest.mark.parametrize("flatten", [False, True])
@pytest.mark.parametrize("expected_demand_obs", [True, False])
def test_gymnasium_and_sb3_checkers_pass_without_warnings(
    flatten: bool, expected_demand_obs: bool
) -> None:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        env = gymnasium.make(
            ENV_ID,
            config=small_config(),
            flatten_actions=flatten,
            expected_demand_obs=expected_demand_obs,
            device="cpu",
        )
        gym_check_env(env.unwrapped)
        sb3_check_env(
            FlashSaleEnv(
                config=small_config(),
                flatten_actions=flatten,
                expected_demand_obs=expected_demand_obs,
                device="cpu",
            )
        )
    assert no_warnings(record) == []


def test_checkers_pass_on_forecaster_backed_env(
    market: ReferenceMarket, history: SalesHistory
) -> None:
    demand = ForecasterDemand(MarketOracle(market), history)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        env = FlashSaleEnv(demand, small_config(), device="cpu")
        gym_check_env(env, skip_render_check=True)
        sb3_check_env(FlashSaleEnv(demand, small_config(), device="cpu"))
    assert no_warnings(record) == []


def test_spaces_and_observation_layout() -> None:
    assert FlashSaleEnv(device="cpu").observation_space.shape == (25,)
    env = FlashSaleEnv(device="cpu", expected_demand_obs=True)
    assert env.action_space == gymnasium.spaces.MultiDiscrete([6, 3])
    assert FlashSaleEnv(device="cpu", flatten_actions=True).action_space.n == 18
    names = [row[0] for row in env.core.layout]
    assert len(names) == env.observation_space.shape[0] == 31
    assert names[:4] == ["on_hand", "pipeline_1", "pipeline_2", "periods_left"]
    assert names[-6:] == [f"expected_demand_{j}" for j in range(6)]
    obs, info = env.reset(seed=1, options={"on_hand": 80, "t": 7, "sale_used": 7})
    assert obs[0] == pytest.approx(80 / 160)
    assert obs[3] == pytest.approx(21 / 28)
    assert obs[names.index("sale_budget_left")] == pytest.approx(21 / 28)
    # Expected demand rises with the discount (the market's price response).
    expected = obs[-6:]
    assert np.all(np.diff(expected) > 0)
    assert set(info) >= {"item_id", "day", "date", "reward_scale"}


# ---- episodes, rewards, info ---------------------------------------------------------------------
def test_episode_terminates_at_the_horizon_with_currency_info() -> None:
    env = FlashSaleEnv(config=small_config(), device="cpu")
    _, info0 = env.reset(seed=0, options={"t": 2})
    steps, total = 0, 0.0
    while True:
        obs, reward, terminated, truncated, info = env.step(np.array([1, 1]))
        steps += 1
        total += info["profit"]
        assert not truncated
        parts = (
            info["revenue"]
            - 2.0 * info["lost_units"]
            - info["holding_cost"]
            - info["order_cost"]
            + info["salvage"]
        )
        assert info["profit"] == pytest.approx(parts)
        assert reward == pytest.approx(info["profit"] / info0["reward_scale"])
        if terminated:
            break
    assert steps == 6 - 2
    assert obs[3] == 0.0  # no periods left
    with pytest.raises(PromogymInputError, match="call reset"):
        env.step(np.array([0, 0]))


def test_same_seed_gives_identical_rollouts() -> None:
    def rollout(seed: int) -> list[tuple]:
        env = FlashSaleEnv(config=small_config(), device="cpu")
        env.action_space.seed(seed)
        out = [tuple(env.reset(seed=seed)[0])]
        for _ in range(20):
            obs, reward, terminated, _, info = env.step(env.action_space.sample())
            out.append((tuple(obs), reward, info["demand"], info["profit"]))
            if terminated:
                out.append(tuple(env.reset()[0]))
        return out

    assert rollout(5) == rollout(5)
    assert rollout(5) != rollout(6)


# ---- batched == single -----------------------------------------------------------------------------
def _compare_vec_with_singles(make_vec, make_single, n: int, steps: int, seed: int) -> int:
    venv = make_vec(n)
    singles = [make_single() for _ in range(n)]
    venv.seed(seed)
    vec_obs = venv.reset()
    for i, env in enumerate(singles):
        obs, info = env.reset(seed=seed + i)
        np.testing.assert_array_equal(vec_obs[i], obs)
        assert venv.reset_infos[i] == info
    rng = np.random.default_rng(seed)
    space = venv.action_space
    multi = isinstance(space, gymnasium.spaces.MultiDiscrete)
    resets = 0
    for _ in range(steps):
        # Uniform over the whole ladder, so infeasible (repaired) actions occur too.
        actions = rng.integers(0, space.nvec if multi else space.n, size=(n, 2) if multi else n)
        np.testing.assert_array_equal(
            venv.action_masks(), np.stack([env.action_masks() for env in singles])
        )
        vec_obs, vec_rewards, vec_dones, vec_infos = venv.step(actions)
        for i, env in enumerate(singles):
            obs, reward, terminated, truncated, info = env.step(actions[i])
            assert vec_dones[i] == terminated and not truncated
            assert vec_rewards[i] == np.float32(reward)
            for key in ("profit", "demand", "units_sold", "repaired", "action"):
                assert vec_infos[i][key] == info[key]
            if terminated:
                resets += 1
                np.testing.assert_array_equal(vec_infos[i]["terminal_observation"], obs)
                obs, reset_info = env.reset()
                assert venv.reset_infos[i] == reset_info
            np.testing.assert_array_equal(vec_obs[i], obs)
    return resets


def test_vec_env_equals_single_envs_on_the_market() -> None:
    cfg = small_config(max_sale_periods=2)
    resets = _compare_vec_with_singles(
        lambda n: FlashSaleVecEnv(n, config=cfg, expected_demand_obs=True, device="cpu"),
        lambda: FlashSaleEnv(config=cfg, expected_demand_obs=True, device="cpu"),
        n=3,
        steps=14,
        seed=11,
    )
    assert resets == 6  # every campaign ended twice and restarted


def test_vec_env_equals_single_envs_on_a_forecaster(
    market: ReferenceMarket, history: SalesHistory
) -> None:
    demand = ForecasterDemand(MarketOracle(market), history)
    cfg = small_config()
    kwargs = {"flatten_actions": True, "expected_demand_obs": False, "device": "cpu"}
    resets = _compare_vec_with_singles(
        lambda n: FlashSaleVecEnv(n, demand, cfg, **kwargs),
        lambda: FlashSaleEnv(demand, cfg, **kwargs),
        n=4,
        steps=8,
        seed=3,
    )
    assert resets == 4


# ---- forecaster-as-simulator parity ------------------------------------------------------------------
def test_forecaster_demand_of_the_oracle_is_the_market(
    market: ReferenceMarket, history: SalesHistory
) -> None:
    demand_f = ForecasterDemand(MarketOracle(market), history)
    demand_m = MarketDemand(market)
    params = CampaignParams.from_config(CampaignConfig(), device="cpu")
    lo, hi = demand_f.windows.start_range(demand_f.context_length)
    rng = np.random.default_rng(0)
    b = 64
    item = torch.as_tensor(rng.integers(0, 4, size=b))
    period = torch.as_tensor(rng.integers(lo[item.numpy()], hi[item.numpy()] + 1))
    day = demand_f.windows.day_of(period)
    memory: Memory = demand_f.initial_memory(initial_state(params, item, day))
    run = (memory["past_discount"] > 0).flip(1).long().cumprod(dim=1).sum(dim=1)
    state: CampaignState = initial_state(params, item, day, streak=run.clamp(max=MAX_STREAK))
    assert bool((state.streak > 0).any()), "the history windows should end in some sales"
    generator = torch.Generator().manual_seed(0)
    for _ in range(12):
        mean_f, disp_f = demand_f.distribution(state, memory, params.discounts)
        mean_m, disp_m = demand_m.distribution(state, {}, params.discounts)
        torch.testing.assert_close(mean_f, mean_m, rtol=0, atol=0)
        torch.testing.assert_close(disp_f, disp_m, rtol=0, atol=0)
        d_idx = torch.randint(0, params.n_discounts, (b,), generator=generator)
        o_idx = torch.zeros(b, dtype=torch.long)
        demand = demand_m.sample(state, {}, params.discounts[d_idx], generator)
        next_state, _, _, info = transition(state, params, d_idx, o_idx, demand)
        memory = demand_f.update_memory(
            memory, state, params.discounts[d_idx], info["units_sold"], demand
        )
        assert torch.equal(memory["past_units"][:, -1], demand.float())
        assert bool(memory["past_observed"][:, -1].all())
        state = next_state


def test_env_on_the_oracle_replays_the_env_on_the_market(
    market: ReferenceMarket, history: SalesHistory
) -> None:
    oracle = ForecasterDemand(MarketOracle(market), history)
    on_oracle = FlashSaleVecEnv(8, oracle, small_config(), device="cpu")
    on_market = FlashSaleVecEnv(
        8, MarketDemand(market), small_config(), history=history, min_context=14, device="cpu"
    )
    on_oracle.seed(4)
    on_market.seed(4)
    np.testing.assert_array_equal(on_oracle.reset(), on_market.reset())
    rng = np.random.default_rng(1)
    for _ in range(9):
        actions = rng.integers(0, [6, 3], size=(8, 2))
        a, b = on_oracle.step(actions), on_market.step(actions)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert [i["profit"] for i in a[3]] == [i["profit"] for i in b[3]]


class WeekendSale(Policy):
    """20% off on Fridays and Saturdays; order 40 when on-hand + pipeline falls below 70."""

    name = "weekend-sale"

    def act(
        self, state: CampaignState, params: CampaignParams, memory: Memory
    ) -> tuple[torch.Tensor, torch.Tensor]:
        weekend = ((state.day + 3) % 7 >= 4) & ((state.day + 3) % 7 <= 5)
        discount_idx = torch.where(weekend, 2, 0)
        low = state.on_hand + state.pipeline.sum(dim=1) < 70
        return discount_idx, torch.where(low, 1, 0)


def _env_returns(venv: FlashSaleVecEnv, policy: Policy, seed: int) -> np.ndarray:
    venv.seed(seed)
    venv.reset()
    total = np.zeros(venv.num_envs)
    while True:
        core = venv.core
        d, o = policy.act(core.state, core.params, core.memory)
        _, _, dones, infos = venv.step(np.stack([d.numpy(), o.numpy()], axis=1))
        total += [info["profit"] for info in infos]
        if dones.all():
            return total


def test_env_monte_carlo_matches_rollout_simulate(market: ReferenceMarket) -> None:
    cfg = CampaignConfig().replace(campaign={"horizon": 14})
    n = 1500
    venv = FlashSaleVecEnv(n, MarketDemand(market), cfg, device="cpu")
    venv.set_options({"item": "sku-1", "day": "2026-12-01"})
    env_profit = _env_returns(venv, WeekendSale(), seed=0)
    params = CampaignParams.from_config(cfg)
    start = initial_state(params, torch.tensor([1]), torch.tensor([START_DAY]))
    rollout = simulate(WeekendSale(), MarketDemand(market), params, start, n_episodes=n, seed=9)
    se = np.sqrt(env_profit.var(ddof=1) / n + rollout.profit.var(ddof=1) / n)
    assert abs(env_profit.mean() - rollout.profit.mean()) < 1.96 * se


def test_env_monte_carlo_matches_the_dp_optimum(market: ReferenceMarket) -> None:
    dp = pytest.importorskip("promogym.envs.dp")
    cfg = CampaignConfig().replace(
        campaign={"horizon": 7, "max_sale_periods": 3},
        inventory={"capacity": 60, "initial": 30, "order_quantities": [0, 20, 40]},
    )
    params = CampaignParams.from_config(cfg)
    solution = dp.solve(market, "sku-2", params, start_day=START_DAY)
    n = 3000
    venv = FlashSaleVecEnv(n, MarketDemand(market), cfg, device="cpu")
    venv.set_options({"item": "sku-2", "day": START_DAY})
    profit = _env_returns(venv, solution.policy(), seed=2)
    half_width = 1.96 * profit.std(ddof=1) / np.sqrt(n)
    assert abs(profit.mean() - solution.expected_profit) < half_width


def test_inverse_cdf_matches_the_pmf_table() -> None:
    g = torch.Generator().manual_seed(0)
    n = 5000
    mean = torch.exp(torch.rand(n, generator=g, dtype=torch.float64) * 8 - 4)  # 0.02 .. 55
    dispersion = torch.exp(torch.rand(n, generator=g, dtype=torch.float64) * 5 - 0.5)  # 0.6 .. 90
    u = torch.rand(n, generator=g, dtype=torch.float64)
    fast = negative_binomial_icdf(u, mean, dispersion)
    # Oracle: count of CDF values below u in the full lgamma pmf table.
    cdf = torch.cumsum(negative_binomial_pmf(mean, dispersion, 2000), dim=-1)
    reference = (cdf < u.unsqueeze(-1)).sum(dim=-1).to(torch.float64)
    mismatch = (fast != reference).double().mean().item()
    assert mismatch < 1e-3  # only u within float rounding of a CDF step may differ
    assert (fast - reference).abs().max().item() <= 1
    # A row's draw does not depend on the rest of the batch.
    assert torch.equal(negative_binomial_icdf(u[:1], mean[:1], dispersion[:1]), fast[:1])


def test_inverse_cdf_of_large_means_matches_the_pmf_table() -> None:
    # Means in the thousands walk in growing chunks (a weekly shop selling 13,000 units).
    g = torch.Generator().manual_seed(1)
    n = 300
    mean = torch.exp(torch.rand(n, generator=g, dtype=torch.float64) * 5 + 4)  # 55 .. 8100
    dispersion = torch.exp(torch.rand(n, generator=g, dtype=torch.float64) * 4 + 1)  # 2.7 .. 150
    u = torch.rand(n, generator=g, dtype=torch.float64)
    fast = negative_binomial_icdf(u, mean, dispersion)
    cdf = torch.cumsum(negative_binomial_pmf(mean, dispersion, 60_000), dim=-1)
    reference = (cdf < u.unsqueeze(-1)).sum(dim=-1).to(torch.float64)
    assert (fast - reference).abs().max().item() <= 1
    assert (fast != reference).double().mean().item() < 0.02
    mixed = torch.cat([torch.full((50,), 3.0, dtype=torch.float64), mean])
    both = negative_binomial_icdf(
        torch.cat([u[:50], u]), mixed, torch.cat([dispersion[:50], dispersion])
    )
    assert torch.equal(both[50:], fast)


# ---- masks and errors ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "discounts_ok", "orders_ok"),
    [
        ({"on_hand": 100, "sale_used": 2}, [True] + [False] * 5, [True, True, False]),
        ({"on_hand": 90, "pipeline": [40, 20], "sale_used": 1}, [True] * 6, [True, False, False]),
        ({"on_hand": 0, "sale_used": 0}, [True] * 6, [True, True, True]),
        # the last lead_time (2) periods of 28: an order would land after the campaign
        ({"on_hand": 0, "t": 25}, [True] * 6, [True, True, True]),
        ({"on_hand": 0, "t": 26}, [True] * 6, [True, False, False]),
        ({"on_hand": 0, "t": 27}, [True] * 6, [True, False, False]),
    ],
)
def test_masks_forbid_exactly_the_infeasible_actions(
    options: dict, discounts_ok: list[bool], orders_ok: list[bool]
) -> None:
    cfg = CampaignConfig().replace(campaign={"max_sale_periods": 2})
    env = FlashSaleEnv(config=cfg, device="cpu")
    env.reset(seed=0, options=options)
    np.testing.assert_array_equal(env.action_masks(), discounts_ok + orders_ok)
    flat = FlashSaleEnv(config=cfg, device="cpu", flatten_actions=True)
    flat.reset(seed=0, options=options)
    mask = flat.action_masks()
    np.testing.assert_array_equal(mask, np.outer(discounts_ok, orders_ok).ravel())
    for action in range(18):
        flat.reset(seed=0, options=options)
        _, _, _, _, info = flat.step(action)
        assert info["repaired"] == (not mask[action])
        d, o = info["action"]
        assert mask[d * 3 + o]


def test_out_of_range_actions_raise_clear_errors() -> None:
    env = FlashSaleEnv(device="cpu")
    env.reset(seed=0)
    with pytest.raises(PromogymInputError, match=r"discount index 6 must be in \[0, 6\)"):
        env.step(np.array([6, 0]))
    with pytest.raises(PromogymInputError, match=r"order index 3 in \[0, 3\)"):
        env.step(np.array([0, 3]))
    with pytest.raises(PromogymInputError, match="shape"):
        env.step(np.array([0, 1, 2]))
    flat = FlashSaleEnv(device="cpu", flatten_actions=True)
    flat.reset(seed=0)
    with pytest.raises(PromogymInputError, match=r"flat index 18 must be in \[0, 18\)"):
        flat.step(18)
    venv = FlashSaleVecEnv(2, device="cpu")
    venv.reset()
    with pytest.raises(PromogymInputError, match=r"shape \(2, 2\)"):
        venv.step(np.zeros((3, 2), dtype=np.int64))
    with pytest.raises(PromogymInputError, match="campaign 1"):
        venv.step(np.array([[0, 0], [-1, 0]]))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"onhand": 3}, "unknown key"),
        ({"t": 28}, r"t must be an integer in \[0, 27\]"),
        ({"on_hand": 161}, r"on_hand must be an integer in \[0, 160\]"),
        ({"on_hand": 2.5}, "on_hand must be an integer"),
        ({"pipeline": [10]}, "pipeline must list 2"),
        ({"pipeline": [10, -1]}, "pipeline entries"),
        ({"streak": 7}, r"streak must be an integer in \[0, 6\]"),
        ({"sale_used": 29}, "sale_used"),
        ({"item": "nope"}, "unknown item 'nope'"),
        ({"item": 8}, r"item must be an integer in \[0, 7\]"),
        ({"day": "2026-13-01"}, "ISO date"),
        ({"day": 10**12}, "is not a date between"),
    ],
)
def test_invalid_reset_options_raise_clear_errors(options: dict, message: str) -> None:
    env = FlashSaleEnv(device="cpu")
    with pytest.raises(PromogymInputError, match=message):
        env.reset(seed=0, options=options)


def test_reset_from_a_given_state(market: ReferenceMarket, history: SalesHistory) -> None:
    demand = ForecasterDemand(MarketOracle(market), history)
    env = FlashSaleEnv(demand, device="cpu")
    last = history.frame["date"].max()
    today = (last + pd.Timedelta(days=1)).date()
    _, info = env.reset(
        seed=0,
        options={"item": "sku-3", "day": today, "on_hand": 20, "pipeline": [40, 0], "t": 10},
    )
    state = env.core.state
    assert info["item_id"] == "sku-3" and info["date"] == today.isoformat()
    assert (int(state.t[0]), float(state.on_hand[0]), state.pipeline[0].tolist()) == (
        10,
        20.0,
        [40.0, 0.0],
    )
    # The context window ends with the history's last 14 days of sku-3.
    tail = history.frame[history.frame["item_id"] == "sku-3"]["units_sold"].to_numpy()[-14:]
    np.testing.assert_array_equal(env.core.memory["past_units"][0].numpy(), tail)
    with pytest.raises(PromogymInputError, match="history covers"):
        env.reset(options={"item": "sku-3", "day": "2026-05-01"})
    with pytest.raises(PromogymInputError, match="history covers"):
        env.reset(options={"item": "sku-3", "day": "2027-06-05"})


def test_weekly_history_runs_on_its_week_grid() -> None:
    market = ReferenceMarket(random_market_params(3, np.random.default_rng(0)), freq="W")
    frame = simulate_history(market, periods=60, start_date="2024-01-01", seed=0)
    history = history_from_frame(frame, source="<weekly>")
    cfg = CampaignConfig().replace(campaign={"horizon": 8})
    env = FlashSaleEnv(ForecasterDemand(MarketOracle(market, 12), history), cfg, device="cpu")
    _, info = env.reset(seed=0)
    first_day = int(np.datetime64("2024-01-01", "D").astype(np.int64))
    assert (info["day"] - first_day) % 7 == 0
    days = [int(env.core.state.day[0])]
    for _ in range(8):
        _, _, terminated, _, _ = env.step(np.array([1, 1]))
        days.append(int(env.core.state.day[0]))
    assert terminated and set(np.diff(days)) == {7}
    with pytest.raises(PromogymInputError, match="7-day grid"):
        env.reset(options={"item": 0, "day": "2024-06-05"})


def test_batch_rejects_bad_arguments() -> None:
    with pytest.raises(PromogymInputError, match="n_envs"):
        CampaignBatch(n_envs=0, device="cpu")
    with pytest.raises(PromogymInputError, match="render modes"):
        FlashSaleEnv(render_mode="human")
    with pytest.raises(PromogymInputError, match="call reset"):
        FlashSaleVecEnv(2, device="cpu").step(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(PromogymInputError, match="period_days must be 1 .daily. or 7"):
        CampaignBatch(period_days=3, device="cpu")
    with pytest.raises(PromogymInputError, match=r"^FlashSale: start_days\[0\] must be"):
        CampaignBatch(start_days=("someday", "2026-01-01"), device="cpu")
    priced = CampaignConfig().priced_from_data()  # prices from the arguments
    for price, cost, message in (
        (0.0, 10.0, "list_price must be a finite number > 0"),
        (-5.0, 1.0, "list_price must be a finite number > 0"),
        (float("nan"), 1.0, "list_price must be a finite number > 0"),
        (20.0, float("inf"), "unit_cost must be a finite number >= 0"),
    ):
        with pytest.raises(PromogymInputError, match=message):
            CampaignBatch(config=priced, list_price=price, unit_cost=cost, device="cpu")
    typical = CampaignBatch(typical=np.full(8, 3.0), device="cpu").typical
    assert typical.tolist() == [3.0] * 8
    with pytest.raises(PromogymInputError, match="typical must hold one positive number"):
        CampaignBatch(typical=[1.0, 0.0], device="cpu")


def test_maskable_ppo_trains_on_the_vec_env() -> None:
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported

    torch.manual_seed(0)
    venv = FlashSaleVecEnv(8, config=small_config(max_sale_periods=1), device="cpu")
    assert is_masking_supported(venv)
    model = MaskablePPO("MlpPolicy", venv, n_steps=16, batch_size=64, n_epochs=1, seed=0)
    model.learn(256)
    venv.seed(1)
    obs = venv.reset()
    for _ in range(6):
        masks = get_action_masks(venv)
        actions, _ = model.predict(obs, action_masks=masks)
        obs, _, _, infos = venv.step(actions)
        assert not any(info["repaired"] for info in infos)


def test_resolve_device_rejects_unknown_or_unavailable_devices() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(PromogymInputError, match="--device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(PromogymInputError, match="CUDA is not available"):
            resolve_device("cuda")


def test_each_item_runs_at_its_own_list_price(market: ReferenceMarket) -> None:
    frame = simulate_history(market, periods=60, start_date="2026-06-01", seed=3)
    dearer = frame["item_id"] == "sku-1"
    frame.loc[dearer, ["price", "list_price", "unit_cost"]] *= 2.5
    frame.loc[dearer & (frame["date"] == frame["date"].max()), "list_price"] *= 1.2  # latest
    history = history_from_frame(frame, source="<two prices>")
    latest = 2.5 * 1.2 * market.params.list_price[1]
    demand = ForecasterDemand(MarketOracle(market), history)
    from_data = small_config().replace(economics={"list_price": None})
    batch = CampaignBatch(demand, from_data, n_envs=2, device="cpu")
    prices = batch.params.item_list_price
    assert prices is not None and prices.tolist() == pytest.approx(
        [market.params.list_price[0], latest, *market.params.list_price[2:]]
    )
    # One period of two campaigns alike but for the item: revenue follows each item's price.
    state = initial_state(batch.params, torch.tensor([0, 1]), torch.tensor([START_DAY] * 2))
    two = torch.zeros(2, dtype=torch.long)
    _, _, _, info = transition(state, batch.params, two + 1, two, torch.tensor([5.0, 5.0]))
    assert info["revenue"].tolist() == pytest.approx((prices[:2] * 0.9 * 5).tolist())
    costs = batch.params.item_unit_cost  # the config sets unit_cost: from the data only if not
    assert costs is None and batch.params.cost_of(state.item).tolist() == [9.0, 9.0]
    assert batch.params.for_item(1).list_price == pytest.approx(latest)
    assert batch.params.for_item(1).item_list_price is None
    own_costs = from_data.replace(economics={"unit_cost": None})
    params = CampaignBatch(demand, own_costs, device="cpu").params
    costs = params.item_unit_cost
    assert costs is not None and costs.tolist() == pytest.approx(
        [market.params.unit_cost[0], 2.5 * market.params.unit_cost[1], *market.params.unit_cost[2:]]
    )
    order = torch.ones(2, dtype=torch.long)  # 40 units each
    _, _, _, info = transition(state, params, two, order, torch.tensor([5.0, 5.0]))
    fixed = params.order_fixed_cost
    assert info["order_cost"].tolist() == pytest.approx((costs[:2] * 40 + fixed).tolist())
    assert params.for_item(1).unit_cost == pytest.approx(float(costs[1]))
    given = CampaignBatch(demand, own_costs, unit_cost=[6.0, 7.0, 8.0, 9.0], device="cpu").params
    assert given.item_unit_cost is not None and given.item_unit_cost.tolist() == [6, 7, 8, 9]
    infos = batch.reset(options=[{"item": 0}, {"item": 1}])
    scale = (prices[:2] * batch.typical[:2]).tolist()
    assert batch.reward_scale.tolist() == pytest.approx(scale)
    assert [info["reward_scale"] for info in infos] == pytest.approx(scale)
    # A price given in the config or as one number holds for every item.
    assert CampaignBatch(demand, small_config(), device="cpu").params.item_list_price is None
    one = CampaignBatch(demand, from_data, list_price=30.0, device="cpu").params
    assert one.item_list_price is None and one.list_price == 30.0
    with pytest.raises(PromogymInputError, match="list_price: 2 values for 4 items"):
        CampaignBatch(demand, from_data, list_price=[1.0, 2.0], device="cpu")


def test_recent_sales_of_unrecorded_periods_read_as_typical(
    market: ReferenceMarket, history: SalesHistory
) -> None:
    """A period the history does not record (no row, or a ``fill_gaps="missing"`` row with
    stock 0) enters the observation as a typical period, not as 0 units sold."""
    frame = history.frame.copy()
    sku3 = frame.index[frame["item_id"] == "sku-3"]
    frame = frame.drop(index=sku3[-2])  # no row 2 periods before today: filled with stock 0
    frame.loc[sku3[-4], ["units_sold", "stock"]] = [0, 0]  # a row of stock 0 in the data
    gappy = history_from_frame(frame[history.frame.columns], source="<gappy>", fill_gaps="missing")
    env = FlashSaleEnv(ForecasterDemand(MarketOracle(market), gappy), device="cpu")
    today = (frame["date"].max() + pd.Timedelta(days=1)).date()
    obs, _ = env.reset(seed=0, options={"item": "sku-3", "day": today})
    names = [row[0] for row in env.core.layout]
    lags = np.array([obs[names.index(f"sales_lag_{k}")] for k in range(1, 8)])
    typical = float(env.core.typical[gappy.item_ids.index("sku-3")])
    units = history.frame.loc[sku3[-7:], "units_sold"].to_numpy()[::-1] / typical
    expected = np.where(np.isin(np.arange(1, 8), [2, 4]), 1.0, units)
    np.testing.assert_allclose(lags, np.minimum(expected, 10.0), rtol=1e-6)
    assert units[1] != 1.0 and units[3] != 1.0  # the recorded sales differ from typical
