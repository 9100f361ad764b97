"""Per-period covariates for the transformer forecaster, computed in torch (batched, no pandas).

Every feature of period ``t`` is known before its demand is seen: the planned price and
promotion, the calendar, and what happened in the periods before ``t``. The same function
builds the features of training windows, of ``predict`` and of the simulator's ``one_step``
(whose last period is a candidate discount), so the three cannot drift apart.

========= ==================================================================================
index     feature
========= ==================================================================================
0         discount depth ``d = 1 - price / list_price``
1         promo flag (0/1)
2         log relative price ``log(1 - d)``
3, 4      sin / cos of the day of the week (daily data; 0 for weekly data)
5, 6      sin / cos of the position in the year
7         age: position relative to the first forecast period, in context lengths
8         promo flag of the previous period
9         promo streak: consecutive promo periods just before ``t``, capped at
          :data:`STREAK_CAP`, divided by it (promotion fatigue)
10        previous period observed (0 when its demand was censored by a stock-out)
11        daily-data flag (1 daily, 0 weekly): one base model serves both frequencies
12...     extra known-future numeric covariates of the history (e.g. Dominick's ``feat``),
          as given; none for the shipped base, whose input weights for them start at zero
========= ==================================================================================
"""

from __future__ import annotations

import math

import torch

from promogym.response import BIN_EDGES

NUM_TIME_FEATURES = 12
STREAK_CAP = 6
_YEAR = 365.2425


def promo_run_length(promo: torch.Tensor) -> torch.Tensor:
    """Length of the run of promo periods ending at each period (inclusive), ``(N, T)`` long.

    >>> promo_run_length(torch.tensor([[1.0, 1.0, 0.0, 1.0]])).tolist()
    [[1, 2, 0, 1]]
    """
    on = promo > 0.5
    count = torch.cumsum(on.long(), dim=1)
    last_off = torch.cummax(torch.where(on, torch.zeros_like(count), count), dim=1).values
    return count - last_off


def calendar_features(day: torch.Tensor, daily: torch.Tensor) -> torch.Tensor:
    """Day-of-week and year-position sin/cos, ``day.shape + (4,)`` float32.

    ``day`` is days since 1970-01-01 (long); ``daily`` broadcasts against ``day`` (1.0 for
    daily data, 0.0 for weekly data, whose weekday is meaningless).
    """
    weekday = ((day + 3) % 7).to(torch.float32) * (2.0 * math.pi / 7.0)
    year = torch.remainder(day.to(torch.float64), _YEAR).to(torch.float32) * (2.0 * math.pi / _YEAR)
    daily = daily.to(torch.float32)
    return torch.stack(
        (
            torch.sin(weekday) * daily,
            torch.cos(weekday) * daily,
            torch.sin(year),
            torch.cos(year),
        ),
        dim=-1,
    )


def time_features(
    discount: torch.Tensor,
    promo: torch.Tensor,
    day: torch.Tensor,
    observed: torch.Tensor,
    daily: torch.Tensor,
    n_past: int,
    extra: torch.Tensor | None = None,
) -> torch.Tensor:
    """Features of every period of ``N`` windows, ``(N, T, NUM_TIME_FEATURES + X)`` float32.

    Args:
        discount: ``(N, T)`` discount depth in ``[0, 1)``.
        promo: ``(N, T)`` 0/1.
        day: ``(N, T)`` long calendar days.
        observed: ``(N, T)`` bool, False where demand was censored or missing.
        daily: ``(N,)`` 1.0 for daily series, 0.0 for weekly.
        n_past: periods of the window before the first forecast period (sets the age origin).
        extra: ``(N, T, X)`` extra numeric covariates appended as the last ``X`` features.
    """
    n, t = discount.shape
    discount = discount.to(torch.float32)
    promo = promo.to(torch.float32)
    zero = torch.zeros(n, 1, dtype=torch.float32, device=discount.device)
    one = torch.ones(n, 1, dtype=torch.float32, device=discount.device)
    prev_promo = torch.cat((zero, promo[:, :-1]), dim=1)
    run = promo_run_length(promo).clamp(max=STREAK_CAP).to(torch.float32) / STREAK_CAP
    streak = torch.cat((zero, run[:, :-1]), dim=1)
    prev_observed = torch.cat((one, observed[:, :-1].to(torch.float32)), dim=1)
    age = (torch.arange(t, device=discount.device, dtype=torch.float32) - n_past) / max(n_past, 1)
    daily = daily.to(torch.float32).reshape(n, 1)
    if extra is None:
        extra = torch.zeros(n, t, 0, dtype=torch.float32, device=discount.device)
    return torch.cat(
        (
            discount.unsqueeze(-1),
            promo.unsqueeze(-1),
            torch.log1p(-discount.clamp(max=0.99)).unsqueeze(-1),
            calendar_features(day, daily),
            age.expand(n, t).unsqueeze(-1),
            prev_promo.unsqueeze(-1),
            streak.unsqueeze(-1),
            prev_observed.unsqueeze(-1),
            daily.expand(n, t).unsqueeze(-1),
            extra.to(torch.float32),
        ),
        dim=-1,
    )


