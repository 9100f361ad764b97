"""The reference market: a known, parametric demand model used as ground truth.

Mean demand of item ``i`` in a period with calendar day ``day`` at discount ``d``::

    mu = base_demand[i] * season(i, day) * (1 - d) ** -elasticity[i] * promo(i, d > 0, streak)

    season(i, day) = dow_profile[i, weekday(day)] * (1 + yearly_amplitude[i] *
                     cos(2 pi (day_of_year(day) - yearly_peak[i]) / 365.25))   (daily data)
                   = 1 + yearly_amplitude[i] * cos(...)                          (weekly data)
    promo(on sale, streak)  = 1 + urgency[i] * urgency_decay[i] ** streak  (flash-sale urgency
                              that fades as sale periods repeat)
    promo(no sale, streak>0) = 1 - dip[i]   (post-promotion dip: customers stocked up)
    promo(no sale, 0)        = 1

``streak`` is the number of consecutive sale periods just before this one, capped at
:data:`MAX_STREAK`; it is the market's only memory ("promotion fatigue"). Demand is negative
binomial with mean ``mu`` and dispersion ``dispersion[i]``; sales are capped by stock and the
unmet demand is lost.

Calendar days are integers: days since 1970-01-01 (``numpy.datetime64(date, "D").astype(int)``).

>>> m = default_market()
>>> len(m.item_ids), m.item_ids[0]
(8, 'sku-0')
>>> import torch
>>> mu0 = m.mean_demand(torch.tensor([0]), torch.tensor([20423]), torch.tensor([0.0]),
...                     torch.tensor([0]))
>>> mu1 = m.mean_demand(torch.tensor([0]), torch.tensor([20423]), torch.tensor([0.3]),
...                     torch.tensor([0]))
>>> bool(mu1 > mu0)
True
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from promogym.distributions import negative_binomial_pmf, sample_negative_binomial

if TYPE_CHECKING:
    import pandas as pd

_EPOCH = dt.date(1970, 1, 1)

MAX_STREAK = 6
"""Consecutive sale periods remembered by the market; longer streaks behave like this many."""

Frequency = Literal["D", "W"]


def day_number(date: dt.date | np.datetime64 | str) -> int:
    """Calendar day as the market counts it: days since 1970-01-01.

    Takes a date, a datetime or ``pandas.Timestamp`` (its date), a ``numpy.datetime64`` or an
    ISO date string.

    >>> day_number(dt.date(2026, 12, 1))
    20788
    """
    return int(np.datetime64(date, "D").astype(np.int64))


def day_date(day: int) -> dt.date:
    """The date of calendar day ``day`` (days since 1970-01-01); inverse of :func:`day_number`.

    >>> day_date(20788)
    datetime.date(2026, 12, 1)
    >>> day_date(day_number("2025-03-01")).isoformat()
    '2025-03-01'
    """
    return _EPOCH + dt.timedelta(days=int(day))


def day_numbers(dates: pd.Series | pd.Index | np.ndarray) -> np.ndarray:
    """Vectorised :func:`day_number`: int64 days since 1970-01-01 of each date (time dropped).

    >>> import pandas as pd
    >>> day_numbers(pd.Series(pd.to_datetime(["1970-01-02 00:00", "2026-12-01 13:00"])))
    array([    1, 20788])
    """
    return np.asarray(dates).astype("datetime64[D]").astype(np.int64)


def weekday(day: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Monday = 0 .. Sunday = 6 for integer days since 1970-01-01 (a Thursday)."""
    return (day + 3) % 7


