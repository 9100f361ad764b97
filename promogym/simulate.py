"""Synthetic shop histories: the reference market run under a plausible behaviour policy.

A real shop's records come from whatever rules the shop ran, not from a designed experiment.
:func:`simulate_history` imitates such a logging (behaviour) policy on a
:class:`~promogym.envs.market.ReferenceMarket`, so the learned simulator and the agents meet
the quirks of real data: promotions are irregular, stock-outs censor demand, and the data
never shows what would have sold had the shelf been full.

Behaviour policy (:class:`BehaviourPolicy`), per item:

* **promotions**: each item gets its own promotion rate, uniform in ``promo_rate`` (default
  15-25% of periods). Sales come in runs of ``1..max_run`` periods (uniform, default 1-4) at
  one depth drawn uniformly from the non-zero steps of the campaign's discount ladder; a run
  starts in a non-sale period (never right after a run) with probability
  ``h = rate / (mean_run * (1 - rate))``, which makes the long-run sale share equal ``rate``.
* **ordering**: periodic-review (s, S) against the promotion calendar, which the shop plans
  ahead. The planner expects ``m * lift(d)`` units in a period at discount ``d``, with ``m``
  the item's mean demand at the regular price and a rule-of-thumb
  ``lift(d) = planned_bump * (1 - d) ** -planned_elasticity`` on sale (1 otherwise), the same
  for every item. ``s_t = safety * (planned demand of periods t .. t + lead_time)`` and
  ``S_t = min(capacity, s_t + m * cycle)``; when the inventory position (on hand + on order)
  is at or below ``s_t`` the shop orders up to ``S_t``. Orders land ``lead_time`` periods
  later and on-hand is capped at ``capacity`` (both from the campaign config); ``safety`` and
  ``cycle`` are drawn per item. The rule of thumb misjudges items with strong elasticity,
  urgency or seasonality, so some periods (mostly sales) sell out: with the defaults about
  4% of periods are censored (2.4-5.9%, mean 4.3%, over seeds 0-19 of ``default_market(8)``
  with 730 days; promo share 18.6-22.2% on the same runs).

Timing of a period matches :mod:`promogym.envs.core`: the order is placed, ``stock`` (units on
hand at the start of the period, after arrivals and a lead-time-0 order) is recorded, demand is
drawn from the market at the period's discount and fatigue streak, ``units_sold = min(demand,
stock)``, then arrivals land for the next period. All items move in one vectorised step per
period; demand draws use one seeded ``torch.Generator``, the policy one seeded NumPy generator.

>>> from promogym.envs.market import default_market
>>> df = simulate_history(default_market(2, seed=0), periods=30, start_date="2024-01-01", seed=1)
>>> df.shape, list(df.columns[:4])
((60, 8), ['date', 'item_id', 'units_sold', 'price'])
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from promogym.config import CampaignConfig
from promogym.data import unrecorded
from promogym.envs.market import ReferenceMarket, day_number, next_streak
from promogym.errors import PromogymInputError

HISTORY_COLUMNS = (
    "date",
    "item_id",
    "units_sold",
    "price",
    "list_price",
    "promo",
    "stock",
    "unit_cost",
)


@dataclass(frozen=True)
class BehaviourPolicy:
    """The logging policy's knobs (see the module docstring); defaults describe the demo shop."""

    promo_rate: tuple[float, float] = (0.15, 0.25)
    max_run: int = 4
    safety: tuple[float, float] = (1.1, 1.6)
    cycle: tuple[float, float] = (3.0, 7.0)
    planned_elasticity: float = 2.0
    planned_bump: float = 1.5

    def __post_init__(self) -> None:
        low, high = self.promo_rate
        if not 0.0 <= low <= high < 1.0:
            raise PromogymInputError(
                "BehaviourPolicy.promo_rate must satisfy 0 <= low <= high < 1, "
                f"got {self.promo_rate}"
            )
        if self.max_run < 1:
            raise PromogymInputError(f"BehaviourPolicy.max_run must be >= 1, got {self.max_run}")
        if not 0.0 < self.safety[0] <= self.safety[1]:
            raise PromogymInputError(f"BehaviourPolicy.safety must be > 0, got {self.safety}")
        if not 0.0 < self.cycle[0] <= self.cycle[1]:
            raise PromogymInputError(f"BehaviourPolicy.cycle must be > 0, got {self.cycle}")
        if self.planned_elasticity < 0 or self.planned_bump <= 0:
            raise PromogymInputError(
                "BehaviourPolicy.planned_elasticity must be >= 0 and planned_bump > 0, got "
                f"{self.planned_elasticity}, {self.planned_bump}"
            )


