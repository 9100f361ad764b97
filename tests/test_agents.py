"""Agents: short training runs per algorithm, resume after a kill, seeds, the policy adapter."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_FORECASTER, TINY_PPO
from stable_baselines3.common.callbacks import BaseCallback

from promogym.agents.hparams import (
    DEFAULT_HPARAMS,
    load_hparams_file,
    parse_set,
    resolve_hparams,
)
from promogym.agents.train import (
    EnvSpec,
    agent_name,
    effective_hparams,
    make_vec_env,
    train_agent,
)
from promogym.config import CampaignConfig
from promogym.envs.market import day_date
from promogym.envs.rollout import simulate
from promogym.errors import ConfigError, PromogymInputError
from promogym.run import Run, fit_run, load_run
from promogym.simulate import write_simulated_history

CONFIG = CampaignConfig().replace(campaign={"horizon": 7})
TINY = {
    "ppo": TINY_PPO,
    "maskable-ppo": TINY_PPO,
    "dqn": {"learning_starts": 28, "batch_size": 16, "gradient_steps": 1, "net_arch": [16]},
}
FAST = {"n_envs": 4, "device": "cpu", "eval_episodes": 4, "tensorboard": False, "overwrite": True}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("agents")
    torch.set_num_threads(1)
    write_simulated_history(root / "history.csv", n_items=2, periods=100, seed=1, config=CONFIG)
    return fit_run(
        root / "history.csv",
        root / "run",
        CONFIG,
        forecaster_config=TINY_FORECASTER,
        from_scratch=True,
    )


class StopAfter(BaseCallback):
    """Simulates a crash: raises once training has passed ``timesteps``."""

    def __init__(self, timesteps: int) -> None:
        super().__init__()
        self.limit = timesteps

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.limit:
            raise KeyboardInterrupt("killed")
        return True


def weights(model_path: Path, algo: str) -> list[np.ndarray]:
    from promogym.agents.train import algo_class

    model = algo_class(algo).load(model_path, device="cpu")
    return [p.detach().numpy().copy() for p in model.policy.parameters()]


# ---- hyper-parameters ----------------------------------------------------------------------
def test_hparams_table_and_overrides(tmp_path: Path) -> None:
    assert set(DEFAULT_HPARAMS) == {"ppo", "maskable-ppo", "dqn"}
    hp = resolve_hparams("ppo", parse_set(["learning_rate=1e-4", "net_arch=[32, 32]"]))
    assert hp["learning_rate"] == 1e-4 and hp["net_arch"] == [32, 32]
    assert hp["gamma"] == DEFAULT_HPARAMS["ppo"]["gamma"]
    with pytest.raises(ConfigError, match="unknown hyper-parameter 'buffer_size' for ppo"):
        resolve_hparams("ppo", {"buffer_size": 10})
    with pytest.raises(ConfigError, match="must be an integer"):
        resolve_hparams("dqn", {"buffer_size": 1.5})
    # Values SB3 would fail on, or train nonsense with, are one-line errors up front.
    for algo, key, value, message in (
        ("ppo", "n_steps", 0, "integer >= 1"),
        ("ppo", "n_epochs", 0, "integer >= 1"),
        ("dqn", "gradient_steps", 0, "integer >= 1"),
        ("ppo", "gamma", 2.0, r"in \[0, 1\]"),
        ("ppo", "gae_lambda", 7, r"in \[0, 1\]"),
        ("dqn", "exploration_final_eps", 3.0, r"in \[0, 1\]"),
        ("ppo", "learning_rate", 0.0, "> 0"),
        ("ppo", "batch_size", 1, "integer >= 2"),
        ("ppo", "clip_range", float("nan"), "a number, got nan"),
    ):
        with pytest.raises(ConfigError, match=f"{algo} {key} must be .*{message}"):
            resolve_hparams(algo, {key: value})
    assert resolve_hparams("dqn", {"learning_starts": 0})["learning_starts"] == 0
    assert effective_hparams("ppo", DEFAULT_HPARAMS["ppo"], 2)["batch_size"] == 56
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_set(["learning_rate"])
    with pytest.raises(ConfigError, match="unknown algorithm"):
        resolve_hparams("a2c")
    with pytest.raises(ConfigError, match="planner needs no training"):
        resolve_hparams("planner")
    path = tmp_path / "hp.toml"
    path.write_text("gamma = 0.9\n[dqn]\nbuffer_size = 1000\n[ppo]\nn_epochs = 3\n")
    assert load_hparams_file(path, "dqn") == {"gamma": 0.9, "buffer_size": 1000}
    assert load_hparams_file(path, "ppo") == {"gamma": 0.9, "n_epochs": 3}


# ---- training ------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["ppo", "maskable-ppo", "dqn"])
def test_short_training_end_to_end(run: Run, algo: str) -> None:
    result = train_agent(run, algo, timesteps=84, seed=0, hparams=TINY[algo], **FAST)
    out = run.path / "agents" / algo
    assert result.directory == out and result.timesteps >= 84
    for name in ("best_model.zip", "last_model.zip", "train.json", "evaluations.csv"):
        assert (out / name).is_file(), name
    assert not (run.path / "agents" / f".{algo}.partial").exists()
    with (out / "evaluations.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["timesteps"] == "0" and int(rows[-1]["timesteps"]) == result.timesteps
    info = load_run(run.path).agent_info(algo)
    assert info["hparams"]["net_arch"] == [16] and info["seeds"]["train"] == 0
    # The trained agent acts through the rollout API, in the learned simulator.
    policy = load_run(run.path).policy(algo)
    params = run.params()
    start = run.next_campaign(run.item_vocabulary()[0])
    rollout = simulate(policy, run.demand_model(), params, start, n_episodes=8, seed=0)
    assert rollout.profit.shape == (8,) and np.isfinite(rollout.profit).all()


def test_training_writes_tensorboard_logs(run: Run) -> None:
    fast = dict(FAST, tensorboard=True)
    train_agent(run, "ppo", timesteps=28, seed=3, hparams=TINY["ppo"], **fast)
    assert list((run.path / "agents" / "ppo" / "tb").rglob("events.out.tfevents.*"))


def test_same_seed_same_weights(run: Run, tmp_path: Path) -> None:
    first = train_agent(run, "ppo", timesteps=56, seed=5, hparams=TINY["ppo"], **FAST)
    shutil.copy(first.directory / "last_model.zip", tmp_path / "a.zip")
    again = train_agent(run, "ppo", timesteps=56, seed=5, hparams=TINY["ppo"], **FAST)
    shutil.copy(again.directory / "last_model.zip", tmp_path / "b.zip")
    other = train_agent(run, "ppo", timesteps=56, seed=6, hparams=TINY["ppo"], **FAST)
    shutil.copy(other.directory / "last_model.zip", tmp_path / "c.zip")
    keep = dict(FAST, overwrite=False)  # a trained agent is replaced only on request
    with pytest.raises(PromogymInputError, match="already has a trained ppo agent.*--overwrite"):
        train_agent(run, "ppo", timesteps=56, seed=7, hparams=TINY["ppo"], **keep)
    assert (other.directory / "last_model.zip").read_bytes() == (tmp_path / "c.zip").read_bytes()
    a = weights(tmp_path / "a.zip", "ppo")
    b = weights(tmp_path / "b.zip", "ppo")
    c = weights(tmp_path / "c.zip", "ppo")
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    assert first.evaluations == again.evaluations


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_resume_after_kill_reaches_the_same_total(run: Run, algo: str) -> None:
    common = {"timesteps": 140, "seed": 0, "hparams": TINY[algo], "checkpoint_freq": 28}
    full = train_agent(run, algo, **common, **FAST)
    partial = run.path / "agents" / f".{algo}.partial"
    shutil.rmtree(full.directory)
    with pytest.raises(KeyboardInterrupt):
        train_agent(run, algo, callback=StopAfter(90), **common, **FAST)
    assert (partial / "checkpoint.zip").is_file() and not full.directory.exists()
    if algo == "dqn":
        assert (partial / "replay_buffer.pkl").is_file()
    resumed = train_agent(run, algo, resume=True, **common, **FAST)
    assert resumed.timesteps == full.timesteps
    assert load_run(run.path).agent_info(algo)["resumed"] is True
    assert not partial.exists() and (full.directory / "best_model.zip").is_file()


def test_a_one_step_rollout_is_refused_before_any_work(run: Run) -> None:
    with pytest.raises(ConfigError, match="n_steps x n_envs = 1; a rollout needs at least 2"):
        train_agent(run, "ppo", timesteps=28, hparams={**TINY["ppo"], "n_steps": 1}, n_envs=1)
    assert not (run.path / "agents" / ".ppo.partial").exists()


def test_resume_needs_a_checkpoint_and_same_settings(run: Run) -> None:
    with pytest.raises(PromogymInputError, match="no checkpoint"):
        train_agent(run, "maskable-ppo", timesteps=28, resume=True, **FAST)
    common = {"seed": 0, "hparams": TINY["ppo"], "checkpoint_freq": 28}
    with pytest.raises(KeyboardInterrupt):
        train_agent(run, "ppo", timesteps=140, callback=StopAfter(60), **common, **FAST)
    with pytest.raises(PromogymInputError, match="other settings"):
        train_agent(run, "ppo", timesteps=280, resume=True, **common, **FAST)
    shutil.rmtree(run.path / "agents" / ".ppo.partial")


def test_reference_demand_trains_on_the_true_market(run: Run) -> None:
    result = train_agent(
        run, "ppo", timesteps=28, seed=0, hparams=TINY["ppo"], demand="reference", **FAST
    )
    assert result.name == agent_name("ppo", "reference") == "ppo-reference"
    assert load_run(run.path).agent_info("ppo-reference")["demand"] == "reference"


def test_evaluation_starts_after_the_training_cutoff_for_every_item(
    run: Run, tmp_path: Path
) -> None:
    """Items that start or stop on other dates: every item with context before the holdout
    is evaluated there, after training's last start, on the training history's scale."""
    frame = run.history.frame
    dates = np.sort(frame["date"].unique())
    late = (frame["item_id"] == "sku-1") & (frame["date"] < dates[15])  # a newer item
    early = (frame["item_id"] == "sku-0") & (frame["date"] > dates[90])  # a delisted one
    frame.loc[~(late | early)].to_csv(tmp_path / "h.csv", index=False)
    staggered = fit_run(
        tmp_path / "h.csv",
        tmp_path / "run",
        CONFIG,
        forecaster_config=TINY_FORECASTER,
        from_scratch=True,
    )
    spec = EnvSpec(holdout_periods=30, expected_demand_obs=False)
    cutoff = dates[-30]
    envs = {
        kind: make_vec_env(staggered, spec, 64, flat=False, device="cpu", evaluation=kind)
        for kind in (False, True)
    }
    starts = {}
    for kind, env in envs.items():
        env.seed(0)
        env.reset()
        state = env.core.state
        starts[kind] = {
            (staggered.item_vocabulary()[i], np.datetime64(day_date(d), "ns"))
            for i, d in zip(state.item.tolist(), state.day.tolist(), strict=True)
        }
    assert max(day for _, day in starts[False]) <= cutoff
    assert min(day for _, day in starts[True]) > cutoff
    assert {item for item, _ in starts[True]} == {"sku-0", "sku-1"}
    assert torch.equal(envs[True].core.typical, envs[False].core.typical)


# ---- the policy adapter ------------------------------------------------------------------
def test_policy_observation_matches_the_env(run: Run) -> None:
    """The adapter's observations equal the env's, step after step (shared memory)."""
    train_agent(run, "ppo", timesteps=28, seed=0, hparams=TINY["ppo"], **FAST)
    run = load_run(run.path)
    info = run.agent_info("ppo")
    spec = EnvSpec(**info["env"])
    demand = run.demand_model()
    env = make_vec_env(run, spec, 3, flat=False, device="cpu", demand_model=demand)
    env.seed(7)
    obs = env.reset()
    policy = run.policy("ppo", feature_model=demand, shared_memory=True)
    params = env.core.params
    for _ in range(params.horizon):
        state = env.core.state
        d, o = policy.act(state, params, env.core.memory)
        assert np.allclose(policy.observe(state), obs, atol=1e-6)
        obs, _, dones, _ = env.step(np.stack([d.numpy(), o.numpy()], axis=1))
    assert dones.all()


@pytest.mark.slow  # about 10 s: tunes every baseline by simulation
def test_score_in_market_against_the_optimum(run: Run) -> None:
    from promogym.agents.scoring import format_scores, score_in_market

    train_agent(run, "ppo", timesteps=28, seed=0, hparams=TINY["ppo"], **FAST)
    scores = score_in_market(
        load_run(run.path), "sku-1", agents=["ppo"], episodes=64, tune_episodes=4
    )
    kinds = {name: row["kind"] for name, row in scores["policies"].items()}
    assert kinds["dp-optimum"] == "optimum" and kinds["ppo"] == "agent"
    assert {"no-promotion", "best-fixed-discount", "periodic-flash-sale"} <= set(kinds)
    assert scores["policies"]["dp-optimum"]["fraction"] == pytest.approx(1.0, abs=0.1)
    for row in scores["policies"].values():
        assert row["mean"] <= scores["optimum"] + 4 * row["se"]
    assert "of optimum" in format_scores(scores)
