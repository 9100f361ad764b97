"""The sales-history contract: every bad input gets one line naming file, row, column, fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from promogym.cli import app
from promogym.config import CampaignConfig
from promogym.data import SalesHistory, history_from_frame, load_history, load_history_with_config
from promogym.errors import DataError, PromogymInputError

HEADER = "date,item_id,units_sold,price"
GOOD = f"{HEADER}\n2024-01-01,a,3,10\n2024-01-02,a,4,8\n2024-01-03,a,0,10\n"


def csv_text(*rows: str, header: str = HEADER) -> str:
    return "\n".join((header, *rows)) + "\n"


# (case id, file name, file content, load_history kwargs, fragments the message must contain)
BAD_INPUTS = [
    (
        "missing-column",
        "d.csv",
        csv_text("2024-01-01,a,3", header="date,item_id,price"),
        {},
        ["header", "missing required column 'units_sold'", "'date', 'item_id', 'price'"],
    ),
    (
        "missing-columns-mapped",
        "d.csv",
        csv_text("2024-01-01,a,3", header="week,sku,cost"),
        {"columns": {"date": "week"}},
        [
            "missing required columns 'item_id', 'units_sold', 'price'",
            "the file has 'week' (as date), 'sku', 'cost'",
            "--columns item_id=SOURCE_COLUMN,units_sold=SOURCE_COLUMN,price=SOURCE_COLUMN",
        ],
    ),
    (
        "duplicated-column",
        "d.csv",
        csv_text("2024-01-01,a,3,10,11", header=HEADER + ",price"),
        {},
        ["header", "column 'price'", "appears 2 times"],
    ),
    (
        "unparseable-date",
        "d.csv",
        csv_text("2024-01-01,a,3,10", "2024-13-01,a,3,10"),
        {},
        ["data row 2", "column 'date'", "2024-13-01", "ISO dates"],
    ),
    (
        "empty-date",
        "d.csv",
        csv_text("2024-01-01,a,3,10", ",a,3,10"),
        {},
        ["data row 2", "column 'date'", "empty date"],
    ),
    (
        "duplicate-item-date",
        "d.csv",
        csv_text("2024-01-01,a,3,10", "2024-01-02,a,3,10", "2024-01-01,a,5,10"),
        {},
        ["data rows 1 and 3", "'item_id'", "'date'", "one row per item and period"],
    ),
    (
        "negative-units",
        "d.csv",
        csv_text("2024-01-01,a,3,10", "2024-01-02,a,-1,10"),
        {},
        ["data row 2", "column 'units_sold'", "negative", ">= 0"],
    ),
    (
        "fractional-units",
        "d.csv",
        csv_text("2024-01-01,a,2.5,10", "2024-01-02,a,1,10"),
        {},
        ["data row 1", "column 'units_sold'", "whole number"],
    ),
    (
        "huge-units",
        "d.csv",
        csv_text("2024-01-01,a,3,10", "2024-01-02,a,1e30,10"),
        {},
        ["data row 2", "column 'units_sold'", "too large"],
    ),
    (
        "text-units",
        "d.csv",
        csv_text("2024-01-01,a,3,10", "2024-01-02,a,lots,10"),
        {},
        ["data row 2", "column 'units_sold'", "'lots'", "plain number"],
    ),
    (
        "zero-price",
        "d.csv",
        csv_text("2024-01-01,a,3,10", "2024-01-02,a,3,0"),
        {},
        ["data row 2", "column 'price'", "non-positive", "> 0"],
    ),
    (
        "nan-price",
        "d.csv",
        csv_text("2024-01-01,a,3,NaN", "2024-01-02,a,3,10"),
        {},
        ["data row 1", "column 'price'"],
    ),
    (
        "empty-price",
        "d.csv",
        csv_text("2024-01-01,a,3,10", "2024-01-02,a,3,"),
        {},
        ["data row 2", "column 'price'", "empty"],
    ),
    (
        "mixed-frequencies",
        "d.csv",
        csv_text(
            "2024-01-01,a,3,10",
            "2024-01-02,a,3,10",
            "2024-01-01,b,3,10",
            "2024-01-08,b,3,10",
        ),
        {},
        [
            "data rows 3 and 4",
            "column 'date'",
            "mixed frequencies",
            "'b' is weekly",
            "'a' is daily",
        ],
    ),
    (
        "irregular-weekly",
        "d.csv",
        csv_text("2024-01-01,a,3,10", "2024-01-08,a,3,10", "2024-01-18,a,3,10"),
        {},
        ["data rows 2 and 3", "column 'date'", "10 days apart", "same weekday"],
    ),
    (
        "weekly-different-weekdays",
        "d.csv",
        csv_text(
            "2024-01-01,a,3,10",
            "2024-01-08,a,3,10",
            "2024-01-02,b,3,10",
            "2024-01-09,b,3,10",
        ),
        {},
        ["data row 3", "column 'date'", "different weekdays", "Tuesday", "Monday"],
    ),
    (
        "unsupported-step",
        "d.csv",
        csv_text("2024-01-01,a,3,10", "2024-01-04,a,3,10", "2024-01-07,a,3,10"),
        {},
        ["data rows 1 and 2", "column 'date'", "3 days apart", "daily (1 day) or weekly"],
    ),
    (
        "single-period",
        "d.csv",
        csv_text("2024-01-01,a,3,10", "2024-01-01,b,3,10"),
        {},
        ["column 'date'", "cannot infer the frequency", "at least 2 periods"],
    ),
    (
        "gap",
        "d.csv",
        csv_text("2024-01-01,a,3,10", "2024-01-02,a,3,10", "2024-01-05,a,3,10"),
        {},
        [
            "data rows 2 and 3",
            "column 'date'",
            "gap of 2 missing days",
            "--fill-gaps missing (no record, demand unknown) | zero",
        ],
    ),
    (
        "units-above-stock",
        "d.csv",
        csv_text("2024-01-01,a,3,10,5", "2024-01-02,a,7,10,6", header=HEADER + ",stock"),
        {},
        ["data row 2", "column 'stock'", "units_sold 7 exceeds stock 6"],
    ),
    (
        "price-above-list-price",
        "d.csv",
        csv_text("2024-01-01,a,3,10,10", "2024-01-02,a,3,12,10", header=HEADER + ",list_price"),
        {},
        ["data row 2", "column 'list_price'", "price 12 is above list_price 10"],
    ),
    (
        "bad-promo-flag",
        "d.csv",
        csv_text("2024-01-01,a,3,10,0", "2024-01-02,a,3,10,2", header=HEADER + ",promo"),
        {},
        ["data row 2", "column 'promo'", "'2' is not 0 or 1"],
    ),
    (
        "empty-file",
        "d.csv",
        "",
        {},
        ["file is empty", "header line"],
    ),
    (
        "header-only",
        "d.csv",
        HEADER + "\n",
        {},
        ["header but no data rows"],
    ),
    (
        "latin1-encoding",
        "d.csv",
        csv_text("2024-01-01,a,3,10", "2024-01-02,café,3,10").encode("latin-1"),
        {},
        ["data row 2", "column 'item_id'", "0xE9", "not UTF-8", "re-save the file as UTF-8"],
    ),
    (
        "semicolon-delimiter",
        "d.csv",
        "date;item_id;units_sold;price\n2024-01-01;a;3;10\n",
        {},
        ["header", "semicolon-separated", "use commas"],
    ),
    (
        "too-many-fields",
        "d.csv",
        csv_text("2024-01-01,a,3,10", "2024-01-02,a,3,10,9"),
        {},
        ["data row 2", "has 5 fields but the header has 4"],
    ),
    (
        "trailing-comma-on-every-row",  # pandas would shift every column by one
        "d.csv",
        csv_text("2024-01-01,a,3,10,", "2024-01-02,a,3,10,"),
        {},
        ["data row 1", "has 5 fields but the header has 4", "trailing commas"],
    ),
    (
        "column-map-unknown-name",
        "d.csv",
        GOOD,
        {"columns": {"sold": "units_sold"}},
        ["column map", "unknown column 'sold'", "map one of date, item_id"],
    ),
    (
        "column-map-missing-source",
        "d.csv",
        GOOD,
        {"columns": {"units_sold": "move"}},
        ["column map", "source column 'move'", "not in the data, which has"],
    ),
    (
        "column-mapped-error-names-source",
        "d.csv",
        csv_text("2024-01-01,a,-3,10", header="date,item_id,move,price"),
        {"columns": {"units_sold": "move"}},
        ["data row 1", "column 'move' (mapped to units_sold)", "negative"],
    ),
    (
        "missing-categorical",
        "d.csv",
        GOOD,
        {"categorical": ["store"]},
        ["missing categorical column 'store'"],
    ),
    (
        "unknown-suffix",
        "d.xlsx",
        GOOD,
        {},
        ["unknown file type '.xlsx'", ".csv or .parquet"],
    ),
    (
        "not-parquet",
        "d.parquet",
        GOOD,
        {},
        ["not a readable Parquet file"],
    ),
]


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "fragments"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_raises_one_line(
    tmp_path: Path, name: str, content: str | bytes, kwargs: dict, fragments: list[str]
) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(DataError) as err:
        load_history(path, **kwargs)
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def cli_args(path: Path, kwargs: dict) -> list[str]:
    args = ["check-data", "--data", str(path)]
    if "columns" in kwargs:
        args += ["--columns", ",".join(f"{k}={v}" for k, v in kwargs["columns"].items())]
    if "categorical" in kwargs:
        args += ["--categorical", ",".join(kwargs["categorical"])]
    return args


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "fragments"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_cli_check_data_exits_2_with_one_line(
    tmp_path: Path, name: str, content: str | bytes, kwargs: dict, fragments: list[str]
) -> None:
    path = write(tmp_path, name, content)
    result = CliRunner().invoke(app, cli_args(path, kwargs))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert fragments[0] in lines[0]


def test_parquet_duplicated_column_names(tmp_path: Path) -> None:
    path = tmp_path / "dup.parquet"
    table = pa.table(
        [pa.array(["2024-01-01"]), pa.array(["a"]), pa.array([1]), pa.array([2.0]), pa.array([3])],
        names=["date", "item_id", "units_sold", "price", "units_sold"],
    )
    pq.write_table(table, path)
    with pytest.raises(DataError, match="column 'units_sold': appears 2 times"):
        load_history(path)


def test_empty_parquet(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    pd.DataFrame({"date": [], "item_id": [], "units_sold": [], "price": []}).to_parquet(path)
    with pytest.raises(DataError, match="empty"):
        load_history(path)


def test_row_numbers_count_blank_lines_like_the_file(tmp_path: Path) -> None:
    # Data row N is line N + 1 of the file, blank lines included.
    path = write(tmp_path, "d.csv", csv_text("2024-01-01,a,3,10", "", "2024-01-02,a,-3,10"))
    with pytest.raises(DataError, match="data row 3, column 'units_sold'"):
        load_history(path)
    assert path.read_text().splitlines()[3].startswith("2024-01-02,a,-3")


def test_frame_errors_count_positions_from_one() -> None:
    frame = pd.DataFrame(
        {
            "date": ["2024-01-01", "2024-01-02", "2024-01-03"],
            "item_id": ["a", "a", "a"],
            "units_sold": [1, 2, 3],
            "price": [1.0, -2.0, 1.0],
        },
        index=[10, 20, 30],
    )
    with pytest.raises(DataError, match=r"^sales: data row 2, column 'price'"):
        history_from_frame(frame, source="sales")


def test_bad_gap_policy_is_a_user_error(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", GOOD)
    with pytest.raises(
        PromogymInputError, match="--fill-gaps / fill_gaps must be 'missing', 'zero' or 'drop'"
    ):
        load_history(path, fill_gaps="interpolate")  # type: ignore[arg-type]
    result = CliRunner().invoke(app, ["check-data", "--data", str(path), "--fill-gaps", "x"])
    assert result.exit_code == 2 and "fill_gaps" in result.stderr


# ---- valid inputs ------------------------------------------------------------------------------
def test_canonical_frame_defaults_and_dtypes(tmp_path: Path) -> None:
    text = csv_text(
        "2024-01-02,b,5,4.0,,7",
        "2024-01-01,a,3,10,,",
        "2024-01-02,a,4,8,,4",
        "2024-01-03,a,2,12,,",
        "2024-01-01,b,1,5.0,,1",
        header=HEADER + ",promo,stock",
    )
    history = load_history(write(tmp_path, "d.csv", text))
    f = history.frame
    assert list(f.columns) == [
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
    ]
    assert f["item_id"].tolist() == ["a", "a", "a", "b", "b"]
    assert f["date"].dt.day.tolist() == [1, 2, 3, 1, 2]
    # list_price: running maximum of price per item; promo: price < list_price.
    assert f["list_price"].tolist() == [10.0, 10.0, 12.0, 5.0, 5.0]
    assert f["promo"].tolist() == [0, 1, 0, 0, 1]
    np.testing.assert_allclose(f["discount"], [0.0, 0.2, 0.0, 0.0, 0.2])
    # censored where units_sold >= stock; unknown stock is NaN and never censored.
    assert f["censored"].tolist() == [False, True, False, True, False]
    assert np.isnan(f["stock"].iat[0]) and np.isnan(f["unit_cost"]).all()
    assert history.freq == "D" and history.item_ids == ["a", "b"]
    assert f["units_sold"].dtype == np.int64 and f["promo"].dtype == np.int8
    assert f["censored"].dtype == bool and f["date"].dtype == "datetime64[ns]"
    assert isinstance(history, SalesHistory)


def test_explicit_list_price_and_promo_are_kept(tmp_path: Path) -> None:
    text = csv_text(
        "2024-01-01,a,3,10,12,1,9.5",
        "2024-01-02,a,4,12,12,false,9.5",
        header=HEADER + ",list_price,promo,unit_cost",
    )
    f = load_history(write(tmp_path, "d.csv", text)).frame
    assert f["list_price"].tolist() == [12.0, 12.0]
    assert f["promo"].tolist() == [1, 0]
    assert f["unit_cost"].tolist() == [9.5, 9.5]


def test_column_map_and_weekly_frequency(tmp_path: Path) -> None:
    text = (
        "week_start,item_id,move,price,store\n"
        "2024-01-01,a,3,10,north\n2024-01-08,a,4,8,north\n2024-01-15,a,0,10,south\n"
    )
    history = load_history(
        write(tmp_path, "w.csv", text),
        columns={"units_sold": "move", "date": "week_start"},
        categorical=["store"],
    )
    assert history.freq == "W" and history.period_days == 7
    assert history.frame["units_sold"].tolist() == [3, 4, 0]
    assert history.frame["store"].tolist() == ["north", "north", "south"]
    assert history.categorical == ("store",)


def test_cli_column_map(tmp_path: Path) -> None:
    text = "week_start,item_id,move,price\n2024-01-01,a,3,10\n2024-01-08,a,4,8\n"
    path = write(tmp_path, "w.csv", text)
    result = CliRunner().invoke(
        app, ["check-data", "--data", str(path), "--columns", "units_sold=move,date=week_start"]
    )
    assert result.exit_code == 0, result.output
    assert "weekly" in result.stdout and "2024-01-01 .. 2024-01-08" in result.stdout


def test_fill_gaps_zero_adds_zero_rows_at_last_list_price(tmp_path: Path) -> None:
    text = csv_text(
        "2024-01-01,a,3,10,4.0,north",
        "2024-01-02,a,4,8,4.0,north",
        "2024-01-05,a,2,12,4.5,south",
        "2024-01-01,b,1,5,1.0,east",
        "2024-01-02,b,1,5,1.0,east",
        header=HEADER + ",unit_cost,store",
    )
    history = load_history(write(tmp_path, "d.csv", text), fill_gaps="zero", categorical=["store"])
    a = history.item("a")
    assert a["date"].dt.day.tolist() == [1, 2, 3, 4, 5]
    assert a["units_sold"].tolist() == [3, 4, 0, 0, 2]
    assert a["price"].tolist() == [10.0, 8.0, 10.0, 10.0, 12.0]
    assert a["promo"].tolist() == [0, 1, 0, 0, 0]
    assert a["unit_cost"].tolist() == [4.0, 4.0, 4.0, 4.0, 4.5]
    assert a["store"].tolist() == ["north"] * 4 + ["south"]
    assert a["stock"].isna().all() and not a["censored"].any()
    assert history.filled_rows == 2 and len(history.frame) == 7


def test_fill_gaps_missing_adds_rows_censored_at_zero_stock(tmp_path: Path) -> None:
    """Unreported periods: no sale recorded, demand unknown (censored at a stock of 0)."""
    text = csv_text(
        "2024-01-01,a,3,10",
        "2024-01-02,a,4,8",
        "2024-01-05,a,2,12",
        "2024-01-01,b,1,5",
        "2024-01-02,b,1,5",
    )
    path = write(tmp_path, "d.csv", text)
    with pytest.raises(DataError, match="--fill-gaps missing"):
        load_history(path)
    history = load_history(path, fill_gaps="missing")
    a = history.item("a")
    assert a["units_sold"].tolist() == [3, 4, 0, 0, 2]
    assert a["price"].tolist() == [10.0, 8.0, 10.0, 10.0, 12.0]
    assert a["stock"].tolist()[2:4] == [0.0, 0.0] and a["censored"].tolist()[2:4] == [True, True]
    assert not a["censored"].iloc[[0, 1, 4]].any() and a["stock"].iloc[[0, 1, 4]].isna().all()
    assert history.filled_rows == 2 and history.gap_policy == "missing"
    assert "gap rows filled 2 (fill_gaps=missing: no sales record, demand unknown)" in (
        history.describe()
    )
    assert "(fill_gaps=zero: 0 units sold" in load_history(path, fill_gaps="zero").describe()
    assert history.summary()["censored_share"] == 0.0  # no stock-outs: the gaps are not ones
    assert history.summary()["stock_known_share"] == 0.0


def test_fill_gaps_drop_keeps_last_gap_free_run(tmp_path: Path) -> None:
    text = csv_text(
        "2024-01-01,a,3,10",
        "2024-01-03,a,4,10",
        "2024-01-04,a,5,10",
        "2024-01-07,a,6,10",
        "2024-01-08,a,7,10",
        "2024-01-09,a,8,10",
        "2024-01-01,b,1,5",
        "2024-01-02,b,1,5",
    )
    history = load_history(write(tmp_path, "d.csv", text), fill_gaps="drop")
    assert history.item("a")["units_sold"].tolist() == [6, 7, 8]
    assert len(history.item("b")) == 2 and history.dropped_rows == 3
    # check-data names the items too short for the forecaster's context (not plannable yet).
    assert "short items     2 with fewer than 4 periods (shortest 'b', 2)" in history.describe(4)
    assert "short items" not in history.describe(2) and "short items" not in history.describe()


def test_utf8_bom_and_whitespace_are_accepted(tmp_path: Path) -> None:
    text = "\ufeffdate, item_id ,units_sold,price\n2024-01-01, a ,3, 10\n2024-01-02,a,4,8\n"
    history = load_history(write(tmp_path, "d.csv", text))
    assert history.item_ids == ["a"] and history.frame["price"].tolist() == [10.0, 8.0]


def test_csv_and_parquet_give_the_same_fingerprint(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-01", "2024-01-02"]),
            "item_id": ["x", "x", "y", "y"],
            "units_sold": [3, 0, 7, 2],
            "price": [19.99, 15.99, 4.1, 4.1],
            "list_price": [19.99, 19.99, 4.1, 4.1],
            "stock": [10, 0, 7, 9],
            "unit_cost": [9.1, 9.1, 2.0, 2.0],
            "store": ["n", "n", "s", "s"],
        }
    )
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    from_csv = load_history(tmp_path / "d.csv", categorical=["store"])
    from_parquet = load_history(tmp_path / "d.parquet", categorical=["store"])
    pd.testing.assert_frame_equal(from_csv.frame, from_parquet.frame)
    assert from_csv.fingerprint() == from_parquet.fingerprint()
    # ...and the fingerprint sees the data: one unit more changes it.
    frame.loc[0, "units_sold"] += 1
    frame.to_csv(tmp_path / "e.csv", index=False)
    changed = load_history(tmp_path / "e.csv", categorical=["store"])
    assert changed.fingerprint() != from_csv.fingerprint()


def test_parquet_with_typed_date_columns(tmp_path: Path) -> None:
    import datetime as dt

    table = pa.table(
        {
            "date": pa.array([dt.date(2024, 1, 1), dt.date(2024, 1, 2)], type=pa.date32()),
            "item_id": pa.array([1, 1]),
            "units_sold": pa.array([2, None], type=pa.int64()),
            "price": pa.array([3.0, 3.0]),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    with pytest.raises(DataError, match="data row 2, column 'units_sold': empty"):
        load_history(tmp_path / "t.parquet")
    good = table.set_column(2, "units_sold", pa.array([2, 1], type=pa.int64()))
    pq.write_table(good, tmp_path / "g.parquet")
    history = load_history(tmp_path / "g.parquet")
    assert history.item_ids == ["1"] and history.freq == "D"


def test_check_data_summary(tmp_path: Path) -> None:
    text = csv_text("2024-01-01,a,3,10,3", "2024-01-02,a,4,8,9", header=HEADER + ",stock")
    result = CliRunner().invoke(app, ["check-data", "--data", str(write(tmp_path, "d.csv", text))])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "items           1" in out and "2024-01-01 .. 2024-01-02" in out
    assert "promo share     50.0%" in out and "censored share  50.0%" in out
    assert "promo agrees    with discount > 0 on 100.0% of rows" in out  # the default promo
    assert "as often as the history did" not in out
    assert "unit cost known 0% of rows, for 0 of 1 items" in out
    assert "list prices     latest per item 10 .. 10" in out
    assert len(out.splitlines()) <= 20
    # A promo flag apart from the discount (e.g. deals against a running-maximum list price).
    deals = csv_text(
        "2024-01-01,a,3,10,0", "2024-01-02,a,4,9,0", "2024-01-03,a,9,8,1", header=HEADER + ",promo"
    )
    out = CliRunner().invoke(app, ["check-data", "--data", str(write(tmp_path, "p.csv", deals))])
    assert "promo agrees    with discount > 0 on 66.7% of rows (the simulator cannot " in (
        out.stdout
    )
    assert "a list_price column with the regular price" in out.stdout  # none was given
    # With list prices given, the promo flag differs from the discount on purpose: no hint.
    deals = csv_text(
        "2024-01-01,a,3,10,0,10",
        "2024-01-02,a,4,9,0,10",
        "2024-01-03,a,9,8,1,10",
        header=HEADER + ",promo,list_price",
    )
    out = CliRunner().invoke(app, ["check-data", "--data", str(write(tmp_path, "l.csv", deals))])
    assert "on 66.7% of rows (the simulator cannot set promotions apart from discounts: it " in (
        out.stdout
    )
    assert "as often as the history did at that depth)" in out.stdout
    assert "list_price column" not in out.stdout
    # A list_price column left blank on some rows: those fall back to the running maximum.
    partly = deals.replace("2024-01-02,a,4,9,0,10", "2024-01-02,a,4,9,0,")
    out = CliRunner().invoke(app, ["check-data", "--data", str(write(tmp_path, "m.csv", partly))])
    assert "a list_price column with the regular price" in out.stdout


def test_config_data_section_sets_defaults_and_options_win(tmp_path: Path) -> None:
    text = "week,item_id,move,price,store\n2024-01-01,a,3,10,n\n2024-01-02,a,1,10,n\n2024-01-04,a,4,8,n\n"
    path = write(tmp_path, "d.csv", text)
    config = CampaignConfig().replace(
        data={
            "columns": {"units_sold": "move", "date": "week"},
            "fill_gaps": "zero",
            "categorical": ["store"],
        }
    )
    history = load_history_with_config(path, config)
    assert history.filled_rows == 1 and history.categorical == ("store",)
    with pytest.raises(DataError, match="gap of 1 missing day"):
        load_history_with_config(
            path, CampaignConfig().replace(data={"columns": {"units_sold": "move", "date": "week"}})
        )
    dropped = load_history_with_config(path, config, fill_gaps="drop", categorical=())
    assert dropped.dropped_rows == 2 and dropped.categorical == ()
    # A column the contract does not use is named in the summary, not silently dropped.
    assert history.ignored_columns == () and dropped.ignored_columns == ("store",)
    assert "not used        store" in dropped.describe()
    assert "not used" not in history.describe()
    toml = tmp_path / "c.toml"
    config.save(toml)
    result = CliRunner().invoke(
        app, ["check-data", "--data", str(path), "--config", str(toml), "--fill-gaps", "drop"]
    )
    assert result.exit_code == 0, result.output
    assert "rows dropped    2" in result.stdout


def test_blank_lines_before_the_header_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("\n \n" + GOOD)
    assert load_history(path).frame["units_sold"].tolist() == [3, 4, 0]


def test_messy_exports_are_read(tmp_path: Path) -> None:
    """Files as BI tools, R, SQL, Spark and pandas write them (a review's findings)."""
    rows = ["2024-03-30T00:00:00+01:00,a,3,10", "2024-03-31T00:00:00+02:00,a,4,8"]  # DST change
    rows += ["2024-03-30,b,1,5", "2024-03-31T00:00:00Z,b,2,5"]  # naive beside aware
    mixed = load_history(
        write(tmp_path, "tz.csv", "date,item_id,units_sold,price\n" + "\n".join(rows))
    )
    assert mixed.frame["date"].dt.day.tolist() == [30, 31, 30, 31]
    # UTF-16 with its byte-order mark ("Unicode text").
    text = "date,item_id,units_sold,price\r\n2024-01-01,a,3,10\r\n2024-01-02,a,4,8\r\n"
    utf16 = load_history(write(tmp_path, "u16.csv", text.encode("utf-16")))
    assert utf16.frame["units_sold"].tolist() == [3, 4]
    # "Unknown" tokens in optional columns are blanks; in required ones they stay errors.
    na = "date,item_id,units_sold,price,stock,promo\n2024-01-01,a,3,10,NA,NULL\n2024-01-02,a,4,8,7,1\n"
    history = load_history(write(tmp_path, "na.csv", na))
    assert history.frame["stock"].isna().tolist() == [True, False]
    with pytest.raises(DataError, match="or leave the cell empty if unknown"):
        load_history(write(tmp_path, "bad.csv", na.replace("NA", "many")))
    with pytest.raises(DataError, match="column 'price'"):
        load_history(write(tmp_path, "req.csv", na.replace(",10,", ",NA,")))
    # Two empty header cells (Excel's trailing commas) are unnamed, unused columns.
    trailing = "date,item_id,units_sold,price,,\n2024-01-01,a,3,10,,\n2024-01-02,a,4,8,,\n"
    assert len(load_history(write(tmp_path, "tr.csv", trailing)).frame) == 2
    # A report's total rows are not an item.
    totals = "date,item_id,units_sold,price\n2024-01-01,a,3,10\n2024-01-01,Grand Total,3,10\n"
    with pytest.raises(DataError, match="data row 2, column 'item_id': 'Grand Total' looks like"):
        load_history(write(tmp_path, "totals.csv", totals))
    # Mixed-case headers: the error names the case and the full column map.
    with pytest.raises(DataError, match="'Date' .names are case-sensitive.*units_sold=Units_Sold"):
        load_history(
            write(tmp_path, "case.csv", "Date,Item_ID,Units_Sold,Price\n2024-01-01,a,3,10\n")
        )


def test_parquet_with_an_index_and_float32_prices(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=4).repeat(2),
            "item_id": ["a", "b"] * 4,
            "units_sold": [3, 1, 4, 2, 5, 1, 6, 2],
            "price": np.array([19.99, 9.99, 15.99, 9.99, 19.99, 9.99, 19.99, 9.99], np.float32),
            "list_price": [19.99, 9.99] * 4,
        }
    )
    frame.groupby(["item_id", "date"]).sum().to_parquet(tmp_path / "grouped.parquet")
    history = load_history(tmp_path / "grouped.parquet")
    assert history.item_ids == ["a", "b"] and len(history.frame) == 8
    # float32 19.99 is not below float64 19.99: only the 15.99 week is a promotion.
    assert history.frame["promo"].sum() == 1
    # Whole-number float ids (a pandas column that once held NaN) read as in a CSV.
    frame.assign(item_id=[1.0, 2.0] * 4).to_parquet(tmp_path / "ids.parquet")
    assert load_history(tmp_path / "ids.parquet").item_ids == ["1", "2"]


def test_a_title_line_above_the_header_is_named(tmp_path: Path) -> None:
    text = "Sales report Jan 2024\ndate,item_id,units_sold,price\n2024-01-01,a,3,10\n"
    with pytest.raises(DataError, match="header line is 'Sales report Jan 2024': delete any"):
        load_history(write(tmp_path, "title.csv", text))
