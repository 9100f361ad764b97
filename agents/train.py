"""Train SB3 agents in a run's simulator: the library behind ``promogym train``.

:func:`train_agent` builds the batched :class:`~promogym.envs.vec_env.FlashSaleVecEnv` over
the run's learned simulator (``ForecasterDemand``: the run's forecaster rolled out from real
windows of its history; or, with ``demand="reference"``, the true market the history was
simulated from) and trains ``ppo``, ``maskable-ppo`` (sb3-contrib, with action masks) or
``dqn`` (on the flattened ``Discrete`` actions). Defaults: :mod:`promogym.agents.hparams`.

Held-out evaluation: training campaigns start anywhere in the history before its last
``holdout_periods`` dates (at the first of them at the latest); every ``eval_freq`` timesteps
the deterministic policy plays ``eval_episodes`` campaigns starting after that date, each
item from its own context, on the training history's observation scale (same seed every
time, so evaluations are comparable), the mean profit per campaign (currency) goes to
``evaluations.csv`` (``timesteps,mean_reward,std_reward``) and the best so far is saved as
``best_model.zip``.

Output ``RUN/agents/NAME/`` (``NAME`` = the algorithm, ``-reference`` appended when trained
on the true market): ``best_model.zip``, ``last_model.zip``, ``train.json``,
``evaluations.csv``, ``tb/`` (TensorBoard), ``checkpoint.zip`` + ``checkpoint.json``. While
training, everything lives in ``RUN/agents/.NAME.partial/`` and is renamed into place only
when training finishes, so a failed run never leaves a half-written agent. Every
``checkpoint_freq`` timesteps (at a rollout boundary) the model, its progress and, for DQN,
the replay buffer are checkpointed there; ``resume=True`` continues from the checkpoint to
the same total timesteps an uninterrupted run reaches.

Determinism: on CPU, one seed gives identical weights (the env seeds campaign ``i`` with
``seed + i``; SB3 seeds torch, NumPy and the action space).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from promogym.agents.hparams import check_algo, resolve_hparams
from promogym.errors import ConfigError, PromogymInputError
from promogym.io import atomic_path, atomic_write_text, replace_directory

if TYPE_CHECKING:
    from promogym.config import CampaignConfig
    from promogym.envs.vec_env import FlashSaleVecEnv
    from promogym.run import Run

DEMANDS = ("learned", "reference")
CHECKPOINT = "checkpoint.zip"
CHECKPOINT_STATE = "checkpoint.json"
REPLAY_BUFFER = "replay_buffer.pkl"
EVALUATIONS = "evaluations.csv"
TRAIN_JSON = "train.json"


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """How the training env was built; saved in ``train.json`` so the policy can be rebuilt."""

    demand: str = "learned"
    holdout_periods: int = 56
    recent_periods: int = 7
    expected_demand_obs: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TrainResult:
    """What :func:`train_agent` produced."""

    name: str
    directory: Path
    timesteps: int
    seconds: float
    best_mean_reward: float | None
    evaluations: list[tuple[int, float, float]]


def agent_name(algo: str, demand: str) -> str:
    """Directory name of an agent: the algorithm, ``-reference`` when trained on the market."""
    return algo if demand == "learned" else f"{algo}-{demand}"


def config_digest(config: CampaignConfig) -> str:
    """Short SHA-256 of a campaign config's TOML: ties an agent (or a run's planner) to the
    campaign it plans. The ``[data]`` section (how a history file is read) is left out: it
    does not change the campaign."""
    from promogym.config import DataSection

    campaign_only = dataclasses.replace(config, data=DataSection())
    return hashlib.sha256(campaign_only.to_toml().encode()).hexdigest()[:16]


# ---- environments ---------------------------------------------------------------------------
def holdout_cutoff(run: Run, holdout_periods: int) -> pd.Timestamp | None:
    """The first of the history's last ``holdout_periods`` dates (``None`` for no holdout)."""
    dates = np.sort(run.history.frame["date"].unique())
    if holdout_periods <= 0:
        return None
    if holdout_periods >= len(dates):
        raise PromogymInputError(
            f"holdout_periods={holdout_periods} leaves no training history "
            f"({len(dates)} periods); use a smaller value"
        )
    return pd.Timestamp(dates[-holdout_periods])


