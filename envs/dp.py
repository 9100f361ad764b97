"""The exact optimum of a campaign on the reference market: finite-horizon dynamic programming.

The reference market's only memory is the sale ``streak`` (see :mod:`promogym.envs.market`),
so a campaign on it is a finite Markov decision process with state

    (t, on_hand in 0..capacity, pipeline, streak in 0..MAX_STREAK, sale_used in 0..sale_budget)

where ``pipeline`` holds the ``lead_time - 1`` slots that can be non-zero when a decision is
made (each slot holds one order, so its value is on the order ladder; lead times 0 and 1 have
none) and ``sale_used`` is dropped when ``sale_budget >= horizon`` (the budget never binds).
Actions are the (discount, order) pairs that :func:`~promogym.envs.core.action_masks` allows,
and the timing and reward are those of :func:`~promogym.envs.core.transition`.

Exactness: per (period, discount, streak) the demand pmf is evaluated up to ``capacity``; the
tail enters in closed form through ``E[min(D, y)] = sum_{k<y} P(D > k)``, the expected lost
demand ``mean - E[min(D, y)]`` (with the analytic mean) and ``P(left = 0) = P(D >= y)``. The
expectation over next states is one ``(capacity+1) x (capacity+1)`` transition matrix of
``left = y - min(D, y)`` per (discount, streak), applied with batched float64 matmuls; no
Python loop runs over inventory levels. The only approximation is float64 rounding.

Large capacities: the matrices grow with ``capacity ** 2`` (2,000 units: about 3 GB). Past
:data:`DP_MEMORY_LIMIT` the stock levels are lots of several units (:func:`dp_lot`, a divisor
of the capacity and every order quantity, so orders stay whole lots): sales, lost sales and
holding are still exact sums over units, the units left over are split between the two
nearest lots, and the policy acts at the lot nearest the real stock. On the default campaign
lots of 4 and 10 units kept 99.96% and 99.85% of the exact policy's simulated profit.

>>> from promogym.config import CampaignConfig
>>> from promogym.envs.market import default_market
>>> cfg = CampaignConfig().replace(campaign={"horizon": 5}, inventory={"capacity": 40,
...     "initial": 20, "order_quantities": [0, 10, 20]})
>>> sol = solve(default_market(), "sku-0", CampaignParams.from_config(cfg), start_day=20788)
>>> sol.expected_profit > 0
True
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from promogym.config import CampaignConfig
from promogym.distributions import negative_binomial_pmf
from promogym.envs.core import CampaignParams, CampaignState, order_lands_in_time
from promogym.envs.demand import Memory
from promogym.envs.market import MAX_STREAK, ReferenceMarket, day_number
from promogym.envs.rollout import Policy
from promogym.errors import PromogymInputError

DEFAULT_START_DATE = dt.date(2026, 12, 1)
"""Campaign start used when the config gives no ``campaign.start_date``."""

DP_MEMORY_LIMIT = 8 * 2**30
"""Bytes :func:`solve_table` may need (:func:`dp_memory_bytes`) for the exact, unit grid."""

DP_LOT_MEMORY = 2**30
"""Bytes a coarser stock grid (lots of several units, :func:`dp_lot`) is chosen to fit in."""


def share_of_optimum(profit: float, optimum: float) -> float:
    """``profit / optimum``, NaN unless the optimum is positive: a share of a loss (or of
    nothing) would rank a policy that loses more as better.

    >>> share_of_optimum(90.0, 100.0), share_of_optimum(-700.0, -100.0)
    (0.9, nan)
    """
    return profit / optimum if optimum > 0 else float("nan")


def format_share(share: float, spec: str = ".1%") -> str:
    """``share`` formatted with ``spec``, or ``n/a`` when it is NaN (:func:`share_of_optimum`)."""
    return "n/a" if math.isnan(share) else format(share, spec)


def dp_memory_bytes(params: CampaignParams, lot: int = 1) -> int:
    """Peak bytes :func:`solve_table` needs for ``params`` on a grid of ``lot``-unit stock
    levels, about (an upper estimate).

    The grid holds every stock level ``0, lot, .., capacity``, so the transition matrices
    grow with ``(capacity / lot) ** 2``: capacity 160 needs a few MB, 2,000 about 3 GB,
    60,000 some 2 TB in units (lot 1) and 290 MB in lots of 100.
    """
    n_x = params.capacity // lot + 1
    n_d, n_o, n_s = params.n_discounts, params.n_orders, MAX_STREAK + 1
    n_k = n_o ** max(params.lead_time - 1, 0)
    n_u = params.sale_budget + 1 if params.sale_budget < params.horizon else 1
    square = 8 * n_x * n_x * (2 * n_d * n_s + 3)  # trans (+ its gather), diff, sold_idx, band
    grid = 8 * n_x * n_k * n_s * n_u * (2 * (params.horizon + 1) + 4 * n_d * n_o)
    units = 8 * n_d * n_s * (params.capacity + 2 * lot + 2) * 4  # pmf, tail, sums in units
    return square + grid + units


def lot_sizes(params: CampaignParams) -> list[int]:
    """Stock-grid steps the campaign allows: the divisors of the greatest common divisor of
    the capacity and the order quantities (so orders and capacity stay whole lots)."""
    g = params.capacity
    for q in params.order_quantities.detach().cpu().long().tolist():
        g = math.gcd(g, int(q))
    small = [d for d in range(1, math.isqrt(g) + 1) if g % d == 0]
    return sorted(set(small + [g // d for d in small]))


def dp_lot(params: CampaignParams) -> int | None:
    """The stock-grid step :func:`solve_table` uses: 1 (every unit: exact) when that fits in
    :data:`DP_MEMORY_LIMIT`, else the smallest allowed lot (:func:`lot_sizes`) whose grid
    fits in :data:`DP_LOT_MEMORY`, else the smallest that fits in :data:`DP_MEMORY_LIMIT`;
    ``None`` when none does."""
    if dp_memory_bytes(params) <= DP_MEMORY_LIMIT:
        return 1
    lots = [d for d in lot_sizes(params) if d > 1]
    for limit in (DP_LOT_MEMORY, DP_MEMORY_LIMIT):
        fits = [d for d in lots if dp_memory_bytes(params, d) <= limit]
        if fits:
            return fits[0]
    return None


def dp_too_large(params: CampaignParams) -> str | None:
    """Why :func:`solve_table` cannot solve ``params`` on any stock grid (with the fix), or
    ``None`` when it can."""
    if dp_lot(params) is not None:
        return None
    if params.lead_time > 1 and dp_lot(dataclasses.replace(params, lead_time=1)) is not None:
        # not the stock grid: the orders on their way (there are none with lead time 1)
        n_o, lead = params.n_orders, params.lead_time
        coarsest = min(dp_memory_bytes(params, d) for d in lot_sizes(params))
        return (
            f"the planner would need at least {coarsest / 2**30:,.1f} GiB (limit "
            f"{DP_MEMORY_LIMIT / 2**30:.0f} GiB): lead_time {lead} with {n_o} order quantities "
            f"makes {n_o}^{lead - 1} = {n_o ** (lead - 1):,} combinations of orders on their "
            "way for every stock level, streak and period; use fewer [inventory] "
            "order_quantities or a shorter lead_time"
        )
    need = dp_memory_bytes(params)
    return (
        f"the planner would need about {need / 2**30:,.0f} GiB for inventory capacity "
        f"{params.capacity:,} (it keeps every stock level; limit "
        f"{DP_MEMORY_LIMIT / 2**30:.0f} GiB), and capacity and order quantities share no lot "
        f"size large enough to make the grid fit (they share {lot_sizes(params)[-1]:,}): make "
        "them multiples of a larger case size "
        "(e.g. 60000 and [0, 5000, 10000]), or count stock in larger units (divide "
        "units_sold and the [inventory] numbers by the case size, multiply prices and costs "
        "by it)"
    )


@dataclass(frozen=True)
class DPSolution:
    """Value and policy tables of one solved campaign (all on the CPU).

    Table axes (``K = n_orders ** max(lead_time - 1, 0)`` pipeline combinations, slot 0 the
    most significant digit of the flat index; ``U = sale_budget + 1``, or 1 when the budget
    never binds):

    * ``values``: ``(horizon + 1, X, K, MAX_STREAK + 1, U)`` float64, expected
      profit-to-go from the start of period ``t`` (row ``horizon`` is zero: salvage is paid
      inside the last period's reward),
    * ``actions``: ``(horizon, X, K, MAX_STREAK + 1, U)`` long, optimal flat action
      ``discount_idx * n_orders + order_idx`` (ties go to the smallest flat index),

    where the ``X = capacity // lot + 1`` stock levels are ``0, lot, 2 lot, ..`` units
    (``lot`` 1: every unit, the exact optimum; see :func:`solve_table`).
    """

    params: CampaignParams = field(repr=False)
    item: int
    item_id: str
    start_day: int
    values: torch.Tensor = field(repr=False)
    actions: torch.Tensor = field(repr=False)
    solve_seconds: float = 0.0
    lot: int = 1

    @property
    def exact(self) -> bool:
        """Whether the grid holds every stock level (``lot`` 1), i.e. the values are exact."""
        return self.lot == 1

    @property
    def budget_tracked(self) -> bool:
        """Whether ``sale_used`` is a state dimension (the budget can bind)."""
        return self.values.shape[-1] > 1

    @property
    def expected_profit(self) -> float:
        """Optimal expected profit from the campaign's start (initial stock, empty pipeline)."""
        rows = self.values[0, :, 0, 0, 0].unsqueeze(0)
        return float(self._at_stock(rows, torch.tensor([float(self.params.initial_on_hand)]))[0])

    def _at_stock(self, rows: torch.Tensor, on_hand: torch.Tensor) -> torch.Tensor:
        """``rows`` ``(B, X)`` (values over the stock levels) at ``on_hand`` ``(B,)`` units:
        on a grid of lots, linear between the two nearest levels (as leftover units are
        split)."""
        pos = on_hand.to(torch.float64) / self.lot
        lo = pos.floor().long().clamp(max=rows.shape[1] - 1)
        hi = (lo + 1).clamp(max=rows.shape[1] - 1)
        frac = pos - lo
        low, high = (rows.gather(1, i.unsqueeze(1)).squeeze(1) for i in (lo, hi))
        return low * (1.0 - frac) + high * frac

    def grid_index(self, state: CampaignState) -> tuple[torch.Tensor, ...]:
        """Table indices ``(t, on_hand, pipeline, streak, sale_used)`` of each state (CPU); on a
        grid of lots, on-hand units go to the nearest stock level.

        Raises:
            ValueError: a state is off the DP grid (other item or calendar, fractional or
                out-of-range stock, pipeline values not on the order ladder, ...).
        """
        p = self.params
        t = state.t.detach().cpu().long()
        if bool(((t < 0) | (t > p.horizon)).any()):
            raise ValueError(f"state.t must lie in 0..{p.horizon}, got {t.tolist()}")
        item = state.item.detach().cpu().long()
        if bool((item != self.item).any()):
            raise ValueError(
                f"the DP was solved for item {self.item_id!r} (index {self.item}); "
                f"state has items {sorted(set(item.tolist()))}"
            )
        expected_day = self.start_day + t * p.period_days
        day = state.day.detach().cpu().long()
        if bool((day != expected_day).any()):
            bad = int(torch.nonzero(day != expected_day)[0, 0])
            raise ValueError(
                f"state day {int(day[bad])} at t={int(t[bad])} is off the DP's calendar "
                f"(start_day {self.start_day} + t * {p.period_days} = {int(expected_day[bad])});"
                " solve the DP for this start day"
            )
        on_hand = state.on_hand.detach().cpu().to(torch.float64)
        if bool(((on_hand != on_hand.round()) | (on_hand < 0) | (on_hand > p.capacity)).any()):
            raise ValueError(
                f"on_hand must be whole units in 0..{p.capacity}, got {on_hand.tolist()}"
            )
        ladder = p.order_quantities.detach().cpu().to(torch.float64)
        pipeline = state.pipeline.detach().cpu().to(torch.float64)
        slots = max(p.lead_time - 1, 0)
        if bool((pipeline[:, slots:] != 0).any()):
            raise ValueError(
                f"pipeline slots {slots}.. must be empty at decision time with lead_time "
                f"{p.lead_time}, got {pipeline.tolist()}"
            )
        flat = torch.zeros(state.batch_size, dtype=torch.long)
        for slot in range(slots):
            match = pipeline[:, slot : slot + 1] == ladder.unsqueeze(0)
            if not bool(match.any(dim=1).all()):
                raise ValueError(
                    f"pipeline slot {slot} holds {pipeline[:, slot].tolist()}, not all on the "
                    f"order ladder {ladder.tolist()}: the DP grid has no such state"
                )
            flat = flat * p.n_orders + match.long().argmax(dim=1)
        streak = state.streak.detach().cpu().long()
        if bool(((streak < 0) | (streak > MAX_STREAK)).any()):
            raise ValueError(f"streak must lie in 0..{MAX_STREAK}, got {streak.tolist()}")
        used = state.sale_used.detach().cpu().long()
        if bool(((used < 0) | (used > p.sale_budget)).any()):
            raise ValueError(f"sale_used must lie in 0..{p.sale_budget}, got {used.tolist()}")
        if not self.budget_tracked:
            used = torch.zeros_like(used)
        x = on_hand.long() if self.lot == 1 else (on_hand / self.lot).round().long()
        return t, x.clamp(max=p.capacity // self.lot), flat, streak, used

    def value(self, state: CampaignState) -> torch.Tensor:
        """Optimal expected profit-to-go of each state, ``(B,)`` float64 on the state's device
        (on a grid of lots: linear between the two nearest stock levels)."""
        t, x, k, s, u = self.grid_index(state)
        if self.lot == 1:
            return self.values[t, x, k, s, u].to(state.on_hand.device)
        rows = self.values[t, :, k, s, u]  # (B, X)
        on_hand = state.on_hand.detach().cpu()
        return self._at_stock(rows, on_hand).to(state.on_hand.device)

    def policy(self) -> DPPolicy:
        """The optimal policy as a batched :class:`~promogym.envs.rollout.Policy`."""
        return DPPolicy(self)


class DPPolicy(Policy):
    """Look-up of a :class:`DPSolution`'s optimal actions for batched states on its grid."""

    name = "dp-optimal"

    def __init__(self, solution: DPSolution) -> None:
        self.solution = solution

    def act(
        self, state: CampaignState, params: CampaignParams, memory: Memory
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mine = self.solution.params
        if not same_grid(params, mine):
            raise ValueError("DPPolicy used with other campaign params than it was solved for")
        t, x, k, s, u = self.solution.grid_index(state)
        if bool((t >= mine.horizon).any()):
            raise ValueError(f"no decision at t >= horizon ({mine.horizon})")
        flat = self.solution.actions[t, x, k, s, u].to(state.t.device)
        return flat // mine.n_orders, flat % mine.n_orders


def same_grid(a: CampaignParams, b: CampaignParams) -> bool:
    """Whether a DP solved for ``b`` has the state grid and actions of campaigns ``a``."""
    return (
        a.horizon == b.horizon
        and a.capacity == b.capacity
        and a.lead_time == b.lead_time
        and a.sale_budget == b.sale_budget
        and torch.equal(a.discounts.cpu(), b.discounts.cpu())
        and torch.equal(a.order_quantities.cpu(), b.order_quantities.cpu())
    )


def _check_params(params: CampaignParams) -> None:
    d = params.discounts.detach().cpu()
    q = params.order_quantities.detach().cpu()
    if float(d[0]) != 0.0 or bool((d[1:] <= d[:-1]).any()) or bool((d[1:] <= 0).any()):
        raise ValueError(f"discounts must start at 0.0 and increase strictly, got {d.tolist()}")
    if float(q[0]) != 0.0 or bool((q != q.round()).any()) or bool((q[1:] <= q[:-1]).any()):
        raise ValueError(f"order_quantities must be 0, then increasing integers, got {q.tolist()}")
    if not 0 <= params.initial_on_hand <= params.capacity:
        raise ValueError(f"initial_on_hand must lie in 0..capacity, got {params.initial_on_hand}")


@dataclass(frozen=True)
class DemandTable:
    """One item's demand over a campaign as a streak-Markov model, the DP's only input.

    ``mean[t, d, s]`` and ``dispersion[t, d, s]`` (float64, ``(horizon, n_discounts,
    MAX_STREAK + 1)``) give the negative-binomial demand of period ``t`` at discount index
    ``d`` after ``s`` consecutive sale periods. The reference market is exactly such a model
    (:meth:`from_market`); a learned simulator can be distilled into one
    (:func:`promogym.agents.planner.learned_demand_table`).
    """

    mean: torch.Tensor
    dispersion: torch.Tensor
    max_sale_run: int | None = None
    """If set, plans may not run a sale for more than this many consecutive periods. The
    streak stops counting at ``MAX_STREAK``, so a limit above it acts as ``MAX_STREAK``."""

    def __post_init__(self) -> None:
        if self.mean.dim() != 3 or self.mean.shape != self.dispersion.shape:
            raise ValueError(
                "mean and dispersion must both be (horizon, n_discounts, MAX_STREAK + 1), got "
                f"{tuple(self.mean.shape)} and {tuple(self.dispersion.shape)}"
            )
        if self.mean.shape[2] != MAX_STREAK + 1:
            raise ValueError(f"the streak axis must have {MAX_STREAK + 1} entries")
        if self.max_sale_run is not None and self.max_sale_run < 0:
            raise ValueError(f"max_sale_run must be >= 0, got {self.max_sale_run}")

    @classmethod
    def from_market(
        cls, market: ReferenceMarket, item: int, params: CampaignParams, start_day: int
    ) -> DemandTable:
        """The reference market's demand of ``item`` for a campaign from ``start_day``."""
        n_d, n_s = params.n_discounts, MAX_STREAK + 1
        shape = (params.horizon, n_d, n_s)
        days = start_day + torch.arange(params.horizon) * params.period_days
        grid = {
            "item": torch.full(shape, item, dtype=torch.long),
            "day": days.view(-1, 1, 1).expand(shape),
            "discount": params.discounts.detach()
            .cpu()
            .to(torch.float64)
            .view(1, -1, 1)
            .expand(shape),
            "streak": torch.arange(n_s).view(1, 1, -1).expand(shape),
        }
        mean = market.mean_demand(**grid)
        return cls(mean, market.dispersion(grid["item"]).expand(shape).clone())


def solve(
    market: ReferenceMarket,
    item: int | str,
    params: CampaignParams,
    start_day: int,
    lot: int | None = None,
) -> DPSolution:
    """Solve a campaign of ``item`` starting on calendar day ``start_day`` (exactly unless the
    capacity needs a grid of stock lots; ``lot`` as for :func:`solve_table`).

    Args:
        market: the reference market (ground-truth demand).
        item: item index or id in ``market``.
        params: campaign parameters (ladders, lead time, capacity, economics).
        start_day: calendar day (days since 1970-01-01) of period 0; period ``t`` falls on
            ``start_day + t * params.period_days``.

    Returns:
        The value and policy tables; ``expected_profit`` is the optimum from the config's
        initial state.
    """
    item_idx = market.item_index(item) if isinstance(item, str) else int(item)
    if not 0 <= item_idx < len(market.item_ids):
        raise ValueError(f"item index {item_idx} out of range 0..{len(market.item_ids) - 1}")
    table = DemandTable.from_market(market, item_idx, params, start_day)
    return solve_table(table, params, start_day, item_idx, market.item_ids[item_idx], lot)


def solve_table(
    table: DemandTable,
    params: CampaignParams,
    start_day: int,
    item: int = 0,
    item_id: str = "",
    lot: int | None = None,
) -> DPSolution:
    """Solve a campaign for demand given as a :class:`DemandTable`: exactly, or on a grid of
    stock lots when the capacity is too large for every unit.

    ``item``/``item_id`` label the solution (its policy acts on states of that item) and pick
    the item's list price when ``params`` has one per item; ``start_day`` is the calendar day
    of period 0.

    ``lot``: the grid's stock step in units (one of :func:`lot_sizes`); ``None``:
    :func:`dp_lot` (1 where every unit fits in memory). With ``lot`` 1 the solution is exact.
    With a larger lot, stock levels are multiples of ``lot`` (so are orders and capacity);
    expected sales, lost sales, holding and salvage of each level are still exact sums over
    units, and the units left after demand are split between the two nearest levels in
    proportion to their distance (the expected stock carried is exact); the policy acts at
    the level nearest the real stock. An approximation whose error shrinks with
    ``lot / demand``.

    Cost: ``horizon`` steps of one batched matmul
    ``(n_discounts * (MAX_STREAK+1)) x X x X @ X x (K * n_orders * U)``, ``X`` stock levels.
    """
    started = time.perf_counter()
    params = params.for_item(int(item))  # one item's campaign: its own list price
    _check_params(params)
    if lot is None:
        lot = dp_lot(params)
        if lot is None:
            too_large = dp_too_large(params)
            raise PromogymInputError(
                f"{too_large}. Without it there is no exact optimum and no planner for this "
                "campaign; trained agents still work (promogym train, recommend --agent ppo)"
            )
    elif lot not in lot_sizes(params):
        raise ValueError(
            f"lot {lot} must divide the capacity and every order quantity: one of "
            f"{lot_sizes(params)}"
        )
    if table.mean.shape[:2] != (params.horizon, params.n_discounts):
        raise ValueError(
            f"demand table is {tuple(table.mean.shape)}, the campaign needs "
            f"({params.horizon}, {params.n_discounts}, {MAX_STREAK + 1})"
        )
    item_idx = int(item)
    f64 = torch.float64
    cap = params.capacity // lot  # in lots from here on (orders and capacity are whole lots)
    n_x = cap + 1
    n_d, n_o, n_s = params.n_discounts, params.n_orders, MAX_STREAK + 1
    lead = params.lead_time
    slots = max(lead - 1, 0)
    n_k = n_o**slots
    track_budget = params.sale_budget < params.horizon
    n_u = params.sale_budget + 1 if track_budget else 1
    discounts = params.discounts.detach().cpu().to(f64)
    ladder = params.order_quantities.detach().cpu().to(f64)
    ladder_int = ladder.long() // lot
    order_cost = torch.where(
        ladder > 0, params.unit_cost * ladder + params.order_fixed_cost, torch.zeros_like(ladder)
    )

    # Pipeline bookkeeping per (pipeline index k, order o): units arriving at the end of this
    # period and the next period's pipeline index.
    k_range = torch.arange(n_k)
    o_range = torch.arange(n_o)
    if lead >= 2:
        top = n_o ** (slots - 1)
        arrive_q = ladder_int[k_range // top].unsqueeze(1).expand(n_k, n_o)
        next_k = (k_range % top).unsqueeze(1) * n_o + o_range.unsqueeze(0)
        digits = torch.stack([(k_range // n_o ** (slots - 1 - i)) % n_o for i in range(slots)])
        pipe_sum = ladder_int[digits].sum(dim=0)
    elif lead == 1:
        arrive_q = ladder_int.unsqueeze(0)
        next_k = torch.zeros(1, n_o, dtype=torch.long)
        pipe_sum = torch.zeros(1, dtype=torch.long)
    else:
        arrive_q = torch.zeros(1, n_o, dtype=torch.long)
        next_k = torch.zeros(1, n_o, dtype=torch.long)
        pipe_sum = torch.zeros(1, dtype=torch.long)
    j = torch.arange(n_x)
    # next on-hand index of (left j, k, o): arrivals land, excess over capacity is lost
    next_x = (j.view(-1, 1, 1) + arrive_q.unsqueeze(0)).clamp(max=cap)
    s_range = torch.arange(n_s)
    next_s = torch.stack([torch.zeros_like(s_range), (s_range + 1).clamp(max=MAX_STREAK)], 1)
    u_range = torch.arange(n_u)
    next_u = torch.stack([u_range, (u_range + 1).clamp(max=n_u - 1)], 1)
    sale_of_d = (torch.arange(n_d) > 0).long()

    # Feasibility (as action_masks): order only if position + q <= capacity, and not in the
    # last lead_time periods; sale in budget.
    x_col = j.view(n_x, 1, 1)
    order_ok = (x_col + pipe_sum.view(1, n_k, 1) + ladder_int.view(1, 1, n_o)) <= cap
    order_ok[..., 0] = True  # (X, K, O)
    sale_ok = u_range < params.sale_budget if track_budget else torch.ones(n_u, dtype=torch.bool)
    disc_ok = torch.ones(n_u, n_d, dtype=torch.bool)
    disc_ok[:, 1:] = sale_ok.unsqueeze(1)  # (U, D)
    feasible = order_ok.view(n_x, n_k, n_o, 1, 1, 1) & disc_ok.view(1, 1, 1, 1, n_u, n_d)
    if table.max_sale_run is not None:
        # no sale that would make the streak longer than max_sale_run periods
        streak_ok = torch.ones(n_s, n_d, dtype=torch.bool)
        streak_ok[min(table.max_sale_run, MAX_STREAK) :, 1:] = False
        feasible = feasible & streak_ok.view(1, 1, 1, n_s, 1, n_d)
    # in the last lead_time periods no order lands in time: only ordering nothing
    feasible_late = feasible & (torch.arange(n_o) == 0).view(1, 1, n_o, 1, 1, 1)

    price = params.list_price * (1.0 - discounts)  # (D,)
    y = j  # stock facing demand (levels)
    y_units = y * lot
    diff = y.view(-1, 1) - j.view(1, -1)  # levels sold, y - left
    sold_idx = diff.clamp(min=0, max=cap)
    band = (j.view(1, -1) >= 1) & (diff >= 0)  # left >= 1 level
    t_weights = torch.arange(1, lot + 1, dtype=f64) / lot  # (t + 1) / lot, t = 0..lot-1
    support = (n_x + 1) * lot + 1  # demand 0 .. (X + 1) lot in units

    values = torch.zeros(params.horizon + 1, n_x, n_k, n_s, n_u, dtype=f64)
    actions = torch.zeros(params.horizon, n_x, n_k, n_s, n_u, dtype=torch.long)
    for t in range(params.horizon - 1, -1, -1):
        mean = table.mean[t].to(f64)  # (D, S)
        pmf = negative_binomial_pmf(mean, table.dispersion[t], support)  # (D, S, units)
        tail = (1.0 - torch.cumsum(pmf, dim=-1)).clamp(min=0.0)  # P(D > k) in units
        # E[min(D, y)] = sum_{k<y} P(D > k), at the levels' units
        e_sold_units = torch.cat(
            [torch.zeros(n_d, n_s, 1, dtype=f64), tail[..., :-1].cumsum(-1)], -1
        )
        e_sold = e_sold_units[..., y_units]
        e_left = y_units.to(f64) - e_sold
        last = t == params.horizon - 1
        reward = (
            price.view(n_d, 1, 1) * e_sold
            - params.lost_sale_penalty * (mean.unsqueeze(-1) - e_sold)
            - params.holding_cost * e_left
            + (params.salvage_value * e_left if last else 0.0)
        )  # (D, S, Y)
        p_zero = torch.cat([torch.ones(n_d, n_s, 1, dtype=f64), tail[..., :-1]], -1)[
            ..., y_units
        ]  # P(D >= y)
        if lot == 1:
            # P(left = j) = pmf[y - j] (j >= 1), P(D >= y) (j = 0).
            trans = torch.where(band, pmf[..., sold_idx], torch.zeros((), dtype=f64))
            trans[..., 0] = p_zero
        else:
            # Units left l = y - D split between levels: l = m lot + f goes (1 - f/lot) to m
            # and f/lot to m + 1. By k = y - m levels: seg[k, t] = pmf[(k - 1) lot + 1 + t],
            # moved[k] = sum_t seg[k, t] (t+1)/lot + seg[k+1, t] (lot-1-t)/lot.
            padded = torch.cat([torch.zeros(n_d, n_s, lot, dtype=f64), pmf], -1)
            seg = padded[..., 1 : 1 + (n_x + 1) * lot].reshape(n_d, n_s, n_x + 1, lot)
            down = (seg * t_weights).sum(-1)  # (D, S, X + 1): A[k]
            up = (seg * (1.0 - t_weights)).sum(-1)  # B[k - 1] = sum seg[k, t] (lot-1-t)/lot
            moved = down[..., :n_x] + up[..., 1:]
            trans = torch.where(band, moved[..., sold_idx], torch.zeros((), dtype=f64))
            # level 0: D >= y, plus the units under one lot split towards 0
            trans[..., 0] = p_zero + down[..., :n_x] - pmf[..., y_units]
        # Continuation W[j, k, o, s, u, sale] = V_{t+1}(next state).
        v_next = values[t + 1]
        cont_src = v_next[
            next_x.view(n_x, n_k, n_o, 1, 1, 1),
            next_k.view(1, n_k, n_o, 1, 1, 1),
            next_s.view(1, 1, 1, n_s, 1, 2),
            next_u.view(1, 1, 1, 1, n_u, 2),
        ]  # (J, K, O, S, U, 2)
        cont_by_d = cont_src[..., sale_of_d]  # (J, K, O, S, U, D)
        rhs = cont_by_d.permute(5, 3, 0, 1, 2, 4).reshape(n_d, n_s, n_x, n_k * n_o * n_u)
        cont = torch.matmul(trans, rhs).view(n_d, n_s, n_x, n_k, n_o, n_u)  # y-indexed
        q_y = cont + reward.view(n_d, n_s, n_x, 1, 1, 1) - order_cost.view(1, 1, 1, 1, n_o, 1)
        q_y = q_y.permute(2, 3, 4, 1, 5, 0)  # (Y, K, O, S, U, D)
        if lead == 0:
            # the order lands before demand: stock facing demand is min(x + q, capacity)
            y_of_x = (j.view(-1, 1) + ladder_int.view(1, -1)).clamp(max=cap)  # (X, O)
            q_x = q_y[y_of_x, 0, o_range.view(1, -1)].unsqueeze(1)  # (X, 1, O, S, U, D)
        else:
            q_x = q_y
        ok = feasible if order_lands_in_time(t, params) else feasible_late  # as action_masks
        q_x = torch.where(ok, q_x, torch.full((), -torch.inf, dtype=f64))
        # flat action = d * n_orders + o
        q_flat = q_x.permute(0, 1, 3, 4, 5, 2).reshape(n_x, n_k, n_s, n_u, n_d * n_o)
        best, arg = q_flat.max(dim=-1)
        values[t] = best
        actions[t] = arg
    return DPSolution(
        params=params,
        item=item_idx,
        item_id=item_id,
        start_day=int(start_day),
        values=values,
        actions=actions,
        solve_seconds=time.perf_counter() - started,
        lot=lot,
    )


def campaign_start_date(config: CampaignConfig) -> dt.date:
    """``config.campaign.start_date``, or :data:`DEFAULT_START_DATE` when it is unset."""
    return config.campaign.start_date or DEFAULT_START_DATE


def campaign_start_day(config: CampaignConfig) -> int:
    """Day number of :func:`campaign_start_date`."""
    return day_number(campaign_start_date(config))


def optimum_report(
    config: CampaignConfig | None = None,
    *,
    item: str = "sku-0",
    market_seed: int = 0,
    n_items: int = 8,
    episodes: int = 2000,
    seed: int = 0,
    tune_episodes: int = 400,
) -> dict[str, Any]:
    """Solve the default market's campaign exactly and score the DP policy and baselines.

    The DP policy and every tuned baseline are simulated on the reference market with the
    same common random numbers (``seed + 1``); baselines are tuned on other numbers
    (``seed``) so their scores carry no selection bias.

    Returns:
        A JSON-ready dict: ``item``, ``start_date``, ``expected_profit``, ``solve_seconds``,
        ``monte_carlo`` (``mean``, ``se``, ``ci95`` of the DP policy and ``within_ci``), and
        ``baselines``: name -> ``mean``, ``se``, ``ratio`` (mean / DP expected profit),
        ``description``; plus ``best_baseline`` and its ``best_ratio``.
    """
    from promogym.envs.baselines import baseline_suite, torch_threads
    from promogym.envs.core import initial_state
    from promogym.envs.demand import MarketDemand
    from promogym.envs.market import default_market
    from promogym.envs.rollout import simulate

    # small tensors: one thread is fastest (see baselines.torch_threads)
    with torch_threads(1):
        config = config or CampaignConfig()
        market = default_market(n_items, market_seed)
        if item not in market.item_ids:
            raise PromogymInputError(
                f"--item: unknown item {item!r}; choose one of {list(market.item_ids)}"
            )
        item_idx = market.item_index(item)
        period_days = 7 if market.freq == "W" else 1
        params = CampaignParams.from_config(
            config,
            list_price=float(market.params.list_price[item_idx]),
            unit_cost=float(market.params.unit_cost[item_idx]),
            period_days=period_days,
        )
        start_day = campaign_start_day(config)
        solution = solve(market, item_idx, params, start_day)
        demand = MarketDemand(market)
        start = initial_state(params, torch.tensor([item_idx]), torch.tensor([start_day]))
        eval_seed = seed + 1
        rollout = simulate(
            solution.policy(), demand, params, start, n_episodes=episodes, seed=eval_seed
        )
        mc = rollout.summary()
        half = 1.96 * mc["se_profit"]
        optimum = solution.expected_profit
        suite = baseline_suite(demand, params, start, seed=seed, n_episodes=tune_episodes)
        baselines: dict[str, dict[str, Any]] = {}
        for name, policy in suite.items():
            out = simulate(policy, demand, params, start, n_episodes=episodes, seed=eval_seed)
            summary = out.summary()
            baselines[name] = {
                "mean": summary["mean_profit"],
                "se": summary["se_profit"],
                "ratio": share_of_optimum(summary["mean_profit"], optimum),
                "description": policy.describe(params) if hasattr(policy, "describe") else name,
            }
        best = max(baselines, key=lambda n: baselines[n]["mean"])
    return {
        "item": item,
        "market_seed": market_seed,
        "start_date": campaign_start_date(config).isoformat(),
        "config": config.to_dict(),
        "expected_profit": optimum,
        "solve_seconds": solution.solve_seconds,
        "stock_lot": solution.lot,
        "episodes": episodes,
        "monte_carlo": {
            "mean": mc["mean_profit"],
            "se": mc["se_profit"],
            "ci95": [mc["mean_profit"] - half, mc["mean_profit"] + half],
            "within_ci": abs(mc["mean_profit"] - optimum) <= half,
        },
        "baselines": baselines,
        "best_baseline": best,
        "best_ratio": baselines[best]["ratio"],
    }


def format_optimum_report(report: dict[str, Any]) -> str:
    """Human-readable table of an :func:`optimum_report`."""
    mc = report["monte_carlo"]
    lo, hi = mc["ci95"]
    verdict = "inside" if mc["within_ci"] else "OUTSIDE"
    optimum = report["expected_profit"]
    lines = [
        f"item {report['item']} (market seed {report['market_seed']}), "
        f"campaign from {report['start_date']}",
        f"DP expected profit   {report['expected_profit']:10.2f}",
        f"DP solve time        {report['solve_seconds']:10.3f} s",
        *(
            [f"stock grid           lots of {report['stock_lot']} units (approximate optimum)"]
            if report.get("stock_lot", 1) > 1
            else []
        ),
        f"Monte-Carlo check    {mc['mean']:10.2f} +- {1.96 * mc['se']:.2f} (95% CI "
        f"[{lo:.2f}, {hi:.2f}], {report['episodes']} episodes): optimum {verdict} the CI"
        + (" (approximate: not a check)" if report.get("stock_lot", 1) > 1 else ""),
        "",
        f"{'policy':<22}{'profit':>10}{'+- 95%':>9}{'ratio':>8}  rule",
        f"{'dp-optimal':<22}{report['expected_profit']:10.2f}"
        f"{'exact' if report.get('stock_lot', 1) == 1 else 'lots':>9}"
        f"{format_share(share_of_optimum(optimum, optimum), '.3f'):>8}  "
        + (
            "exact dynamic programming"
            if report.get("stock_lot", 1) == 1
            else f"dynamic programming on {report['stock_lot']}-unit stock lots"
        ),
    ]
    for name, row in sorted(report["baselines"].items(), key=lambda kv: -kv[1]["mean"]):
        lines.append(
            f"{name:<22}{row['mean']:10.2f}{1.96 * row['se']:9.2f}"
            f"{format_share(row['ratio'], '.3f'):>8}  "
            f"{row['description']}"
        )
    lines.append("")
    lines.append(
        f"best baseline: {report['best_baseline']}"
        + (
            ""
            if math.isnan(report["best_ratio"])
            else f" at {report['best_ratio']:.3f} of the optimum"
        )
    )
    return "\n".join(lines)
