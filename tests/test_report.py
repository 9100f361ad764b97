"""Evaluation reports: numbers recomputed from the episode data, rendering, atomic output."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_RUN_CONFIG, fit_and_train_tiny
from scipy.stats import trim_mean
from typer.testing import CliRunner

from promogym import report as report_mod
from promogym.cli import app
from promogym.config import CampaignConfig
from promogym.envs.core import CampaignParams, CampaignState, action_masks
from promogym.envs.demand import MarketDemand, Memory
from promogym.envs.rollout import Policy, simulate
from promogym.errors import PromogymInputError
from promogym.evaluate import evaluate_policies, reference_setup
from promogym.report import (
    bootstrap_mean_ci,
    interquartile_mean,
    read_training_log,
    write_report,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {
    "campaign": {"horizon": 6, "discounts": [0.0, 0.2, 0.4]},
    "inventory": {"initial": 20, "capacity": 40, "order_quantities": [0, 10, 20], "lead_time": 1},
}
EPISODES = 200
SEED = 3
RESAMPLES = 500


class OrderUpTo(Policy):
    """Fixed discount, order up to ``level`` (test policy independent of envs.baselines)."""

    def __init__(self, name: str, discount_idx: int, level: float) -> None:
        self.name, self.discount_idx, self.level = name, discount_idx, level

    def act(
        self, state: CampaignState, params: CampaignParams, memory: Memory
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b = state.batch_size
        position = state.on_hand + state.pipeline.sum(dim=1)
        short = (self.level - position).clamp(min=0)
        order = (params.order_quantities.unsqueeze(0) >= short.unsqueeze(1)).long().argmax(dim=1)
        order = torch.where(short > 0, order, torch.zeros_like(order))
        return torch.full((b,), self.discount_idx, dtype=torch.long), order


class Alternating(OrderUpTo):
    """Sale on even periods: the "agent" of these tests."""

    def act(self, state, params, memory):  # noqa: ANN001, ANN201
        discount, order = super().act(state, params, memory)
        return torch.where(state.t % 2 == 0, discount, torch.zeros_like(discount)), order


class RandomDiscount(Policy):
    name = "random"

    def reset(self, state, params, seed=None):  # noqa: ANN001, ANN201
        self.generator = torch.Generator().manual_seed(0 if seed is None else seed)

    def act(self, state, params, memory):  # noqa: ANN001, ANN201
        d_mask, o_mask = action_masks(state, params)
        d = torch.multinomial(d_mask.double(), 1, generator=self.generator).squeeze(1)
        o = torch.multinomial(o_mask.double(), 1, generator=self.generator).squeeze(1)
        return d, o


class ScaledDemand(MarketDemand):
    """A "learned simulator" that over-predicts demand by 15%."""

    def distribution(self, state, memory, discounts):  # noqa: ANN001, ANN201
        mean, dispersion = super().distribution(state, memory, discounts)
        return 1.15 * mean, dispersion


def tiny_setup():
    return reference_setup(CampaignConfig.from_dict(TINY), "sku-0")


def tiny_policies() -> dict[str, Policy]:
    return {
        "no-sale": OrderUpTo("no-sale", 0, 25),
        "fixed-20": OrderUpTo("fixed-20", 1, 30),
        "no-sale-copy": OrderUpTo("no-sale-copy", 0, 25),
        "random": RandomDiscount(),
        "agent": Alternating("agent", 2, 35),
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One report over both markets with a DP optimum (when envs/dp.py exists), written once."""
    setup = tiny_setup()
    policies = tiny_policies()
    optimum = optimum_policy = None
    dp = _try_dp()
    if dp is not None:
        solution = dp.solve(
            setup.market, setup.item_index, setup.params, dp.day_number(setup.start_date)
        )
        policies["dp"] = solution.policy()
        optimum, optimum_policy = solution.expected_profit, "dp"
    markets = {"reference": setup.demand_model, "learned": ScaledDemand(setup.market)}
    report = evaluate_policies(
        policies,
        markets,
        setup.params,
        setup.start,
        episodes=EPISODES,
        seed=SEED,
        optimum=optimum,
        optimum_policy=optimum_policy,
        agents=["agent"],
        provenance={"algorithm": {"name": "test", "gamma": 0.99}},
        progress=False,
        n_resamples=RESAMPLES,
    )
    root = tmp_path_factory.mktemp("report")
    log = root / "curve.csv"
    log.write_text("timesteps,mean_reward\n0,10\n1000,20\n2000,25\n", encoding="utf-8")
    out = write_report(report, root / "out" / "rep", training_log=log)
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return {
        "setup": setup,
        "report": report,
        "out": out,
        "data": data,
        "optimum": optimum,
        "policies": policies,
    }