def training_history(run: Run, holdout_periods: int) -> Any:
    """The run's history before :func:`holdout_cutoff` (training starts); every other field
    of the run's history is kept."""
    history = run.history
    frame = history.frame
    cutoff = holdout_cutoff(run, holdout_periods)
    if cutoff is None:
        return history
    return dataclasses.replace(
        history,
        frame=frame[frame["date"] < cutoff].reset_index(drop=True),
        source=f"{history.source} (before {str(cutoff)[:10]})",
    )


def demand_model_for(run: Run, demand: str) -> Any:
    """The run's learned simulator, or its true market (``demand="reference"``)."""
    if demand not in DEMANDS:
        raise PromogymInputError(f"demand must be one of {list(DEMANDS)}, got {demand!r}")
    if demand == "learned":
        return run.demand_model()
    from promogym.envs.demand import MarketDemand

    market = run.market()
    if market is None:
        raise PromogymInputError(
            f"{run.path}: no market.json (the history was not simulated by promogym), so "
            "there is no reference market to train on; use the learned simulator"
        )
    return MarketDemand(market)


def make_vec_env(
    run: Run,
    spec: EnvSpec,
    n_envs: int,
    *,
    flat: bool,
    device: str | torch.device,
    evaluation: bool = False,
    demand_model: Any = None,
) -> FlashSaleVecEnv:
    """The run's FlashSale VecEnv: training starts before the holdout, evaluation starts in it.

    Training reads :func:`training_history` (the history before the cut-off date, the first
    of the last ``holdout_periods``), so its last start is the cut-off. Evaluation reads the
    whole history, starts after the cut-off (each item with its own context before the
    start, so items that start or stop on other dates count too) and scales its observations
    by the training history's typical demand, as training and the deployed agent
    (:meth:`promogym.run.Run.policy`) do.
    """
    from promogym.envs.forecaster_demand import HistoryWindows
    from promogym.envs.vec_env import FlashSaleVecEnv

    model = demand_model if demand_model is not None else demand_model_for(run, spec.demand)
    item_ids = run.item_vocabulary()
    common = {
        "item_ids": item_ids,
        "recent_periods": spec.recent_periods,
        "expected_demand_obs": spec.expected_demand_obs,
        "device": device,
        "list_price": run.list_prices(),
        "unit_cost": run.unit_costs(),
    }
    history = training_history(run, spec.holdout_periods)
    if not evaluation:
        return FlashSaleVecEnv(
            n_envs, model, run.config, flatten_actions=flat, history=history, **common
        )
    # Training's last start is the cut-off (the period after its history), so evaluation
    # starts one period later; without a holdout, at the period after the history.
    period = pd.Timedelta(days=run.history.period_days)
    last = pd.Timestamp(run.history.frame["date"].max())
    cutoff = holdout_cutoff(run, spec.holdout_periods)
    first = (last if cutoff is None else cutoff) + period
    return FlashSaleVecEnv(
        n_envs,
        model,
        run.config,
        flatten_actions=flat,
        history=run.history,
        first_start=first.date().isoformat(),
        typical=HistoryWindows(history, item_ids).typical_level,
        **common,
    )


# ---- models ---------------------------------------------------------------------------------
def algo_class(algo: str) -> Any:
    """The SB3 class of ``algo``."""
    check_algo(algo)
    if algo == "ppo":
        from stable_baselines3 import PPO

        return PPO
    if algo == "maskable-ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    from stable_baselines3 import DQN

    return DQN


def effective_hparams(algo: str, hparams: Mapping[str, Any], n_envs: int) -> dict[str, Any]:
    """``hparams`` as training uses them: PPO's ``batch_size`` at most one rollout
    (``n_steps * n_envs``), so ``train.json`` records what the model used."""
    hp = dict(hparams)
    if algo in ("ppo", "maskable-ppo"):
        hp["batch_size"] = min(hp["batch_size"], hp["n_steps"] * n_envs)
    return hp


def build_model(
    algo: str,
    env: FlashSaleVecEnv,
    hparams: Mapping[str, Any],
    *,
    seed: int,
    device: str,
    tensorboard_log: str | None,
) -> Any:
    """A fresh SB3 model of ``algo`` on ``env`` with ``hparams`` (see the defaults table;
    PPO's ``batch_size`` as :func:`effective_hparams` makes it)."""
    hp = dict(hparams)
    activation = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[hp.pop("activation")]
    policy_kwargs = {"net_arch": hp.pop("net_arch"), "activation_fn": activation}
    if algo == "dqn":
        hp["train_freq"] = (hp["train_freq"], "step")
    return algo_class(algo)(
        "MlpPolicy",
        env,
        policy_kwargs=policy_kwargs,
        tensorboard_log=tensorboard_log,
        seed=seed,
        device=device,
        verbose=0,
        **hp,
    )


