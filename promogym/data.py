"""The sales-history contract: what users feed in, validated into one canonical frame.

Input: CSV or Parquet (chosen by the file suffix), one row per item per period.

========== ======== ==========================================================================
column     required meaning
========== ======== ==========================================================================
date       yes      ISO date of the period (daily or weekly, inferred; all items share it)
item_id    yes      item identifier (string)
units_sold yes      integer >= 0
price      yes      price actually charged, > 0
list_price no       regular price; default: the item's running maximum of ``price`` (so
                    sales before an item's first full-price period are not recognised:
                    give list_price when that matters)
promo      no       0/1; default: ``price < list_price``
stock      no       units on hand at the start of the period; ``units_sold >= stock`` marks
                    the period's demand as censored by a stock-out; ``units_sold > stock`` is
                    an error
unit_cost  no       purchase cost per unit (the campaign's when the config sets none)
========== ======== ==========================================================================

Empty cells in an optional column mean "unknown": ``list_price`` and ``promo`` fall back to
their defaults, ``stock`` and ``unit_cost`` become NaN. Other columns are ignored unless named
as extra categorical columns (kept as strings). A column map (``{contract_name: source_name}``,
CLI ``--columns units_sold=move,date=week_start``) renames the columns of other exports.

The canonical frame (:attr:`SalesHistory.frame`) is sorted by ``item_id, date`` and has the
columns ``date`` (datetime64), ``item_id`` (str), ``units_sold`` (int64), ``price``,
``list_price``, ``discount`` (``1 - price / list_price``), ``promo`` (int8), ``stock``
(float64, NaN when unknown), ``censored`` (bool), ``unit_cost`` (float64, NaN when unknown),
then any extra categorical columns named in the config.

Frequency: ``"D"`` when an item's periods are 1 day apart, ``"W"`` when 7 days apart; all items
must share it (weekly dates also share one weekday). A longer step inside an item is a gap:
an error unless a gap policy is chosen:

* ``fill_gaps="missing"``: add the missing periods as periods without a sales record, whose
  demand is unknown: at the item's last list price (``price = list_price``, ``promo = 0``;
  ``unit_cost`` and categorical columns carried forward) with ``units_sold = 0`` and
  ``stock = 0``, i.e. censored at zero stock, which says nothing about demand: the forecaster
  does not learn from them, the simulator's checks leave them out, and a context that holds
  one treats it as unobserved. For scanner data whose missing weeks are unreported, not
  weeks without sales (Dominick's stores).
* ``fill_gaps="zero"``: the same periods with ``units_sold = 0`` and ``stock`` unknown, i.e.
  "nothing sold": periods that were open with no sales.
* ``fill_gaps="drop"``: keep, for each item, only its last gap-free run of periods (the rows
  after its last gap), so every series is contiguous and ends at its most recent data.

Errors: every broken rule raises :class:`~promogym.errors.DataError` with one line naming the
file, the row and the column, and the fix. Rows are counted as **data rows**: data row ``N``
is the ``N``-th row after the header (line ``N + 1`` of a CSV file, spreadsheet row
``N + 1``; for a DataFrame, position ``N - 1``).

>>> frame = pd.DataFrame({"date": ["2024-01-01", "2024-01-02"], "item_id": ["a", "a"],
...                       "units_sold": [3, 5], "price": [10.0, 8.0]})
>>> h = history_from_frame(frame)
>>> h.freq, h.frame["list_price"].tolist(), h.frame["promo"].tolist()
('D', [10.0, 10.0], [0, 1])
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from promogym.errors import DataError, PromogymInputError

if TYPE_CHECKING:
    from promogym.config import CampaignConfig

Frequency = Literal["D", "W"]
GapPolicy = Literal["missing", "zero", "drop"]
GAP_POLICIES = ("missing", "zero", "drop")


def unrecorded(frame: pd.DataFrame) -> np.ndarray:
    """Which rows of a canonical ``frame`` have no sale record: a stock of 0 (the periods
    ``fill_gaps="missing"`` adds), censored at zero, which says nothing about demand. Every
    reader that learns from or sums demand leaves them out; all ``False`` without a
    ``stock`` column."""
    if "stock" not in frame:
        return np.zeros(len(frame), dtype=bool)
    return frame["stock"].to_numpy(np.float64) <= 0.0


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
REQUIRED_COLUMNS = ("date", "item_id", "units_sold", "price")
OPTIONAL_COLUMNS = ("list_price", "promo", "stock", "unit_cost")
CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
_PERIOD_DAYS = {"D": 1, "W": 7}
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# Relative slack when comparing price with list_price: prices are stored rounded to cents, but
# a float32 column (Spark, database FLOAT) carries relative errors near 1e-7.
_PRICE_TOLERANCE = 1e-6
_UTC_OFFSET = r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"
# item_id values of a report's total rows (pivot tables, BI exports), not items.
_SUMMARY_IDS = frozenset({"total", "totals", "grand total", "subtotal", "sub-total", "sum"})
# Cells that mean "unknown" in exports from R, SQL, Excel and pandas: blank in optional columns.
_MISSING_TOKENS = frozenset({"na", "n/a", "nan", "null", "none", "#n/a", "-", "--"})


PROMO_AGREEMENT_MIN = 0.9
"""Below this share of rows with ``promo == (discount > 0)``, :meth:`SalesHistory.describe`
warns: the simulator cannot set promotions apart from discounts."""

PROMO_MISMATCH_NOTE = (
    " (the simulator cannot set promotions apart from discounts: it treats a discount as a "
    "promotion as often as the history did at that depth{})"
)
"""Appended to :meth:`SalesHistory.describe`'s promo line below :data:`PROMO_AGREEMENT_MIN`;
``{}`` holds :data:`LIST_PRICE_HINT` unless the history gave a list price on every row."""
LIST_PRICE_HINT = (
    "; a list_price column with the regular price, so that discounts mark promotions, makes "
    "them one decision"
)


@dataclass(frozen=True)
class SalesHistory:
    """A validated sales history.

    Attributes:
        frame: canonical frame (see module docstring).
        freq: ``"D"`` (daily) or ``"W"`` (weekly).
        source: where it came from (file path or a description), used in error messages.
        categorical: names of the extra categorical columns kept in ``frame``.
        filled_rows: rows added by ``fill_gaps="zero"`` or ``"missing"`` (:attr:`gap_policy`).
        dropped_rows: rows removed by ``fill_gaps="drop"``.
        ignored_columns: columns of the source that the contract did not use (neither a
            contract column, after the column map, nor a named categorical one).
        list_price_given: whether the source gave a list price on every row (rather than
            leaving some to the running maximum of ``price``); ``None`` for a history built
            with ``SalesHistory(...)`` directly. A run's saved canonical history has one on
            every row, so reloaded it counts as given.
    """

    frame: pd.DataFrame
    freq: Frequency
    source: str = "<frame>"
    categorical: tuple[str, ...] = ()
    filled_rows: int = 0
    dropped_rows: int = 0
    gap_policy: str | None = None
    ignored_columns: tuple[str, ...] = ()
    list_price_given: bool | None = None

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

    def unused_note(self) -> str | None:
        """A line naming :attr:`ignored_columns` and how to use them, if there are any."""
        if not self.ignored_columns:
            return None
        return (
            f"not used: {', '.join(self.ignored_columns)} (not in the contract: map them with "
            "--columns / [data] columns, or keep text ones with --categorical / [data] "
            "categorical)"
        )

    def short_items(self, need: int) -> pd.Series:
        """Periods per item of the items with fewer than ``need`` (e.g. the forecaster's
        context, which a campaign starts from), in item order."""
        per_item = self.frame.groupby("item_id", sort=True).size()
        return per_item[per_item < need]

    def item(self, item_id: str) -> pd.DataFrame:
        """Rows of one item, in date order."""
        rows = self.frame[self.frame["item_id"] == item_id]
        if rows.empty:
            raise KeyError(f"unknown item {item_id!r}")
        return rows

    def latest(self, column: str, item_ids: Sequence[str] | None = None) -> np.ndarray:
        """Each item's last known value of ``column`` (e.g. ``list_price``: the regular price
        a campaign of the item starts from; ``unit_cost``), float64 in ``item_ids`` order
        (default :attr:`item_ids`). NaN for an item whose values are all unknown; an item the
        history lacks gets the median of the others' values."""
        last = self.frame.groupby("item_id", sort=True)[column].last()  # last non-NaN
        ids = self.item_ids if item_ids is None else list(item_ids)
        out = last.reindex(ids).to_numpy(dtype=np.float64, copy=True)
        out[~np.isin(ids, last.index)] = float(last.median())
        return out

    def summary(self) -> dict[str, Any]:
        """Headline figures: counts, date range, frequency and promo / censored shares.

        ``censored_share`` is over all rows (rows with unknown stock count as uncensored);
        ``stock_known_share`` says how many rows have a stock figure at all. Both leave out
        rows with a stock of 0 (``fill_gaps="missing"`` periods: no record), which say
        nothing about demand.
        """
        f = self.frame
        recorded = f[~unrecorded(f)]
        per_item = f.groupby("item_id", sort=True).size()
        prices, costs = self.latest("list_price"), self.latest("unit_cost")
        return {
            "source": self.source,
            "items": int(per_item.shape[0]),
            "rows": int(f.shape[0]),
            "periods": int(f["date"].nunique()),
            "periods_per_item_min": int(per_item.min()),
            "periods_per_item_max": int(per_item.max()),
            "start": f["date"].min().date().isoformat(),
            "end": f["date"].max().date().isoformat(),
            "freq": self.freq,
            "promo_share": float(f["promo"].mean()),
            "promo_is_discount_share": float(((f["discount"] > 0) == (f["promo"] == 1)).mean()),
            "censored_share": float(recorded["censored"].mean()) if len(recorded) else 0.0,
            "stock_known_share": float(recorded["stock"].notna().mean()) if len(recorded) else 0.0,
            "unit_cost_known_share": float(f["unit_cost"].notna().mean()),
            "latest_list_price_range": [float(prices.min()), float(prices.max())],
            "items_with_unit_cost": int(np.isfinite(costs).sum()),
            "mean_units_sold": float(f["units_sold"].mean()),
            "categorical": list(self.categorical),
            "filled_rows": self.filled_rows,
            "dropped_rows": self.dropped_rows,
            "ignored_columns": list(self.ignored_columns),
            "fingerprint": self.fingerprint(),
        }

    def describe(self, min_periods: int | None = None) -> str:
        """A one-screen, human-readable version of :meth:`summary`; with ``min_periods`` (the
        forecaster's context), a line naming the items shorter than that, whose campaigns
        cannot be planned yet."""
        s = self.summary()
        freq_name = "daily" if s["freq"] == "D" else "weekly"
        lines = [
            f"source          {s['source']}",
            f"items           {s['items']}",
            f"rows            {s['rows']}",
            f"periods         {s['periods']} ({freq_name}; per item "
            f"{s['periods_per_item_min']}-{s['periods_per_item_max']})",
            f"date range      {s['start']} .. {s['end']}",
            f"promo share     {s['promo_share']:.1%}",
            f"promo agrees    with discount > 0 on {s['promo_is_discount_share']:.1%} of rows"
            + (
                PROMO_MISMATCH_NOTE.format("" if self.list_price_given else LIST_PRICE_HINT)
                if s["promo_is_discount_share"] < PROMO_AGREEMENT_MIN
                else ""
            ),
            f"censored share  {s['censored_share']:.1%} "
            f"(stock known on {_share(s['stock_known_share'])} of rows)",
            f"unit cost known {_share(s['unit_cost_known_share'])} of rows, for "
            f"{s['items_with_unit_cost']} of {s['items']} items",
            "list prices     latest per item {:g} .. {:g} (the campaigns' prices unless the "
            "config sets economics.list_price)".format(*s["latest_list_price_range"]),
            f"mean units/row  {s['mean_units_sold']:.2f}",
        ]
        if s["categorical"]:
            lines.append(f"categorical     {', '.join(s['categorical'])}")
        if s["filled_rows"]:
            how = (
                "no sales record, demand unknown"
                if self.gap_policy == "missing"
                else "0 units sold at the list price"
            )
            lines.append(f"gap rows filled {s['filled_rows']} (fill_gaps={self.gap_policy}: {how})")
        if s["dropped_rows"]:
            lines.append(f"rows dropped    {s['dropped_rows']} (fill_gaps=drop)")
        if min_periods is not None and s["periods_per_item_min"] < min_periods:
            short = self.short_items(min_periods)
            lines.append(
                f"short items     {len(short)} with fewer than {min_periods} periods (shortest "
                f"{short.idxmin()!r}, {int(short.min())}); evaluate and recommend need "
                f"{min_periods} of an item's periods (the forecaster's context) to plan it"
            )
        if s["ignored_columns"]:
            lines.append(
                f"not used        {', '.join(s['ignored_columns'])} (not in the contract: map "
                "them with --columns / [data] columns, or keep text ones with --categorical)"
            )
        lines.append(f"fingerprint     {s['fingerprint'][:16]}")
        return "\n".join(lines)


