"""The one forecaster contract, shared by the transformer and every baseline.

Two faces:

* **Analyst face** (pandas, any horizon): ``fit(history) -> self``;
  ``predict(history, future, horizon, quantiles)`` -> a frame with one row per item and future
  period and the columns ``item_id, date, mean, q<quantile>...``; ``sample(...)`` -> sample
  paths (probabilistic models only); ``save(dir)`` / ``load(dir)``.
  ``future`` holds the known-future covariates of the forecast periods: one row per item and
  period with ``item_id, date, price`` and optionally ``list_price, promo``; the planned prices
  and promotions. ``list_price`` defaults to the item's last list price in the history; a
  price above the list price is a new regular price (discount 0), not a negative discount:
  the forecasters model discounts, not price increases. ``promo`` defaults to ``price <
  list_price``; the transformer, which learns how often the history promoted at each depth
  (``promo_rates``), uses the flag its history most often had at the row's depth instead, so
  a 1% price move is not read as a promotion where the history's were not.
* **Simulator face** (torch, one step, batched): :meth:`Forecaster.one_step` takes a
  :class:`DemandContext` of ``B`` contexts already on the device and a ladder of candidate
  discounts, and returns the negative-binomial demand distribution (mean, dispersion) for each
  context x candidate, with no pandas and no Python loop over items.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

import numpy as np
import pandas as pd
import torch

from promogym.data import SalesHistory
from promogym.errors import DataError, PromogymInputError

DEFAULT_QUANTILES = (0.1, 0.5, 0.9)


def check_quantiles(quantiles: Sequence[float]) -> tuple[float, ...]:
    """The quantile levels as floats; :class:`PromogymInputError` unless all are in (0, 1).

    >>> check_quantiles([0.1, 0.9])
    (0.1, 0.9)
    """
    try:
        if isinstance(quantiles, str | bytes):
            raise TypeError("a string")
        qs = tuple(float(q) for q in quantiles)
    except (TypeError, ValueError):
        qs = ()
    if not qs or any(not 0.0 < q < 1.0 for q in qs):  # NaN fails too
        raise PromogymInputError(
            f"quantiles must be a sequence of numbers in (0, 1), got {quantiles!r}; pass e.g. "
            "(0.1, 0.5, 0.9)"
        )
    return qs


def _whole(value: object, name: str, minimum: int) -> int:
    """``value`` as an int; :class:`PromogymInputError` unless a whole number >= ``minimum``."""
    try:
        ok = not isinstance(value, bool) and int(value) == value and value >= minimum  # type: ignore[call-overload, operator]
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise PromogymInputError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def check_horizon(horizon: int) -> int:
    """``horizon`` as an int; :class:`PromogymInputError` unless a whole number >= 1."""
    return _whole(horizon, "horizon", 1)


def check_n_samples(n_samples: int) -> int:
    """``n_samples`` as an int; :class:`PromogymInputError` unless a whole number >= 1."""
    return _whole(n_samples, "n_samples", 1)


def check_seed(seed: int) -> int:
    """``seed`` as an int; :class:`PromogymInputError` unless a whole number >= 0."""
    return _whole(seed, "seed", 0)


def check_history_columns(history: SalesHistory, columns: Sequence[str], name: str) -> None:
    """:class:`DataError` if ``history`` lacks one of the covariate ``columns`` the model
    ``name`` was fitted with."""
    absent = [c for c in columns if c not in history.frame.columns]
    if absent:
        raise DataError(
            f"{history.source}: no column {absent[0]!r}, a covariate {name} was fitted with; "
            "pass a history that has it"
        )


def check_one_row_per_period(future: pd.DataFrame, source: str) -> None:
    """:class:`DataError` naming the first item and date with two rows in ``future``
    (``item_id``, ``date`` as datetimes)."""
    dup = future.duplicated(["item_id", "date"])
    if dup.any():
        row = future[dup].iloc[0]
        raise DataError(
            f"{source}: item {row['item_id']!r} has two rows for {row['date'].date()}; "
            "give one row per item and forecast period"
        )


def check_frequency(history: SalesHistory, fitted: str | None, name: str) -> None:
    """:class:`DataError` if ``history`` is not at the frequency the model was fitted on."""
    if fitted is not None and history.freq != fitted:
        kind = {"D": "daily", "W": "weekly"}
        raise DataError(
            f"{history.source}: {kind.get(history.freq, history.freq)} data, but {name} was "
            f"fitted on {kind.get(fitted, fitted)} data; predict at the fitted frequency or refit"
        )


def candidate_discounts(discounts: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The candidate discounts of :meth:`Forecaster.one_step` as ``(B, A)``.

    ``discounts`` is ``(A,)`` (one ladder for every context) or ``(B, A)``; every entry must
    be a fraction in ``[0, 1)``. :class:`DataError` otherwise.

    >>> candidate_discounts(torch.tensor([0.0, 0.2]), 3).shape
    torch.Size([3, 2])
    """
    discounts = torch.as_tensor(discounts)
    if discounts.dim() == 1:
        discounts = discounts.unsqueeze(0).expand(batch_size, -1)
    if discounts.dim() != 2 or discounts.shape[0] != batch_size or discounts.shape[1] < 1:
        raise DataError(
            f"one_step: discounts must be (A,) or ({batch_size}, A) with A >= 1, got shape "
            f"{tuple(discounts.shape)}"
        )
    bad = ~((discounts >= 0) & (discounts < 1))  # NaN is bad too
    if bool(bad.any()):
        value = float(discounts[bad][0])
        raise DataError(
            f"one_step: discount {value!r} is not a fraction in [0, 1) (0.2 = 20% off the "
            "list price)"
        )
    return discounts