# ---- evaluation -----------------------------------------------------------------------------
def evaluate_model(
    model: Any, env: FlashSaleVecEnv, *, masked: bool, seed: int
) -> tuple[float, float]:
    """Mean and sd of profit per campaign (currency) of the deterministic policy.

    Plays one campaign in each of ``env.num_envs`` rows, all reset with ``seed``.
    """
    env.seed(seed)
    obs = env.reset()
    horizon = env.core.params.horizon
    profit = np.zeros(env.num_envs)
    for _ in range(horizon):
        kwargs: dict[str, Any] = {"deterministic": True}
        if masked:
            kwargs["action_masks"] = env.action_masks()
        actions, _ = model.predict(obs, **kwargs)
        obs, _, _, infos = env.step(actions)
        profit += np.array([info["profit"] for info in infos])
    sd = float(profit.std(ddof=1)) if profit.size > 1 else 0.0
    return float(profit.mean()), sd


class TrainingCallback(BaseCallback):
    """Held-out evaluation, best-model saving and resumable checkpoints at rollout starts."""

    def __init__(
        self,
        directory: Path,
        eval_env: FlashSaleVecEnv,
        *,
        masked: bool,
        eval_freq: int,
        eval_seed: int,
        checkpoint_freq: int,
        progress: dict[str, Any],
        save_replay_buffer: bool,
        log: Callable[[str], None],
    ) -> None:
        super().__init__()
        self.directory = directory
        self.eval_env = eval_env
        self.masked = masked
        self.eval_freq = eval_freq
        self.eval_seed = eval_seed
        self.checkpoint_freq = checkpoint_freq
        self.progress = progress
        self.save_replay_buffer = save_replay_buffer
        self.log = log

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        n = self.num_timesteps
        if n - self.progress["last_eval"] >= self.eval_freq:
            self.evaluate()
        if n - self.progress["last_checkpoint"] >= self.checkpoint_freq:
            self.checkpoint()

    def _on_training_end(self) -> None:
        if self.progress["last_eval"] != self.num_timesteps or not self.progress["evaluations"]:
            self.evaluate()

    def evaluate(self) -> None:
        n = self.num_timesteps
        mean, sd = evaluate_model(
            self.model, self.eval_env, masked=self.masked, seed=self.eval_seed
        )
        self.progress["evaluations"].append((n, mean, sd))
        self.progress["last_eval"] = n
        self.logger.record("eval/mean_profit", mean)
        best = self.progress["best_mean_reward"]
        if best is None or mean > best:
            self.progress["best_mean_reward"] = mean
            self.progress["best_timesteps"] = n
            with atomic_path(self.directory / "best_model.zip") as tmp:
                self.model.save(tmp)
        write_evaluations(self.directory / EVALUATIONS, self.progress["evaluations"])
        self.log(f"  eval at {n:>9,} timesteps: mean profit {mean:9.2f} (sd {sd:.2f})")

    def checkpoint(self) -> None:
        self.progress["last_checkpoint"] = self.num_timesteps
        # Each file appears whole or not at all: a kill mid-save keeps the previous one.
        with atomic_path(self.directory / CHECKPOINT) as tmp:
            self.model.save(tmp)
        if self.save_replay_buffer:
            with atomic_path(self.directory / REPLAY_BUFFER) as tmp:
                self.model.save_replay_buffer(tmp)
        state = dict(self.progress, num_timesteps=self.num_timesteps)
        atomic_write_text(self.directory / CHECKPOINT_STATE, json.dumps(state, indent=2) + "\n")


