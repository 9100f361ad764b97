"""Baseline policies a shop might run, on the batched :class:`~promogym.envs.rollout.Policy` API.

Every rule except :class:`RandomPolicy` orders by **base stock**: each period, order the
smallest ladder quantity that lifts the inventory position (on hand + pipeline) to at least
the level ``S`` (nothing when the position is already there; the largest quantity when none
suffices), and nothing in the last ``lead_time`` periods, whose orders would land after the
campaign (the campaign model neither delivers nor salvages stock still on its way). Orders that would break the capacity rule are cut by the simulator's
:func:`~promogym.envs.core.repair_actions`. ``S`` is not a guess: :func:`tune_base_stock`
picks it by simulation in the same demand model, with common random numbers, on a coarse grid
over ``0..capacity`` (about 11 levels) refined around the best level at a fifth of the step,
again while the step is coarse for that level (a capacity far above the item's demand).

Tuning functions (:func:`best_no_promotion`, :func:`best_fixed_discount`,
:func:`best_flash_sale`, :func:`baseline_suite`) accept any
:class:`~promogym.envs.demand.DemandModel`: the reference market or a learned simulator.

>>> from promogym.config import CampaignConfig
>>> from promogym.envs.core import CampaignParams, initial_state
>>> import torch
>>> params = CampaignParams.from_config(CampaignConfig())
>>> state = initial_state(params, torch.tensor([0, 0]), torch.tensor([20788, 20788]),
...                       on_hand=torch.tensor([10.0, 120.0]))
>>> NoPromotion(base_stock=90).act(state, params, {})
(tensor([0, 0]), tensor([2, 0]))
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from promogym.envs.core import CampaignParams, CampaignState, action_masks, order_lands_in_time
from promogym.envs.demand import DemandModel, Memory
from promogym.envs.market import weekday
from promogym.envs.rollout import Policy, simulate

WEEKEND = (5, 6)
"""Saturday and Sunday (:func:`~promogym.envs.market.weekday` numbering, Monday = 0)."""


def base_stock_order(state: CampaignState, params: CampaignParams, level: float) -> torch.Tensor:
    """Order index of the smallest ladder quantity lifting the position to ``level``, ``(B,)``.

    The position is ``on_hand + sum(pipeline)``; when no quantity suffices, the largest. No
    order (index 0, quantity 0) where it would arrive after the campaign's last period
    (``t + lead_time >= horizon``).
    """
    position = state.on_hand + state.pipeline.sum(dim=1)
    need = float(level) - position
    enough = params.order_quantities.unsqueeze(0) >= need.unsqueeze(1)  # (B, A_o)
    first = enough.long().argmax(dim=1)
    largest = torch.full_like(first, params.n_orders - 1)
    order = torch.where(enough.any(dim=1), first, largest)
    return torch.where(order_lands_in_time(state.t, params), order, torch.zeros_like(order))


@dataclass
class BaselinePolicy(Policy):
    """A discount rule plus base-stock ordering up to ``base_stock`` units."""

    base_stock: float = 0.0
    tuned_profit: float | None = field(default=None, compare=False)
    """Mean profit found while tuning (in-sample; score it again on fresh random numbers)."""

    def discount_index(self, state: CampaignState, params: CampaignParams) -> torch.Tensor:
        raise NotImplementedError

    def act(
        self, state: CampaignState, params: CampaignParams, memory: Memory
    ) -> tuple[torch.Tensor, torch.Tensor]:
        order = base_stock_order(state, params, self.base_stock)
        return self.discount_index(state, params).long(), order

    def describe(self, params: CampaignParams | None = None) -> str:
        return f"{self.name}, base stock S={self.base_stock:g}"


@dataclass
class NoPromotion(BaselinePolicy):
    """Never discounts; orders up to ``base_stock``."""

    name: str = "no-promotion"

    def discount_index(self, state: CampaignState, params: CampaignParams) -> torch.Tensor:
        return torch.zeros(state.batch_size, dtype=torch.long, device=state.t.device)

    def describe(self, params: CampaignParams | None = None) -> str:
        return f"never on sale, base stock S={self.base_stock:g}"


@dataclass
class FixedDiscount(BaselinePolicy):
    """Always the discount ``discount_idx`` (regular price once a sale budget is spent)."""

    discount_idx: int = 0
    name: str = "fixed-discount"

    def discount_index(self, state: CampaignState, params: CampaignParams) -> torch.Tensor:
        return torch.full(
            (state.batch_size,), self.discount_idx, dtype=torch.long, device=state.t.device
        )

    def describe(self, params: CampaignParams | None = None) -> str:
        if self.discount_idx == 0:
            return f"always the list price (never on sale), base stock S={self.base_stock:g}"
        if _no_sale(params, self.discount_idx):
            return f"never on sale (no sale periods allowed), base stock S={self.base_stock:g}"
        depth = _depth(params, self.discount_idx)
        cap = _budget(params, params.horizon if params is not None else 0)
        return f"always {depth} off{cap}, base stock S={self.base_stock:g}"


@dataclass
class PeriodicFlashSale(BaselinePolicy):
    """Sale at ``discount_idx`` on a calendar: every ``every``-th period, or on ``weekdays``.

    With ``weekdays`` set (daily data), a period is on sale when
    :func:`~promogym.envs.market.weekday` of ``state.day`` is one of them; otherwise when
    ``(t - phase) % every == 0``.
    """

    discount_idx: int = 1
    every: int = 7
    phase: int = 0
    weekdays: tuple[int, ...] | None = None
    name: str = "flash-sale"

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")

    def on_sale(self, state: CampaignState) -> torch.Tensor:
        if self.weekdays is not None:
            days = torch.tensor(self.weekdays, device=state.day.device)
            return (weekday(state.day).unsqueeze(1) == days.unsqueeze(0)).any(dim=1)
        return (state.t - self.phase) % self.every == 0

    def discount_index(self, state: CampaignState, params: CampaignParams) -> torch.Tensor:
        sale = self.on_sale(state)
        return torch.where(sale, self.discount_idx, 0).long()

    def describe(self, params: CampaignParams | None = None) -> str:
        if self.discount_idx == 0:
            return f"always the list price (never on sale), base stock S={self.base_stock:g}"
        if _no_sale(params, self.discount_idx):
            return f"never on sale (no sale periods allowed), base stock S={self.base_stock:g}"
        depth = _depth(params, self.discount_idx)
        horizon = params.horizon if params is not None else 0
        if self.weekdays is not None:
            names = "Mon Tue Wed Thu Fri Sat Sun".split()
            when = "on " + "+".join(names[d] for d in self.weekdays)
            most = -(-horizon // 7) * len(set(self.weekdays))  # whatever the start day
        else:
            when = f"every {self.every} periods"
            most = sum((t - self.phase) % self.every == 0 for t in range(horizon))
        cap = _budget(params, most)
        return f"{depth} off {when}{cap}, base stock S={self.base_stock:g}"


class RandomPolicy(Policy):
    """Uniformly random feasible discount and order (seeded; same seed, same choices)."""

    name = "random"

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._generator: torch.Generator | None = None

    def reset(self, state: CampaignState, params: CampaignParams, seed: int | None = None) -> None:
        own = self.seed if self.seed is not None else (seed or 0)
        self._generator = torch.Generator(device=params.device).manual_seed(own)

    def act(
        self, state: CampaignState, params: CampaignParams, memory: Memory
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self._generator is None:
            self.reset(state, params)
        discount_mask, order_mask = action_masks(state, params)
        discount = torch.multinomial(discount_mask.double(), 1, generator=self._generator)
        order = torch.multinomial(order_mask.double(), 1, generator=self._generator)
        return discount.squeeze(1), order.squeeze(1)

    def describe(self, params: CampaignParams | None = None) -> str:
        return "uniformly random feasible discount and order"


def _no_sale(params: CampaignParams | None, discount_idx: int) -> bool:
    """A sale rule that never applies: the campaign allows no sale period at all."""
    return params is not None and params.sale_budget == 0 and discount_idx > 0


def _budget(params: CampaignParams | None, sale_periods: int) -> str:
    """``", at most N sale periods"`` where the campaign's sale budget can cut short a rule
    that would put up to ``sale_periods`` periods on sale."""
    if params is None or params.sale_budget >= sale_periods:
        return ""
    n = params.sale_budget
    return f", at most {n} sale period{'s' * (n != 1)} (then the list price)"


def _depth(params: CampaignParams | None, discount_idx: int) -> str:
    if params is None:
        return f"discount #{discount_idx}"
    return f"{100 * float(params.discounts[discount_idx]):g}%"


# ---- tuning by simulation ---------------------------------------------------------------


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the previous count.

    Tuning runs hundreds of rollouts on tensors of a few hundred elements, where extra
    threads only add synchronisation: on a loaded 2-core machine a 20-episode rollout took
    65 ms of CPU with 2 threads and 2.3 ms with 1.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def mean_profit(
    policy: Policy,
    demand_model: DemandModel,
    params: CampaignParams,
    start: CampaignState,
    *,
    n_episodes: int,
    seed: int,
) -> float:
    """Monte-Carlo mean profit of ``policy`` (common random numbers from ``seed``)."""
    rollout = simulate(policy, demand_model, params, start, n_episodes=n_episodes, seed=seed)
    return float(rollout.profit.mean())


def base_stock_grid(capacity: int, points: int = 11) -> list[int]:
    """Coarse base-stock levels ``0, c, 2c, ..., capacity``, ``c = ceil(capacity / (points-1))``.

    >>> base_stock_grid(160)
    [0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160]
    """
    step = max(1, math.ceil(capacity / (points - 1)))
    levels = list(range(0, capacity + 1, step))
    if levels[-1] != capacity:
        levels.append(capacity)
    return levels


def tune_base_stock(
    make_policy: Callable[[float], BaselinePolicy],
    demand_model: DemandModel,
    params: CampaignParams,
    start: CampaignState,
    *,
    n_episodes: int = 400,
    seed: int = 0,
    levels: Sequence[int] | None = None,
    refine: bool = True,
) -> BaselinePolicy:
    """Pick the base-stock level of ``make_policy(S)`` with the best simulated mean profit.

    Scores every level in ``levels`` (default :func:`base_stock_grid`), then zooms in: it
    scores the levels within one step of the best at a fifth of that step, and again, until
    the step is below a tenth of the best level (``refine``; at least one round) or below the
    best level itself (no ``refine``: only where the grid is too coarse for the item, e.g. a
    capacity far above its demand), or one unit. All candidates see the same random numbers
    (``seed``). Returns the winner with ``tuned_profit`` set.
    """
    coarse = list(levels) if levels is not None else base_stock_grid(params.capacity)
    scores: dict[int, float] = {}

    def score(level: int) -> None:
        if level not in scores:
            policy = make_policy(level)
            scores[level] = mean_profit(
                policy, demand_model, params, start, n_episodes=n_episodes, seed=seed
            )

    resolution = 0.1 if refine else 1.0  # wanted: step < resolution * best level
    with torch_threads(1):
        for level in coarse:
            score(level)
        step = max((abs(b - a) for a, b in zip(coarse, coarse[1:], strict=False)), default=0)
        first = refine
        while step > 1:
            best = max(scores, key=scores.__getitem__)
            if not first and step < resolution * best:
                break
            first = False
            fine = max(1, step // 5)
            for level in range(max(0, best - step), min(params.capacity, best + step) + 1, fine):
                score(level)
            step = fine
    best = max(scores, key=scores.__getitem__)
    policy = make_policy(best)
    policy.tuned_profit = scores[best]
    return policy


def best_no_promotion(
    demand_model: DemandModel,
    params: CampaignParams,
    start: CampaignState,
    *,
    n_episodes: int = 400,
    seed: int = 0,
    levels: Sequence[int] | None = None,
) -> NoPromotion:
    """:class:`NoPromotion` with its base-stock level tuned by simulation."""
    policy = tune_base_stock(
        lambda s: NoPromotion(base_stock=s),
        demand_model,
        params,
        start,
        n_episodes=n_episodes,
        seed=seed,
        levels=levels,
    )
    assert isinstance(policy, NoPromotion)
    return policy


def best_fixed_discount(
    demand_model: DemandModel,
    params: CampaignParams,
    start: CampaignState,
    *,
    n_episodes: int = 400,
    seed: int = 0,
    discount_indices: Sequence[int] | None = None,
    levels: Sequence[int] | None = None,
) -> FixedDiscount:
    """Grid-search the fixed discount (every ladder step by default) and its base stock.

    Each discount gets its own tuned base-stock level (:func:`tune_base_stock`); the pair
    with the best simulated mean profit wins. Common random numbers throughout.
    """
    indices = range(params.n_discounts) if discount_indices is None else discount_indices
    if not indices:
        raise ValueError("discount_indices is empty")
    best = _best_tuned(
        [lambda s, d=d: FixedDiscount(base_stock=s, discount_idx=d) for d in indices],
        demand_model,
        params,
        start,
        n_episodes=n_episodes,
        seed=seed,
        levels=levels,
    )
    assert isinstance(best, FixedDiscount)
    return best


def _best_tuned(
    makers: Sequence[Callable[[float], BaselinePolicy]],
    demand_model: DemandModel,
    params: CampaignParams,
    start: CampaignState,
    *,
    n_episodes: int,
    seed: int,
    levels: Sequence[int] | None,
) -> BaselinePolicy:
    """Tune each candidate's base stock (:func:`tune_base_stock`); the best profit wins."""
    best: BaselinePolicy | None = None
    for make_policy in makers:
        policy = tune_base_stock(
            make_policy,
            demand_model,
            params,
            start,
            n_episodes=n_episodes,
            seed=seed,
            levels=levels,
        )
        assert policy.tuned_profit is not None
        if best is None or policy.tuned_profit > (best.tuned_profit or -math.inf):
            best = policy
    assert best is not None
    return best