def _share(x: float) -> str:
    """A share in whole percent, never rounded up to 100% or down to 0%.

    >>> _share(0.997), _share(0.9999), _share(1.0), _share(0.0004)
    ('99.7%', '>99.9%', '100%', '<0.1%')
    """
    text = f"{x:.0%}"
    if 0.0 < x < 1.0 and text in ("0%", "100%"):
        text = f"{x:.1%}"
        if text in ("0.0%", "100.0%"):
            text = "<0.1%" if x < 0.5 else ">99.9%"
    return text


# ---- public API ------------------------------------------------------------------------------
def load_history(
    path: str | os.PathLike[str],
    *,
    columns: Mapping[str, str] | None = None,
    fill_gaps: GapPolicy | None = None,
    categorical: Sequence[str] = (),
) -> SalesHistory:
    """Read and validate a CSV or Parquet sales history (format by suffix).

    Args:
        path: ``.csv`` or ``.parquet`` / ``.pq`` file.
        columns: column map ``{contract_name: source_name}`` for other exports.
        fill_gaps: ``None`` (gaps are errors), ``"missing"``, ``"zero"`` or ``"drop"`` (module
            docstring).
        categorical: extra columns to keep as strings (contract names, after the map).

    Raises:
        DataError: one line naming file, data row and column, and the fix.
    """
    path = Path(path)
    source = str(path)
    _check_options(source, fill_gaps, categorical)
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise DataError(
            f"{source}: unknown file type {path.suffix or '(no suffix)'!r}; "
            "give a .csv or .parquet file"
        )
    if not path.is_file():
        raise DataError(f"{source}: file not found; pass an existing .csv or .parquet file")
    if suffix in CSV_SUFFIXES:
        raw, rows = _read_csv(path, source)
    else:
        raw, rows = _read_parquet(path, source)
    return _build(raw, rows, source, columns or {}, fill_gaps, tuple(categorical))


