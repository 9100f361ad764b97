"""Run directory round trip, recommendations (API and CLI agree), bad inputs. Tiny configs."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import TINY_FORECASTER, TINY_RUN_CONFIG, fit_and_train_tiny
from typer.testing import CliRunner

import promogym
from promogym.cli import app
from promogym.config import CampaignConfig
from promogym.data import load_history
from promogym.errors import PromogymInputError
from promogym.response import evidence
from promogym.run import Run, fit_run, load_run
from promogym.simulate import write_simulated_history

# History 2024-01-01 .. 2024-04-29 (120 days); the campaign starts 3 days before its end.
CONFIG = TINY_RUN_CONFIG


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shop")
    torch.set_num_threads(1)
    write_simulated_history(root / "history.csv", n_items=2, periods=120, seed=0, config=CONFIG)
    return root


@pytest.fixture(scope="module")
def trained(shop: Path) -> Run:
    fit_and_train_tiny(shop / "history.csv", shop / "run")
    return load_run(shop / "run")


def test_run_directory_round_trip(shop: Path, trained: Run) -> None:
    path = shop / "run"
    for name in ("config.toml", "run.json", "history.parquet", "forecaster", "market.json"):
        assert (path / name).exists(), name
    run = promogym.load_run(path)
    assert run.config == CONFIG
    original = load_history(shop / "history.csv")
    assert run.history.fingerprint() == original.fingerprint()
    info = json.loads((path / "run.json").read_text())
    assert info["data"]["fingerprint"] == original.fingerprint()
    assert info["data"]["items"] == ["sku-0", "sku-1"]
    assert info["data"]["freq"] == "D"
    assert info["forecaster"]["validation_metrics"] == run.forecaster.validation_metrics
    assert set(info["packages"]) >= {"torch", "stable-baselines3"}
    assert run.market() is not None and run.market().item_ids == ("sku-0", "sku-1")
    assert run.agents() == ["ppo"]
    assert not list(path.parent.glob(".run.*"))  # no temp directories left


def test_evidence_counts_only_periods_that_showed_the_demand(trained: Run) -> None:
    """Sold-out and unrecorded (stock 0) periods do not count; an unknown stock does."""
    from promogym.data import history_from_frame

    price, stock, units = [20.0] * 30, [100.0] * 30, [10] * 30
    for k, s in ((3, 100.0), (6, 5.0), (9, 0.0)):  # 20% off: seen, sold out, unrecorded
        price[k], stock[k], units[k] = 16.0, s, min(10, int(s))
    for k in (12, 15, 18, 21, 24):  # 40% off, stock unknown: five periods seen
        price[k], stock[k] = 12.0, math.nan
    frame = pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=30),
            "item_id": "sku-1",
            "units_sold": units,
            "price": price,
            "list_price": 20.0,
            "stock": stock,
        }
    )
    run = Run(trained.path, trained.config, trained.info)
    run.__dict__["history"] = history_from_frame(frame)  # the cached property, replaced
    assert run._evidence(0.2, "sku-1").endswith(
        "; only 1 period within 2.5 points of 20% off in this item's fitted history showed the "
        "full demand (1 sold out, showing only that it reached the stock): the simulator's "
        "lift there rests mostly on other depths and items"
    )
    assert run._evidence(0.4, "sku-1") == evidence(run.price_response(), 0.4)


def test_fit_refuses_existing_run_and_leaves_nothing_on_failure(shop: Path, trained: Run) -> None:
    with pytest.raises(PromogymInputError, match="already exists"):
        fit_run(shop / "history.csv", shop / "run", CONFIG, forecaster_config=TINY_FORECASTER)
    bad = shop / "bad.csv"
    bad.write_text("date,item_id,units_sold,price\n2024-01-01,a,-1,2.0\n")
    with pytest.raises(PromogymInputError):
        fit_run(bad, shop / "bad-run", CONFIG, forecaster_config=TINY_FORECASTER)
    assert not (shop / "bad-run").exists()
    assert not list(shop.glob(".bad-run*"))
    with pytest.raises(PromogymInputError, match="not a directory"):
        fit_run(shop / "history.csv", bad, CONFIG, forecaster_config=TINY_FORECASTER)
    with pytest.raises(PromogymInputError, match="bad.csv is a file, not a directory"):
        fit_run(shop / "history.csv", bad / "run", CONFIG, forecaster_config=TINY_FORECASTER)


def test_fit_overwrite_replaces_only_a_run(
    shop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import promogym.forecasters.transformer as module

    def no_fit(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("fitted before checking --out")

    monkeypatch.setattr(module, "fit_forecaster", no_fit)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("x")
    with pytest.raises(PromogymInputError, match="not a run directory"):
        fit_run(shop / "history.csv", precious, CONFIG, overwrite=True)
    assert (precious / "notes.txt").read_text() == "x"


def test_fit_remembers_how_the_history_was_read_and_prices_from_the_data(
    shop: Path, tmp_path: Path
) -> None:
    """No --config: each item's list price and unit cost come from the data (not the demo
    campaign's 20 / 9); --columns lives on in the run, so recommend reads the same layout."""
    frame = pd.read_csv(shop / "history.csv")
    frame["list_price"] = frame["list_price"] * 1.5
    frame["price"] = frame["price"] * 1.5
    frame["unit_cost"] = frame["unit_cost"] + 3.0
    frame = frame.rename(columns={"units_sold": "move"})
    frame.to_csv(tmp_path / "moved.csv", index=False)
    said: list[str] = []
    run = fit_run(
        tmp_path / "moved.csv",
        tmp_path / "run",
        None,
        columns={"units_sold": "move"},
        forecaster_config=TINY_FORECASTER,
        from_scratch=True,
        seed=3,  # replaces the forecaster config's seed
        progress=said.append,
    )
    assert run.forecaster.config.seed == 3 and run.info["seeds"] == {"forecaster": 3}
    note = "money terms x1.5 for the items' median list price 30: holding cost 0.075"
    assert any(note in line and "(capped at 0.56 of the cheapest" in line for line in said)
    assert run.list_prices().tolist() == [30.0, 30.0]
    assert run.unit_costs().tolist() == [12.0, 12.0]
    # the demo campaign's money terms (for a 20.0 item costing 9.0) scaled to a 30.0 item,
    # the salvage value to at most 5/9 of the cheapest unit cost
    eco = run.config.economics
    assert (eco.holding_cost, eco.order_fixed_cost, eco.lost_sale_penalty) == pytest.approx(
        (0.075, 22.5, 3.0)
    )
    assert eco.salvage_value == pytest.approx(12.0 * 5 / 9)
    assert load_run(tmp_path / "run").config.data.columns == {"units_sold": "move"}
    rec = run.recommend(tmp_path / "moved.csv", "sku-0", 60, [0, 0], episodes=4, baselines=False)
    assert rec.list_price == 30.0
    # the [data] section is how files are read, not the campaign: the same campaign passes
    same = CampaignConfig().scaled_to_prices([30.0, 30.0], [12.0, 12.0])
    run.recommend(
        frame,
        "sku-0",
        60,
        [0, 0],
        episodes=4,
        baselines=False,
        config=same,
        columns={"units_sold": "move"},
    )