def best_flash_sale(
    demand_model: DemandModel,
    params: CampaignParams,
    start: CampaignState,
    *,
    n_episodes: int = 400,
    seed: int = 0,
    every: Sequence[int] = (2, 3, 4, 7),
    weekdays: Sequence[tuple[int, ...]] = (),
    discount_indices: Sequence[int] | None = None,
    levels: Sequence[int] | None = None,
    finalists: int = 3,
    anchor_base_stock: float | None = None,
) -> PeriodicFlashSale:
    """Grid-search a flash-sale calendar (period ``every`` or ``weekdays``), depth and base stock.

    Two stages to keep the cost near ``(#schedules * #depths) + finalists * #levels``
    simulations: every (schedule, depth) is scored at ``anchor_base_stock`` (default: the
    level tuned for the no-promotion rule), then the ``finalists`` best get their own
    base-stock search.
    """
    depths = list(range(1, params.n_discounts)) if discount_indices is None else discount_indices
    if not depths:
        raise ValueError("a flash sale needs a discount ladder with at least one sale level")
    schedules: list[dict] = [{"every": k} for k in every] + [{"weekdays": w} for w in weekdays]
    if not schedules:
        raise ValueError("give at least one schedule (every=... or weekdays=...)")
    anchor = anchor_base_stock
    if anchor is None:
        anchor = best_no_promotion(
            demand_model, params, start, n_episodes=n_episodes, seed=seed, levels=levels
        ).base_stock
    ranked: list[tuple[float, dict, int]] = []
    with torch_threads(1):
        for schedule in schedules:
            for d in depths:
                policy = PeriodicFlashSale(base_stock=anchor, discount_idx=d, **schedule)
                profit = mean_profit(
                    policy, demand_model, params, start, n_episodes=n_episodes, seed=seed
                )
                ranked.append((profit, schedule, d))
    ranked.sort(key=lambda item: item[0], reverse=True)
    best = _best_tuned(
        [
            lambda s, d=d, schedule=schedule: PeriodicFlashSale(
                base_stock=s, discount_idx=d, **schedule
            )
            for _, schedule, d in ranked[: max(1, finalists)]
        ],
        demand_model,
        params,
        start,
        n_episodes=n_episodes,
        seed=seed,
        levels=levels,
    )
    assert isinstance(best, PeriodicFlashSale)
    return best


