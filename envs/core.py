"""Campaign dynamics as explicit state + a pure, batched transition (gymnax style).

Everything that changes during a campaign lives in :class:`CampaignState` (one row per
campaign in a batch of ``B``); everything fixed lives in :class:`CampaignParams`. The demand
model is not here: :func:`transition` takes the period's realised demand as an input, so the
same code serves the reference market, the learned forecaster, the exact DP's Monte-Carlo
check and the Gymnasium/VecEnv adapters.

Timing of period ``t`` (state seen at the start of the period, arrivals of ``t`` already in
``on_hand``):

1. the policy picks ``discount_idx`` and ``order_idx``; an order of ``q`` units joins the
   pipeline slot that lands ``lead_time`` periods later (``lead_time == 0``: lands now,
   on-hand capped at ``capacity``),
2. demand ``D`` is realised at price ``list_price * (1 - discount)`` (the campaign item's own
   list price when :attr:`CampaignParams.item_list_price` is set),
   ``sales = min(D, on_hand)``, ``left = on_hand - sales``,
3. ``reward = price*sales - lost_sale_penalty*(D - sales) - holding_cost*left
   - (unit_cost*q + order_fixed_cost*[q > 0])``, plus ``salvage_value*left`` after the last
   period,
4. next period: ``on_hand = min(left + pipeline[0], capacity)`` (excess arrivals are lost),
   pipeline shifts by one, ``streak`` (consecutive sale periods) and ``sale_used`` update.

Feasible actions (:func:`action_masks`): a sale only while ``sale_used < sale_budget``; an
order only if the inventory position after it, ``on_hand + sum(pipeline) + q``, stays within
``capacity`` (ordering more would only buy stock that cannot fit). :func:`repair_actions`
maps an infeasible choice to the nearest feasible one (no sale; the largest order that fits).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from promogym.config import CampaignConfig
from promogym.envs.market import next_streak
from promogym.errors import ConfigError


@dataclass(frozen=True)
class CampaignParams:
    """Fixed quantities of a campaign, as tensors on one device.

    ``list_price`` is one price for every item unless ``item_list_price`` (``(I,)`` float64,
    indexed like ``CampaignState.item``) gives each item of the demand model's vocabulary its
    own; then ``list_price`` only describes the campaigns (their median) and every price
    comes from :meth:`price_of`. The same holds for ``unit_cost``, ``item_unit_cost`` and
    :meth:`cost_of`. :meth:`for_item` is one item's campaign with scalar price and cost.
    """

    horizon: int
    discounts: torch.Tensor  # (A_d,) float64
    order_quantities: torch.Tensor  # (A_o,) float64
    lead_time: int
    capacity: int
    sale_budget: int
    initial_on_hand: int
    list_price: float
    unit_cost: float
    holding_cost: float
    order_fixed_cost: float
    lost_sale_penalty: float
    salvage_value: float
    period_days: int = 1  # calendar days per period: 1 (daily) or 7 (weekly)
    item_list_price: torch.Tensor | None = None  # (I,) float64: each item's own list price
    item_unit_cost: torch.Tensor | None = None  # (I,) float64: each item's own unit cost

    @classmethod
    def from_config(
        cls,
        config: CampaignConfig,
        *,
        list_price: float | None = None,
        unit_cost: float | None = None,
        item_list_price: Sequence[float] | np.ndarray | None = None,
        item_unit_cost: Sequence[float] | np.ndarray | None = None,
        item_ids: Sequence[str] | None = None,
        period_days: int = 1,
        device: torch.device | str = "cpu",
    ) -> CampaignParams:
        """Params for ``config``.

        Where the config leaves ``economics.list_price`` or ``economics.unit_cost`` unset,
        ``item_list_price`` / ``item_unit_cost`` (one value per item of the vocabulary, e.g.
        each item's latest in the history; NaN = unknown) fill it in, and else the scalar
        ``list_price`` / ``unit_cost``. ``item_ids`` only name the items in errors.

        Raises:
            ConfigError: a value is neither configured nor given, or unknown for some item;
                or ``salvage_value`` is above an item's unit cost (ordering to salvage pays).
        """
        eco = config.economics
        price, per_item_price = _economics(
            "list_price", eco.list_price, item_list_price, list_price, item_ids, device
        )
        cost, per_item_cost = _economics(
            "unit_cost", eco.unit_cost, item_unit_cost, unit_cost, item_ids, device
        )
        costs = [cost] if per_item_cost is None else per_item_cost.tolist()
        cheapest = int(np.argmin(costs))
        if eco.salvage_value > costs[cheapest]:  # buying to salvage would pay
            which = (
                ""
                if per_item_cost is None
                else f" of item {item_ids[cheapest] if item_ids else cheapest}"
            )
            raise ConfigError(
                f"economics.salvage_value {eco.salvage_value:g} is above the unit cost"
                f"{which} ({costs[cheapest]:g}): every order would pay for itself at the "
                "campaign's end; set salvage_value below every unit cost (a campaign TOML's "
                "[economics], passed with --config)"
            )
        return cls(
            horizon=config.campaign.horizon,
            discounts=torch.tensor(config.campaign.discounts, dtype=torch.float64, device=device),
            order_quantities=torch.tensor(
                config.inventory.order_quantities, dtype=torch.float64, device=device
            ),
            lead_time=config.inventory.lead_time,
            capacity=config.inventory.capacity,
            sale_budget=config.campaign.sale_budget,
            initial_on_hand=config.inventory.initial,
            list_price=price,
            unit_cost=cost,
            holding_cost=eco.holding_cost,
            order_fixed_cost=eco.order_fixed_cost,
            lost_sale_penalty=eco.lost_sale_penalty,
            salvage_value=eco.salvage_value,
            period_days=period_days,
            item_list_price=per_item_price,
            item_unit_cost=per_item_cost,
        )

    def price_of(self, item: torch.Tensor) -> torch.Tensor:
        """List price of each campaign's item, ``(B,)`` float64 (``item`` as in the state)."""
        if self.item_list_price is None:
            return torch.full(item.shape, self.list_price, dtype=torch.float64, device=item.device)
        return self.item_list_price.to(item.device)[item.long()]

    def cost_of(self, item: torch.Tensor) -> torch.Tensor:
        """Unit cost of each campaign's item, ``(B,)`` float64 (``item`` as in the state)."""
        if self.item_unit_cost is None:
            return torch.full(item.shape, self.unit_cost, dtype=torch.float64, device=item.device)
        return self.item_unit_cost.to(item.device)[item.long()]

    def for_item(self, item: int) -> CampaignParams:
        """The campaign of item index ``item`` alone: its own list price and unit cost as the
        scalars."""
        changes: dict[str, object] = {}
        for scalar, vector in (("list_price", "item_list_price"), ("unit_cost", "item_unit_cost")):
            values = getattr(self, vector)
            if values is None:
                continue
            if not 0 <= item < values.shape[0]:
                raise ValueError(f"item index {item} out of range 0..{values.shape[0] - 1}")
            changes.update({scalar: float(values[item]), vector: None})
        return dataclasses.replace(self, **changes) if changes else self

    @property
    def device(self) -> torch.device:
        return self.discounts.device

    @property
    def n_discounts(self) -> int:
        return int(self.discounts.shape[0])

    @property
    def n_orders(self) -> int:
        return int(self.order_quantities.shape[0])

    @property
    def pipeline_slots(self) -> int:
        """Width of :attr:`CampaignState.pipeline` (at least 1, zeros when lead time is 0)."""
        return max(self.lead_time, 1)


def _economics(
    key: str,
    configured: float | None,
    per_item: Sequence[float] | np.ndarray | None,
    fallback: float | None,
    item_ids: Sequence[str] | None,
    device: torch.device | str,
) -> tuple[float, torch.Tensor | None]:
    """``economics.<key>`` as (scalar, per-item tensor or None); see ``from_config``."""
    if configured is not None:
        return float(configured), None
    if per_item is not None:
        values = np.array(per_item, dtype=np.float64)
        unknown = ~np.isfinite(values)
        if values.ndim != 1 or values.size == 0 or unknown.any():
            names = [str(item_ids[i]) if item_ids else str(i) for i in np.flatnonzero(unknown)]
            raise ConfigError(
                f"economics.{key} is unset and the history has no {key} for items "
                f"{names[:5]}{' ...' if len(names) > 5 else ''}: set economics.{key} in the "
                f"campaign TOML, or give those items a {key} column"
            )
        if (values < 0).any() or (key == "list_price" and (values == 0).any()):
            raise ConfigError(
                f"each item's {key} (from the history, or the {key} argument) must be "
                f"{'> 0' if key == 'list_price' else '>= 0'}"
            )
        return float(np.median(values)), torch.tensor(values, device=device)
    if fallback is None:
        raise ConfigError(
            f"economics.{key} is unset and no {key} came from the data: set economics.{key} "
            "in the campaign TOML"
        )
    value = float(fallback)
    if not math.isfinite(value) or value < 0 or (key == "list_price" and value == 0):
        raise ConfigError(
            f"{key} must be a finite number {'> 0' if key == 'list_price' else '>= 0'}, "
            f"got {fallback!r}"
        )
    return value, None


@dataclass(frozen=True)
class CampaignState:
    """Changing quantities of ``B`` campaigns (every field has leading dimension ``B``).

    ``pipeline[:, k]`` holds the units that land in ``k + 1`` periods. ``day`` is the
    calendar day (days since 1970-01-01) of period ``t``.
    """

    t: torch.Tensor  # (B,) long, period index within the campaign
    day: torch.Tensor  # (B,) long
    item: torch.Tensor  # (B,) long, item index in the demand model
    on_hand: torch.Tensor  # (B,) float64
    pipeline: torch.Tensor  # (B, max(lead_time, 1)) float64
    streak: torch.Tensor  # (B,) long, consecutive sale periods just before t
    sale_used: torch.Tensor  # (B,) long, sale periods used so far

    @property
    def batch_size(self) -> int:
        return int(self.t.shape[0])

    def replace(self, **changes: torch.Tensor) -> CampaignState:
        return dataclasses.replace(self, **changes)

    def to(self, device: torch.device | str) -> CampaignState:
        """Every field on ``device`` (fields already there are not copied)."""
        return CampaignState(
            **{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)}
        )

    def index(self, rows: torch.Tensor | slice) -> CampaignState:
        """The sub-batch ``rows``."""
        return CampaignState(
            **{f.name: getattr(self, f.name)[rows] for f in dataclasses.fields(self)}
        )


