"""FlashSale: when to run a flash sale, how deep to discount and how much stock to order.

:class:`CampaignBatch` is the simulator core: ``N`` campaigns as one explicit
:class:`~promogym.envs.core.CampaignState` plus the demand model's memory, advanced by the
batched :func:`~promogym.envs.core.transition` with **one** demand-model call per period for
all ``N``. :class:`FlashSaleEnv` (``gymnasium.Env``, registered as ``promogym/FlashSale-v0``)
and :class:`~promogym.envs.vec_env.FlashSaleVecEnv` (SB3 ``VecEnv``) are thin adapters over it.

Randomness is per campaign row: row ``i`` draws its uniforms from a counter-based stream
(SplitMix64 of ``key[i] + counter[i] * golden``), so a row's demand and start draws do not
depend on how many other rows share the batch. That is what makes the batched env equal to
``N`` single envs step for step; demand is the negative-binomial inverse CDF of the row's
uniform (:func:`~promogym.distributions.negative_binomial_icdf`, the same draws as
:func:`promogym.envs.rollout.simulate` makes from the same uniform).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium import spaces

from promogym.config import CampaignConfig
from promogym.data import SalesHistory
from promogym.distributions import negative_binomial_icdf
from promogym.envs import FLASH_SALE_ID
from promogym.envs.core import (
    CampaignParams,
    CampaignState,
    action_masks,
    initial_state,
    repair_actions,
    transition,
)
from promogym.envs.demand import DemandModel, MarketDemand, Memory
from promogym.envs.forecaster_demand import (
    HistoryWindows,
    sale_threshold,
    trailing_sale_streak,
    units_or_typical,
)
from promogym.envs.market import MAX_STREAK, day_date, day_number, default_market, weekday
from promogym.errors import PromogymInputError

ENV_ID = FLASH_SALE_ID

DEFAULT_START_DAYS = (20089, 20089 + 365)
"""Start days drawn when there is no history: the year 2025 (days since 1970-01-01)."""

FEATURE_CLIP = 10.0
"""Upper bound of features normalised by an item's typical demand (10x typical is rare)."""

OPTION_KEYS = ("item", "day", "on_hand", "pipeline", "t", "streak", "sale_used")

INFO_KEYS = (
    "profit",
    "revenue",
    "units_sold",
    "lost_units",
    "holding_cost",
    "order_cost",
    "salvage",
    "order_quantity",
    "discount",
    "demand",
)


def _economics_argument(
    key: str,
    value: float | Sequence[float] | np.ndarray | None,
    ids: Sequence[str],
    history: SalesHistory | None,
) -> tuple[float | None, np.ndarray | None]:
    """A ``list_price`` / ``unit_cost`` argument as (scalar, per item): one number, one per
    item of ``ids``, or (``None``) each item's latest value in ``history``."""
    if value is None:
        return None, None if history is None else history.latest(key, ids)
    if np.ndim(value) == 0:
        return float(value), None  # type: ignore[arg-type]
    per_item = np.asarray(value, dtype=np.float64)
    if per_item.shape != (len(ids),):
        raise PromogymInputError(
            f"{key}: {per_item.size} values for {len(ids)} items; give one number, or one per "
            "item of item_ids"
        )
    return None, per_item


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as given.

    An unknown device name, or CUDA on a machine without it, is a :class:`PromogymInputError`.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise PromogymInputError(f"--device {device!r}: use cpu, cuda or auto") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise PromogymInputError(
            f"--device {device!r}: CUDA is not available here; use cpu or auto"
        )
    return resolved


# ---- per-row counter-based random numbers ----------------------------------------------------
def _signed(value: int) -> int:
    return value - (1 << 64) if value >= (1 << 63) else value


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 (torch shifts arithmetically)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def counter_uniforms(key: torch.Tensor, counter: torch.Tensor, k: int) -> torch.Tensor:
    """Uniforms in [0, 1), ``(N, k)`` float64: SplitMix64 of ``key + (counter + j) * golden``.

    int64 products wrap around modulo 2**64, which is what SplitMix64 needs.
    """
    steps = counter.unsqueeze(1) + torch.arange(k, device=key.device).unsqueeze(0)
    z = key.unsqueeze(1) + steps * _GOLDEN
    z = (z ^ _shift_right(z, 30)) * _MIX1
    z = (z ^ _shift_right(z, 27)) * _MIX2
    z = z ^ _shift_right(z, 31)
    return _shift_right(z, 11).to(torch.float64) * 2.0**-53


def key_from_seed(seed: int) -> int:
    """Row key for ``seed``, drawn like ``gymnasium.Env.reset(seed=seed)`` seeds ``np_random``."""
    rng, _ = gymnasium.utils.seeding.np_random(seed)
    return key_from_rng(rng)


def key_from_rng(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**63 - 1))