def test_no_share_of_a_negative_optimum() -> None:
    """With an optimum that is a loss, "% of optimum" would rank bigger losses higher: the
    column is left out and the report says why."""
    setup = tiny_setup()
    report = evaluate_policies(
        {"no-sale": OrderUpTo("no-sale", 0, 25), "random": RandomDiscount()},
        {"reference": setup.demand_model},
        setup.params,
        setup.start,
        episodes=EPISODES,
        seed=SEED,
        optimum=-500.0,
        progress=False,
        n_resamples=RESAMPLES,
    )
    stats = [r.stats for r in report.markets["reference"].policies.values()]
    assert all("pct_of_optimum" not in s for s in stats)
    text = report_mod.render_markdown(report, {})
    assert "% of optimum" not in text and "The optimum is not a profit" in text
    assert "DP optimum (exact expectation)" in text and "-500.0" in text


def _try_dp():
    try:
        from promogym.envs import dp
    except ImportError:
        return None
    return dp


def _boot_means(values: np.ndarray, seed: int, resamples: int) -> np.ndarray:
    idx = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    return values[idx].mean(axis=1)


def test_json_numbers_recompute_from_episode_data(built: dict) -> None:
    data = built["data"]
    boot = data["settings"]["bootstrap"]
    assert boot["resamples"] == RESAMPLES and boot["seed"] == SEED
    horizon = data["settings"]["horizon"]
    for market in ("reference", "learned"):
        pols = data["markets"][market]["policies"]
        for entry in pols.values():
            ep = {k: np.asarray(v) for k, v in entry["episodes"].items()}
            s = entry["stats"]
            assert len(ep["profit"]) == EPISODES
            assert s["mean_profit"] == pytest.approx(ep["profit"].mean(), rel=1e-12)
            assert s["iqm_profit"] == pytest.approx(trim_mean(ep["profit"], 0.25), rel=1e-12)
            lo, hi = np.percentile(_boot_means(ep["profit"], SEED, RESAMPLES), [2.5, 97.5])
            assert (s["ci_low"], s["ci_high"]) == pytest.approx((lo, hi), rel=1e-12)
            sold = ep["units_sold"].sum()
            assert s["sell_through"] == pytest.approx(sold / (sold + ep["ending_inventory"].sum()))
            assert s["lost_sales_rate"] == pytest.approx(
                ep["lost_units"].sum() / ep["demand"].sum()
            )
            assert s["avg_discount"] == pytest.approx(
                ep["discount_sum"].sum() / (EPISODES * horizon)
            )
            assert s["periods_on_sale"] == pytest.approx(ep["periods_on_sale"].mean())
            assert s["orders_placed"] == pytest.approx(ep["orders_placed"].mean())
            assert s["revenue"] == pytest.approx(ep["revenue"].mean())
        # paired difference vs. the best baseline: resample episode indices jointly
        best = data["markets"][market]["best_baseline"]
        baselines = [n for n, e in pols.items() if e["kind"] == "baseline"]
        assert best == max(baselines, key=lambda n: pols[n]["stats"]["mean_profit"])
        b = np.asarray(pols[best]["episodes"]["profit"])
        for name, entry in pols.items():
            if name == best:
                assert entry["vs_best_baseline"] is None
                continue
            a = np.asarray(entry["episodes"]["profit"])
            diffs = _boot_means(a, SEED, RESAMPLES) - _boot_means(b, SEED, RESAMPLES)
            cmp = entry["vs_best_baseline"]
            assert cmp["diff"] == pytest.approx(a.mean() - b.mean())
            assert cmp["diff_ci"] == pytest.approx(list(np.percentile(diffs, [2.5, 97.5])))
            assert cmp["pct"] == pytest.approx(100 * (a.mean() - b.mean()) / abs(b.mean()))
    # gap: learned minus reference, per policy
    for name, gap in data["gaps"].items():
        learned = np.mean(data["markets"]["learned"]["policies"][name]["episodes"]["profit"])
        ref = np.mean(data["markets"]["reference"]["policies"][name]["episodes"]["profit"])
        assert gap["gap"] == pytest.approx(learned - ref)
        assert gap["gap_pct"] == pytest.approx(100 * (learned - ref) / abs(ref))
    assert data["gaps"]["no-sale"]["gap"] > 0  # the scaled simulator flatters every policy