def initial_state(
    params: CampaignParams,
    item: torch.Tensor,
    day: torch.Tensor,
    *,
    on_hand: torch.Tensor | None = None,
    pipeline: torch.Tensor | None = None,
    streak: torch.Tensor | None = None,
    t: torch.Tensor | None = None,
    sale_used: torch.Tensor | None = None,
) -> CampaignState:
    """Start-of-campaign state for each (item, first day); any field may be given instead."""
    device = params.device
    item = item.to(device=device, dtype=torch.long)
    b = item.shape[0]
    zeros = torch.zeros(b, dtype=torch.long, device=device)
    return CampaignState(
        t=zeros.clone() if t is None else t.to(device=device, dtype=torch.long),
        day=day.to(device=device, dtype=torch.long),
        item=item,
        on_hand=(
            torch.full((b,), float(params.initial_on_hand), dtype=torch.float64, device=device)
            if on_hand is None
            else on_hand.to(device=device, dtype=torch.float64)
        ),
        pipeline=(
            torch.zeros(b, params.pipeline_slots, dtype=torch.float64, device=device)
            if pipeline is None
            else pipeline.to(device=device, dtype=torch.float64)
        ),
        streak=zeros.clone() if streak is None else streak.to(device=device, dtype=torch.long),
        sale_used=(
            zeros.clone() if sale_used is None else sale_used.to(device=device, dtype=torch.long)
        ),
    )