# ---- observation layout -----------------------------------------------------------------------
def observation_layout(
    pipeline_slots: int, recent_periods: int, n_discounts: int, expected_demand: bool
) -> list[tuple[str, float, float]]:
    """``(name, min, max)`` of each observation entry, in order."""
    rows: list[tuple[str, float, float]] = [("on_hand", 0.0, 1.0)]
    rows += [(f"pipeline_{k + 1}", 0.0, 1.0) for k in range(pipeline_slots)]
    rows += [
        ("periods_left", 0.0, 1.0),
        ("weekday_sin", -1.0, 1.0),
        ("weekday_cos", -1.0, 1.0),
        ("year_sin", -1.0, 1.0),
        ("year_cos", -1.0, 1.0),
    ]
    rows += [(f"sales_lag_{k + 1}", 0.0, FEATURE_CLIP) for k in range(recent_periods)]
    rows += [(f"discount_lag_{k + 1}", 0.0, 1.0) for k in range(recent_periods)]
    rows += [("sale_budget_left", 0.0, 1.0), ("streak", 0.0, 1.0), ("demand_level", 0.0, 1.0)]
    if expected_demand:
        rows += [(f"expected_demand_{j}", 0.0, FEATURE_CLIP) for j in range(n_discounts)]
    return rows


@dataclass
class StepResult:
    """What one batched period produced (tensors with leading dimension ``N``)."""

    profit: torch.Tensor  # float64, currency
    reward: torch.Tensor  # float64, profit / reward_scale
    done: torch.Tensor  # bool, the period was the campaign's last
    repaired: torch.Tensor  # bool, the requested action was infeasible and was replaced
    discount_idx: torch.Tensor  # long, applied
    order_idx: torch.Tensor  # long, applied
    info: dict[str, torch.Tensor]


def _model_item_ids(demand_model: DemandModel) -> tuple[str, ...] | None:
    ids = getattr(demand_model, "item_ids", None)
    if ids is None:
        ids = getattr(getattr(demand_model, "market", None), "item_ids", None)
    return tuple(ids) if ids is not None else None


def _to_day(value: Any, key: str, source: str = "reset options") -> int:
    if isinstance(value, bool):
        raise PromogymInputError(f"{source}: {key} must be a date, got {value!r}")
    if isinstance(value, int | np.integer):
        if not _FIRST_DAY <= value <= _LAST_DAY:
            raise PromogymInputError(
                f"{source}: {key} = {value} days since 1970-01-01 is not a date between "
                "0001-01-01 and 9999-12-31"
            )
        return int(value)
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return day_number(value)
    if isinstance(value, str):
        try:
            return day_number(dt.date.fromisoformat(value))
        except ValueError:
            pass
    raise PromogymInputError(
        f"{source}: {key} must be an ISO date like '2026-12-01' or days since "
        f"1970-01-01, got {value!r}"
    )


_FIRST_DAY = day_number(dt.date.min)
_LAST_DAY = day_number(dt.date.max)


def _to_int(value: Any, key: str, low: int, high: int) -> int:
    ok = isinstance(value, int | np.integer | float | np.floating) and not isinstance(value, bool)
    if ok and float(value).is_integer() and low <= value <= high:
        return int(value)
    raise PromogymInputError(
        f"reset options: {key} must be an integer in [{low}, {high}], got {value!r}"
    )


