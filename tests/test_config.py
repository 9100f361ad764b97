from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promogym.cli import app
from promogym.config import CampaignConfig, load_config
from promogym.errors import ConfigError

ISSUE_EXAMPLE = """
[campaign]
horizon = 28
discounts = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
max_sale_periods = 28
start_date = "2026-12-01"
[inventory]
initial = 60
order_quantities = [0, 40, 80]
lead_time = 2
capacity = 160
[economics]
list_price = 20.0
unit_cost = 9.0
holding_cost = 0.05
order_fixed_cost = 15.0
lost_sale_penalty = 2.0
salvage_value = 5.0
"""


def test_issue_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(ISSUE_EXAMPLE)
    cfg = load_config(path)
    assert cfg.campaign.start_date == dt.date(2026, 12, 1)
    assert cfg.campaign.sale_budget == 28
    assert cfg.inventory.order_quantities == (0, 40, 80)


def test_toml_round_trip(tmp_path: Path) -> None:
    cfg = CampaignConfig().replace(
        campaign={"start_date": "2026-12-01", "max_sale_periods": 5},
        data={"columns": {"units_sold": "move"}, "fill_gaps": "zero"},
    )
    cfg.save(tmp_path / "c.toml")
    assert load_config(tmp_path / "c.toml") == cfg
    # Names TOML cannot leave bare (spaces, accents, quotes) are quoted, so a run's saved
    # config reads back.
    odd = CampaignConfig().replace(
        data={
            "categorical": ["region name", "catégorie"],
            "columns": {"region name": 'Store "Region"', "catégorie": "cat\\x", "date": "d\tay"},
        }
    )
    odd.save(tmp_path / "odd.toml")
    assert load_config(tmp_path / "odd.toml") == odd


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[campaign]\nhorizon = 0", "campaign.horizon"),
        ("[campaign]\nhorizon = 'x'", "campaign.horizon"),
        ("[campaign]\ndiscounts = [0.1, 0.2]", "campaign.discounts"),
        ("[campaign]\ndiscounts = [0.0, 1.2]", "campaign.discounts"),
        ("[campaign]\ndiscounts = [0.0, 0.3, 0.2]", "campaign.discounts"),
        ("[campaign]\ndiscounts = [0.0, 1e-12]", "campaign.discounts"),
        ("[campaign]\ndiscounts = [0.0, 0.5, 0.99]", "campaign.discounts"),
        ("[economics]\nlist_price = 1e308", "economics.list_price"),
        ("[economics]\nholding_cost = 1e300", "economics.holding_cost"),
        ("[campaign]\nstart_date = 'tomorrow'", "campaign.start_date"),
        ("[campaign]\nhorizn = 3", "campaign.horizn"),
        ("[inventory]\norder_quantities = [40, 80]", "inventory.order_quantities"),
        ("[inventory]\ninitial = 500", "inventory.initial"),
        ("[inventory]\nlead_time = -1", "inventory.lead_time"),
        ("[economics]\nunit_cost = -1.0", "economics.unit_cost"),
        ("[economics]\nlist_price = 0", "economics.list_price"),
        ("[economics]\nunit_cost = 4.0\nsalvage_value = 5.0", "economics.salvage_value"),
        ("[data]\nfill_gaps = 'mean'", "data.fill_gaps"),
        ("[data]\ncolumns = {sold = 'move'}", "data.columns"),
        ("[pricing]\nx = 1", "[pricing]"),
        ("[campaign\nhorizon = 3", "invalid TOML"),
        ("[campaign]\nhorizon = 1000000000", "campaign.horizon"),
        ("[economics]\nholding_cost = inf", "economics.holding_cost"),
        ("[economics]\nlist_price = inf", "economics.list_price"),
        ("[economics]\nunit_cost = inf", "economics.unit_cost"),
        ("[campaign]\nhorizon = 5\nmax_sale_periods = 6", "campaign.max_sale_periods"),
        ("[campaign]\nhorizon = 4\n[inventory]\nlead_time = 4", "inventory.lead_time"),
    ],
)
def test_invalid_config_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert key in message and str(path) in message
    assert "\n" not in message


