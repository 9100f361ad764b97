"""Tiny configs, the fit-and-train helper and the market oracle shared by the test modules.

Test modules import these names with ``from conftest import ...`` (pytest puts ``tests/`` on
``sys.path`` because it has no ``__init__.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Self

import pandas as pd
import pytest
import torch

from promogym.config import CampaignConfig
from promogym.data import SalesHistory
from promogym.envs.market import MAX_STREAK, ReferenceMarket
from promogym.forecasters.base import DemandContext, Forecaster
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
    device="cpu",  # the tests compare weights bit for bit
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


class MarketOracle(Forecaster):
    """A forecaster that knows the reference market: its simulator face must equal the market.

    The fatigue streak is read off the context the way a forecaster has to: the run of sale
    periods (discount > 0) at its end.
    """

    name = "market-oracle"
    probabilistic = True

    def __init__(self, market: ReferenceMarket, context_length: int = 14) -> None:
        self.market = market
        self.context_length = context_length
        self.item_ids = market.item_ids

    def fit(self, history: SalesHistory) -> Self:
        return self

    def predict(self, history, future, horizon, quantiles=(0.1, 0.5, 0.9)) -> pd.DataFrame:
        raise NotImplementedError("the oracle only has the simulator face")

    def save(self, directory: str | os.PathLike[str]) -> None:
        raise NotImplementedError("the oracle is built from a market, not saved")

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Self:
        raise NotImplementedError("the oracle is built from a market, not loaded")

    def one_step(
        self, context: DemandContext, discounts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b = context.batch_size
        if discounts.dim() == 1:
            discounts = discounts.unsqueeze(0).expand(b, -1)
        a = discounts.shape[1]
        run = (context.past_discount > 0).flip(1).long().cumprod(dim=1).sum(dim=1)
        streak = run.clamp(max=MAX_STREAK)

        def per_candidate(x: torch.Tensor) -> torch.Tensor:
            return x.unsqueeze(1).expand(b, a)

        mean = self.market.mean_demand(
            per_candidate(context.item),
            per_candidate(context.day),
            discounts.to(torch.float64),
            per_candidate(streak),
        )
        return mean, per_candidate(self.market.dispersion(context.item))