def test_episode_data_is_the_simulation_with_common_random_numbers(built: dict) -> None:
    setup = built["setup"]
    data = built["data"]["markets"]["reference"]["policies"]
    for name in ("fixed-20", "random"):
        fresh = simulate(
            tiny_policies()[name],
            setup.demand_model,
            setup.params,
            setup.start,
            n_episodes=EPISODES,
            seed=SEED,
        )
        assert np.allclose(fresh.profit, data[name]["episodes"]["profit"])
    # identical behaviour under common random numbers: identical episodes, indistinguishable
    assert data["no-sale"]["episodes"]["profit"] == data["no-sale-copy"]["episodes"]["profit"]
    assert built["data"]["markets"]["reference"]["best_baseline"] == "no-sale"
    verdicts = built["data"]["verdicts"]
    assert verdicts[0].startswith("agent ")  # agents first
    (copy,) = [v for v in verdicts if v.startswith("no-sale-copy ") and "reference" in v]
    assert "is not distinguishable from the best baseline (no-sale)" in copy
    assert any(re.match(r"random earns [\d.]+% \[[\d.]+, [\d.]+\] less than", v) for v in verdicts)
    if built["optimum"] is not None:
        assert any(re.match(r"dp earns [\d.]+% \[[\d.]+, [\d.]+\] more than", v) for v in verdicts)


def test_bootstrap_ci_is_a_real_bootstrap() -> None:
    setup = tiny_setup()
    widths = {}
    for n in (100, 1600):
        rep = evaluate_policies(
            {"fixed": OrderUpTo("fixed", 1, 30)},
            {"reference": setup.demand_model},
            setup.params,
            setup.start,
            episodes=n,
            seed=1,
            progress=False,
        )
        s = rep.markets["reference"].policies["fixed"].stats
        assert s["ci_low"] < s["mean_profit"] < s["ci_high"]
        widths[n] = s["ci_high"] - s["ci_low"]
        normal = 2 * 1.96 * s["sd_profit"] / np.sqrt(n)
        assert widths[n] == pytest.approx(normal, rel=0.2)
    assert 4 / 1.4 < widths[100] / widths[1600] < 4 * 1.4  # ~ 1 / sqrt(n)
    x = np.random.default_rng(0).normal(size=300)
    assert bootstrap_mean_ci(x, seed=1) != bootstrap_mean_ci(x, seed=2)  # resampled, not a formula
    assert interquartile_mean(np.array([1.0, 2, 3, 4, 1000])) == pytest.approx(3.0)


def test_dp_row_equals_the_solver_value_within_ci(built: dict) -> None:
    if built["optimum"] is None:
        pytest.skip("promogym.envs.dp is not available")
    from promogym.envs import dp

    setup = built["setup"]
    value = dp.solve(
        setup.market, setup.item_index, setup.params, dp.day_number(setup.start_date)
    ).expected_profit
    ref = built["data"]["markets"]["reference"]
    assert ref["optimum"] == pytest.approx(value)
    s = ref["policies"]["dp"]["stats"]
    assert s["ci_low"] <= value <= s["ci_high"]
    assert s["pct_of_optimum"] == pytest.approx(100 * s["mean_profit"] / value)
    for entry in ref["policies"].values():
        assert entry["stats"]["pct_of_optimum"] < 100 + 100 * (s["ci_high"] - value) / value
    html = (built["out"] / "report.html").read_text(encoding="utf-8")
    assert "DP optimum (exact expectation)" in html and "inside the 95% CI" in html