def test_sale_budget_and_lead_time_up_to_the_horizon(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[campaign]\nhorizon = 4\nmax_sale_periods = 4\n[inventory]\nlead_time = 3\n")
    assert load_config(path).campaign.sale_budget == 4
    path.write_text("[campaign]\nhorizon = 4\n[inventory]\nlead_time = 6\norder_quantities = [0]\n")
    assert load_config(path).inventory.lead_time == 6  # no orders: nothing can arrive late
    path.write_text("[campaign]\nhorizon = 4\nmax_sale_periods = 9\n[inventory]\nlead_time = 6\n")
    assert load_config(path, saved=True).campaign.sale_budget == 4  # a run's own config loads


def test_cli_check_config_exit_code(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[campaign]\nhorizon = -3\n")
    result = CliRunner().invoke(app, ["check-config", "--config", str(path)])
    assert result.exit_code == 2
    assert "campaign.horizon" in result.output
    ok = CliRunner().invoke(app, ["check-config"])
    assert ok.exit_code == 0 and "horizon = 28" in ok.output
    assert "fit prices each item from its data" in ok.output  # not the demo's 20.0


def test_list_price_omitted_means_from_data(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[economics]\nunit_cost = 1.2\nsalvage_value = 0.5\n")
    cfg = load_config(path)
    assert cfg.economics.list_price is None
    cfg.save(tmp_path / "again.toml")
    assert load_config(tmp_path / "again.toml") == cfg
    assert CampaignConfig().economics.list_price == 20.0  # the built-in demo campaign


def test_params_need_a_list_price(tmp_path: Path) -> None:
    from promogym.envs.core import CampaignParams

    path = tmp_path / "c.toml"
    path.write_text("[economics]\nunit_cost = 1.2\nsalvage_value = 0.5\n")
    cfg = load_config(path)
    assert CampaignParams.from_config(cfg, list_price=2.5).list_price == 2.5
    with pytest.raises(ConfigError, match="economics.list_price"):
        CampaignParams.from_config(cfg)


def test_unit_cost_omitted_means_from_data(tmp_path: Path) -> None:
    from promogym.envs.core import CampaignParams

    path = tmp_path / "c.toml"
    path.write_text("[economics]\nlist_price = 3.0\nsalvage_value = 0.5\n")
    cfg = load_config(path)
    assert cfg.economics.unit_cost is None and CampaignConfig().economics.unit_cost == 9.0
    cfg.save(tmp_path / "again.toml")
    assert load_config(tmp_path / "again.toml") == cfg
    shown = CliRunner().invoke(app, ["check-config", "--config", str(path)]).output
    assert "# economics.unit_cost: from the data" in shown and "list_price = 3.0" in shown
    params = CampaignParams.from_config(cfg, item_unit_cost=[1.0, 2.0, 4.0])
    assert params.unit_cost == 2.0 and params.for_item(2).unit_cost == 4.0
    with pytest.raises(ConfigError, match=r"no unit_cost for items \['b'\]: set economics"):
        CampaignParams.from_config(cfg, item_unit_cost=[1.0, float("nan")], item_ids=["a", "b"])
    with pytest.raises(ConfigError, match="economics.unit_cost is unset"):
        CampaignParams.from_config(cfg)
    # A salvage value above some item's cost would make ordering to salvage pay.
    high = cfg.replace(economics={"salvage_value": 5.0})
    with pytest.raises(ConfigError, match=r"salvage_value 5 is above the unit cost of item b \(4"):
        CampaignParams.from_config(high, item_unit_cost=[6.0, 4.0], item_ids=["a", "b"])
    with pytest.raises(ConfigError, match=r"salvage_value must be <= economics.unit_cost \(1"):
        high.replace(economics={"unit_cost": 1.0})  # both in the config: caught when loading


def test_config_path_that_cannot_be_read_is_one_line(tmp_path: Path) -> None:
    for path, fragment in ((tmp_path, "is a directory"), (tmp_path / "no.toml", "not found")):
        with pytest.raises(ConfigError, match=fragment) as err:
            load_config(path)
        assert "\n" not in str(err.value)
    latin = tmp_path / "latin.toml"
    latin.write_bytes("# caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(latin)


def test_config_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf[campaign]\nhorizon = 7\n")
    assert load_config(path).campaign.horizon == 7


def test_a_runs_own_config_may_predate_the_limits(tmp_path: Path) -> None:
    """Runs fitted before the 1%-90% discount and 1e9 money limits keep loading (their
    config is ``saved``); new configs get the limits."""
    path = tmp_path / "old.toml"
    path.write_text("[campaign]\ndiscounts = [0.0, 0.5, 0.95]\n[economics]\nlist_price = 2e9\n")
    with pytest.raises(ConfigError, match="campaign.discounts"):
        load_config(path)
    old = load_config(path, saved=True)
    assert old.campaign.discounts[-1] == 0.95 and old.economics.list_price == 2e9
    path.write_text("[economics]\nlist_price = inf\n")
    with pytest.raises(ConfigError, match="economics.list_price"):
        load_config(path, saved=True)