class CampaignBatch:
    """``N`` FlashSale campaigns advanced together (the core both adapters share).

    Args:
        demand_model: where demand comes from (default: ``MarketDemand(default_market())``).
        config: the campaign (default :class:`~promogym.config.CampaignConfig`).
        n_envs: number of campaigns ``N``.
        history: sales history for start windows (default ``demand_model.history`` if the
            model has one). With a history, a reset draws an item with enough history and a
            start period in it; without one, a random item and a day in ``start_days``.
        item_ids: the demand model's item vocabulary (default: taken from the model).
        list_price: when ``config.economics.list_price`` is unset: one price for every item,
            or one per item of ``item_ids`` (default: each item's latest list price in the
            history, :meth:`~promogym.data.SalesHistory.latest`).
        unit_cost: the same for ``config.economics.unit_cost``.
        start_days: ``(first, last)`` calendar days (ints or ISO dates, inclusive) for starts
            without a history (default the year 2025).
        period_days: calendar days per period (default: the history's, else the market's).
        min_context: periods of history a random start needs before it (default: the demand
            model's ``context_length``, at least ``MAX_STREAK``).
        first_start: with a history, the earliest calendar day (int or ISO date) a random
            start may fall on, e.g. the first day after a training cut-off for held-out
            evaluation (default: any day with ``min_context`` periods before it).
        typical: each item's typical demand per period (``item_ids`` order, > 0), which
            scales the observation's sales features and the reward (default: the item's mean
            in the history, else the demand model's); e.g. the training history's, to
            evaluate a policy on the inputs it was trained with.
        recent_periods: lags of sales and discounts in the observation.
        expected_demand_obs: add the model's expected demand at each ladder discount.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
    """

    def __init__(
        self,
        demand_model: DemandModel | None = None,
        config: CampaignConfig | None = None,
        *,
        n_envs: int = 1,
        history: SalesHistory | None = None,
        item_ids: Sequence[str] | None = None,
        list_price: float | Sequence[float] | np.ndarray | None = None,
        unit_cost: float | Sequence[float] | np.ndarray | None = None,
        start_days: tuple[int | str, int | str] | None = None,
        period_days: int | None = None,
        min_context: int | None = None,
        first_start: int | str | None = None,
        typical: Sequence[float] | np.ndarray | None = None,
        recent_periods: int = 7,
        expected_demand_obs: bool = False,
        device: str | torch.device = "auto",
    ) -> None:
        if n_envs < 1:
            raise PromogymInputError(f"n_envs must be >= 1, got {n_envs}")
        if recent_periods < 1:
            raise PromogymInputError(f"recent_periods must be >= 1, got {recent_periods}")
        self.device = resolve_device(device)
        self.config = config if config is not None else CampaignConfig()
        self.demand_model = (
            demand_model if demand_model is not None else MarketDemand(default_market())
        )
        self.n_envs = n_envs
        self.recent_periods = recent_periods
        self.expected_demand_obs = expected_demand_obs
        if history is None:
            history = getattr(self.demand_model, "history", None)
        self.history = history
        ids = tuple(item_ids) if item_ids is not None else _model_item_ids(self.demand_model)
        if ids is None:
            if history is None:
                raise PromogymInputError(
                    "cannot tell the demand model's items: pass item_ids=[...] or a history"
                )
            ids = tuple(history.item_ids)
        self.item_ids = ids
        if period_days is None:
            if history is not None:
                period_days = history.period_days
            else:
                freq = getattr(getattr(self.demand_model, "market", None), "freq", "D")
                period_days = 7 if freq == "W" else 1
        if period_days not in (1, 7) or isinstance(period_days, bool):
            raise PromogymInputError(
                f"FlashSale: period_days must be 1 (daily) or 7 (weekly), got {period_days!r}"
            )
        self.period_days = int(period_days)

        self.windows: HistoryWindows | None = None
        if history is not None:
            self.windows = HistoryWindows(history, ids)
        prices = _economics_argument("list_price", list_price, ids, history)
        costs = _economics_argument("unit_cost", unit_cost, ids, history)
        self.params = CampaignParams.from_config(
            self.config,
            list_price=prices[0],
            unit_cost=costs[0],
            item_list_price=prices[1],
            item_unit_cost=costs[1],
            item_ids=ids,
            period_days=self.period_days,
            device=self.device,
        )
        self._init_starts(start_days, min_context, first_start)
        self.typical = torch.as_tensor(
            self._typical_levels(typical), dtype=torch.float64, device=self.device
        )
        self.layout = observation_layout(
            self.params.pipeline_slots, recent_periods, self.params.n_discounts, expected_demand_obs
        )
        self.obs_low = np.array([row[1] for row in self.layout], dtype=np.float32)
        self.obs_high = np.array([row[2] for row in self.layout], dtype=np.float32)

        n, dev = n_envs, self.device
        self.key = torch.zeros(n, dtype=torch.long, device=dev)
        self.counter = torch.zeros(n, dtype=torch.long, device=dev)
        self.state: CampaignState | None = None
        self.memory: Memory = {}
        self.recent_units = torch.zeros(n, recent_periods, dtype=torch.float64, device=dev)
        self.recent_discount = torch.zeros_like(self.recent_units)
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    # ---- set-up ----------------------------------------------------------------------------
    def _init_starts(
        self,
        start_days: tuple[int | str, int | str] | None,
        min_context: int | None,
        first_start: int | str | None,
    ) -> None:
        n_items = len(self.item_ids)
        if self.windows is not None:
            if min_context is None:
                min_context = int(getattr(self.demand_model, "context_length", 1))
            need = max(min_context, MAX_STREAK)
            lo, hi = self.windows.start_range(need)
            after = ""
            if first_start is not None:
                day = _to_day(first_start, "first_start", "FlashSale")
                w = self.windows
                earliest = -(-(day - w.first_day) // w.period_days)  # ceil: first grid period
                lo = np.where(lo >= 0, np.maximum(lo, earliest), -1)
                ok = (lo >= 0) & (lo <= hi)
                lo, hi = np.where(ok, lo, -1), np.where(ok, hi, -1)
                after = f" on or after {day_date(day).isoformat()}"
            valid = np.flatnonzero(lo >= 0)
            if valid.size == 0:
                raise PromogymInputError(
                    f"{self.windows.history.source}: no item has {need} periods of history "
                    f"before a start{after}; use a longer history or a shorter context"
                )
            self._start_items = torch.as_tensor(valid, device=self.device)
            self._start_lo = torch.as_tensor(lo, device=self.device)
            self._start_hi = torch.as_tensor(hi, device=self.device)
        else:
            first, last = start_days if start_days is not None else DEFAULT_START_DAYS
            first = _to_day(first, "start_days[0]", "FlashSale")
            last = _to_day(last, "start_days[1]", "FlashSale")
            if last < first:
                raise PromogymInputError(f"start_days must be (first, last), got {start_days}")
            self._start_items = torch.arange(n_items, device=self.device)
            periods = (last - first) // self.period_days
            self._start_lo = torch.full((n_items,), first, device=self.device)
            self._start_hi = torch.full(
                (n_items,), first + periods * self.period_days, device=self.device
            )

    def _typical_levels(self, given: Sequence[float] | np.ndarray | None) -> np.ndarray:
        """Typical demand per item: ``given``, else the history's mean, else the model's
        over 4 weeks."""
        if given is not None:
            level = np.asarray(given, dtype=np.float64).reshape(-1)
            if level.shape != (len(self.item_ids),) or not np.all(np.isfinite(level) & (level > 0)):
                raise PromogymInputError(
                    f"FlashSale: typical must hold one positive number per item "
                    f"({len(self.item_ids)}), got {np.asarray(given).tolist()}"
                )
            return level
        if self.windows is not None:
            return self.windows.typical_level
        n_items, span = len(self.item_ids), 28
        item = torch.arange(n_items, device=self.device).repeat_interleave(span)
        periods = torch.arange(span, device=self.device).repeat(n_items)
        state = initial_state(self.params, item, self._start_lo[item] + periods * self.period_days)
        memory = self.demand_model.initial_memory(state)
        mean, _ = self.demand_model.distribution(state, memory, self.params.discounts[:1])
        level = mean[:, 0].reshape(n_items, span).mean(dim=1).cpu().numpy()
        return np.maximum(level, 0.1)

    @property
    def reward_scale(self) -> torch.Tensor:
        """Per campaign: list price x the item's typical demand per period (currency)."""
        assert self.state is not None
        return self.params.price_of(self.state.item) * self.typical[self.state.item]

    # ---- randomness ------------------------------------------------------------------------
    def set_keys(self, rows: Sequence[int], keys: Sequence[int]) -> None:
        """Re-seed rows: key ``keys[j]`` for row ``rows[j]``, counters back to zero."""
        idx = torch.as_tensor(list(rows), dtype=torch.long, device=self.device)
        self.key[idx] = torch.as_tensor([_signed(k % (1 << 64)) for k in keys], device=self.device)
        self.counter[idx] = 0

    def _draw(self, rows: torch.Tensor, k: int) -> torch.Tensor:
        u = counter_uniforms(self.key[rows], self.counter[rows], k)
        self.counter[rows] += k
        return u

    # ---- reset -----------------------------------------------------------------------------
    def reset(
        self,
        rows: Sequence[int] | None = None,
        options: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[dict[str, Any]]:
        """Start new campaigns in ``rows`` (default all); returns one info dict per row.

        ``options[j]`` (may be ``None``) fixes parts of row ``rows[j]``'s start state: keys
        ``item`` (index or id), ``day`` (ISO date or day number), ``on_hand``, ``pipeline``
        (``max(lead_time, 1)`` values, next arrival first), ``t``, ``streak``, ``sale_used``.
        """
        rows = list(range(self.n_envs)) if rows is None else [int(r) for r in rows]
        if self.state is None and sorted(rows) != list(range(self.n_envs)):
            raise PromogymInputError("the first reset must start every campaign")
        options = [None] * len(rows) if options is None else list(options)
        if len(options) != len(rows):
            raise PromogymInputError(f"got {len(options)} options for {len(rows)} rows")
        idx = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        u = self._draw(idx, 2)
        parsed = [self._parse_options(opt) for opt in options]
        given = [j for j, p in enumerate(parsed) if p]

        def override(name: str, drawn: torch.Tensor) -> torch.Tensor:
            rows_with = [j for j in given if name in parsed[j]]
            if not rows_with:
                return drawn
            out = drawn.clone()
            out[rows_with] = torch.tensor(
                [parsed[j][name] for j in rows_with], dtype=drawn.dtype, device=self.device
            )
            return out

        pick = (u[:, 0] * len(self._start_items)).long().clamp(max=len(self._start_items) - 1)
        item = override("item", self._start_items[pick])
        lo, hi = self._start_lo[item], self._start_hi[item]
        for j in given:
            if "day" not in parsed[j] and int(lo[j]) < 0:
                raise PromogymInputError(
                    f"reset options: item {self.item_ids[int(item[j])]!r} has too little "
                    "history for a random start; also give options['day']"
                )
        if self.windows is not None:
            n_periods = hi - lo + 1
            offset = (u[:, 1] * n_periods).long().clamp(max=n_periods - 1)
            day = self.windows.first_day + (lo + offset) * self.period_days
        else:
            n_periods = (hi - lo) // self.period_days + 1
            offset = (u[:, 1] * n_periods).long().clamp(max=n_periods - 1)
            day = lo + offset * self.period_days
        day = override("day", day)

        if self.windows is not None:
            window = self.windows.window(item, day, max(self.recent_periods, MAX_STREAK))
            recent_units = units_or_typical(window, self.typical[item])[:, -self.recent_periods :]
            recent_discount = window["discount"][:, -self.recent_periods :].to(torch.float64)
            streak = trailing_sale_streak(window["discount"], sale_threshold(self.params.discounts))
        else:
            recent_units = self.typical[item].unsqueeze(1).expand(-1, self.recent_periods)
            recent_discount = torch.zeros_like(recent_units)
            streak = torch.zeros_like(item)

        b, params = len(rows), self.params
        zeros = torch.zeros(b, dtype=torch.long, device=self.device)
        sub = initial_state(
            params,
            item,
            day,
            on_hand=override(
                "on_hand",
                torch.full(
                    (b,), float(params.initial_on_hand), dtype=torch.float64, device=self.device
                ),
            ),
            pipeline=override(
                "pipeline",
                torch.zeros(b, params.pipeline_slots, dtype=torch.float64, device=self.device),
            ),
            t=override("t", zeros),
            streak=override("streak", streak.long()),
            sale_used=override("sale_used", zeros.clone()),
        )
        sub_memory = self.demand_model.initial_memory(sub)
        if self.state is None:
            self.state, self.memory = sub, dict(sub_memory)
        else:
            self.state = CampaignState(
                **{
                    f.name: getattr(self.state, f.name).index_put((idx,), getattr(sub, f.name))
                    for f in dataclasses.fields(CampaignState)
                }
            )
            self.memory = {k: v.index_put((idx,), sub_memory[k]) for k, v in self.memory.items()}
        self.recent_units[idx] = recent_units
        self.recent_discount[idx] = recent_discount
        self._cache = None
        scale = (params.price_of(item) * self.typical[item]).tolist()
        return [
            {
                "item_id": self.item_ids[it],
                "day": d,
                "date": day_date(d).isoformat(),
                "t": tt,
                "reward_scale": s,
            }
            for it, d, tt, s in zip(item.tolist(), day.tolist(), sub.t.tolist(), scale, strict=True)
        ]

    def _parse_options(self, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """Validate one row's reset options; values come back as plain Python numbers."""
        if not options:
            return {}
        if not isinstance(options, Mapping):
            raise PromogymInputError(f"reset options must be a dict, got {type(options).__name__}")
        unknown = sorted(set(options) - set(OPTION_KEYS))
        if unknown:
            raise PromogymInputError(
                f"reset options: unknown key(s) {unknown}; expected some of {list(OPTION_KEYS)}"
            )
        p, out = self.params, {}
        if "item" in options:
            item = options["item"]
            if isinstance(item, str):
                if item not in self.item_ids:
                    raise PromogymInputError(
                        f"reset options: unknown item {item!r}; known: {list(self.item_ids)}"
                    )
                out["item"] = self.item_ids.index(item)
            else:
                out["item"] = _to_int(item, "item", 0, len(self.item_ids) - 1)
        if "day" in options:
            out["day"] = _to_day(options["day"], "day")
        if "on_hand" in options:
            out["on_hand"] = float(_to_int(options["on_hand"], "on_hand", 0, p.capacity))
        if "pipeline" in options:
            pipe = options["pipeline"]
            if not isinstance(pipe, Sequence | np.ndarray) or len(pipe) != p.pipeline_slots:
                raise PromogymInputError(
                    f"reset options: pipeline must list {p.pipeline_slots} arrival(s) "
                    f"(next period first; lead_time={p.lead_time}), got {pipe!r}"
                )
            high = p.capacity if p.lead_time > 0 else 0
            out["pipeline"] = [float(_to_int(v, "pipeline entries", 0, high)) for v in pipe]
        if "t" in options:
            out["t"] = _to_int(options["t"], "t", 0, p.horizon - 1)
        if "streak" in options:
            out["streak"] = _to_int(options["streak"], "streak", 0, MAX_STREAK)
        if "sale_used" in options:
            out["sale_used"] = _to_int(options["sale_used"], "sale_used", 0, p.sale_budget)
        return out

    # ---- one period ------------------------------------------------------------------------
    def refresh(self) -> None:
        """Demand distribution at every ladder discount for the current states (one call)."""
        assert self.state is not None
        self._cache = self.demand_model.distribution(self.state, self.memory, self.params.discounts)

    def step(self, discount_idx: torch.Tensor, order_idx: torch.Tensor) -> StepResult:
        """Advance every campaign one period; infeasible actions are repaired, not refused."""
        state, params = self.state, self.params
        if state is None:
            raise PromogymInputError("call reset() before step()")
        requested_d = discount_idx.to(device=self.device, dtype=torch.long)
        requested_o = order_idx.to(device=self.device, dtype=torch.long)
        d, o = repair_actions(state, params, requested_d, requested_o)
        repaired = (d != requested_d) | (o != requested_o)
        discount = params.discounts[d]
        if self._cache is not None:
            mean = self._cache[0].gather(1, d.unsqueeze(1))[:, 0]
            dispersion = self._cache[1].gather(1, d.unsqueeze(1))[:, 0]
        else:
            mean, dispersion = self.demand_model.distribution(
                state, self.memory, discount.unsqueeze(1)
            )
            mean, dispersion = mean[:, 0], dispersion[:, 0]
        all_rows = torch.arange(self.n_envs, device=self.device)
        demand = negative_binomial_icdf(self._draw(all_rows, 1)[:, 0], mean, dispersion)
        scale = self.reward_scale
        next_state, profit, done, info = transition(state, params, d, o, demand)
        self.memory = self.demand_model.update_memory(
            self.memory, state, discount, info["units_sold"], demand
        )
        self.recent_units = torch.cat(
            [self.recent_units[:, 1:], info["units_sold"].unsqueeze(1)], dim=1
        )
        self.recent_discount = torch.cat([self.recent_discount[:, 1:], discount.unsqueeze(1)], 1)
        self.state = next_state
        self._cache = None
        info = dict(info, profit=profit)
        return StepResult(
            profit=profit,
            reward=profit / scale,
            done=done,
            repaired=repaired,
            discount_idx=d,
            order_idx=o,
            info=info,
        )

    # ---- views -----------------------------------------------------------------------------
    def observation(self, rows: torch.Tensor | None = None) -> np.ndarray:
        """Observation rows (see :class:`FlashSaleEnv` for the table), float32 ``(n, D)``."""
        assert self.state is not None
        s = self.state if rows is None else self.state.index(rows)
        p = self.params
        pick = slice(None) if rows is None else rows
        cap = float(p.capacity)
        typical = self.typical[s.item]
        day = s.day.to(torch.float64)
        wd = weekday(s.day).to(torch.float64) * (2 * math.pi / 7)
        yd = (day % 365.2425) * (2 * math.pi / 365.2425)
        budget = max(p.sale_budget, 1)
        cols = [
            (s.on_hand / cap).unsqueeze(1),
            s.pipeline / cap,
            ((p.horizon - s.t) / p.horizon).to(torch.float64).unsqueeze(1),
            torch.stack([wd.sin(), wd.cos(), yd.sin(), yd.cos()], dim=1),
            self.recent_units[pick].flip(1) / typical.unsqueeze(1),
            self.recent_discount[pick].flip(1),
            ((p.sale_budget - s.sale_used) / budget).to(torch.float64).unsqueeze(1),
            (s.streak / MAX_STREAK).to(torch.float64).unsqueeze(1),
            (typical / cap).unsqueeze(1),
        ]
        if self.expected_demand_obs:
            running = (s.t < p.horizon).unsqueeze(1)
            if self._cache is not None:
                expected = self._cache[0][pick] / typical.unsqueeze(1)
                expected = torch.where(running, expected, torch.zeros_like(expected))
            else:  # after the campaign's end there is nothing to predict
                expected = torch.zeros(s.batch_size, p.n_discounts, dtype=torch.float64)
                expected = expected.to(self.device)
            cols.append(expected)
        obs = torch.cat(cols, dim=1).cpu().numpy().astype(np.float32)
        return np.clip(obs, self.obs_low, self.obs_high)

    def masks(self) -> tuple[np.ndarray, np.ndarray]:
        """Feasible discounts ``(N, n_discounts)`` and orders ``(N, n_orders)``, bool."""
        assert self.state is not None
        d, o = action_masks(self.state, self.params)
        return d.cpu().numpy(), o.cpu().numpy()


def infos_from_step(result: StepResult) -> list[dict[str, Any]]:
    """One info dict of Python numbers per campaign (currency and units, unscaled)."""
    table = torch.stack([result.info[k].to(torch.float64) for k in INFO_KEYS]).cpu().tolist()
    repaired = result.repaired.cpu().tolist()
    d_idx = result.discount_idx.cpu().tolist()
    o_idx = result.order_idx.cpu().tolist()
    return [
        {**dict(zip(INFO_KEYS, values, strict=True)), "repaired": r, "action": (d, o)}
        for values, r, d, o in zip(zip(*table, strict=True), repaired, d_idx, o_idx, strict=True)
    ]


def decode_actions(
    actions: Any, n_envs: int, n_discounts: int, n_orders: int, flat: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``(discount_idx, order_idx)`` arrays of length ``n_envs`` from raw actions.

    ``flat``: one integer ``discount_idx * n_orders + order_idx`` per campaign; otherwise a
    pair per campaign. Raises :class:`PromogymInputError` for a wrong shape or range.
    """
    arr = np.asarray(actions)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise PromogymInputError(f"actions must be integers, got {actions!r}")
    want = (n_envs,) if flat else (n_envs, 2)
    if arr.shape != want and arr.size == int(np.prod(want)):
        arr = arr.reshape(want)
    if arr.shape != want:
        kind = "one flat index" if flat else "a (discount index, order index) pair"
        raise PromogymInputError(
            f"actions must have shape {want} ({kind} per campaign), got shape {arr.shape}"
        )
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise PromogymInputError(f"actions must be whole numbers, got {actions!r}")
    arr = arr.astype(np.int64)
    if flat:
        n = n_discounts * n_orders
        bad = (arr < 0) | (arr >= n)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise PromogymInputError(
                f"action out of range in campaign {row}: flat index {int(arr[row])} must be "
                f"in [0, {n}) (= n_discounts {n_discounts} x n_orders {n_orders})"
            )
        return arr // n_orders, arr % n_orders
    d, o = arr[:, 0], arr[:, 1]
    bad = (d < 0) | (d >= n_discounts) | (o < 0) | (o >= n_orders)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise PromogymInputError(
            f"action out of range in campaign {row}: discount index {int(d[row])} must be in "
            f"[0, {n_discounts}) and order index {int(o[row])} in [0, {n_orders})"
        )
    return d, o


def flat_masks(discount_mask: np.ndarray, order_mask: np.ndarray, flat: bool) -> np.ndarray:
    """sb3-contrib layout: concatenated per-dimension masks, or their product when flat."""
    if flat:
        both = discount_mask[:, :, None] & order_mask[:, None, :]
        return both.reshape(both.shape[0], -1)
    return np.concatenate([discount_mask, order_mask], axis=1)


class FlashSaleEnv(gymnasium.Env):
    """One flash-sale campaign: pick a discount and an order size every period.

    Built on :class:`CampaignBatch` with ``N = 1``; :class:`~promogym.envs.vec_env.FlashSaleVecEnv`
    runs ``N`` campaigns with the same code and, for the same seeds and actions, the same
    numbers.

    **Action space.** ``MultiDiscrete([n_discounts, n_orders])``: an index into
    ``campaign.discounts`` (0 = no sale) and one into ``inventory.order_quantities``. With
    ``flatten_actions=True``: ``Discrete(n_discounts * n_orders)``, action
    ``discount_idx * n_orders + order_idx`` (for DQN). Infeasible actions (a sale once the
    budget ``max_sale_periods`` is spent; an order that would push on-hand + pipeline above
    ``capacity``) are repaired to no sale / the largest order that fits, and
    ``info["repaired"]`` is True; :meth:`action_masks` gives the feasible set for
    sb3-contrib's MaskablePPO. Out-of-range actions raise :class:`PromogymInputError`.

    **Observation.** ``Box`` float32 vector; ``L = max(lead_time, 1)``, ``K = recent_periods``,
    ``A = n_discounts``; 25 entries with the default campaign (L 2, K 7), 31 with
    ``expected_demand_obs=True`` (A 6). "typical" is
    the item's typical demand per period (its mean in the history, else the demand model's
    mean at no discount over four weeks). Before the campaign, the recent units come from the
    history, with "typical" in a period it does not record (a missing row, or one with stock 0).

    =================  ====================================================  =====  =====
    index              observation                                           min    max
    =================  ====================================================  =====  =====
    0                  on-hand / capacity                                    0      1
    1 .. L             pipeline arriving in 1..L periods / capacity          0      1
    L+1                periods left / horizon                                0      1
    L+2, L+3           sin, cos of 2 pi weekday / 7                          -1     1
    L+4, L+5           sin, cos of 2 pi day-of-year / 365.2425               -1     1
    L+6 ..             units sold 1..K periods ago / typical                 0      10
    L+6+K ..           discount 1..K periods ago                             0      1
    L+6+2K             sale periods left in the budget / budget              0      1
    L+7+2K             sale streak / MAX_STREAK (promotion fatigue)          0      1
    L+8+2K             typical / capacity (how fast stock turns)             0      1
    L+9+2K ..          expected demand at each ladder discount / typical     0      10
                       (only with ``expected_demand_obs=True``; 0 after the
                       end). Off by default: PPO on the reference market learned no
                       better with it (100k steps, 2 seeds: mean campaign profit
                       3,852/4,010 with vs 4,081/4,120 without; ``bench_env.py
                       --obs-ablation``) and it makes the demand model score 6
                       candidates per call instead of 1
    =================  ====================================================  =====  =====

    **Reward.** The period's profit (:func:`~promogym.envs.core.transition`: revenue minus
    lost-sale penalty, holding and order costs, plus salvage after the last period) divided
    by the campaign's ``reward_scale = list_price * typical`` (given in the reset info), so a
    period's reward is of order 1 for every item. ``info`` always carries the unscaled
    figures in currency/units: ``profit, revenue, units_sold, lost_units, holding_cost,
    order_cost, salvage, order_quantity, discount, demand``, plus ``repaired`` and the
    applied ``action``.

    **Episode end.** ``terminated`` after the campaign's last period (``horizon - t`` steps
    after a reset at period ``t``): it is the true end of the MDP, never a truncation.

    **Starts.** ``reset()`` draws an item and a start: with a history (``history=`` or the
    demand model's), a real context window of it; without, a day in ``start_days``.
    ``reset(options={...})`` fixes any of ``item`` (index or id), ``day`` (ISO date or days
    since 1970-01-01), ``on_hand``, ``pipeline`` (L arrivals, next period first), ``t``,
    ``streak``, ``sale_used``; bad values raise :class:`PromogymInputError` naming the key.

    **Arguments.** ``demand_model``: the learned simulator is
    ``ForecasterDemand(forecaster, history)`` (:mod:`promogym.envs.forecaster_demand`);
    without one, the reference demo market (``MarketDemand(default_market())``, ground
    truth, so ``gymnasium.make("promogym/FlashSale-v0")`` works with no files).
    ``config`` (default campaign), ``flatten_actions``, and the :class:`CampaignBatch`
    keywords ``history,
    item_ids, list_price, unit_cost, start_days, period_days, min_context, first_start,
    typical, recent_periods, expected_demand_obs, device`` (``"auto"``: CUDA if available).

    **Version history.** v0: first release.

    >>> env = FlashSaleEnv(device="cpu")
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, env.action_space
    ((25,), MultiDiscrete([6 3]))
    >>> obs, reward, terminated, truncated, info = env.step(np.array([2, 1]))
    >>> info["discount"], info["order_quantity"], terminated, truncated
    (0.2, 40.0, False, False)
    >>> round(info["profit"] / info["reward_scale"], 9) == round(reward, 9)
    True
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        demand_model: DemandModel | None = None,
        config: CampaignConfig | None = None,
        *,
        flatten_actions: bool = False,
        render_mode: str | None = None,
        **batch_kwargs: Any,
    ) -> None:
        if render_mode is not None:
            raise PromogymInputError(f"FlashSaleEnv has no render modes, got {render_mode!r}")
        self.render_mode = None
        self.core = CampaignBatch(demand_model, config, n_envs=1, **batch_kwargs)
        self.flatten_actions = flatten_actions
        self.action_space, self.observation_space = make_spaces(self.core, flatten_actions)
        self._keyed = False
        self._done = True
        self._scale = 1.0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None or not self._keyed:
            self.core.set_keys([0], [key_from_rng(self.np_random)])
            self._keyed = True
        info = self.core.reset([0], [options])[0]
        self._scale = info["reward_scale"]
        self._done = False
        if self.core.expected_demand_obs:
            self.core.refresh()
        return self.core.observation()[0], info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise PromogymInputError("the campaign is over (or not started): call reset() first")
        p = self.core.params
        d, o = decode_actions(action, 1, p.n_discounts, p.n_orders, self.flatten_actions)
        result = self.core.step(torch.from_numpy(d), torch.from_numpy(o))
        terminated = bool(result.done[0])
        self._done = terminated
        if not terminated and self.core.expected_demand_obs:
            self.core.refresh()
        info = infos_from_step(result)[0]
        info["reward_scale"] = self._scale
        return self.core.observation()[0], float(result.reward[0]), terminated, False, info

    def action_masks(self) -> np.ndarray:
        """Feasible actions as sb3-contrib expects (concatenated, or product when flat)."""
        d, o = self.core.masks()
        return flat_masks(d, o, self.flatten_actions)[0]


def make_spaces(core: CampaignBatch, flatten_actions: bool) -> tuple[spaces.Space, spaces.Box]:
    """Action and observation spaces of a campaign core."""
    p = core.params
    if flatten_actions:
        action_space: spaces.Space = spaces.Discrete(p.n_discounts * p.n_orders)
    else:
        action_space = spaces.MultiDiscrete([p.n_discounts, p.n_orders])
    observation_space = spaces.Box(core.obs_low, core.obs_high, dtype=np.float32)
    return action_space, observation_space