def baseline_suite(
    demand_model: DemandModel,
    params: CampaignParams,
    start: CampaignState,
    seed: int = 0,
    *,
    n_episodes: int = 400,
    levels: Sequence[int] | None = None,
) -> dict[str, Policy]:
    """Tuned baselines by name, every one tuned by simulation in ``demand_model``.

    ``no-promotion``, ``best-fixed-discount`` (the best sale rung, every period),
    ``periodic-flash-sale`` (every 2/3/4/7 periods), ``weekend-flash-sale`` (Saturday+Sunday;
    daily data only) and ``random``; the three sale rules only with a sale rung on the
    ladder.
    Tuning uses ``n_episodes`` campaigns on the random numbers of ``seed``; score the
    returned policies on another seed to avoid selection bias.
    """
    common = {"n_episodes": n_episodes, "seed": seed, "levels": levels}
    no_promotion = best_no_promotion(demand_model, params, start, **common)
    suite: dict[str, Policy] = {"no-promotion": no_promotion}
    if params.n_discounts > 1:
        suite["best-fixed-discount"] = best_fixed_discount(
            demand_model, params, start, discount_indices=range(1, params.n_discounts), **common
        )
        common["anchor_base_stock"] = no_promotion.base_stock
        periodic = best_flash_sale(demand_model, params, start, **common)
        periodic.name = "periodic-flash-sale"
        suite["periodic-flash-sale"] = periodic
        if params.period_days == 1:
            weekend = best_flash_sale(
                demand_model, params, start, every=(), weekdays=(WEEKEND,), **common
            )
            weekend.name = "weekend-flash-sale"
            suite["weekend-flash-sale"] = weekend
    suite["random"] = RandomPolicy(seed=seed)
    return suite