@dataclass(frozen=True)
class DemandContext:
    """``B`` one-step prediction contexts, as tensors on one device.

    ``C`` is the context length (periods of history the model looks at).
    """

    past_units: torch.Tensor  # (B, C) float32, units sold (any value where unobserved)
    past_observed: torch.Tensor  # (B, C) bool, False where demand was censored or missing
    past_discount: torch.Tensor  # (B, C) float32, 1 - price / list_price
    past_promo: torch.Tensor  # (B, C) float32, 0/1
    past_day: torch.Tensor  # (B, C) long, calendar day (days since 1970-01-01)
    item: torch.Tensor  # (B,) long, index into the forecaster's item vocabulary
    day: torch.Tensor  # (B,) long, calendar day of the period to predict

    @property
    def batch_size(self) -> int:
        return int(self.item.shape[0])

    @property
    def device(self) -> torch.device:
        return self.item.device


class Forecaster(abc.ABC):
    """Base class of every demand forecaster (see the module docstring for the contract)."""

    name: str = "forecaster"
    probabilistic: bool = False

    @abc.abstractmethod
    def fit(self, history: SalesHistory) -> Self:
        """Learn from ``history``; returns ``self``."""

    @abc.abstractmethod
    def predict(
        self,
        history: SalesHistory,
        future: pd.DataFrame,
        horizon: int,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
    ) -> pd.DataFrame:
        """Forecast ``horizon`` periods after the end of ``history`` for the items in ``future``.

        Returns columns ``item_id, date, mean`` and one ``q{q:g}`` column per quantile
        (e.g. ``q0.1``), one row per item and forecast period.
        """

    def sample(
        self,
        history: SalesHistory,
        future: pd.DataFrame,
        horizon: int,
        n_samples: int,
        seed: int = 0,
    ) -> np.ndarray:
        """Sample paths, shape ``(n_items, n_samples, horizon)`` in ``sorted(item_ids)`` order."""
        raise NotImplementedError(f"{self.name} is not probabilistic; it has no sample()")

    def one_step(
        self, context: DemandContext, discounts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Demand distribution for each context and candidate discount.

        Args:
            context: ``B`` contexts on any device (the transformer computes on its own
                and returns on the context's).
            discounts: ``(A,)`` or ``(B, A)`` candidate discounts for the predicted period,
                fractions in ``[0, 1)`` (checked by :func:`candidate_discounts`).

        Returns:
            ``(mean, dispersion)``, each ``(B, A)`` float64: negative-binomial parameters
            (variance ``mean + mean**2 / dispersion``).
        """
        raise NotImplementedError(f"{self.name} has no batched one-step simulator face")

    @abc.abstractmethod
    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write everything needed to reproduce predictions exactly into ``directory``."""

    @classmethod
    @abc.abstractmethod
    def load(cls, directory: str | os.PathLike[str]) -> Self:
        """Read a forecaster written by :meth:`save`."""


def promo_probability(forecaster: object, discount: torch.Tensor) -> torch.Tensor:
    """Probability (float64) that a simulated period at ``discount`` is a promotion, as
    ``forecaster`` simulates it: its ``promo_probability`` if it has one, else ``discount > 0``
    (the simulator's default rule)."""
    method = getattr(forecaster, "promo_probability", None)
    return method(discount) if method is not None else (discount > 0).to(torch.float64)