def write_evaluations(path: Path, rows: list[tuple[int, float, float]]) -> None:
    """``timesteps,mean_reward,std_reward`` (mean profit per held-out campaign, currency)."""
    lines = ["timesteps,mean_reward,std_reward"]
    lines += [f"{int(t)},{m:.6f},{s:.6f}" for t, m, s in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


# ---- training -------------------------------------------------------------------------------
def train_agent(
    run: Run | str | os.PathLike[str],
    algo: str = "ppo",
    *,
    timesteps: int = 3_000_000,
    n_envs: int = 256,
    seed: int = 0,
    device: str = "auto",
    resume: bool = False,
    overwrite: bool = False,
    hparams: Mapping[str, Any] | None = None,
    demand: str = "learned",
    holdout_periods: int | None = None,
    eval_freq: int | None = None,
    eval_episodes: int = 64,
    checkpoint_freq: int | None = None,
    progress_bar: bool = False,
    tensorboard: bool = True,
    callback: BaseCallback | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``algo`` in the run's simulator and write ``RUN/agents/NAME/``.

    Args:
        run: a :class:`~promogym.run.Run` or its directory.
        algo: ``ppo``, ``maskable-ppo`` or ``dqn``.
        timesteps: total environment steps (campaign periods over all envs); PPO rounds up
            to whole rollouts of ``n_steps * n_envs``.
        n_envs: campaigns simulated in parallel (one forecaster call per period for all).
        seed: seeds the env, the model and the evaluation campaigns.
        device: ``cpu``, ``cuda`` or ``auto`` (env and networks).
        resume: continue an interrupted run from its checkpoint (same settings).
        overwrite: replace a trained agent of the same name (else that is an error; it is
            replaced only when the new one is complete).
        hparams: overrides of :data:`~promogym.agents.hparams.DEFAULT_HPARAMS`.
        demand: ``learned`` (the run's forecaster) or ``reference`` (the true market, when
            the run has ``market.json``; the upper bound of what RL can do).
        holdout_periods: last periods of the history reserved for evaluation starts
            (default: two horizons, at most a quarter of the history).
        eval_freq: timesteps between held-out evaluations (default: timesteps / 10).
        eval_episodes: campaigns per evaluation.
        checkpoint_freq: timesteps between checkpoints (default: ``eval_freq``).
        progress_bar: show SB3's progress bar.
        tensorboard: write TensorBoard logs to ``tb/``.
        callback: extra SB3 callback (tests use it to interrupt training).
        log: ``callable(str)`` for status lines.
    """
    from promogym.envs.flash_sale import resolve_device
    from promogym.run import Run, load_run, package_versions

    say = log or (lambda _msg: None)
    run = run if isinstance(run, Run) else load_run(run)
    check_algo(algo)
    if timesteps < 1 or n_envs < 1 or eval_episodes < 1:
        raise PromogymInputError(
            f"timesteps, n_envs and eval_episodes must be >= 1, got {timesteps}, {n_envs}, "
            f"{eval_episodes}"
        )
    name = agent_name(algo, demand)
    final_dir = run.path / "agents" / name
    partial = run.path / "agents" / f".{name}.partial"
    started = time.perf_counter()

    given = resolve_hparams(algo, hparams or {}, source="hyper-parameters")
    if algo != "dqn" and given["n_steps"] * n_envs < 2:
        raise ConfigError(
            f"hyper-parameters: {algo} n_steps x n_envs = {given['n_steps'] * n_envs}; a "
            "rollout needs at least 2 steps: raise n_steps or n_envs"
        )
    if final_dir.exists() and not (overwrite or resume):
        raise PromogymInputError(
            f"{final_dir}: the run already has a trained {name} agent; pass --overwrite to "
            "replace it (once the new one is complete), or train into another run"
        )
    hp = effective_hparams(algo, given, n_envs)
    if hp != given:
        say(
            f"batch_size {given['batch_size']} is more than one rollout (n_steps x n_envs = "
            f"{given['n_steps'] * n_envs}): using {hp['batch_size']}"
        )
    per_rollout = "train_freq" if algo == "dqn" else "n_steps"
    rollout = int(hp[per_rollout]) * n_envs
    if timesteps % rollout:
        say(
            f"{algo} trains whole rollouts of {per_rollout} x n_envs = {rollout:,} steps: "
            f"{-(-timesteps // rollout) * rollout:,} timesteps for the {timesteps:,} asked"
        )
    n_periods = int(run.history.frame["date"].nunique())
    horizon = run.config.campaign.horizon
    if holdout_periods is None:
        holdout_periods = min(2 * horizon, n_periods // 4)
    spec = EnvSpec(demand=demand, holdout_periods=holdout_periods)
    eval_freq = eval_freq or max(timesteps // 10, n_envs)
    checkpoint_freq = checkpoint_freq or eval_freq
    torch_device = resolve_device(device)
    sb3_device = str(torch_device)

    progress: dict[str, Any] = {
        "evaluations": [],
        "best_mean_reward": None,
        "best_timesteps": None,
        "last_eval": -math.inf,
        "last_checkpoint": 0,
    }
    settings = {
        "algo": algo,
        "timesteps": timesteps,
        "n_envs": n_envs,
        "seed": seed,
        "hparams": hp,
        "env": spec.to_dict(),
        "eval_freq": eval_freq,
        "eval_episodes": eval_episodes,
        "checkpoint_freq": checkpoint_freq,
    }
    demand_model = demand_model_for(run, demand)
    flat = algo == "dqn"
    env = make_vec_env(run, spec, n_envs, flat=flat, device=torch_device, demand_model=demand_model)
    eval_env = make_vec_env(
        run,
        spec,
        eval_episodes,
        flat=flat,
        device=torch_device,
        evaluation=True,
        demand_model=demand_model,
    )
    tb_dir = str(partial / "tb") if tensorboard else None
    checkpoint_path = partial / CHECKPOINT
    if resume:
        if not checkpoint_path.exists():
            raise PromogymInputError(
                f"--resume: {partial} has no checkpoint to resume from; train without --resume"
            )
        saved = json.loads((partial / CHECKPOINT_STATE).read_text(encoding="utf-8"))
        if saved["settings"] != json.loads(json.dumps(settings)):
            raise PromogymInputError(
                f"--resume: the interrupted {name} run used other settings "
                f"({saved['settings']}); resume with the same options or train afresh"
            )
        done = int(saved["num_timesteps"])
        # New seeds for the resumed part: replaying the first campaigns would bias learning.
        env.seed(seed + done)
        model = algo_class(algo).load(checkpoint_path, env=env, device=sb3_device)
        model.tensorboard_log = tb_dir
        if flat and (partial / REPLAY_BUFFER).exists():
            model.load_replay_buffer(partial / REPLAY_BUFFER)
        for key in progress:
            progress[key] = saved[key]
        progress["evaluations"] = [tuple(row) for row in progress["evaluations"]]
        say(f"resuming {name} from {done:,} of {timesteps:,} timesteps")
    else:
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        done = 0
        model = build_model(algo, env, hp, seed=seed, device=sb3_device, tensorboard_log=tb_dir)
    progress["settings"] = settings

    callbacks: list[BaseCallback] = [
        TrainingCallback(
            partial,
            eval_env,
            masked=algo == "maskable-ppo",
            eval_freq=eval_freq,
            eval_seed=seed + 10_000,
            checkpoint_freq=checkpoint_freq,
            progress=progress,
            save_replay_buffer=flat,
            log=say,
        )
    ]
    if callback is not None:
        callbacks.append(callback)
    say(
        f"training {name}: {timesteps:,} timesteps, {n_envs} envs, seed {seed}, "
        f"device {sb3_device}, demand {demand}"
    )
    model.learn(
        total_timesteps=max(timesteps - done, 0),
        callback=CallbackList(callbacks),
        reset_num_timesteps=not resume,
        tb_log_name=name,
        progress_bar=progress_bar,
    )
    model.save(partial / "last_model.zip")
    if progress["best_mean_reward"] is None:
        model.save(partial / "best_model.zip")
    seconds = time.perf_counter() - started
    info = {
        "name": name,
        "algo": algo,
        "demand": demand,
        "timesteps": int(model.num_timesteps),
        "requested_timesteps": timesteps,
        "n_envs": n_envs,
        "seeds": {"train": seed, "evaluation": seed + 10_000},
        "device": sb3_device,
        "hparams": hp,
        "env": spec.to_dict(),
        "eval_freq": eval_freq,
        "eval_episodes": eval_episodes,
        "checkpoint_freq": checkpoint_freq,
        "best_mean_reward": progress["best_mean_reward"],
        "best_timesteps": progress["best_timesteps"],
        "config_digest": config_digest(run.config),
        "data_fingerprint": run.info.get("data", {}).get("fingerprint"),
        "seconds": round(seconds, 2),
        "resumed": resume,
        "packages": package_versions(),
    }
    atomic_write_text(partial / TRAIN_JSON, json.dumps(info, indent=2) + "\n")
    (partial / REPLAY_BUFFER).unlink(missing_ok=True)
    replace_directory(partial, final_dir)
    say(f"wrote {final_dir} in {seconds:.0f} s")
    return TrainResult(
        name=name,
        directory=final_dir,
        timesteps=int(model.num_timesteps),
        seconds=seconds,
        best_mean_reward=progress["best_mean_reward"],
        evaluations=list(progress["evaluations"]),
    )