def simulate_history(
    market: ReferenceMarket,
    periods: int,
    start_date: str | dt.date | pd.Timestamp = "2024-01-01",
    seed: int = 0,
    config: CampaignConfig | None = None,
    *,
    policy: BehaviourPolicy | None = None,
    with_demand: bool = False,
) -> pd.DataFrame:
    """Simulate ``periods`` periods of every market item under the behaviour policy.

    Args:
        market: ground-truth demand; its ``freq`` sets the period length (1 or 7 days).
        periods: number of periods per item (>= 2, so the frequency can be inferred).
        start_date: date of the first period.
        seed: same seed -> identical frame.
        config: campaign config for the discount ladder, lead time and capacity
            (default: :class:`~promogym.config.CampaignConfig()`).
        policy: behaviour-policy knobs (default: :class:`BehaviourPolicy()`).
        with_demand: add a ``demand`` column (int64): each period's demand draw before the stock
            capped it (``units_sold = min(demand, stock)``); the same draws either way.

    Returns:
        A frame in the sales-history contract with columns :data:`HISTORY_COLUMNS`, sorted by
        ``item_id, date``: ``date`` (datetime64[ns]), ``item_id`` (str), ``units_sold``
        (int64), ``price`` (rounded to cents), ``list_price``, ``promo`` (int8 0/1), ``stock``
        (int64, on hand at the start of the period), ``unit_cost``; with ``with_demand``, also
        ``demand``.
    """
    config = config or CampaignConfig()
    policy = policy or BehaviourPolicy()
    if isinstance(periods, bool) or not isinstance(periods, int) or periods < 2:
        raise PromogymInputError(f"periods must be an integer >= 2, got {periods!r}")
    try:
        if isinstance(start_date, str):  # ISO only: "01/02/2024" is ambiguous
            start_date = dt.date.fromisoformat(start_date.strip())
        start = pd.Timestamp(start_date).normalize()
    except (ValueError, TypeError):
        start = pd.NaT
    if pd.isna(start):
        raise PromogymInputError(
            f"start_date must be an ISO date like 2024-01-01, got {start_date!r}"
        )
    ladder = np.asarray(config.campaign.discounts, dtype=np.float64)
    depths = ladder[ladder > 0]
    if depths.size == 0:
        raise PromogymInputError(
            "campaign.discounts has no sale depth (only 0.0); add at least one discount > 0"
        )
    n_items = market.params.n_items
    period_days = 1 if market.freq == "D" else 7
    lead_time = config.inventory.lead_time
    capacity = float(config.inventory.capacity)
    rng = np.random.default_rng([seed, 0x5EED])
    generator = torch.Generator().manual_seed(int(seed))

    # Per-item policy constants.
    rate = rng.uniform(*policy.promo_rate, size=n_items)
    start_prob = np.array([sale_start_probability(r, policy.max_run) for r in rate])
    safety = rng.uniform(*policy.safety, size=n_items)
    cycle = rng.uniform(*policy.cycle, size=n_items)
    discount = _promotion_calendar(periods, start_prob, depths, policy.max_run, rng)
    # The planner's demand estimate: regular-price mean times a rule-of-thumb sale lift
    # (same elasticity and bump for every item): promotions it underestimates sell out.
    regular = market.params.base_demand.astype(np.float64)
    lift = np.where(
        discount > 0, policy.planned_bump * (1.0 - discount) ** -policy.planned_elasticity, 1.0
    )
    planned = regular[None, :] * lift
    window = np.concatenate([planned, np.repeat(regular[None, :], lead_time + 1, axis=0)])
    cover = np.stack([window[t : t + lead_time + 1].sum(axis=0) for t in range(periods)])
    reorder_point = np.minimum(np.ceil(cover * safety), capacity - 1.0)
    order_up_to = np.minimum(capacity, reorder_point + np.ceil(regular * cycle))

    item = torch.arange(n_items)
    start_day = day_number(start)
    on_hand = order_up_to[0].copy()
    pipeline = np.zeros((n_items, max(lead_time, 1)))
    streak = torch.zeros(n_items, dtype=torch.long)
    units = np.zeros((periods, n_items), dtype=np.int64)
    stock = np.zeros((periods, n_items), dtype=np.int64)
    drawn = np.zeros((periods, n_items), dtype=np.int64)
    for t in range(periods):
        # (s, S) ordering on the inventory position, against the planned promotions.
        position = on_hand + pipeline.sum(axis=1)
        order = np.where(position <= reorder_point[t], order_up_to[t] - position, 0.0)
        if lead_time == 0:
            on_hand = np.minimum(on_hand + order, capacity)
        else:
            pipeline[:, lead_time - 1] += order
        stock[t] = on_hand.astype(np.int64)

        day = torch.full((n_items,), start_day + t * period_days, dtype=torch.long)
        on_sale = torch.from_numpy(discount[t] > 0)
        demand = market.sample(
            item, day, torch.from_numpy(discount[t]), streak, generator=generator
        ).numpy()
        sold = np.minimum(demand, on_hand)
        units[t] = sold.astype(np.int64)
        drawn[t] = demand.astype(np.int64)
        on_hand = np.minimum(on_hand - sold + pipeline[:, 0], capacity)
        pipeline = np.concatenate([pipeline[:, 1:], np.zeros((n_items, 1))], axis=1)
        streak = next_streak(streak, on_sale)

    dates = pd.date_range(start, periods=periods, freq=f"{period_days}D", unit="ns")
    list_price = np.asarray(market.params.list_price, dtype=np.float64)
    frame = pd.DataFrame(
        {
            "date": np.tile(dates.to_numpy(), n_items),
            "item_id": np.repeat(np.asarray(market.item_ids, dtype=object), periods),
            "units_sold": units.T.reshape(-1),
            "price": np.round(list_price[:, None] * (1.0 - discount.T), 2).reshape(-1),
            "list_price": np.repeat(list_price, periods),
            "promo": (discount.T > 0).reshape(-1).astype(np.int8),
            "stock": stock.T.reshape(-1),
            "unit_cost": np.repeat(np.asarray(market.params.unit_cost, dtype=np.float64), periods),
        }
    )
    if with_demand:
        frame["demand"] = drawn.T.reshape(-1)
    frame["item_id"] = frame["item_id"].astype(str)
    frame = frame.sort_values(["item_id", "date"], kind="stable").reset_index(drop=True)
    return frame


