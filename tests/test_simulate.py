"""simulate-history: a seeded behaviour policy on the reference market, in the data contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from promogym.cli import app
from promogym.config import CampaignConfig
from promogym.data import history_from_frame, load_history, save_frame
from promogym.envs.market import MarketParams, ReferenceMarket, default_market
from promogym.errors import PromogymInputError
from promogym.simulate import HISTORY_COLUMNS, simulate_history


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return simulate_history(default_market(8, seed=0), 730, "2024-01-01", seed=0)


def test_columns_and_shape(history: pd.DataFrame) -> None:
    assert tuple(history.columns) == HISTORY_COLUMNS
    assert len(history) == 8 * 730
    assert history["date"].min() == pd.Timestamp("2024-01-01")
    assert (history.groupby("item_id")["date"].diff().dropna() == pd.Timedelta(days=1)).all()


def test_same_seed_same_frame_other_seed_differs() -> None:
    market = default_market(3, seed=0)
    a = simulate_history(market, 120, "2024-01-01", seed=5)
    b = simulate_history(default_market(3, seed=0), 120, "2024-01-01", seed=5)
    c = simulate_history(market, 120, "2024-01-01", seed=6)
    pd.testing.assert_frame_equal(a, b)
    assert not a["units_sold"].equals(c["units_sold"])
    assert not a["promo"].equals(c["promo"])


def test_round_trip_through_the_contract(history: pd.DataFrame, tmp_path: Path) -> None:
    save_frame(history, tmp_path / "h.csv")
    save_frame(history, tmp_path / "h.parquet")
    loaded = load_history(tmp_path / "h.csv")
    assert loaded.freq == "D" and loaded.item_ids == sorted(history["item_id"].unique())
    f = loaded.frame
    for name in ("units_sold", "price", "list_price", "promo", "unit_cost"):
        np.testing.assert_array_equal(f[name].to_numpy(), history[name].to_numpy(), err_msg=name)
    np.testing.assert_array_equal(f["stock"].to_numpy(), history["stock"].to_numpy(float))
    assert loaded.fingerprint() == load_history(tmp_path / "h.parquet").fingerprint()
    assert loaded.fingerprint() == history_from_frame(history).fingerprint()


def test_promo_share_runs_and_depths(history: pd.DataFrame) -> None:
    ladder = np.asarray(CampaignConfig().campaign.discounts)
    discount = 1.0 - history["price"] / history["list_price"]
    nearest = ladder[np.abs(discount.to_numpy()[:, None] - ladder[None, :]).argmin(axis=1)]
    assert np.abs(discount - nearest).max() < 1e-3
    assert ((nearest > 0) == (history["promo"] == 1)).all()
    assert 0.15 <= history["promo"].mean() <= 0.25
    per_item = history.groupby("item_id")["promo"].mean()
    assert per_item.between(0.08, 0.35).all()
    # Sales come in runs of 1-4 periods, one depth per run, every depth of the ladder used.
    for _, rows in history.groupby("item_id"):
        on = rows["promo"].to_numpy()
        starts = np.flatnonzero(np.diff(np.concatenate([[0], on])) == 1)
        ends = np.flatnonzero(np.diff(np.concatenate([on, [0]])) == -1)
        assert ((ends - starts + 1) <= 4).all()
        depth = discount.loc[rows.index].to_numpy()
        for s, e in zip(starts, ends, strict=True):
            assert np.ptp(depth[s : e + 1]) < 1e-9
    assert set(np.round(nearest[nearest > 0], 2)) == set(ladder[ladder > 0])


def test_stock_outs_are_occasional(history: pd.DataFrame) -> None:
    censored = (history["units_sold"] >= history["stock"]).mean()
    assert 0.005 < censored < 0.10
    assert (history["units_sold"] <= history["stock"]).all()
    assert (history["stock"] <= CampaignConfig().inventory.capacity).all()


def test_with_demand_adds_the_draws_behind_the_sales(history: pd.DataFrame) -> None:
    full = simulate_history(default_market(8, seed=0), 730, "2024-01-01", seed=0, with_demand=True)
    # the same frame plus the column: the default path draws nothing more or less
    pd.testing.assert_frame_equal(full.drop(columns="demand"), history)
    sold, stock, demand = (full[c].to_numpy() for c in ("units_sold", "stock", "demand"))
    np.testing.assert_array_equal(sold, np.minimum(demand, stock))
    assert (demand > stock).any()  # some periods sold out, so the column says more


def test_stock_follows_the_inventory_balance(history: pd.DataFrame) -> None:
    # Next start-of-period stock = what was left + arrivals (never negative, only ordered units
    # arrive, and never more than the S-level allows).
    for _, rows in history.groupby("item_id"):
        left = (rows["stock"] - rows["units_sold"]).to_numpy()[:-1]
        arrivals = rows["stock"].to_numpy()[1:] - left
        assert (arrivals >= 0).all()
        assert (arrivals > 0).mean() < 0.6  # orders are batched, not daily top-ups


def test_config_ladder_lead_time_and_capacity_are_used() -> None:
    config = CampaignConfig().replace(
        campaign={"discounts": [0.0, 0.25]},
        inventory={"lead_time": 0, "capacity": 50, "initial": 10, "order_quantities": [0, 10]},
    )
    df = simulate_history(default_market(2, seed=1), 200, "2024-03-01", seed=3, config=config)
    discount = 1.0 - df["price"] / df["list_price"]
    assert set(np.round(discount, 6)) == {0.0, 0.25}
    assert df["stock"].max() <= 50


def test_weekly_market_gives_weekly_history() -> None:
    market = ReferenceMarket(default_market(2, seed=0).params, freq="W")
    df = simulate_history(market, 20, "2024-01-01", seed=0)
    history = history_from_frame(df)
    assert history.freq == "W" and history.frame["date"].iloc[-1] == pd.Timestamp("2024-05-13")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"periods": 1}, "periods must be an integer >= 2"),
        ({"start_date": "someday"}, "start_date must be an ISO date"),
        ({"start_date": "01/02/2024"}, "start_date must be an ISO date"),
        ({"config": CampaignConfig().replace(campaign={"discounts": [0.0]})}, "no sale depth"),
    ],
)
def test_bad_arguments(kwargs: dict, fragment: str) -> None:
    args = {"periods": 10, "start_date": "2024-01-01", "seed": 0} | kwargs
    with pytest.raises(PromogymInputError, match=fragment):
        simulate_history(default_market(1, seed=0), **args)


def test_cli_simulate_history_writes_data_and_market(tmp_path: Path) -> None:
    out = tmp_path / "data.csv"
    args = ["simulate-history", "--items", "3", "--periods", "60", "--seed", "2"]
    result = CliRunner().invoke(app, [*args, "--start-date", "2024-02-01", "--out", str(out)])
    assert result.exit_code == 0, result.output
    history = load_history(out)
    assert history.item_ids == ["sku-0", "sku-1", "sku-2"]
    assert history.frame["date"].min() == pd.Timestamp("2024-02-01")
    params = MarketParams.from_json((tmp_path / "data.csv.market.json").read_text())
    expected = default_market(3, seed=2).params
    assert params.item_ids == expected.item_ids
    np.testing.assert_allclose(params.elasticity, expected.elasticity)
    # Parquet output of the same run holds the same data.
    pq_out = tmp_path / "data.parquet"
    again = CliRunner().invoke(app, [*args, "--start-date", "2024-02-01", "--out", str(pq_out)])
    assert again.exit_code == 0, again.output
    assert load_history(pq_out).fingerprint() == history.fingerprint()
    checked = CliRunner().invoke(app, ["check-data", "--data", str(out)])
    assert checked.exit_code == 0 and "items           3" in checked.stdout
    # An existing history (or its market file) is replaced only with --overwrite.
    before = out.read_bytes()
    other = [*args[:-1], "3", "--out", str(out)]
    refused = CliRunner().invoke(app, other)
    assert refused.exit_code == 2 and "exists; pass --overwrite" in refused.stderr
    assert out.read_bytes() == before
    (tmp_path / "data.parquet").unlink()
    refused = CliRunner().invoke(app, [*args, "--out", str(pq_out)])  # its market file is there
    assert refused.exit_code == 2 and "data.parquet.market.json exists" in refused.stderr
    replaced = CliRunner().invoke(app, [*other, "--overwrite"])
    assert replaced.exit_code == 0 and out.read_bytes() != before


def test_cli_simulate_history_bad_output_writes_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["simulate-history", "--items", "2", "--periods", "10", "--out", str(tmp_path / "x.xlsx")],
    )
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and "use a .csv or .parquet file" in result.stderr
    assert list(tmp_path.iterdir()) == []