def load_history_with_config(
    path: str | os.PathLike[str],
    config: CampaignConfig | None = None,
    *,
    columns: Mapping[str, str] | None = None,
    fill_gaps: GapPolicy | None = None,
    categorical: Sequence[str] | None = None,
) -> SalesHistory:
    """:func:`load_history` with the campaign config's ``[data]`` section as defaults.

    Explicit arguments win (:meth:`~promogym.config.DataSection.merged`): ``columns`` entries
    override the config's map entry by entry, ``fill_gaps`` and ``categorical`` replace the
    config's values when given.
    """
    from promogym.config import DataSection

    section = (config.data if config is not None else DataSection()).merged(
        columns, fill_gaps, categorical
    )
    return load_history(
        path,
        columns=section.columns,
        fill_gaps=section.fill_gaps,  # type: ignore[arg-type]  # validated by load_history
        categorical=section.categorical,
    )


def history_from_frame(
    df: pd.DataFrame,
    source: str = "<frame>",
    *,
    columns: Mapping[str, str] | None = None,
    fill_gaps: GapPolicy | None = None,
    categorical: Sequence[str] = (),
) -> SalesHistory:
    """Validate an in-memory frame against the contract (same rules as :func:`load_history`).

    Data row ``N`` in error messages is the frame's row at position ``N - 1``.
    """
    _check_options(source, fill_gaps, categorical)
    names = [str(c).strip() for c in df.columns]
    _check_duplicate_names(names, source)
    if df.shape[0] == 0:
        raise DataError(f"{source}: no data rows; give one row per item per period")
    raw = df.copy()
    raw.columns = names
    raw = raw.reset_index(drop=True)
    rows = np.arange(1, raw.shape[0] + 1, dtype=np.int64)
    return _build(raw, rows, source, columns or {}, fill_gaps, tuple(categorical))