def write_simulated_history(
    out: str | os.PathLike[str],
    *,
    n_items: int = 8,
    periods: int = 730,
    seed: int = 0,
    start_date: str | dt.date | pd.Timestamp = "2024-01-01",
    config: CampaignConfig | None = None,
) -> str:
    """Simulate ``default_market(n_items, seed)`` and write ``out`` plus ``out.market.json``.

    ``out`` is ``.csv`` or ``.parquet`` (by suffix); ``<out>.market.json`` holds the market's
    true parameters (:meth:`MarketParams.to_json`). Both appear whole or not at all. Returns a
    one-line summary.
    """
    from promogym.data import frame_format, write_frame
    from promogym.envs.market import default_market
    from promogym.io import atomic_path, check_output_path

    out = Path(out)
    file_format = frame_format(out)
    check_output_path(out, directory=False)
    market = default_market(n_items, seed)
    frame = simulate_history(market, periods, start_date, seed, config)
    market_path = out.with_name(out.name + ".market.json")
    with atomic_path(market_path) as market_tmp, atomic_path(out) as frame_tmp:
        market_tmp.write_text(market.params.to_json(), encoding="utf-8")
        write_frame(frame, frame_tmp, file_format)
    promo = float(frame["promo"].mean())
    recorded = frame[~unrecorded(frame)]  # as check-data counts it: stock 0 says nothing
    censored = float((recorded["units_sold"] >= recorded["stock"]).mean())
    return (
        f"wrote {out} ({n_items} items x {periods} periods from "
        f"{frame['date'].min().date().isoformat()}, promo share {promo:.1%}, "
        f"censored share {censored:.1%}) and {market_path}"
    )


def _promotion_calendar(
    periods: int,
    start_prob: np.ndarray,
    depths: np.ndarray,
    max_run: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Discount of every (period, item): runs of ``U{1..max_run}`` periods at one depth."""
    n_items = start_prob.shape[0]
    discount = np.zeros((periods, n_items))
    run_left = np.zeros(n_items, dtype=np.int64)
    depth = np.zeros(n_items)
    was_on_sale = np.zeros(n_items, dtype=bool)
    for t in range(periods):
        starts = (run_left == 0) & ~was_on_sale & (rng.random(n_items) < start_prob)
        run_left = np.where(starts, rng.integers(1, max_run + 1, size=n_items), run_left)
        depth = np.where(starts, depths[rng.integers(0, depths.size, size=n_items)], depth)
        was_on_sale = run_left > 0
        discount[t] = np.where(was_on_sale, depth, 0.0)
        run_left = np.maximum(run_left - 1, 0)
    return discount


def sale_start_probability(rate: float, max_run: int) -> float:
    """Per-period chance of starting a run that gives a long-run sale share of ``rate``.

    Runs last ``U{1..max_run}`` periods (mean ``m``); after a run at least one period is off,
    then each off period starts a run with probability ``h``, so off spells last ``1/h`` on
    average and the share is ``m / (m + 1/h)``.

    >>> round(sale_start_probability(0.2, 4), 3)
    0.1
    """
    mean_run = (1 + max_run) / 2.0
    return min(1.0, rate / (mean_run * (1.0 - rate)))


__all__ = [
    "HISTORY_COLUMNS",
    "BehaviourPolicy",
    "sale_start_probability",
    "simulate_history",
    "write_simulated_history",
]
