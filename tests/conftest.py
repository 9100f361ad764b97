"""Tiny configs and the fit-and-train helper shared by the test modules.

Test modules import these names with ``from conftest import ...`` (pytest puts ``tests/`` on
``sys.path`` because it has no ``__init__.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from promogym.config import CampaignConfig
from promogym.forecasters.transformer import TransformerConfig

if TYPE_CHECKING:
    from promogym.run import Run


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module: tiny models and small batched ops gain nothing from
    threads, and stall when other jobs load the cores. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY_FORECASTER = TransformerConfig(
    context_length=14,
    prediction_length=2,
    lags=(1, 2, 7),
    d_model=16,
    heads=2,
    ffn_dim=16,
    item_embedding_dim=2,
    epochs=1,
    batch_size=32,
    windows_per_epoch=64,
    validation_periods=7,
    num_samples=8,
)
"""A forecaster that fits in seconds (d_model 16, context 14, one short epoch)."""

TINY_PPO = {"n_steps": 7, "batch_size": 28, "n_epochs": 1, "net_arch": [16]}
"""PPO (and maskable PPO) hyperparameters for a few dozen timesteps of training."""

TINY_RUN_CONFIG = CampaignConfig().replace(campaign={"horizon": 7, "start_date": "2024-04-27"})
"""Campaign of :func:`fit_and_train_tiny`: with 120 days of history from 2024-01-01
(.. 2024-04-29), it starts 3 days before the history ends."""


def fit_and_train_tiny(history_csv: Path, run_dir: Path) -> Run:
    """Fit :data:`TINY_FORECASTER` on ``history_csv`` into ``run_dir``; train PPO 56 steps."""
    from promogym.agents.train import train_agent
    from promogym.run import fit_run

    run = fit_run(
        history_csv,
        run_dir,
        TINY_RUN_CONFIG,
        forecaster_config=TINY_FORECASTER,
        from_scratch=True,
    )
    train_agent(
        run,
        "ppo",
        timesteps=56,
        n_envs=4,
        seed=0,
        device="cpu",
        hparams=TINY_PPO,
        eval_episodes=4,
        tensorboard=False,
    )
    return run