def next_period_features(
    past_promo: torch.Tensor,
    past_observed: torch.Tensor,
    day: torch.Tensor,
    discounts: torch.Tensor,
    daily: torch.Tensor,
    extra: torch.Tensor | None = None,
    promo: torch.Tensor | None = None,
) -> torch.Tensor:
    """Features of the period right after ``N`` windows, one row per candidate discount.

    Equal to the last row of :func:`time_features` over the window extended by that period,
    without recomputing the past: ``(N, A, F)`` float32. The period's promo flag is ``promo``
    (``(N, A)``, e.g. the recorded flag of a validation period) or, by default, ``discount >
    0`` (the simulator's rule: a discount is a sale).

    Args:
        past_promo: ``(N, C)`` promo flags of the window.
        past_observed: ``(N, C)`` bool.
        day: ``(N,)`` calendar day of the predicted period.
        discounts: ``(N, A)`` candidate discounts.
        daily: ``(N,)`` daily flag.
        extra: ``(N, X)`` extra covariates of the predicted period (none if ``None``).
        promo: ``(N, A)`` promo flags of the predicted period (``None``: ``discount > 0``).
    """
    n, a = discounts.shape
    if extra is None:
        extra = torch.zeros(n, 0, dtype=torch.float32, device=day.device)
    discounts = discounts.to(torch.float32)
    promo = (discounts > 0 if promo is None else promo > 0.5).to(torch.float32)
    run = promo_run_length(past_promo)[:, -1].clamp(max=STREAK_CAP).to(torch.float32)
    per_item = torch.cat(
        (
            calendar_features(day, daily.to(torch.float32)),
            torch.zeros(
                n, 1, dtype=torch.float32, device=day.device
            ),  # age of the first forecast period
            (past_promo[:, -1:] > 0.5).to(torch.float32),
            (run / STREAK_CAP).unsqueeze(-1),
            past_observed[:, -1:].to(torch.float32),
            daily.to(torch.float32).reshape(n, 1),
            extra.to(torch.float32),
        ),
        dim=-1,
    )
    per_candidate = torch.stack((discounts, promo, torch.log1p(-discounts.clamp(max=0.99))), dim=-1)
    return torch.cat((per_candidate, per_item.unsqueeze(1).expand(n, a, -1)), dim=-1)


# ---- how often a discount was a promotion ------------------------------------------------------
PROMO_RATE_PRIOR = 5.0
"""Pseudo-periods of the default rule (``discount > 0`` is a promotion) in every depth bin of
:func:`fit_promo_rates`, so a depth the history rarely reached keeps close to the rule."""


def promo_rate_bins(discount: torch.Tensor) -> torch.Tensor:
    """Depth bin of each discount for :func:`fit_promo_rates` (long, same shape): 0 for no
    discount, then ``1 + k`` for bin ``k`` of :data:`promogym.response.BINS` (0-5%, 5-15%, ...,
    45%+). Rounded to 6 decimals first (a float32 35% is 0.34999999)."""
    d = torch.round(discount.to(torch.float64) * 1e6) / 1e6
    edges = torch.tensor(BIN_EDGES, dtype=torch.float64, device=d.device)
    k = torch.bucketize(d, edges, right=True) + 1
    return torch.where(discount > 0, k, torch.zeros_like(k))  # any discount, as the rule


def default_promo_rates() -> list[float]:
    """The default rule as rates: no promotion without a discount, always one with."""
    return [0.0] + [1.0] * (len(BIN_EDGES) + 1)


def fit_promo_rates(discount: torch.Tensor, promo: torch.Tensor) -> list[float]:
    """Share of periods that were promotions in each depth bin (:func:`promo_rate_bins`) of
    the given periods (any shape), shrunk to the default rule by :data:`PROMO_RATE_PRIOR`.

    A history whose promotions are exactly its discounts gets the rule back, exactly:

    >>> fit_promo_rates(torch.tensor([0.0, 0.2, 0.2, 0.4]), torch.tensor([0.0, 1.0, 1.0, 1.0]))
    [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    >>> fit_promo_rates(torch.tensor([0.0] * 5), torch.tensor([1.0] * 5))[0]
    0.5
    """
    bins = promo_rate_bins(discount).reshape(-1)
    prior = torch.tensor(default_promo_rates(), dtype=torch.float64, device=bins.device)
    n = torch.bincount(bins, minlength=len(prior)).to(torch.float64)
    k = torch.bincount(
        bins, weights=(promo.reshape(-1) > 0.5).to(torch.float64), minlength=len(prior)
    )
    return ((k + PROMO_RATE_PRIOR * prior) / (n + PROMO_RATE_PRIOR)).tolist()