def test_next_campaign_starts_after_each_items_own_history_with_its_streak(
    trained: Run, tmp_path: Path
) -> None:
    """evaluate and the demo score this state: an item whose history ends early starts
    after its own last period, and a history that ends mid-sale keeps its sale streak."""
    from promogym.envs.market import day_date

    copy = tmp_path / "copy"
    shutil.copytree(trained.path, copy)
    frame = pd.read_parquet(copy / "history.parquet")
    early = (frame["item_id"] == "sku-1") & (frame["date"] > "2024-04-20")
    frame = frame.loc[~early].reset_index(drop=True)
    last4 = frame.index[frame["item_id"] == "sku-0"][-4:]
    for row, factor in zip(last4, (1.0, 0.7, 0.7, 0.7), strict=True):  # ends 3 on sale
        frame.loc[row, "price"] = frame.loc[row, "list_price"] * factor
        frame.loc[row, "promo"] = int(factor < 1)
    frame.drop(columns="discount").to_parquet(copy / "history.parquet", index=False)
    run = load_run(copy)
    late, cut = run.next_campaign("sku-0"), run.next_campaign("sku-1")
    assert day_date(int(late.day[0])).isoformat() == "2024-04-30"
    assert day_date(int(cut.day[0])).isoformat() == "2024-04-21"
    assert int(late.streak[0]) == 3 and int(late.t[0]) == 0 and int(late.sale_used[0]) == 0
    assert float(late.on_hand[0]) == CONFIG.inventory.initial
    assert late.pipeline.abs().sum() == 0


