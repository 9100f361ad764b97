"""Campaign config: one typed, validated object loaded from TOML and saved with every run.

Per period of a campaign (the data's frequency, days or weeks):

1. the order due this period lands (on-hand is capped at ``inventory.capacity``; excess is lost),
2. the policy picks a discount from ``campaign.discounts`` and an order from
   ``inventory.order_quantities`` (it arrives ``lead_time`` periods later),
3. demand is drawn at price ``list_price * (1 - discount)``; sales = min(demand, on hand),
4. reward = revenue - lost_sale_penalty * unmet - holding_cost * left
   - (unit_cost * q + order_fixed_cost if q > 0); after the last period + salvage_value * left.

``economics.list_price`` and ``economics.unit_cost`` left out of a TOML come from the data:
each item's latest list price and unit cost in the history. The built-in campaign sets both
(20.0 and 9.0, the demo shop's); ``promogym fit`` without a config clears them and scales the
other money terms to the items' prices (:meth:`CampaignConfig.scaled_to_prices`).

>>> cfg = CampaignConfig()
>>> cfg.campaign.horizon, cfg.inventory.lead_time, cfg.economics.unit_cost
(28, 2, 9.0)
>>> CampaignConfig.from_dict({"campaign": {"horizon": 0}})
Traceback (most recent call last):
...
promogym.errors.ConfigError: <dict>: campaign.horizon must be an integer in [1, 1000], got 0
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from promogym.errors import ConfigError

# Longest campaign accepted (periods): the DP and the rollouts hold tensors over the horizon,
# and a campaign of more than 1,000 periods (nearly three years of days) is a typo, not a plan.
MAX_HORIZON = 1000
MIN_DISCOUNT = 0.01
MAX_DISCOUNT = 0.9
"""A sale discount's range: 1% to 90% off (the reference market lifts any discount above 0
by its full promotion effect, and its demand at 99% off runs to millions a day)."""
MAX_MONEY = 1e9
"""The largest price or cost a config takes (larger ones overflow profits to inf / NaN)."""


@dataclass(frozen=True)
class CampaignSection:
    """``[campaign]``: length, discount ladder and sale budget."""

    horizon: int = 28
    discounts: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    max_sale_periods: int | None = None
    start_date: dt.date | None = None

    @property
    def sale_budget(self) -> int:
        """Periods on sale allowed per campaign (``horizon`` when unlimited)."""
        if self.max_sale_periods is None:
            return self.horizon
        return min(self.max_sale_periods, self.horizon)


@dataclass(frozen=True)
class InventorySection:
    """``[inventory]``: starting stock, order ladder, lead time and shelf capacity."""

    initial: int = 60
    order_quantities: tuple[int, ...] = (0, 40, 80)
    lead_time: int = 2
    capacity: int = 160


@dataclass(frozen=True)
class EconomicsSection:
    """``[economics]``: prices and costs in currency units."""

    list_price: float | None = 20.0  # the built-in demo campaign's; a TOML without it: from data
    unit_cost: float | None = 9.0  # the same
    holding_cost: float = 0.05
    order_fixed_cost: float = 15.0
    lost_sale_penalty: float = 2.0
    salvage_value: float = 5.0


@dataclass(frozen=True)
class DataSection:
    """``[data]``: how to read the sales history (all optional)."""

    categorical: tuple[str, ...] = ()
    columns: dict[str, str] = field(default_factory=dict)
    fill_gaps: str | None = None

    def merged(
        self,
        columns: Mapping[str, str] | None = None,
        fill_gaps: str | None = None,
        categorical: Sequence[str] | None = None,
    ) -> DataSection:
        """This section with command-line options on top: ``columns`` entries override the
        map entry by entry, ``fill_gaps`` and ``categorical`` replace the values when given.

        >>> DataSection(columns={"date": "week"}).merged({"units_sold": "move"}).columns
        {'date': 'week', 'units_sold': 'move'}
        """
        return DataSection(
            categorical=tuple(self.categorical if categorical is None else categorical),
            columns={**self.columns, **(columns or {})},
            fill_gaps=self.fill_gaps if fill_gaps is None else fill_gaps,
        )


@dataclass(frozen=True)
class CampaignConfig:
    """A whole campaign config. Build with defaults, :meth:`from_dict` or :func:`load_config`."""

    campaign: CampaignSection = field(default_factory=CampaignSection)
    inventory: InventorySection = field(default_factory=InventorySection)
    economics: EconomicsSection = field(default_factory=EconomicsSection)
    data: DataSection = field(default_factory=DataSection)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_dict(
        cls, raw: dict[str, Any], source: str = "<dict>", *, saved: bool = False
    ) -> CampaignConfig:
        """Validate a parsed TOML mapping; unknown sections or keys are errors (typos).
        ``saved``: a run's own config, which may predate the limits on discounts and money
        (:meth:`validate`)."""
        sections = {f.name: f.type for f in fields(cls)}
        for name in raw:
            if name not in sections:
                raise ConfigError(
                    f"{source}: unknown section [{name}]; expected one of {sorted(sections)}"
                )
        kwargs = {}
        for name, section_cls in (
            ("campaign", CampaignSection),
            ("inventory", InventorySection),
            ("economics", EconomicsSection),
            ("data", DataSection),
        ):
            values = raw.get(name, {})
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: [{name}] must be a table of keys")
            if name == "economics":
                # An omitted list price or unit cost means "take it from the data" (each
                # item's), not the built-in demo campaign's 20.0 and 9.0.
                values = {"list_price": None, "unit_cost": None, **values}
            known = {f.name for f in fields(section_cls)}
            for key in values:
                if key not in known:
                    raise ConfigError(
                        f"{source}: unknown key {name}.{key}; expected one of {sorted(known)}"
                    )
            kwargs[name] = section_cls(**_coerce_section(name, values, source))
        config = cls(**kwargs)
        config.validate(source, saved=saved)
        return config

    def to_dict(self) -> dict[str, Any]:
        """Plain TOML/JSON-ready mapping; ``None`` values are dropped (TOML has no null)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            section = dataclasses.asdict(getattr(self, f.name))
            clean = {}
            for key, value in section.items():
                if value is None:
                    continue
                if isinstance(value, tuple):
                    value = list(value)
                if isinstance(value, dt.date):
                    value = value.isoformat()
                clean[key] = value
            out[f.name] = clean
        return out

    def to_toml(self) -> str:
        """Serialise to TOML text that :func:`load_config` reads back to an equal config."""
        lines: list[str] = []
        for section, values in self.to_dict().items():
            lines.append(f"[{section}]")
            for key, value in values.items():
                lines.append(f"{key} = {_toml_value(value)}")
            lines.append("")
        return "\n".join(lines)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the config as TOML atomically (temp file, then rename)."""
        from promogym.io import atomic_write_text

        atomic_write_text(Path(path), self.to_toml())

    def replace(self, **sections: Any) -> CampaignConfig:
        """Copy with some sections or section fields replaced, re-validated.

        >>> CampaignConfig().replace(campaign={"horizon": 7}).campaign.horizon
        7
        """
        raw = self.to_dict()
        for name, values in sections.items():
            raw.setdefault(name, {}).update(values)
        return CampaignConfig.from_dict(raw)

    def priced_from_data(self) -> CampaignConfig:
        """Copy whose list price and unit cost come from the data (each item's latest), as in
        a TOML that leaves them out; what ``promogym fit`` uses without ``--config``.

        >>> CampaignConfig().priced_from_data().economics.list_price is None
        True
        """
        economics = dataclasses.replace(self.economics, list_price=None, unit_cost=None)
        return dataclasses.replace(self, economics=economics)

    def price_scale(self, list_prices: Sequence[float]) -> float:
        """The items' median list price (NaN and non-positive left out) / this config's
        ``list_price``; 1 without prices.

        >>> CampaignConfig().price_scale([4.0, float("nan"), 6.0])
        0.25
        """
        if self.economics.list_price is None:
            raise ConfigError("price_scale needs a config that sets list_price")
        prices = [float(p) for p in list_prices if p == p and p > 0]
        return statistics.median(prices) / self.economics.list_price if prices else 1.0

    def scaled_to_prices(
        self, list_prices: Sequence[float], unit_costs: Sequence[float]
    ) -> CampaignConfig:
        """:meth:`priced_from_data`, with the money terms this config sets for its own
        ``list_price`` (holding cost, order fixed cost, lost-sale penalty, salvage value)
        multiplied by the items' median list price / that price, and the salvage value at
        most the config's salvage / unit-cost share of the cheapest unit cost (NaN =
        unknown, left out). What ``promogym fit`` uses without ``--config``: the built-in
        campaign is the demo shop's (a 20.0 item), whose salvage value of 5.0 would exceed a
        1.10 unit cost. Unchanged for items priced and costed like the demo shop's.

        >>> eco = CampaignConfig().scaled_to_prices([4.0, 4.0], [1.2, 1.8]).economics
        >>> eco.order_fixed_cost, round(eco.salvage_value, 4), eco.list_price
        (3.0, 0.6667, None)
        >>> CampaignConfig().scaled_to_prices([4.0, 4.0], [0.0, 1.5]).economics.salvage_value
        0.0
        """
        eco = self.economics
        if eco.list_price is None or eco.unit_cost is None:
            raise ConfigError("scaled_to_prices needs a config that sets list_price and unit_cost")
        costs = [float(c) for c in unit_costs if c == c and c >= 0]
        scale = self.price_scale(list_prices)
        salvage = eco.salvage_value * scale
        if costs:
            salvage = min(salvage, eco.salvage_value / eco.unit_cost * min(costs))
        economics = dataclasses.replace(
            eco,
            list_price=None,
            unit_cost=None,
            holding_cost=eco.holding_cost * scale,
            order_fixed_cost=eco.order_fixed_cost * scale,
            lost_sale_penalty=eco.lost_sale_penalty * scale,
            salvage_value=salvage,
        )
        return dataclasses.replace(self, economics=economics)

    # ---- validation ---------------------------------------------------------------------
    def validate(self, source: str = "<config>", *, saved: bool = False) -> None:
        """Raise :class:`ConfigError` naming the first bad key. ``saved`` (a run's own
        config): discounts in (0, 1) and any finite money pass, and a sale budget or lead time
        beyond the horizon is not refused, as runs fitted before the limits
        :data:`MIN_DISCOUNT`, :data:`MAX_DISCOUNT` and :data:`MAX_MONEY` (and those two checks)
        keep loading."""
        c, inv, eco = self.campaign, self.inventory, self.economics

        def bad(key: str, want: str, got: Any) -> ConfigError:
            return ConfigError(f"{source}: {key} must be {want}, got {got!r}")

        if not 1 <= c.horizon <= MAX_HORIZON:
            raise bad("campaign.horizon", f"an integer in [1, {MAX_HORIZON}]", c.horizon)
        if not c.discounts:
            raise bad("campaign.discounts", "a non-empty list", list(c.discounts))
        low, high, money = (
            (0.0, 1.0 - 1e-12, sys.float_info.max)
            if saved
            else (MIN_DISCOUNT, MAX_DISCOUNT, MAX_MONEY)
        )
        if any(not (d == 0.0 or low <= d <= high) for d in c.discounts):
            raise bad(
                "campaign.discounts",
                f"0.0 or fractions in [{MIN_DISCOUNT}, {MAX_DISCOUNT}] (1% to 90% off; demand "
                "at deeper discounts is beyond any history, and at 99% off the reference "
                "market's is millions a day)",
                list(c.discounts),
            )
        if list(c.discounts) != sorted(set(c.discounts)) or c.discounts[0] != 0.0:
            raise bad(
                "campaign.discounts",
                "strictly increasing and starting at 0.0 (no sale)",
                list(c.discounts),
            )
        if c.max_sale_periods is not None and c.max_sale_periods < 0:
            raise bad("campaign.max_sale_periods", "an integer >= 0", c.max_sale_periods)
        if not saved and c.max_sale_periods is not None and c.max_sale_periods > c.horizon:
            raise bad(
                "campaign.max_sale_periods",
                f"<= campaign.horizon ({c.horizon}; leave it out for no limit)",
                c.max_sale_periods,
            )
        if inv.initial < 0:
            raise bad("inventory.initial", "an integer >= 0", inv.initial)
        if inv.capacity < 1:
            raise bad("inventory.capacity", "an integer >= 1", inv.capacity)
        if inv.initial > inv.capacity:
            raise bad("inventory.initial", f"<= inventory.capacity ({inv.capacity})", inv.initial)
        q = list(inv.order_quantities)
        if not q or q != sorted(set(q)) or q[0] != 0:
            raise bad("inventory.order_quantities", "strictly increasing integers starting at 0", q)
        if q[-1] > inv.capacity:
            raise bad("inventory.order_quantities", f"<= capacity ({inv.capacity})", q)
        if not 0 <= inv.lead_time <= 8:
            raise bad("inventory.lead_time", "an integer in [0, 8]", inv.lead_time)
        if not saved and len(q) > 1 and inv.lead_time >= c.horizon:
            raise bad(
                "inventory.lead_time",
                f"< campaign.horizon ({c.horizon}; an order would arrive after the campaign: "
                "shorten the lead time, lengthen the campaign, or set order_quantities = [0])",
                inv.lead_time,
            )
        if eco.list_price is not None and not 0 < eco.list_price <= money:
            raise bad("economics.list_price", f"a number > 0 and <= {money:g}", eco.list_price)
        if eco.unit_cost is not None and not 0 <= eco.unit_cost <= money:
            raise bad("economics.unit_cost", f"a number >= 0 and <= {money:g}", eco.unit_cost)
        for key in (
            "holding_cost",
            "order_fixed_cost",
            "lost_sale_penalty",
            "salvage_value",
        ):
            value = getattr(eco, key)
            if not 0 <= value <= money:
                raise bad(f"economics.{key}", f"a number >= 0 and <= {money:g}", value)
        if eco.unit_cost is not None and eco.salvage_value > eco.unit_cost:
            raise bad(
                "economics.salvage_value",
                f"<= economics.unit_cost ({eco.unit_cost:g}; else every order would pay for "
                "itself at the campaign's end)",
                eco.salvage_value,
            )
        from promogym.data import GAP_POLICIES, OPTIONAL_COLUMNS, REQUIRED_COLUMNS

        if self.data.fill_gaps is not None and self.data.fill_gaps not in GAP_POLICIES:
            raise bad("data.fill_gaps", "'missing', 'zero' or 'drop'", self.data.fill_gaps)

        mappable = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, *self.data.categorical)
        for name in self.data.columns:
            if name not in mappable:
                raise bad(
                    "data.columns", f"a map from contract names ({', '.join(mappable)})", name
                )


def load_config(
    path: str | os.PathLike[str] | None = None, *, saved: bool = False
) -> CampaignConfig:
    """Load and validate a campaign TOML file; ``None`` gives the default campaign.
    ``saved``: a run's own ``config.toml`` (:meth:`CampaignConfig.validate`)."""
    if path is None:
        return CampaignConfig()
    from promogym.io import read_toml

    return CampaignConfig.from_dict(read_toml(path), source=str(path), saved=saved)


