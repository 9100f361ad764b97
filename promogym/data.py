"""The sales-history contract: what users feed in, validated into one canonical frame.

Input: CSV or Parquet, one row per item per period.

========== ======== ==========================================================================
column     required meaning
========== ======== ==========================================================================
date       yes      ISO date of the period (daily or weekly, inferred; all items share it)
item_id    yes      item identifier (string)
units_sold yes      integer >= 0
price      yes      price actually charged, > 0
list_price no       regular price; default: the item's running maximum of ``price``
promo      no       0/1; default: ``price < list_price``
stock      no       units on hand at the start of the period; ``units_sold >= stock`` marks
                    the period's demand as censored by a stock-out; ``units_sold > stock`` is
                    an error
unit_cost  no       purchase cost per unit
========== ======== ==========================================================================

The canonical frame (:attr:`SalesHistory.frame`) is sorted by ``item_id, date`` and has the
columns ``date`` (datetime64), ``item_id`` (str), ``units_sold`` (int64), ``price``,
``list_price``, ``discount`` (``1 - price / list_price``), ``promo`` (int8), ``stock``
(float64, NaN when unknown), ``censored`` (bool), ``unit_cost`` (float64, NaN when unknown),
then any extra categorical columns named in the config.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import pandas as pd

Frequency = Literal["D", "W"]

CANONICAL_COLUMNS = (
    "date",
    "item_id",
    "units_sold",
    "price",
    "list_price",
    "discount",
    "promo",
    "stock",
    "censored",
    "unit_cost",
)


@dataclass(frozen=True)
class SalesHistory:
    """A validated sales history.

    Attributes:
        frame: canonical frame (see module docstring).
        freq: ``"D"`` (daily) or ``"W"`` (weekly).
        source: where it came from (file path or a description), used in error messages.
        categorical: names of the extra categorical columns kept in ``frame``.
    """

    frame: pd.DataFrame
    freq: Frequency
    source: str = "<frame>"
    categorical: tuple[str, ...] = ()

    @property
    def item_ids(self) -> list[str]:
        return sorted(self.frame["item_id"].unique().tolist())

    @property
    def period_days(self) -> int:
        return 1 if self.freq == "D" else 7

    def fingerprint(self) -> str:
        """SHA-256 of the canonical frame's contents (stable across file formats)."""
        digest = hashlib.sha256()
        digest.update(self.freq.encode())
        digest.update(pd.util.hash_pandas_object(self.frame, index=False).values.tobytes())
        return digest.hexdigest()

    def item(self, item_id: str) -> pd.DataFrame:
        """Rows of one item, in date order."""
        rows = self.frame[self.frame["item_id"] == item_id]
        if rows.empty:
            raise KeyError(f"unknown item {item_id!r}")
        return rows