def day_of_year(day: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Approximate day of the year (0-based, fractional drift < 1 day over decades)."""
    return day % 365.2425


@dataclass(frozen=True)
class MarketParams:
    """Per-item parameters of the reference market; every array has one row per item."""

    item_ids: tuple[str, ...]
    base_demand: np.ndarray  # (I,) mean units per period at the regular price, season 1
    elasticity: np.ndarray  # (I,) constant price elasticity (> 0): (1 - d) ** -elasticity
    dow_profile: np.ndarray  # (I, 7) weekday multipliers, mean 1 (daily data only)
    yearly_amplitude: np.ndarray  # (I,) in [0, 1)
    yearly_peak: np.ndarray  # (I,) day of year of the yearly peak
    urgency: np.ndarray  # (I,) extra lift on the first sale period of a streak
    urgency_decay: np.ndarray  # (I,) lift multiplier per extra consecutive sale period
    dip: np.ndarray  # (I,) fraction of demand lost in the period after a sale
    dispersion: np.ndarray  # (I,) negative-binomial dispersion r (variance mu + mu^2/r)
    list_price: np.ndarray  # (I,) regular price
    unit_cost: np.ndarray  # (I,) purchase cost per unit

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def to_json(self) -> str:
        data = {
            k: (v.tolist() if isinstance(v, np.ndarray) else list(v))
            for k, v in dataclasses.asdict(self).items()
        }
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> MarketParams:
        data = json.loads(text)
        return cls(
            item_ids=tuple(data.pop("item_ids")),
            **{k: np.asarray(v, dtype=np.float64) for k, v in data.items()},
        )

    def subset(self, items: list[int]) -> MarketParams:
        """The market restricted to the given item rows, in that order."""
        idx = np.asarray(items)
        return MarketParams(
            item_ids=tuple(self.item_ids[i] for i in items),
            **{
                f.name: getattr(self, f.name)[idx]
                for f in dataclasses.fields(self)
                if f.name != "item_ids"
            },
        )


def random_market_params(
    n_items: int,
    rng: np.random.Generator,
    *,
    level: tuple[float, float] = (6.0, 16.0),
    elasticity: tuple[float, float] = (1.5, 3.0),
    weekly_strength: tuple[float, float] = (0.05, 0.35),
    yearly_amplitude: tuple[float, float] = (0.0, 0.25),
    urgency: tuple[float, float] = (0.3, 1.2),
    urgency_decay: tuple[float, float] = (0.3, 0.7),
    dip: tuple[float, float] = (0.05, 0.3),
    dispersion: tuple[float, float] = (3.0, 20.0),
    list_price: tuple[float, float] = (20.0, 20.0),
    cost_ratio: tuple[float, float] = (0.45, 0.45),
    prefix: str = "sku-",
) -> MarketParams:
    """Draw ``n_items`` items with parameters uniform in the given ranges.

    Defaults describe the demo shop; the forecaster's pre-training corpus passes wider ranges.
    ``level`` is log-uniform. Weekday profiles rise towards the weekend with item-specific
    strength and noise, normalised to mean 1.
    """

    def uni(bounds: tuple[float, float], size: int | tuple[int, ...] = n_items) -> np.ndarray:
        return rng.uniform(bounds[0], bounds[1], size=size)

    base = np.exp(uni((math.log(level[0]), math.log(level[1]))))
    strength = uni(weekly_strength)
    weekend_shape = np.array([-0.6, -0.5, -0.3, 0.0, 0.5, 1.0, 0.6])
    profile = 1.0 + strength[:, None] * (
        weekend_shape[None, :] + rng.normal(0.0, 0.3, size=(n_items, 7))
    )
    profile = np.clip(profile, 0.2, None)
    profile = profile / profile.mean(axis=1, keepdims=True)
    price = uni(list_price)
    return MarketParams(
        item_ids=tuple(f"{prefix}{i}" for i in range(n_items)),
        base_demand=base,
        elasticity=uni(elasticity),
        dow_profile=profile,
        yearly_amplitude=uni(yearly_amplitude),
        yearly_peak=uni((0.0, 365.0)),
        urgency=uni(urgency),
        urgency_decay=uni(urgency_decay),
        dip=uni(dip),
        dispersion=uni(dispersion),
        list_price=np.round(price, 2),
        unit_cost=np.round(price * uni(cost_ratio), 2),
    )


def default_market(n_items: int = 8, seed: int = 0) -> ReferenceMarket:
    """The demo shop: ``n_items`` daily items drawn by :func:`random_market_params`."""
    return ReferenceMarket(random_market_params(n_items, np.random.default_rng(seed)), freq="D")


class ReferenceMarket:
    """Vectorised ground-truth demand over a batch of (item, day, discount, streak) tuples.

    All methods take equally-shaped tensors (or broadcastable) and work on any device;
    parameters are moved to the device of the inputs on first use.
    """

    def __init__(self, params: MarketParams, freq: Frequency = "D") -> None:
        if freq not in ("D", "W"):
            raise ValueError(f"freq must be 'D' or 'W', got {freq!r}")
        self.params = params
        self.freq: Frequency = freq
        self._cache: dict[torch.device, dict[str, torch.Tensor]] = {}

    @property
    def item_ids(self) -> tuple[str, ...]:
        return self.params.item_ids

    def item_index(self, item_id: str) -> int:
        try:
            return self.params.item_ids.index(item_id)
        except ValueError:
            raise KeyError(f"unknown item {item_id!r}; known: {list(self.item_ids)}") from None

    def _tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        if device not in self._cache:
            self._cache[device] = {
                f.name: torch.as_tensor(getattr(self.params, f.name), dtype=torch.float64).to(
                    device
                )
                for f in dataclasses.fields(self.params)
                if f.name != "item_ids"
            }
        return self._cache[device]

    def season(self, item: torch.Tensor, day: torch.Tensor) -> torch.Tensor:
        """Seasonal multiplier for items ``item`` on calendar days ``day``."""
        p = self._tensors(item.device)
        yearly = 1.0 + p["yearly_amplitude"][item] * torch.cos(
            2.0 * math.pi * (day_of_year(day.to(torch.float64)) - p["yearly_peak"][item]) / 365.25
        )
        if self.freq == "W":
            return yearly
        return p["dow_profile"][item, weekday(day.long())] * yearly

    def promo_multiplier(
        self, item: torch.Tensor, on_sale: torch.Tensor, streak: torch.Tensor
    ) -> torch.Tensor:
        """Urgency lift on sale (fading with ``streak``), post-promotion dip after a sale."""
        p = self._tensors(item.device)
        streak = streak.clamp(0, MAX_STREAK).to(torch.float64)
        lift = 1.0 + p["urgency"][item] * p["urgency_decay"][item] ** streak
        after = torch.where(streak > 0, 1.0 - p["dip"][item], torch.ones_like(streak))
        return torch.where(on_sale, lift, after)

    def mean_demand(
        self,
        item: torch.Tensor,
        day: torch.Tensor,
        discount: torch.Tensor,
        streak: torch.Tensor,
    ) -> torch.Tensor:
        """Expected demand (float64) for each (item, day, discount, streak)."""
        p = self._tensors(item.device)
        discount = discount.to(torch.float64)
        price_effect = (1.0 - discount) ** (-p["elasticity"][item])
        promo = self.promo_multiplier(item, discount > 0, streak)
        return p["base_demand"][item] * self.season(item, day) * price_effect * promo

    def dispersion(self, item: torch.Tensor) -> torch.Tensor:
        return self._tensors(item.device)["dispersion"][item]

    def sample(
        self,
        item: torch.Tensor,
        day: torch.Tensor,
        discount: torch.Tensor,
        streak: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One negative-binomial demand draw per element (float64 counts)."""
        mu = self.mean_demand(item, day, discount, streak)
        return sample_negative_binomial(mu, self.dispersion(item), generator)

    def pmf(
        self,
        item: torch.Tensor,
        day: torch.Tensor,
        discount: torch.Tensor,
        streak: torch.Tensor,
        support: int,
    ) -> torch.Tensor:
        """P(demand = k), k < ``support``, shape ``(..., support)`` (float64)."""
        mu = self.mean_demand(item, day, discount, streak)
        return negative_binomial_pmf(mu, self.dispersion(item), support)


def next_streak(streak: torch.Tensor, on_sale: torch.Tensor) -> torch.Tensor:
    """Fatigue transition: +1 (capped at :data:`MAX_STREAK`) on sale, reset to 0 otherwise."""
    return torch.where(on_sale, (streak + 1).clamp(max=MAX_STREAK), torch.zeros_like(streak))