def test_html_is_self_contained_with_every_row_and_plot(built: dict) -> None:
    html = (built["out"] / "report.html").read_text(encoding="utf-8")
    tables = html[: html.index("<h2>Plots")]
    for name in built["policies"]:
        # two tables (profit, operations) per market, two markets, plus the gap table
        assert len(re.findall(rf"<td>{re.escape(name)}( \([^)]*\))?</td>", tables)) == 5, name
    plots = html.count('<img src="data:image/png;base64,')
    assert plots == 4 == len(built["data"]["plots"])  # distribution, training, trajectory, heatmap
    for needle in ("http://", "https://", 'src="//', "<script", "<link", "url(", "@import"):
        assert needle not in html, needle
    for verdict in built["data"]["verdicts"]:
        assert verdict.replace("'", "&#x27;") in html
    assert "algorithm.gamma" in html and "packages.numpy" in html
    md = (built["out"] / "report.md").read_text(encoding="utf-8")
    assert "## Verdicts" in md and "| fixed-20 |" in md and "(plots/trajectory.png)" in md
    assert "Positive: the learned simulator flatters the policy" in md  # as the html says
    assert sorted(p.name for p in (built["out"] / "plots").iterdir()) == sorted(
        f"{stem}.png" for stem in built["data"]["plots"]
    )
    traj = built["data"]["trajectory"]
    profit = np.asarray(
        built["data"]["markets"]["reference"]["policies"][traj["policy"]]["episodes"]["profit"]
    )
    assert traj["policy"] == "agent"  # the default: the best agent
    assert abs(traj["profit"] - np.median(profit)) == pytest.approx(
        np.abs(profit - np.median(profit)).min()
    )


def test_write_is_atomic(built: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the plots are tested above; reuse them so the four writes below stay fast
    plots = {
        stem: ("caption", (built["out"] / path).read_bytes())
        for stem, path in built["data"]["plots"].items()
    }
    monkeypatch.setattr(report_mod, "make_plots", lambda *args: plots)
    real_render_html = report_mod.render_html

    def boom(*args: object) -> str:
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_mod, "render_html", boom)  # after plots, json and md are written
    target = tmp_path / "reports" / "name"
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(built["report"], target)
    assert not target.exists() and not (tmp_path / "reports").exists()
    assert list(tmp_path.iterdir()) == []
    # an existing report is replaced only when the new one is complete
    shutil.copytree(built["out"], target)
    (target / "report.md").write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError):
        write_report(built["report"], target)
    assert (target / "report.md").read_text(encoding="utf-8") == "old"
    monkeypatch.setattr(report_mod, "render_html", real_render_html)
    real_replace = report_mod.os.replace

    def fail_moving_new_in(src: Path, dst: Path) -> None:
        if str(src).endswith(".tmp"):
            raise OSError("rename failed")
        real_replace(src, dst)

    monkeypatch.setattr(report_mod.os, "replace", fail_moving_new_in)
    with pytest.raises(OSError, match="rename failed"):
        write_report(built["report"], target)
    monkeypatch.setattr(report_mod.os, "replace", real_replace)
    assert (target / "report.md").read_text(encoding="utf-8") == "old"  # moved back
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["name"]
    write_report(built["report"], target)
    assert (target / "report.md").read_text(encoding="utf-8") != "old"
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["name"]
    (target / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(PromogymInputError, match="holds other files"):
        write_report(built["report"], target)


def test_evaluate_refuses_a_bad_out_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from promogym.envs import dp
    from promogym.evaluate import evaluate_campaign

    def no_solve(*args: object, **kwargs: object) -> None:
        raise AssertionError("the DP was solved before --out was checked")

    monkeypatch.setattr(dp, "solve", no_solve)
    config = CampaignConfig.from_dict(TINY)
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(PromogymInputError, match="holds other files"):
        evaluate_campaign(out, config, episodes=20, tune_episodes=16, progress=False)
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine"
    afile = tmp_path / "afile"
    afile.write_text("x", encoding="utf-8")
    with pytest.raises(PromogymInputError, match="not a directory"):
        evaluate_campaign(afile, config, episodes=20, tune_episodes=16, progress=False)


def test_training_log_formats(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "evaluations.npz",
        timesteps=np.array([100, 200]),
        results=np.array([[1.0, 3.0], [4.0, 6.0]]),
        ep_lengths=np.array([[6, 6], [6, 6]]),
    )
    curve = read_training_log(tmp_path)
    assert curve.mean_reward.tolist() == [2.0, 5.0] and curve.std_reward.tolist() == [1.0, 1.0]
    monitor = tmp_path / "m" / "0.monitor.csv"
    monitor.parent.mkdir()
    monitor.write_text('#{"t_start": 0, "env_id": "x"}\nr,l,t\n1.0,6,0.1\n3.0,6,0.2\n')
    curve = read_training_log(monitor)
    assert curve.timesteps.tolist() == [6.0, 12.0]
    bad = tmp_path / "bad.csv"
    bad.write_text("step,value\n1,2\n", encoding="utf-8")
    with pytest.raises(PromogymInputError, match="timesteps,mean_reward"):
        read_training_log(bad)


def test_evaluate_cli(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(CampaignConfig.from_dict(TINY).to_toml(), encoding="utf-8")
    out = tmp_path / "reports" / "demo"
    runner = CliRunner()
    args = ["evaluate", "--config", str(cfg), "--episodes", "20", "--tune-episodes", "16"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    pols = data["markets"]["reference"]["policies"]
    assert "no-promotion" in pols and "dp-optimum" in pols
    assert data["markets"]["reference"]["optimum"] is not None
    assert data["provenance"]["seeds"] == {"evaluation": 0, "baseline_tuning": 1, "bootstrap": 0}
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "x"), "--run", "runs/missing"])
    assert result.exit_code == 2 and "--run runs/missing" in result.output
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "x"), "--market", "both"])
    assert result.exit_code == 2 and "--run" in result.output
    assert not (tmp_path / "x").exists()
    help_text = runner.invoke(app, ["evaluate", "--help"]).output
    assert "Example: promogym evaluate" in help_text


