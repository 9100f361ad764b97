"""A forecaster as a demand model: the learned simulator behind the FlashSale environment.

:class:`ForecasterDemand` wraps any :class:`~promogym.forecasters.base.Forecaster` through its
batched simulator face ``one_step(DemandContext, discounts) -> (mean, dispersion)``. Its
memory is the forecaster's rolling context window: ``context_length`` periods of
``past_units, past_observed, past_discount, past_promo, past_day`` per campaign, taken from a
real window of the sales history at the campaign's start and then extended autoregressively
with each period's sampled demand (marked observed), so the model conditions on the world it
is simulating.

:class:`HistoryWindows` turns a :class:`~promogym.data.SalesHistory` into dense
``(items, periods)`` tensors so windows of thousands of campaigns are gathered in one indexing
operation; the environment uses it too, for random start dates and recent-sales features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from promogym.data import SalesHistory, unrecorded
from promogym.envs.core import CampaignState
from promogym.envs.demand import DemandModel, Memory
from promogym.envs.market import MAX_STREAK, day_date, day_numbers
from promogym.errors import PromogymInputError
from promogym.forecasters.base import DemandContext, Forecaster, promo_probability

DEFAULT_CONTEXT_LENGTH = 56
"""Context length used when a forecaster does not declare ``context_length``."""

MEMORY_KEYS = ("past_units", "past_observed", "past_discount", "past_promo", "past_day")


def _iso(day: int) -> str:
    return day_date(day).isoformat()


class HistoryWindows:
    """Dense view of a sales history on a common period grid, indexed by vocabulary position.

    Args:
        history: the validated sales history.
        item_ids: the vocabulary; row ``i`` of every tensor is ``item_ids[i]``. Items of the
            vocabulary absent from the history have no periods (no random starts).

    Grid period ``k`` is calendar day ``first_day + k * period_days``. Missing rows are
    unobserved with zero units and no discount; censored periods (stock-outs) are unobserved.
    A period is *recorded* when the history has a row for it that is not
    :func:`~promogym.data.unrecorded` (a stock of 0, which ``fill_gaps="missing"`` adds).
    """

    def __init__(self, history: SalesHistory, item_ids: Sequence[str]) -> None:
        self.history = history
        self.item_ids = tuple(item_ids)
        self.period_days = history.period_days
        frame = history.frame
        days = day_numbers(frame["date"])
        if days.size == 0:
            raise PromogymInputError(f"{history.source}: the sales history is empty")
        self.first_day = int(days.min())
        offset = days - self.first_day
        if np.any(offset % self.period_days):
            raise PromogymInputError(
                f"{history.source}: dates are not on one {self.period_days}-day grid; "
                "resample the history to a regular frequency"
            )
        self.n_periods = int(offset.max() // self.period_days) + 1
        position = {item: i for i, item in enumerate(self.item_ids)}
        rows = frame["item_id"].map(position).to_numpy()
        keep = ~np.isnan(rows.astype(np.float64))
        item_idx = rows[keep].astype(np.int64)
        period_idx = (offset[keep] // self.period_days).astype(np.int64)
        n_items = len(self.item_ids)
        shape = (n_items, self.n_periods)
        units = np.zeros(shape, dtype=np.float32)
        present = np.zeros(shape, dtype=bool)
        recorded = np.zeros(shape, dtype=bool)
        observed = np.zeros(shape, dtype=bool)
        discount = np.zeros(shape, dtype=np.float32)
        promo = np.zeros(shape, dtype=np.float32)
        units[item_idx, period_idx] = frame["units_sold"].to_numpy()[keep]
        present[item_idx, period_idx] = True
        recorded[item_idx, period_idx] = ~unrecorded(frame)[keep]
        observed[item_idx, period_idx] = ~frame["censored"].to_numpy(dtype=bool)[keep]
        discount[item_idx, period_idx] = frame["discount"].to_numpy(dtype=np.float32)[keep]
        promo[item_idx, period_idx] = frame["promo"].to_numpy(dtype=np.float32)[keep]
        any_present = present.any(axis=1)
        self.first_period = np.where(any_present, present.argmax(axis=1), -1)
        self.last_period = np.where(
            any_present, self.n_periods - 1 - present[:, ::-1].argmax(axis=1), -1
        )
        counts = observed.sum(axis=1)
        level = np.where(counts > 0, (units * observed).sum(axis=1) / np.maximum(counts, 1), 1.0)
        # Normalising recent sales by a level near zero would blow features up.
        self.typical_level = np.maximum(level, 0.1)
        self._host = {
            "units": torch.from_numpy(units),
            "observed": torch.from_numpy(observed),
            "recorded": torch.from_numpy(recorded),
            "discount": torch.from_numpy(discount),
            "promo": torch.from_numpy(promo),
        }
        self._cache: dict[torch.device, dict[str, torch.Tensor]] = {}

    def _tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        if device not in self._cache:
            self._cache[device] = {k: v.to(device) for k, v in self._host.items()}
        return self._cache[device]

    def day_of(self, period: torch.Tensor) -> torch.Tensor:
        return self.first_day + period * self.period_days

    def start_range(self, context_length: int) -> tuple[np.ndarray, np.ndarray]:
        """Per item, first and last grid period a campaign may start at (``-1`` if none).

        A start needs ``context_length`` periods of the item's history before it; it may be
        the period right after the history ends ("today").
        """
        lo = self.first_period + context_length
        hi = self.last_period + 1
        ok = (self.first_period >= 0) & (lo <= hi)
        return np.where(ok, lo, -1), np.where(ok, hi, -1)

    def check_starts(self, item: torch.Tensor, day: torch.Tensor) -> None:
        """Raise a clear error unless every (item, day) has history right before it."""
        offset = day.cpu().numpy() - self.first_day
        items = item.cpu().numpy()
        for i, (it, off) in enumerate(zip(items, offset, strict=True)):
            if off % self.period_days:
                raise PromogymInputError(
                    f"day {_iso(self.first_day + off)} is not on the history's "
                    f"{self.period_days}-day grid (first date {_iso(self.first_day)})"
                )
            k = off // self.period_days
            first, last = int(self.first_period[it]), int(self.last_period[it])
            if first < 0:
                raise PromogymInputError(f"item {self.item_ids[it]!r} has no sales history")
            if not first < k <= last + 1:
                raise PromogymInputError(
                    f"row {i}: item {self.item_ids[it]!r} starts on {_iso(self.first_day + off)}, "
                    f"but its history covers {_iso(self.day_of(first))}.."
                    f"{_iso(self.day_of(last))}; pick a day after its first date and at most "
                    "one period after its last"
                )

    def window(self, item: torch.Tensor, day: torch.Tensor, length: int) -> dict[str, torch.Tensor]:
        """The ``length`` periods just before ``day`` for each item: ``(B, length)`` tensors.

        Keys: ``units`` (float32), ``observed`` (bool), ``recorded`` (bool), ``discount``
        (float32), ``promo`` (float32), ``day`` (long); periods outside the history are
        unobserved, unrecorded zeros.
        """
        device = item.device
        data = self._tensors(device)
        k = torch.div(day - self.first_day, self.period_days, rounding_mode="floor")
        periods = k.unsqueeze(1) + torch.arange(-length, 0, device=device).unsqueeze(0)
        inside = (periods >= 0) & (periods < self.n_periods)
        safe = periods.clamp(0, self.n_periods - 1)
        rows = item.unsqueeze(1).expand_as(safe)
        out = {name: values[rows, safe] for name, values in data.items()}
        out = {name: torch.where(inside, v, torch.zeros_like(v)) for name, v in out.items()}
        out["day"] = self.first_day + periods * self.period_days
        return out


def units_or_typical(window: dict[str, torch.Tensor], typical: torch.Tensor) -> torch.Tensor:
    """Units sold in a :meth:`HistoryWindows.window` (``(B, length)`` float64), with
    ``typical`` (``(B,)``, the item's typical units per period) in periods the history does
    not record: a missing period says nothing about sales, and 0 would read as a collapse.
    Sold-out periods keep what they sold."""
    units = window["units"].to(torch.float64)
    return torch.where(window["recorded"], units, typical.to(units).unsqueeze(1))


def sale_threshold(discounts: torch.Tensor | Sequence[float]) -> float:
    """The smallest history discount that counts as a sale on the campaign ladder
    ``discounts`` (:func:`is_sale`): half its shallowest sale rung, so a period is on sale
    when its discount is at least as near a sale rung as 0 (a 1% price move is not a sale on
    a 0 / 10% / ... ladder).

    >>> sale_threshold(torch.tensor([0.0, 0.1, 0.3]))
    0.05
    """
    rungs = [d for d in torch.as_tensor(discounts, dtype=torch.float64).tolist() if d > 0]
    return round(min(rungs) / 2, 6) if rungs else math.inf


def is_sale(discount: Any, threshold: float = 0.0) -> Any:
    """Whether each history ``discount`` (tensor, array or Series) is a sale period: above 0
    and at least ``threshold`` (:func:`sale_threshold`), up to 1e-6 (a price of 0.95 x list
    is 5% off whether its float reads 0.0499999 or 0.0500001).

    >>> is_sale(torch.tensor([0.0, 0.01, 1 - 0.95, 0.2]), 0.05).tolist()
    [False, False, True, True]
    """
    return (discount > 0) & (discount >= threshold - 1e-6)


def trailing_sale_streak(past_discount: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Consecutive sale periods (:func:`is_sale` at ``threshold``) at the end of each row,
    capped at MAX_STREAK."""
    on_sale = is_sale(past_discount, threshold).flip(1).long()
    return on_sale.cumprod(dim=1).sum(dim=1).clamp(max=MAX_STREAK)


class ForecasterDemand(DemandModel):
    """Demand from a forecaster's one-step predictive distribution, rolled out autoregressively.

    Args:
        forecaster: any forecaster implementing ``one_step``; its ``context_length``
            attribute sets the window (default :data:`DEFAULT_CONTEXT_LENGTH`).
        history: the sales history the windows at campaign starts are taken from.
        item_ids: the forecaster's item vocabulary (``CampaignState.item`` indexes it);
            default ``forecaster.item_ids`` (or fitted ``items_``), else ``history.item_ids``.
        context_length: override of the forecaster's context length.

    Memory (all ``(B, context_length)``): ``past_units`` (float32), ``past_observed`` (bool),
    ``past_discount`` (float32), ``past_promo`` (float32), ``past_day`` (long), oldest first.

    Example (``forecaster`` fitted on ``history``, ``state`` a batch of campaign states)::

        model = ForecasterDemand(forecaster, history)
        memory = model.initial_memory(state)  # windows ending the period before state.day
        mean, dispersion = model.distribution(state, memory, torch.tensor([0.0, 0.2]))
    """

    def __init__(
        self,
        forecaster: Forecaster,
        history: SalesHistory,
        *,
        item_ids: Sequence[str] | None = None,
        context_length: int | None = None,
    ) -> None:
        self.forecaster = forecaster
        self.history = history
        if item_ids is None:
            item_ids = (
                getattr(forecaster, "item_ids", None)
                or getattr(forecaster, "items_", None)
                or history.item_ids
            )
        self.item_ids = tuple(item_ids)
        if context_length is None:
            context_length = int(getattr(forecaster, "context_length", DEFAULT_CONTEXT_LENGTH))
        if context_length < 1:
            raise PromogymInputError(f"context_length must be >= 1, got {context_length}")
        self.context_length = context_length
        self.windows = HistoryWindows(history, self.item_ids)

    def initial_memory(self, state: CampaignState) -> Memory:
        """Context windows of the ``context_length`` periods before each ``state.day``."""
        self.windows.check_starts(state.item, state.day)
        w = self.windows.window(state.item, state.day, self.context_length)
        return {
            "past_units": w["units"],
            "past_observed": w["observed"],
            "past_discount": w["discount"],
            "past_promo": w["promo"],
            "past_day": w["day"],
        }

    def update_memory(
        self,
        memory: Memory,
        state: CampaignState,
        discount: torch.Tensor,
        units_sold: torch.Tensor,
        demand: torch.Tensor,
    ) -> Memory:
        """Drop the oldest period, append ``state``'s period with its sampled (full) demand."""
        newest = {
            "past_units": demand.to(torch.float32),
            "past_observed": torch.ones_like(demand, dtype=torch.bool),
            "past_discount": discount.to(torch.float32),
            # the period's expected promo flag (``discount > 0`` unless the forecaster has
            # the history's promotion rates by depth)
            "past_promo": promo_probability(self.forecaster, discount).to(torch.float32),
            "past_day": state.day.to(torch.long),
        }
        return {
            key: torch.cat([memory[key][:, 1:], newest[key].unsqueeze(1)], dim=1)
            for key in MEMORY_KEYS
        }

    def distribution(
        self, state: CampaignState, memory: Memory, discounts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        context = DemandContext(
            past_units=memory["past_units"],
            past_observed=memory["past_observed"],
            past_discount=memory["past_discount"],
            past_promo=memory["past_promo"],
            past_day=memory["past_day"],
            item=state.item,
            day=state.day,
        )
        with torch.no_grad():
            mean, dispersion = self.forecaster.one_step(context, discounts)
        return mean.to(torch.float64), dispersion.to(torch.float64)