def frame_format(path: str | os.PathLike[str]) -> Literal["csv", "parquet"]:
    """``"csv"`` or ``"parquet"`` from the file suffix; anything else is a user error."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise PromogymInputError(
        f"{path}: unknown file type {path.suffix or '(no suffix)'!r}; use a .csv or .parquet file"
    )


def write_frame(
    frame: pd.DataFrame, path: str | os.PathLike[str], file_format: Literal["csv", "parquet"]
) -> None:
    """Write a contract frame as CSV (dates as YYYY-MM-DD) or Parquet; not atomic."""
    if file_format == "csv":
        frame.to_csv(path, index=False, date_format="%Y-%m-%d")
    else:
        frame.to_parquet(path, index=False)


def save_frame(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a contract frame as CSV or Parquet (by suffix), atomically."""
    from promogym.io import atomic_write_with

    file_format = frame_format(path)
    atomic_write_with(path, lambda tmp: write_frame(frame, tmp, file_format))


# ---- reading ---------------------------------------------------------------------------------
def _check_options(source: str, fill_gaps: object, categorical: Sequence[str]) -> None:
    if fill_gaps is not None and fill_gaps not in GAP_POLICIES:
        raise PromogymInputError(
            f"{source}: --fill-gaps / fill_gaps must be 'missing', 'zero' or 'drop' (or unset), "
            f"got {fill_gaps!r}"
        )
    if isinstance(categorical, str):
        raise PromogymInputError(
            f"{source}: categorical must be a list of column names, got the string {categorical!r}"
        )
    for name in categorical:
        if name in CANONICAL_COLUMNS:
            raise PromogymInputError(
                f"{source}: {name!r} is a contract column and cannot be categorical; "
                "name only extra columns"
            )