def test_corrupt_run_json_is_a_one_line_error(trained: Run, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(trained.path, copy)
    (copy / "run.json").write_text("{bad")
    with pytest.raises(PromogymInputError, match="run.json: unreadable"):
        load_run(copy)


def test_fit_needs_each_items_unit_cost_before_fitting(shop: Path) -> None:
    frame = pd.read_csv(shop / "history.csv")
    frame.loc[frame["item_id"] == "sku-1", "unit_cost"] = None  # unknown for sku-1
    frame.to_csv(shop / "no-cost.csv", index=False)
    config = shop / "no-cost.toml"
    config.write_text('[economics]\nlist_price = 20.0\n[campaign]\nstart_date = "2024-04-27"\n')
    result = CliRunner().invoke(
        app,
        [
            "fit",
            "--data",
            str(shop / "no-cost.csv"),
            "--config",
            str(config),
            "--out",
            str(shop / "no-cost-run"),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "economics.unit_cost is unset and the history has no unit_cost for items ['sku-1']" in (
        result.output
    )
    assert not (shop / "no-cost-run").exists()


def test_a_config_price_far_from_the_items_own_is_refused_before_fitting(
    shop: Path, tmp_path: Path
) -> None:
    """A config's list_price prices every item; the simulator learned demand at the history's
    prices, so one far from an item's own is an error, a unit cost a warning."""
    frame = pd.read_csv(shop / "history.csv")
    cheap = frame.assign(
        price=frame["price"] * 0.25, list_price=frame["list_price"] * 0.25, unit_cost=2.0
    )
    cheap.to_csv(tmp_path / "cheap.csv", index=False)
    with pytest.raises(PromogymInputError, match=r"list_price 20 is more than 10% off .* 2 of 2"):
        fit_run(tmp_path / "cheap.csv", tmp_path / "run", CONFIG)
    assert not (tmp_path / "run").exists()
    said: list[str] = []

    def stop(message: str) -> None:
        said.append(message)
        if message.startswith("fitting"):
            raise PromogymInputError("stop before fitting")

    priced = CONFIG.replace(economics={"list_price": 5.0})  # right; unit_cost 9 is not
    with pytest.raises(PromogymInputError, match="stop before fitting"):
        fit_run(tmp_path / "cheap.csv", tmp_path / "run", priced, progress=stop)
    assert any("unit_cost 9 replaces the history's unit cost of 2 of 2 items" in m for m in said)


def test_fit_refuses_a_bad_market_file_before_fitting(
    shop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import promogym.forecasters.transformer as module

    shutil.copyfile(shop / "history.csv", tmp_path / "h.csv")
    market = json.loads((shop / "history.csv.market.json").read_text())
    market.pop("unit_cost")  # an older or hand-edited file
    (tmp_path / "h.csv.market.json").write_text(json.dumps(market))

    def no_fit(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("fitted before checking the market file")

    monkeypatch.setattr(module, "fit_forecaster", no_fit)
    with pytest.raises(PromogymInputError, match=r"h.csv.market.json: not a market file"):
        fit_run(tmp_path / "h.csv", tmp_path / "run", CONFIG, forecaster_config=TINY_FORECASTER)
    assert not (tmp_path / "run").exists()


def test_fit_warns_of_an_item_shorter_than_the_context(shop: Path, tmp_path: Path) -> None:
    """An item whose last gap-free run is shorter than a training window is fitted, with a
    warning: the forecaster did not learn it, and (shorter than its context) no campaign of it
    can start yet."""
    frame = pd.read_csv(shop / "history.csv")
    last = frame["date"].max()
    gap = (frame["item_id"] == "sku-1") & (frame["date"] >= "2024-04-20") & (frame["date"] < last)
    frame.loc[~gap].assign(feat=0).to_csv(tmp_path / "h.csv", index=False)
    said: list[str] = []
    run = fit_run(
        tmp_path / "h.csv",
        tmp_path / "run",
        CONFIG,
        forecaster_config=TINY_FORECASTER,
        fill_gaps="drop",
        progress=said.append,
    )
    # fine-tuned from the shipped base, whose context is 42 periods: a window is 42 + 4
    warning = "warning: 1 item with fewer than 46 periods after fill_gaps=drop: 'sku-1' (1)"
    assert any(line.startswith(warning) and "1 of them has fewer than 42" in line for line in said)
    assert any(line.startswith("not used: feat (not in the contract") for line in said), said
    assert run.item_vocabulary() == ("sku-0", "sku-1")
    with pytest.raises(PromogymInputError, match=r"history.parquet: item 'sku-1' has 1 periods"):
        run.next_campaign("sku-1")
    run.next_campaign("sku-0")


def test_the_market_follows_the_runs_item_order(tmp_path: Path) -> None:
    """With 11 items the run's vocabulary sorts ``sku-10`` before ``sku-2``, while
    ``market.json`` keeps numeric order: the run's market is reordered by name, so an item
    index means the same item in the simulator, the true market, training and scoring."""
    from promogym.envs.market import MarketParams

    write_simulated_history(tmp_path / "h.csv", n_items=11, periods=40, seed=3, config=CONFIG)
    original = MarketParams.from_json((tmp_path / "h.csv.market.json").read_text())
    run = fit_run(
        tmp_path / "h.csv",
        tmp_path / "run",
        CONFIG,
        forecaster_config=TINY_FORECASTER,
        from_scratch=True,
    )
    vocab = run.item_vocabulary()
    assert vocab[:3] == ("sku-0", "sku-1", "sku-10")
    market = run.market()
    assert market is not None and market.item_ids == vocab
    for name in ("base_demand", "elasticity", "list_price"):
        expected = [getattr(original, name)[original.item_ids.index(i)] for i in vocab]
        assert getattr(market.params, name).tolist() == expected, name
    # A market file without one of the history's items is not this history's market.
    short = original.subset(list(range(10)))
    (tmp_path / "h.csv.market.json").write_text(short.to_json())
    with pytest.raises(PromogymInputError, match="no item 'sku-10' .1 of the history's 11"):
        fit_run(tmp_path / "h.csv", tmp_path / "run2", CONFIG, forecaster_config=TINY_FORECASTER)
    assert not (tmp_path / "run2").exists()


def test_load_run_rejects_other_directories(tmp_path: Path) -> None:
    with pytest.raises(PromogymInputError, match="no such run directory"):
        load_run(tmp_path / "missing")
    with pytest.raises(PromogymInputError, match="not a run directory"):
        load_run(tmp_path)


def test_recommend_fields(shop: Path, trained: Run) -> None:
    history = pd.read_csv(shop / "history.csv")
    rec = trained.recommend(
        history,
        item_id="sku-1",
        inventory=60,
        pipeline=[40, 0],
        episodes=32,
        baseline_tune_episodes=4,
    )
    assert rec.discount in CONFIG.campaign.discounts
    assert rec.order_quantity in CONFIG.inventory.order_quantities
    # The campaign started on 2024-04-27; the history ends 2024-04-29: next is period 3.
    assert rec.day == 3 and rec.date == "2024-04-30"
    assert len(rec.plan) == CONFIG.campaign.horizon - 3
    assert rec.plan[0]["expected_discount"] == pytest.approx(rec.discount)
    assert rec.plan[0]["expected_order"] == pytest.approx(rec.order_quantity)
    lo, hi = rec.profit_interval
    assert lo <= hi and math.isfinite(rec.expected_profit)
    assert {"no-promotion", "best-fixed-discount", "periodic-flash-sale"} <= set(rec.baselines)
    assert rec.state["pipeline"] == [40, 0]
    assert json.loads(json.dumps(rec.to_dict())) == rec.to_dict()
    assert rec.agent == "planner"  # the default: exact DP over the learned simulator
    assert rec.stock_lot == 1 and "stock lots" not in rec.format()
    # the fit's held-out check at the recommended discount
    assert rec.evidence == evidence(trained.price_response(), rec.discount)
    assert f"simulator check {rec.evidence}" in rec.format()
    # a discount deeper than the fitted history reached is flagged as an extrapolation (the
    # history passed to recommend does not matter: the simulator learned from the run's)
    deepest = float(trained.history.item("sku-1")["discount"].max())
    assert trained._evidence(deepest, "sku-1") == evidence(trained.price_response(), deepest)
    assert trained._evidence(deepest + 0.3, "sku-1").endswith(
        f"; deeper than this item's deepest discount in the fitted history ({deepest:.0%}): "
        "the simulator extrapolates its response"
    )
    # sku-1's history has 2 periods at 20% off and 1, sold out, at 30%: too few to lean on;
    # 40% off has 8, none sold out
    thin = ": the simulator's lift there rests mostly on other depths and items"
    where = "within 2.5 points of {} off in this item's fitted history showed the full demand"
    assert trained._evidence(0.2, "sku-1").endswith(f"; only 2 periods {where.format('20%')}{thin}")
    assert trained._evidence(0.3, "sku-1").endswith(
        f"; no periods {where.format('30%')} (1 sold out, showing only that it reached the "
        f"stock){thin}"
    )
    assert trained._evidence(0.4, "sku-1") == evidence(trained.price_response(), 0.4)
    assert trained._evidence(0.0, "sku-1") == evidence(trained.price_response(), 0.0)
    by_ppo = trained.recommend(history, "sku-1", 60, [40, 0], agent="ppo", episodes=8)
    assert by_ppo.agent == "ppo" and by_ppo.discount in CONFIG.campaign.discounts
    assert by_ppo.stock_lot is None
    again = trained.recommend(
        history,
        item_id="sku-1",
        inventory=60,
        pipeline=[40, 0],
        day=0,
        episodes=32,
        baselines=False,
    )
    assert again.day == 0 and len(again.plan) == CONFIG.campaign.horizon and not again.baselines


def test_recommend_prices_each_item_at_its_latest_list_price(shop: Path, trained: Run) -> None:
    history = pd.read_csv(shop / "history.csv")
    dearer = history["item_id"] == "sku-1"
    latest = history.copy()
    latest.loc[dearer, ["price", "list_price"]] *= 2.0  # same discounts, so the same demand
    own = history.loc[dearer, "list_price"].iloc[-1]
    # The run's config sets no list price: each item is priced from the history given.
    run = Run(trained.path, CONFIG.replace(economics={"list_price": None}), trained.info)
    assert run.list_prices()[1] == pytest.approx(own)
    assert run.list_prices(load_history(shop / "history.csv"))[1] == pytest.approx(own)
    args = {"inventory": 60, "pipeline": [40, 0], "episodes": 8, "baselines": False}
    base = run.recommend(history, "sku-1", **args)
    rec = run.recommend(latest, "sku-1", **args)
    assert (base.list_price, rec.list_price) == pytest.approx((own, 2 * own))
    assert rec.price == pytest.approx(2 * own * (1 - rec.discount))
    assert rec.to_dict()["price"] == rec.price and f"list price {2 * own:.2f}" in rec.format()
    # The config's list price holds for every item.
    assert trained.recommend(latest, "sku-1", **args).list_price == CONFIG.economics.list_price


def test_recommend_on_stock_lots_past_the_dp_memory_limit(
    shop: Path, trained: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from promogym.envs import dp

    monkeypatch.setattr(dp, "DP_MEMORY_LIMIT", 1)  # as a shop with a huge stock capacity
    history = pd.read_csv(shop / "history.csv")
    rec = trained.recommend(history, "sku-1", 60, [40, 0], episodes=8, baselines=False)
    assert rec.stock_lot == 2 and "(DP over 2-unit stock lots)" in rec.format()
    assert rec.order_quantity in CONFIG.inventory.order_quantities


def test_recommend_cli_and_api_agree(shop: Path, trained: Run) -> None:
    args = ["recommend", "--run", str(shop / "run"), "--history", str(shop / "history.csv")]
    args += ["--item", "sku-0", "--inventory", "30", "--pipeline", "40", "--episodes", "16"]
    result = CliRunner().invoke(app, [*args, "--no-baselines", "--json"])
    assert result.exit_code == 0, result.output
    from_cli = json.loads(result.output)
    api = trained.recommend(
        load_history(shop / "history.csv"), "sku-0", 30, [40], episodes=16, baselines=False
    )
    assert from_cli == api.to_dict()
    text = CliRunner().invoke(app, [*args, "--no-baselines"])
    assert text.exit_code == 0 and "expected profit" in text.output


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"item_id": "sku-9"}, "unknown item"),
        ({"pipeline": [10, 10, 10]}, "lead_time"),
        ({"inventory": 500}, "capacity"),
        ({"inventory": 155, "pipeline": [10, 0]}, "plus --pipeline 10 units exceed"),
        ({"pipeline": [0, 40]}, "40 units arriving in 2 periods .inventory.lead_time. would be"),
        ({"pipeline": [0, 40]}, r"give arrivals in 1..1 period only \(the last of 2 entries 0"),
        ({"inventory": -1}, "must be in"),
        ({"day": 7}, "campaign has 7 periods"),
        ({"config": CampaignConfig()}, "another campaign config"),
        ({"agent": "dqn"}, "no trained agent"),
    ],
)
def test_recommend_bad_inputs(shop: Path, trained: Run, kwargs: dict, message: str) -> None:
    call = {"item_id": "sku-0", "inventory": 60, "pipeline": [0, 0], "episodes": 4}
    call.update(kwargs)
    with pytest.raises(PromogymInputError, match=message):
        trained.recommend(pd.read_csv(shop / "history.csv"), baselines=False, **call)


def test_recommend_before_the_campaign_starts_needs_an_explicit_day(
    shop: Path, trained: Run
) -> None:
    early = pd.read_csv(shop / "history.csv")
    early = early[early["date"] < "2024-04-20"]  # next period 04-20, campaign starts 04-27
    with pytest.raises(PromogymInputError, match="has not started.*--day 0") as err:
        trained.recommend(early, "sku-0", 60, [0, 0], episodes=4, baselines=False)
    assert "\n" not in str(err.value)
    rec = trained.recommend(early, "sku-0", 60, [0, 0], day=0, episodes=4, baselines=False)
    assert rec.to_dict()["day"] == 0


def test_recommend_short_history_and_cli_error(shop: Path, trained: Run) -> None:
    short = pd.read_csv(shop / "history.csv").groupby("item_id").tail(5)
    with pytest.raises(PromogymInputError, match="forecaster needs the last 14"):
        trained.recommend(short, "sku-0", 60, [0, 0], episodes=4, baselines=False)
    result = CliRunner().invoke(
        app,
        ["recommend", "--run", str(shop / "run"), "--history", str(shop / "history.csv")]
        + ["--item", "nope", "--inventory", "1"],
    )
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "unknown item" in result.output


def test_evaluate_names_the_runs_items(shop: Path, trained: Run, tmp_path: Path) -> None:
    args = ["evaluate", "--run", str(shop / "run"), "--out", str(tmp_path / "r"), "--item", "x"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and not (tmp_path / "r").exists()
    assert "--item: unknown item 'x'; the run knows 2 items: 'sku-0', 'sku-1'" in result.output


def test_evaluate_without_item_on_a_run_without_the_demo_item(
    shop: Path, trained: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Run, "item_vocabulary", lambda self: ("a", "b"))
    args = ["evaluate", "--run", str(shop / "run"), "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(app, [*args, "--market", "learned"])
    assert result.exit_code == 2 and not (tmp_path / "r").exists()
    assert "--item is required: the run knows 2 items: 'a', 'b'" in result.output


def test_campaign_state_counts_the_campaigns_own_sale_periods(shop: Path, trained: Run) -> None:
    frame = load_history(shop / "history.csv").frame
    item = frame[frame["item_id"] == "sku-0"].copy()
    item["price"] = item["list_price"]
    for back in (2, 5):  # campaign period 1 (with day=3) and a period before the campaign
        item.loc[item.index[-back], "price"] = item["list_price"].iloc[-back] * 0.8
    history = promogym.data.history_from_frame(
        item.assign(discount=1.0 - item["price"] / item["list_price"]), source="test"
    )
    for day, used in ((3, 1), (1, 0), (5, 2), (0, 0)):
        state = trained.campaign_state(history, "sku-0", inventory=10, pipeline=[0, 0], day=day)
        assert int(state.sale_used[0]) == used, day
    # A 1% price move is nearer the ladder's 0 than its first sale rung: not a sale period.
    item.loc[item.index[-3:], "price"] = item["list_price"].iloc[-1] * 0.99
    moved = promogym.data.history_from_frame(item, source="test")
    state = trained.campaign_state(moved, "sku-0", inventory=10, pipeline=[0, 0], day=3)
    assert int(state.sale_used[0]) == 0 and int(state.streak[0]) == 0  # counted 3 before


def test_recommend_needs_no_trained_agent(shop: Path, trained: Run, tmp_path: Path) -> None:
    untrained = tmp_path / "untrained"
    shutil.copytree(trained.path, untrained, ignore=shutil.ignore_patterns("agents"))
    run = load_run(untrained)
    assert run.agents() == []
    history = load_history(shop / "history.csv")
    rec = run.recommend(history, "sku-0", 30, [0, 0], episodes=8, baselines=False)
    assert rec.agent == "planner" and rec.discount in CONFIG.campaign.discounts
    with pytest.raises(PromogymInputError, match="no trained agent"):
        run.recommend(history, "sku-0", 30, [0, 0], agent="ppo", episodes=8, baselines=False)


def test_fit_with_several_seeds_simulates_with_their_ensemble(shop: Path, tmp_path: Path) -> None:
    from promogym.forecasters.ensemble import EnsembleForecaster

    run = fit_run(
        shop / "history.csv",
        tmp_path / "run",
        CONFIG,
        forecaster_config=TINY_FORECASTER,
        forecaster_seeds=2,
    )
    forecaster = load_run(tmp_path / "run").forecaster
    assert isinstance(forecaster, EnsembleForecaster)
    assert [m.config.seed for m in forecaster.members] == [0, 1]
    assert run.info["forecaster"]["kind"] == "ensemble"
    assert run.info["forecaster"]["seeds"] == [0, 1]
    # the held-out check is on the members' average, which the ensemble simulates: the
    # validation periods, and those that sold out (not in the validation metrics)
    periods = run.info["forecaster"]["members_validation_metrics"][0]["n_periods"]
    history = load_history(shop / "history.csv")
    vp = forecaster.members[0].config.validation_periods
    sold_out = sum(history.item(i)["censored"].iloc[-vp:].sum() for i in history.item_ids)
    assert sum(b["periods"] for b in run.info["price_response"]["bins"]) == periods + sold_out
    assert isinstance(run.demand_model(history).forecaster, EnsembleForecaster)
    rec = run.recommend(history, "sku-0", 30, [0, 0], episodes=8, baselines=False)
    assert rec.agent == "planner" and rec.discount in CONFIG.campaign.discounts
    with pytest.raises(PromogymInputError, match="seeds"):
        fit_run(shop / "history.csv", tmp_path / "bad", CONFIG, forecaster_seeds=0)
    assert not (tmp_path / "bad").exists()


def test_log_normal_run_simulates_and_recommends(shop: Path, tmp_path: Path) -> None:
    import dataclasses

    config = dataclasses.replace(TINY_FORECASTER, likelihood="log_normal")
    fit_run(
        shop / "history.csv", tmp_path / "run", CONFIG, forecaster_config=config, from_scratch=True
    )
    run = load_run(tmp_path / "run")
    assert run.forecaster.config.likelihood == "log_normal"
    history = load_history(shop / "history.csv")
    rec = run.recommend(history, "sku-0", 30, [0, 0], episodes=8, baselines=False)
    assert rec.agent == "planner" and rec.discount in CONFIG.campaign.discounts
    # The CLI names a bad likelihood in one line, exits non-zero and writes nothing.
    out = tmp_path / "bad"
    args = ["fit", "--data", str(shop / "history.csv"), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--likelihood", "poisson"])
    assert result.exit_code != 0 and "likelihood must be one of" in result.output
    assert not out.exists()


def test_cli_fit_prints_the_price_response_on_held_out_periods(
    shop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    import promogym.forecasters.transformer as module
    from promogym.response import TITLE

    def tiny(**kwargs):  # type: ignore[no-untyped-def]
        return dataclasses.replace(TINY_FORECASTER, **kwargs)

    monkeypatch.setattr(module, "TransformerConfig", tiny)
    out = tmp_path / "run"
    args = ["fit", "--data", str(shop / "history.csv"), "--out", str(out), "--from-scratch"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "forecaster validation nll" in result.stdout and f"{TITLE}:" in result.stdout
    assert TITLE not in result.stderr  # once, on stdout (fit > file keeps it)
    info = json.loads((out / "run.json").read_text())
    check = info["price_response"]
    periods = info["forecaster"]["validation_metrics"]["n_periods"]  # those that did not sell out
    history = load_history(shop / "history.csv")
    vp = info["forecaster"]["config"]["validation_periods"]
    sold_out = sum(history.item(i)["censored"].iloc[-vp:].sum() for i in history.item_ids)
    assert sum(b["periods"] for b in check["bins"]) == periods + sold_out
    assert check["bins"][0]["label"] == "0%" and check["summary"] in result.output
    # a simulated history's market is known: its lifts on the same periods are shown too
    assert all(b["true_lift"] is not None for b in check["bins"])
    assert "true lift (known market)" in result.output
    assert "Against the known market" in check["summary"]


@pytest.mark.parametrize(
    "flag, field, expected",
    [
        ([], "refit", True),
        (["--no-refit"], "refit", False),
        ([], "recalibrate_quantiles", True),
        (["--no-quantile-maps"], "recalibrate_quantiles", False),
    ],
)
def test_cli_forecaster_flags_reach_the_forecaster_config(
    shop: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flag: list[str],
    field: str,
    expected: bool,
) -> None:
    import promogym.forecasters.transformer as module

    seen = []

    def capture(history, config, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(config)
        raise PromogymInputError("stop after the config")

    monkeypatch.setattr(module, "fit_forecaster", capture)
    for command in ("fit-forecaster", "fit"):
        out = tmp_path / command
        args = [command, "--data", str(shop / "history.csv"), "--out", str(out), *flag]
        result = CliRunner().invoke(app, args)
        assert result.exit_code != 0 and "stop after the config" in result.output
        assert not out.exists()
    assert [getattr(c, field) for c in seen] == [expected, expected]


@pytest.fixture
def no_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's forecaster fit stops with "stop before fitting" (tests of what comes first)."""
    import promogym.forecasters.transformer as module

    def stop(history, config, **kwargs):  # type: ignore[no-untyped-def]
        raise PromogymInputError("stop before fitting")

    monkeypatch.setattr(module, "fit_forecaster", stop)


@pytest.mark.usefixtures("no_fit")
def test_both_fit_commands_name_the_columns_they_do_not_use(shop: Path, tmp_path: Path) -> None:
    data = tmp_path / "h.csv"
    pd.read_csv(shop / "history.csv").assign(feat=1).to_csv(data, index=False)
    for command in ("fit-forecaster", "fit"):
        args = [command, "--data", str(data), "--out", str(tmp_path / command)]
        result = CliRunner().invoke(app, args)
        assert "stop before fitting" in result.output
        assert "not used: feat (not in the contract" in result.output, command


@pytest.mark.usefixtures("no_fit")
def test_fit_forecaster_overwrite_replaces_only_a_saved_forecaster(
    shop: Path, tmp_path: Path
) -> None:
    saved = tmp_path / "model"
    saved.mkdir()
    (saved / "model.safetensors").write_bytes(b"old")
    args = ["fit-forecaster", "--data", str(shop / "history.csv"), "--out", str(saved)]
    assert "pass --overwrite" in CliRunner().invoke(app, args).output
    result = CliRunner().invoke(app, [*args, "--overwrite"])
    assert "stop before fitting" in result.output  # past the guard; a failed fit keeps the old
    assert (saved / "model.safetensors").read_bytes() == b"old"