def _chromium() -> str | None:
    return next((p for n in ("chromium", "chromium-browser") if (p := shutil.which(n))), None)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(built: dict, tmp_path: Path) -> None:
    binary = _chromium()
    if binary is None:
        pytest.skip("no chromium binary on PATH (Debian: apt-get install -y chromium)")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,2000",
            (built["out"] / "report.html").resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (2000, 1200)
    assert float(pixels[..., :3].std()) > 0.05  # text, tables and plots, not a blank page
    # the plots render: the lower half (figures) is not blank either
    assert float(pixels[1000:, :, :3].std()) > 0.05


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run fitted and trained in seconds (2 items, 120 days, a 16-wide forecaster)."""
    from promogym.simulate import write_simulated_history

    root = tmp_path_factory.mktemp("run")
    write_simulated_history(
        root / "history.csv", n_items=2, periods=120, seed=0, config=TINY_RUN_CONFIG
    )
    fit_and_train_tiny(root / "history.csv", root / "run")
    return root / "run"


def test_evaluate_accepts_the_runs_campaign_read_with_other_data_options(tiny_run: Path) -> None:
    """``--config`` must be the run's campaign; how a history file is read ([data]) is not
    part of it (``fit --fill-gaps`` writes it into the run's config)."""
    import dataclasses

    from promogym.config import DataSection
    from promogym.evaluate import run_inputs
    from promogym.run import load_run

    config = load_run(tiny_run).config
    other_data = dataclasses.replace(config, data=DataSection(fill_gaps="zero"))
    inputs = run_inputs(tiny_run, other_data, "sku-0", "best", "learned")
    assert inputs.item == "sku-0"
    # The run's campaign.start_date (2024-04-27) is not the campaign evaluate scores: it says so.
    assert inputs.provenance["campaign_start"].startswith("2024-04-30, the period after")
    assert "campaign.start_date 2024-04-27 is not used" in inputs.provenance["campaign_start"]
    other_campaign = config.replace(inventory={"initial": 10})
    with pytest.raises(PromogymInputError, match="--config differs"):
        run_inputs(tiny_run, other_campaign, "sku-0", "best", "learned")


@pytest.mark.slow
def test_evaluate_cli_with_a_trained_run(tiny_run: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["evaluate", "--run", str(tiny_run), "--episodes", "12", "--tune-episodes", "8"]
    out = tmp_path / "rep"
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert set(data["markets"]) == {"reference", "learned"}  # the run knows its true market
    for market in data["markets"].values():
        assert market["policies"]["ppo"]["kind"] == "agent"
        assert market["policies"]["planner"]["kind"] == "agent"  # every run has its planner
    assert set(data["gaps"]) >= {"ppo", "planner", "no-promotion"}
    assert any(v.startswith("ppo ") for v in data["verdicts"])
    assert set(data["plots"]) == {
        "profit_distribution",
        "training_curve",
        "trajectory",
        "discount_heatmap",
    }
    assert data["trajectory"]["policy"] in ("ppo", "planner")  # the best agent's
    prov = data["provenance"]
    assert prov["algorithm"]["algo"] == "ppo" and "hparams" in prov["algorithm"]
    assert prov["forecaster"] and prov["policy"] == {"agent": "ppo", "model": "best"}
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count('<img src="data:image/png;base64,') == 4
    run_info = json.loads((tiny_run / "run.json").read_text(encoding="utf-8"))
    assert data["price_response"] == run_info["price_response"] is not None
    summary = run_info["price_response"]["summary"]
    for text in (html, (out / "report.md").read_text(encoding="utf-8")):
        assert "Price response on the held-out periods" in text and summary in text
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "x"), "--policy", "nope"])
    assert result.exit_code == 2 and "--policy nope" in result.output
    last = tiny_run / "agents" / "ppo" / "last_model.zip"
    result = runner.invoke(
        app, [*args, "--out", str(tmp_path / "y"), "--policy", str(last), "--market", "learned"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "y" / "report.json").read_text(encoding="utf-8"))
    assert list(data["markets"]) == ["learned"] and data["provenance"]["policy"]["model"] == "last"