def _check_duplicate_names(names: list[str], source: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen and name:  # empty names (trailing commas) become "Unnamed: k"
            raise DataError(
                f"{source}: header, column {name!r}: appears {names.count(name)} times; "
                "keep one column of each name"
            )
        seen.add(name)


def _read_csv(path: Path, source: str) -> tuple[pd.DataFrame, np.ndarray]:
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte-order mark (Excel's "CSV UTF-8")
        data = data[3:]
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 ("Unicode text" exports)
            text = data.decode("utf-16")
        else:
            text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise DataError(
                f"{source}: not valid UTF-16 text after its byte-order mark; re-save the file "
                "as UTF-8"
            ) from None
        raise DataError(_encoding_message(data, exc.start, source)) from None
    text = re.sub(r"\A(?:[ \t]*\r?\n)+", "", text)  # blank lines before the header
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise DataError(
            f"{source}: file is empty; expected a header line 'date,item_id,units_sold,price' "
            "then one row per item per period"
        )
    header = [name.strip() for name in next(csv.reader([lines[0]]))]
    if len(header) == 1:
        for delimiter, name in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
            if delimiter in header[0]:
                raise DataError(
                    f"{source}: header, column {header[0][:60]!r}: the file looks "
                    f"{name}-separated ({delimiter!r}); save it as CSV with commas between "
                    "columns (use commas)"
                )
    _check_duplicate_names(header, source)
    try:
        raw = pd.read_csv(
            io.StringIO(text),
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{source}: file is empty; expected a header line and data rows") from None
    except pd.errors.ParserError as exc:
        match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if match:
            want, line, got = (int(g) for g in match.groups())
            raise DataError(
                f"{source}: data row {line - 1}: has {got} fields but the header has {want}"
                f"{_title_hint(lines[0], want)}; quote values that contain commas and check the "
                "delimiter"
            ) from None
        raise DataError(f"{source}: not a readable CSV ({exc}); fix the file's quoting") from None
    if not isinstance(raw.index, pd.RangeIndex):
        # Every row had more fields than the header (e.g. a trailing comma on each line):
        # pandas would quietly take the first column as the index and shift the others.
        for number, fields in enumerate(csv.reader(io.StringIO(text))):
            if number and len(fields) > len(header):
                raise DataError(
                    f"{source}: data row {number}: has {len(fields)} fields but the header has "
                    f"{len(header)}{_title_hint(lines[0], len(header))}; remove the trailing "
                    "commas or quote values that contain commas"
                )
    raw.columns = [str(c).strip() for c in raw.columns]
    rows = np.arange(1, raw.shape[0] + 1, dtype=np.int64)
    blank_row = (raw.apply(lambda col: col.str.strip()) == "").all(axis=1).to_numpy()
    raw, rows = raw.loc[~blank_row].reset_index(drop=True), rows[~blank_row]
    if raw.shape[0] == 0:
        raise DataError(
            f"{source}: the file has a header but no data rows; add one row per item per period"
        )
    return raw, rows


def _title_hint(header_line: str, fields: int) -> str:
    """With fewer header fields than the four required columns: name the line taken as the
    header, since a report's title above the column names is the usual cause."""
    if fields >= len(REQUIRED_COLUMNS):
        return ""
    return (
        f" (the header line is {header_line.strip()[:40]!r}: delete any title lines above the "
        "column names)"
    )


def _encoding_message(data: bytes, offset: int, source: str) -> str:
    line_start = data.rfind(b"\n", 0, offset) + 1
    line_no = data.count(b"\n", 0, offset) + 1
    byte = data[offset : offset + 1].hex().upper()
    where = "header" if line_no == 1 else f"data row {line_no - 1}"
    # Best effort: the column is the number of fields before the bad byte on that line.
    before = data[line_start:offset].decode("latin-1")
    field = len(next(csv.reader([before + "x"]))) - 1
    header_line = data[: data.find(b"\n")] if b"\n" in data else data
    try:
        header = next(csv.reader([header_line.decode("utf-8").strip()]))
        column = f", column {header[field]!r}" if line_no > 1 and field < len(header) else ""
    except (UnicodeDecodeError, StopIteration):
        column = ""
    return (
        f"{source}: {where}{column}: byte 0x{byte} is not UTF-8 text (wrong encoding); "
        "re-save the file as UTF-8, e.g. iconv -f latin1 -t utf-8"
    )


def _read_parquet(path: Path, source: str) -> tuple[pd.DataFrame, np.ndarray]:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt or non-Parquet file
        raise DataError(
            f"{source}: not a readable Parquet file ({type(exc).__name__}); "
            "re-export it as Parquet or CSV"
        ) from None
    _check_duplicate_names([str(name).strip() for name in schema.names], source)
    try:
        raw = pq.read_table(path).to_pandas()
    except Exception as exc:
        raise DataError(
            f"{source}: not a readable Parquet file ({type(exc).__name__}: {exc}); "
            "re-export it as Parquet or CSV"
        ) from None
    if raw.shape[0] == 0:
        raise DataError(f"{source}: file is empty (no data rows); add one row per item per period")
    if not (isinstance(raw.index, pd.RangeIndex) and raw.index.name is None):
        raw = raw.reset_index()  # a frame saved with its index (e.g. a groupby's item_id, date)
    else:
        raw = raw.reset_index(drop=True)
    names = [str(name).strip() for name in raw.columns]
    _check_duplicate_names(names, source)
    raw.columns = names
    return raw, np.arange(1, raw.shape[0] + 1, dtype=np.int64)


# ---- validation --------------------------------------------------------------------------
class _Checker:
    """Builds one-line errors that name file, data row and column (its source name)."""

    def __init__(self, source: str, rows: np.ndarray, source_names: dict[str, str]) -> None:
        self.source = source
        self.rows = rows
        self.source_names = source_names

    def column(self, name: str) -> str:
        original = self.source_names.get(name, name)
        return repr(name) if original == name else f"{original!r} (mapped to {name})"

    def fail(self, position: int, name: str, problem: str, fix: str) -> DataError:
        return DataError(
            f"{self.source}: data row {int(self.rows[position])}, column {self.column(name)}: "
            f"{problem}; {fix}"
        )

    def first(self, bad: np.ndarray) -> int | None:
        where = np.flatnonzero(bad)
        return int(where[0]) if where.size else None


def _blank(values: pd.Series, missing_tokens: bool = False) -> np.ndarray:
    blank = values.isna().to_numpy(dtype=bool, copy=True)
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        text = values.astype(object).where(~blank, "").astype(str).str.strip()
        blank |= (text == "").to_numpy()
        if missing_tokens:
            blank |= text.str.lower().isin(_MISSING_TOKENS).to_numpy()
    return blank


def _numeric(values: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64)
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        values = values.astype(object).where(~values.isna(), "").astype(str).str.strip()
    numbers = pd.to_numeric(values, errors="coerce")
    return pd.Series(numbers).astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)


def _shown(value: Any) -> str:
    text = str(value)
    return repr(text[:40])


def _build(
    raw: pd.DataFrame,
    rows: np.ndarray,
    source: str,
    columns: Mapping[str, str],
    fill_gaps: GapPolicy | None,
    categorical: tuple[str, ...],
) -> SalesHistory:
    raw, source_names = _apply_column_map(raw, source, columns, categorical)
    check = _Checker(source, rows, source_names)
    present = set(raw.columns)
    for name in REQUIRED_COLUMNS:
        if name not in present:
            same = [c for c in raw.columns if str(c).lower() == name]
            if same:
                raise DataError(
                    f"{source}: header: missing required column {name!r}; the file has "
                    f"{same[0]!r} (names are case-sensitive): rename it to {name!r}, or map "
                    "every such column, e.g. --columns "
                    + ",".join(
                        f"{n}={c}"
                        for n in REQUIRED_COLUMNS
                        for c in raw.columns
                        if str(c).lower() == n and c != n
                    )
                )
    missing = [name for name in REQUIRED_COLUMNS if name not in present]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        has = ", ".join(  # as in the file
            f"{source_names[c]!r} (as {c})" if c in source_names else repr(c) for c in raw.columns
        )
        raise DataError(
            f"{source}: header: missing required column{plural} "
            f"{', '.join(map(repr, missing))}; the file has {has}; rename the column{plural} "
            f"or map {'them' if plural else 'it'} with --columns "
            + ",".join(f"{name}=SOURCE_COLUMN" for name in missing)
        )
    for name in categorical:
        if name not in present:
            raise DataError(
                f"{source}: header: missing categorical column {name!r}; the file has "
                f"{', '.join(map(repr, raw.columns))}; drop it from the categorical list or "
                "add the column"
            )

    used = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS) | set(categorical)
    ignored = tuple(str(c) for c in raw.columns if c not in used)
    n = raw.shape[0]
    date = _parse_dates(raw["date"], check)
    item_id = _parse_item_ids(raw["item_id"], check)
    units = _parse_number(
        raw["units_sold"], check, "units_sold", allow_blank=False, minimum=0.0, integer=True
    )
    price = _parse_number(
        raw["price"], check, "price", allow_blank=False, minimum=0.0, strict_minimum=True
    )
    frame = pd.DataFrame(
        {
            "_row": rows,
            "_pos": np.arange(n),
            "date": date,
            "item_id": item_id,
            "units_sold": units.astype(np.int64),
            "price": price,
        }
    )
    optional: dict[str, np.ndarray] = {}
    if "list_price" in present:
        optional["list_price"] = _parse_number(
            raw["list_price"],
            check,
            "list_price",
            allow_blank=True,
            minimum=0.0,
            strict_minimum=True,
        )
    if "promo" in present:
        optional["promo"] = _parse_promo(raw["promo"], check)
    for name in ("stock", "unit_cost"):
        optional[name] = (
            _parse_number(
                raw[name], check, name, allow_blank=True, minimum=0.0, integer=name == "stock"
            )
            if name in present
            else np.full(n, np.nan)
        )
    frame["stock"] = optional["stock"]
    over = frame["stock"].notna().to_numpy() & (frame["units_sold"].to_numpy() > optional["stock"])
    pos = check.first(over)
    if pos is not None:
        raise check.fail(
            pos,
            "stock",
            f"units_sold {int(units[pos])} exceeds stock {optional['stock'][pos]:g} (units on "
            "hand at the start of the period)",
            "fix stock or units_sold, or leave stock empty where unknown",
        )
    frame["unit_cost"] = optional["unit_cost"]
    frame["_list_price_given"] = optional.get("list_price", np.full(n, np.nan))
    frame["_promo_given"] = optional.get("promo", np.full(n, np.nan))
    for name in categorical:
        values = raw[name]
        frame[name] = values.astype(object).where(~_blank(values), "").astype(str).str.strip()

    frame = frame.sort_values(["item_id", "date", "_pos"], kind="stable").reset_index(drop=True)
    _check_duplicates(frame, check)
    freq, step_days = _infer_frequency(frame, check)

    # list_price default: the item's running maximum of price (in date order).
    running_max = frame.groupby("item_id", sort=False)["price"].cummax().to_numpy()
    given = frame["_list_price_given"].to_numpy()
    list_price = np.where(np.isnan(given), running_max, given)
    too_high = frame["price"].to_numpy() > list_price * (1.0 + _PRICE_TOLERANCE)
    pos = check.first(too_high)
    if pos is not None:
        position = int(frame["_pos"].iat[pos])
        raise check.fail(
            position,
            "list_price",
            f"price {frame['price'].iat[pos]:g} is above list_price {list_price[pos]:g}",
            "list_price is the regular price: fix it, or leave it empty to use the running "
            "maximum of price",
        )
    frame["list_price"] = list_price
    frame["discount"] = np.clip(1.0 - frame["price"].to_numpy() / list_price, 0.0, 1.0)
    promo_given = frame["_promo_given"].to_numpy()
    promo_default = frame["price"].to_numpy() < list_price * (1.0 - _PRICE_TOLERANCE)
    frame["promo"] = np.where(np.isnan(promo_given), promo_default, promo_given == 1.0)

    frame, filled, dropped = _apply_gap_policy(frame, check, step_days, fill_gaps, categorical)
    stock = frame["stock"].to_numpy(dtype=np.float64)
    units_out = frame["units_sold"].to_numpy(dtype=np.int64)
    canonical = pd.DataFrame(
        {
            "date": frame["date"].to_numpy().astype("datetime64[ns]"),
            "item_id": frame["item_id"].astype(str).to_numpy(),
            "units_sold": units_out,
            "price": frame["price"].to_numpy(dtype=np.float64),
            "list_price": frame["list_price"].to_numpy(dtype=np.float64),
            "discount": frame["discount"].to_numpy(dtype=np.float64),
            "promo": frame["promo"].to_numpy().astype(np.int8),
            "stock": stock,
            "censored": ~np.isnan(stock) & (units_out >= np.nan_to_num(stock, nan=np.inf)),
            "unit_cost": frame["unit_cost"].to_numpy(dtype=np.float64),
        }
    )
    # One string dtype whatever the source (CSV text, Parquet ints, object columns), so the
    # fingerprint does not depend on the file format.
    canonical["item_id"] = canonical["item_id"].astype(str)
    for name in categorical:
        canonical[name] = frame[name].astype(str).to_numpy(dtype=object)
        canonical[name] = canonical[name].astype(str)
    return SalesHistory(
        frame=canonical,
        freq=freq,
        source=source,
        categorical=categorical,
        filled_rows=filled,
        dropped_rows=dropped,
        gap_policy=fill_gaps if filled or dropped else None,
        ignored_columns=ignored,
        list_price_given=bool(np.isfinite(given).all()),
    )


def _apply_column_map(
    raw: pd.DataFrame, source: str, columns: Mapping[str, str], categorical: tuple[str, ...]
) -> tuple[pd.DataFrame, dict[str, str]]:
    known = REQUIRED_COLUMNS + OPTIONAL_COLUMNS + categorical
    present = list(raw.columns)
    renames: dict[str, str] = {}
    for contract, original in columns.items():
        if contract not in known:
            raise DataError(
                f"{source}: column map: unknown column {contract!r} in "
                f"{contract}={original}; map one of {', '.join(known)}"
            )
        if original not in present:
            raise DataError(
                f"{source}: column map: source column {original!r} (for {contract}) is not in "
                f"the data, which has {', '.join(map(repr, present))}; fix the column map "
                "(--columns, or [data] columns in the config; from Python, a SalesHistory such "
                "as run.history is read as it is)"
            )
        if original in renames:
            raise DataError(
                f"{source}: column map: source column {original!r} is mapped twice "
                f"({renames[original]} and {contract}); map each source column once"
            )
        renames[original] = contract
    for original, contract in renames.items():
        if contract in present and contract not in renames:
            raise DataError(
                f"{source}: column map: the file already has a column {contract!r} and "
                f"{original!r} is mapped onto it; drop one of them or map the other too"
            )
    out = raw.rename(columns=renames)
    return out, {contract: original for original, contract in renames.items()}


def _parse_dates(values: pd.Series, check: _Checker) -> np.ndarray:
    blank = _blank(values)
    pos = check.first(blank)
    if pos is not None:
        raise check.fail(pos, "date", "empty date", "fill in an ISO date like 2024-01-31")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        dates = pd.Series(values)
        if getattr(dates.dt, "tz", None) is not None:
            dates = dates.dt.tz_localize(None)
    else:
        text = values.astype(object).astype(str).str.strip()
        # A UTC offset after a time of day: keep the local date and time (the row's own
        # offset; pandas refuses a column with more than one, e.g. across a DST change).
        text = text.str.replace(_UTC_OFFSET, r"\1", regex=True)
        dates = pd.to_datetime(text, format="ISO8601", errors="coerce")
        pos = check.first(dates.isna().to_numpy())
        if pos is not None:
            raise check.fail(
                pos,
                "date",
                f"cannot parse {_shown(values.iat[pos])} as a date",
                "write ISO dates like 2024-01-31 (YYYY-MM-DD)",
            )
        if getattr(dates.dt, "tz", None) is not None:
            dates = dates.dt.tz_localize(None)
    dates = dates.astype("datetime64[ns]")
    pos = check.first((dates != dates.dt.normalize()).to_numpy())
    if pos is not None:
        raise check.fail(
            pos,
            "date",
            f"{_shown(values.iat[pos])} has a time of day",
            "give one date per period (YYYY-MM-DD), without a time",
        )
    return dates.to_numpy()


def _parse_item_ids(values: pd.Series, check: _Checker) -> np.ndarray:
    blank = _blank(values)
    pos = check.first(blank)
    if pos is not None:
        raise check.fail(pos, "item_id", "empty item_id", "give every row an item identifier")
    if pd.api.types.is_float_dtype(values.dtype) and np.all(values == np.round(values)):
        values = values.astype(np.int64)  # ids 1.0, 2.0 (a float column) are 1, 2 as in a CSV
    ids = values.astype(object).astype(str).str.strip()
    pos = check.first(ids.str.lower().isin(_SUMMARY_IDS).to_numpy())
    if pos is not None:  # a report's total row would become an item with huge sales
        raise check.fail(
            pos,
            "item_id",
            f"{ids.iat[pos]!r} looks like a summary row of a report",
            "delete the total rows (an item really named so: rename it)",
        )
    return ids.to_numpy(dtype=object)


def _parse_number(
    values: pd.Series,
    check: _Checker,
    name: str,
    *,
    allow_blank: bool,
    minimum: float,
    strict_minimum: bool = False,
    integer: bool = False,
) -> np.ndarray:
    """Numbers of one column; blanks become NaN (or an error when not allowed). In an optional
    column (``allow_blank``) the usual "unknown" tokens (NA, NULL, n/a, -, ...) are blanks."""
    blank = _blank(values, missing_tokens=allow_blank)
    numbers = _numeric(values)
    if not allow_blank:
        pos = check.first(blank)
        if pos is not None:
            raise check.fail(pos, name, "empty or NaN value", f"fill in {name} for every row")
    bad = ~blank & ~np.isfinite(numbers)
    pos = check.first(bad)
    if pos is not None:
        raise check.fail(
            pos,
            name,
            f"{_shown(values.iat[pos])} is not a finite number",
            f"write {name} as a plain number like 12 or 12.5 (dot as decimal mark)"
            + (", or leave the cell empty if unknown" if allow_blank else ""),
        )
    known = ~blank
    low = numbers <= minimum if strict_minimum else numbers < minimum
    pos = check.first(known & low)
    if pos is not None:
        rule = f"> {minimum:g}" if strict_minimum else f">= {minimum:g}"
        sign = "non-positive" if strict_minimum else "negative"
        raise check.fail(
            pos, name, f"{sign} value {numbers[pos]:g}, must be {rule}", f"fix {name} in that row"
        )
    if integer:
        pos = check.first(known & (numbers != np.round(numbers)))
        if pos is not None:
            raise check.fail(
                pos,
                name,
                f"{numbers[pos]:g} is not a whole number",
                f"{name} counts units: write an integer",
            )
        # Above 2**53 float64 no longer holds every integer, and int64 soon overflows.
        pos = check.first(known & (numbers > 2.0**53))
        if pos is not None:
            raise check.fail(
                pos, name, f"{numbers[pos]:g} is too large for a unit count", f"fix {name}"
            )
    return np.where(known, numbers, np.nan)


def _parse_promo(values: pd.Series, check: _Checker) -> np.ndarray:
    blank = _blank(values, missing_tokens=True)
    text = values.astype(object).where(~blank, "").astype(str).str.strip().str.lower()
    mapping = {"1": 1.0, "0": 0.0, "1.0": 1.0, "0.0": 0.0, "true": 1.0, "false": 0.0}
    flags = text.map(mapping).to_numpy(dtype=np.float64, na_value=np.nan)
    pos = check.first(~blank & np.isnan(flags))
    if pos is not None:
        raise check.fail(
            pos,
            "promo",
            f"{_shown(values.iat[pos])} is not 0 or 1",
            "write 1 for a promotion period and 0 otherwise (or leave it empty)",
        )
    return np.where(blank, np.nan, flags)


def _check_duplicates(frame: pd.DataFrame, check: _Checker) -> None:
    dup = frame.duplicated(["item_id", "date"], keep=False).to_numpy()
    if not dup.any():
        return
    rows = frame.loc[dup, ["_row", "_pos", "item_id", "date"]].sort_values("_row")
    first = rows.iloc[0]
    partner = rows[(rows["item_id"] == first["item_id"]) & (rows["date"] == first["date"])].iloc[1]
    raise DataError(
        f"{check.source}: data rows {int(first['_row'])} and {int(partner['_row'])}, columns "
        f"{check.column('item_id')} and {check.column('date')}: both hold item "
        f"{first['item_id']!r} on {first['date'].date().isoformat()}; keep one row per item "
        "and period (sum or drop the duplicates)"
    )


def _day_numbers(frame: pd.DataFrame) -> np.ndarray:
    return frame["date"].to_numpy().astype("datetime64[D]").astype(np.int64)


def _step_info(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Day difference to the previous row of the same item (0 on an item's first row)."""
    days = _day_numbers(frame)
    items = frame["item_id"].to_numpy()
    diff = np.zeros(days.shape[0], dtype=np.int64)
    same = np.zeros(days.shape[0], dtype=bool)
    if days.shape[0] > 1:
        same[1:] = items[1:] == items[:-1]
        diff[1:] = np.where(same[1:], days[1:] - days[:-1], 0)
    return diff, same


def _infer_frequency(frame: pd.DataFrame, check: _Checker) -> tuple[Frequency, int]:
    diff, same = _step_info(frame)
    if not same.any():
        raise DataError(
            f"{check.source}: column {check.column('date')}: cannot infer the frequency, every "
            "item has a single period; give at least 2 periods per item"
        )
    steps = (
        pd.DataFrame({"item_id": frame["item_id"], "diff": diff, "i": np.arange(len(diff))})
        .loc[same]
        .sort_values(["diff", "i"])
        .groupby("item_id", sort=False)
        .first()
    )
    rows = frame["_row"].to_numpy()

    def pair(i: int) -> str:
        return f"data rows {int(rows[i - 1])} and {int(rows[i])}"

    odd = steps[~steps["diff"].isin(list(_PERIOD_DAYS.values()))]
    if not odd.empty:
        item, (step, i) = odd.index[0], odd.iloc[0].tolist()
        raise DataError(
            f"{check.source}: {pair(int(i))}, column {check.column('date')}: item {item!r} has "
            f"periods {int(step)} days apart; promogym reads daily (1 day) or weekly (7 days) "
            "data, aggregate it to one of them"
        )
    if steps["diff"].nunique() > 1:
        daily = steps[steps["diff"] == 1].iloc[0]
        weekly = steps[steps["diff"] == 7].iloc[0]
        d_item = steps.index[steps["diff"] == 1][0]
        w_item = steps.index[steps["diff"] == 7][0]
        raise DataError(
            f"{check.source}: {pair(int(weekly['i']))}, column {check.column('date')}: mixed "
            f"frequencies, item {w_item!r} is weekly but item {d_item!r} is daily "
            f"({pair(int(daily['i']))}); give all items the same frequency"
        )
    step_days = int(steps["diff"].iloc[0])
    freq: Frequency = "D" if step_days == 1 else "W"
    if freq == "W":
        irregular = same & (diff % 7 != 0)
        where = np.flatnonzero(irregular)
        if where.size:
            i = int(where[0])
            raise DataError(
                f"{check.source}: {pair(i)}, column {check.column('date')}: item "
                f"{frame['item_id'].iat[i]!r} has periods {int(diff[i])} days apart in weekly "
                "data; put every period on the same weekday (e.g. the week's start)"
            )
        weekdays = (_day_numbers(frame) + 3) % 7
        where = np.flatnonzero(weekdays != weekdays[0])
        if where.size:
            i = int(where[0])
            raise DataError(
                f"{check.source}: data row {int(rows[i])}, column {check.column('date')}: "
                f"weekly dates fall on different weekdays ({_WEEKDAYS[weekdays[i]]} here, "
                f"{_WEEKDAYS[weekdays[0]]} in data row {int(rows[0])}); put every week on the "
                "same weekday (e.g. the week's start)"
            )
    return freq, step_days


def _apply_gap_policy(
    frame: pd.DataFrame,
    check: _Checker,
    step_days: int,
    fill_gaps: GapPolicy | None,
    categorical: tuple[str, ...],
) -> tuple[pd.DataFrame, int, int]:
    diff, same = _step_info(frame)
    gap = same & (diff > step_days)
    if not gap.any():
        return frame, 0, 0
    if fill_gaps is None:
        i = int(np.flatnonzero(gap)[0])
        rows = frame["_row"].to_numpy()
        missing = int(diff[i] // step_days) - 1
        unit = "day" if step_days == 1 else "week"
        raise DataError(
            f"{check.source}: data rows {int(rows[i - 1])} and {int(rows[i])}, column "
            f"{check.column('date')}: item {frame['item_id'].iat[i]!r} has a gap of "
            f"{missing} missing {unit}{'s' if missing != 1 else ''} after "
            f"{frame['date'].iat[i - 1].date().isoformat()}; add the missing rows (units_sold 0 "
            "if nothing sold) or choose a gap policy: --fill-gaps missing (no record, demand "
            "unknown) | zero (nothing sold) | drop"
        )
    if fill_gaps == "drop":
        run = pd.Series(gap.astype(np.int64)).groupby(frame["item_id"].to_numpy()).cumsum()
        last_run = run.groupby(frame["item_id"].to_numpy()).transform("max")
        keep = (run == last_run).to_numpy()
        return frame.loc[keep].reset_index(drop=True), 0, int((~keep).sum())
    # fill_gaps "zero" / "missing": every missing period copies the row before the gap (list
    # price, unit cost, categorical columns) and sells nothing at the list price; "missing"
    # with a stock of 0, i.e. censored at zero: demand unknown.
    missing = np.where(gap, diff // step_days - 1, 0)
    source_rows = np.repeat(np.arange(frame.shape[0]) - 1, missing)
    first_of_run = np.repeat(np.cumsum(missing) - missing, missing)
    periods_after = np.arange(source_rows.shape[0]) - first_of_run + 1
    fill = frame.iloc[source_rows].copy()
    fill["date"] = fill["date"] + pd.to_timedelta(periods_after * step_days, unit="D")
    fill["price"] = fill["list_price"]
    fill["units_sold"] = 0
    fill["discount"] = 0.0
    fill["promo"] = False
    fill["stock"] = 0.0 if fill_gaps == "missing" else np.nan
    fill["_row"] = 0
    filled = pd.concat([frame, fill], ignore_index=True)
    filled = filled.sort_values(["item_id", "date"], kind="stable").reset_index(drop=True)
    return filled, int(filled.shape[0] - frame.shape[0]), 0