def order_lands_in_time(t: int | torch.Tensor, params: CampaignParams) -> bool | torch.Tensor:
    """Whether an order placed in period ``t`` (an int or a tensor of them) arrives by the
    campaign's last period: ``t + lead_time < horizon``. Later orders would land after the
    campaign, which neither delivers nor salvages them; no decision maker places them."""
    return t + params.lead_time < params.horizon


def action_masks(state: CampaignState, params: CampaignParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks ``(B, n_discounts)`` and ``(B, n_orders)`` of feasible choices.

    No sale once the sale budget is spent; no order that would lift the inventory position
    above capacity, nor one placed in the last ``lead_time`` periods (``t + lead_time >=
    horizon``), which would land after the campaign, unsold and unsalvaged. Ordering nothing
    is always feasible.
    """
    b = state.batch_size
    sale_ok = state.sale_used < params.sale_budget
    discount_mask = torch.ones(b, params.n_discounts, dtype=torch.bool, device=params.device)
    discount_mask[:, 1:] = sale_ok.unsqueeze(1)
    position = state.on_hand + state.pipeline.sum(dim=1)
    order_mask = position.unsqueeze(1) + params.order_quantities.unsqueeze(0) <= params.capacity
    order_mask &= order_lands_in_time(state.t, params).unsqueeze(1)
    order_mask[:, 0] = True
    return discount_mask, order_mask


def repair_actions(
    state: CampaignState,
    params: CampaignParams,
    discount_idx: torch.Tensor,
    order_idx: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace infeasible choices: no sale when the budget is spent; largest order that fits."""
    discount_mask, order_mask = action_masks(state, params)
    discount_idx = discount_idx.long()
    order_idx = order_idx.long()
    d_ok = discount_mask.gather(1, discount_idx.unsqueeze(1)).squeeze(1)
    discount_idx = torch.where(d_ok, discount_idx, torch.zeros_like(discount_idx))
    # Largest feasible order index not above the requested one (masks are monotone in q).
    idx = torch.arange(params.n_orders, device=params.device).unsqueeze(0)
    allowed = order_mask & (idx <= order_idx.unsqueeze(1))
    order_idx = (allowed.long() * idx).max(dim=1).values
    return discount_idx, order_idx


def place_order(
    state: CampaignState, params: CampaignParams, order_idx: torch.Tensor
) -> tuple[CampaignState, torch.Tensor]:
    """Put this period's order into the pipeline (or on the shelf when lead time is 0)."""
    q = params.order_quantities[order_idx.long()]
    if params.lead_time == 0:
        on_hand = torch.minimum(state.on_hand + q, torch.tensor(float(params.capacity)))
        return state.replace(on_hand=on_hand), q
    pipeline = state.pipeline.clone()
    pipeline[:, params.lead_time - 1] += q
    return state.replace(pipeline=pipeline), q


def transition(
    state: CampaignState,
    params: CampaignParams,
    discount_idx: torch.Tensor,
    order_idx: torch.Tensor,
    demand: torch.Tensor,
) -> tuple[CampaignState, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Advance every campaign one period given (feasible) actions and realised demand.

    Args:
        state: the batch at the start of period ``t``.
        params: fixed campaign quantities.
        discount_idx: ``(B,)`` index into ``params.discounts``.
        order_idx: ``(B,)`` index into ``params.order_quantities``.
        demand: ``(B,)`` realised demand (counts) of period ``t`` at the chosen discount.

    Returns:
        ``(next_state, reward, done, info)``; ``reward`` is profit in currency (float64),
        ``done`` is True where period ``t`` was the campaign's last, and ``info`` holds
        per-period ``revenue, units_sold, lost_units, holding_cost, order_cost, salvage,
        order_quantity, discount, price, demand, left``.
    """
    discount = params.discounts[discount_idx.long()]
    state, q = place_order(state, params, order_idx)
    price = params.price_of(state.item) * (1.0 - discount)
    demand = demand.to(torch.float64)
    sales = torch.minimum(demand, state.on_hand)
    left = state.on_hand - sales
    unmet = demand - sales
    revenue = price * sales
    holding = params.holding_cost * left
    order_cost = torch.where(
        q > 0, params.cost_of(state.item) * q + params.order_fixed_cost, torch.zeros_like(q)
    )
    done = state.t + 1 >= params.horizon
    salvage = torch.where(done, params.salvage_value * left, torch.zeros_like(left))
    reward = revenue - params.lost_sale_penalty * unmet - holding - order_cost + salvage

    on_sale = discount_idx > 0
    arrivals = state.pipeline[:, 0]
    pipeline = torch.zeros_like(state.pipeline)
    pipeline[:, :-1] = state.pipeline[:, 1:]
    next_state = CampaignState(
        t=state.t + 1,
        day=state.day + params.period_days,
        item=state.item,
        on_hand=torch.clamp(left + arrivals, max=float(params.capacity)),
        pipeline=pipeline,
        streak=next_streak(state.streak, on_sale),
        sale_used=state.sale_used + on_sale.long(),
    )
    info = {
        "revenue": revenue,
        "units_sold": sales,
        "lost_units": unmet,
        "holding_cost": holding,
        "order_cost": order_cost,
        "salvage": salvage,
        "order_quantity": q,
        "discount": discount,
        "price": price,
        "demand": demand,
        "left": left,
    }
    return next_state, reward, done, info