@pytest.mark.slow
def test_evaluate_a_run_without_agents_scores_the_planner_and_baselines(
    tiny_run: Path, tmp_path: Path
) -> None:
    untrained = tmp_path / "untrained"
    shutil.copytree(tiny_run, untrained, ignore=shutil.ignore_patterns("agents"))
    out = tmp_path / "rep"
    args = ["evaluate", "--run", str(untrained), "--episodes", "6", "--tune-episodes", "4"]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert set(data["markets"]) == {"reference", "learned"}
    for market in data["markets"].values():
        kinds = {p["kind"] for p in market["policies"].values()}
        agents = [n for n, p in market["policies"].items() if p["kind"] == "agent"]
        assert agents == ["planner"] and "baseline" in kinds
    assert "policy" not in data["provenance"]


@pytest.mark.slow
def test_evaluate_plans_on_stock_lots_or_leaves_the_planner_out_past_the_dp_memory_limit(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from promogym.envs import dp

    monkeypatch.setattr(dp, "DP_MEMORY_LIMIT", 1)  # as a shop with a huge stock capacity
    args = ["evaluate", "--run", str(tiny_run), "--episodes", "6", "--tune-episodes", "4"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "lots")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "lots" / "report.json").read_text(encoding="utf-8"))
    assert data["provenance"]["optimum"]["stock_lot"] == 2  # capacity 160, orders of 40 and 80
    assert "planner" in data["markets"]["reference"]["policies"]
    assert data["provenance"]["planner"].startswith("DP over 2-unit stock lots")
    text = (tmp_path / "lots" / "report.md").read_text(encoding="utf-8")
    assert "DP optimum on a grid of 2-unit stock lots" in text
    monkeypatch.setattr(dp, "DP_LOT_MEMORY", 1)  # no grid fits
    out = tmp_path / "rep"
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    for market in data["markets"].values():
        assert "planner" not in market["policies"] and "dp-optimum" not in market["policies"]
        assert market["optimum"] is None and "ppo" in market["policies"]
    for key in ("planner", "optimum"):
        assert data["provenance"][key].startswith("left out: the planner would need")
    assert "No DP optimum: the planner would need" in (out / "report.md").read_text(
        encoding="utf-8"
    )


def test_definitions_name_the_markets_policies_and_where_baselines_were_tuned() -> None:
    from types import SimpleNamespace

    from promogym.report import DEFINITIONS, definitions

    tuned = SimpleNamespace(provenance={"tuning": {"market": "reference", "episodes": 16}})
    lines = definitions(tuned)  # type: ignore[arg-type]
    assert lines[: len(DEFINITIONS)] == list(DEFINITIONS)
    assert "tuned by simulation in the reference market (16 campaigns" in lines[-1]
    assert definitions(SimpleNamespace(provenance={})) == list(DEFINITIONS)  # type: ignore[arg-type]
    text = " ".join(DEFINITIONS)
    for name in ("Learned market", "dp-optimum", "planner", "best-fixed-discount", "random"):
        assert name in text