# ---- helpers -------------------------------------------------------------------------------
_INT_KEYS = {
    "horizon",
    "max_sale_periods",
    "initial",
    "lead_time",
    "capacity",
}
_FLOAT_KEYS = {
    "list_price",
    "unit_cost",
    "holding_cost",
    "order_fixed_cost",
    "lost_sale_penalty",
    "salvage_value",
}


def _coerce_section(name: str, values: dict[str, Any], source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        where = f"{source}: {name}.{key}"
        if key in _INT_KEYS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{where} must be an integer, got {value!r}")
        elif key in _FLOAT_KEYS:
            if value is None and key in ("list_price", "unit_cost"):
                out[key] = None
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{where} must be a number, got {value!r}")
            value = float(value)
        elif key == "discounts":
            if not isinstance(value, list) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value
            ):
                raise ConfigError(f"{where} must be a list of numbers, got {value!r}")
            value = tuple(float(v) for v in value)
        elif key == "order_quantities":
            if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                raise ConfigError(f"{where} must be a list of integers, got {value!r}")
            value = tuple(value)
        elif key == "start_date":
            if isinstance(value, str):
                try:
                    value = dt.date.fromisoformat(value)
                except ValueError:
                    raise ConfigError(
                        f"{where} must be an ISO date like 2026-12-01, got {value!r}"
                    ) from None
            elif isinstance(value, dt.datetime):
                value = value.date()
            elif not isinstance(value, dt.date):
                raise ConfigError(f"{where} must be an ISO date like 2026-12-01, got {value!r}")
        elif key == "categorical":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where} must be a list of column names, got {value!r}")
            value = tuple(value)
        elif key == "columns":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ConfigError(f"{where} must be a table of name = source-column, got {value!r}")
            value = dict(value)
        out[key] = value
    return out


def _toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, but for DEL, which TOML escapes too."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_key(key: str) -> str:
    """A bare key where TOML allows one, else a quoted key (spaces, accents, dots...)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _toml_value(value: Any) -> str:
    """``value`` as TOML (:func:`read_toml` reads it back equal).

    >>> print(_toml_value({"region name": 'say "hi"', "units_sold": "move"}))
    { "region name" = "say \\"hi\\"", units_sold = "move" }
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return repr(int(value))
    if isinstance(value, float):
        return repr(float(value))  # a NumPy float's repr is not TOML
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + ", ".join(items) + " }"
    raise TypeError(f"cannot write {value!r} to TOML")
