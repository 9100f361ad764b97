"""Policies and batched Monte-Carlo rollouts of whole campaigns.

A :class:`Policy` maps a batch of campaign states to actions. :func:`simulate` plays
``n_episodes`` campaigns of one policy against a :class:`~promogym.envs.demand.DemandModel`
with **common random numbers**: demand in episode ``e``, period ``t`` is the inverse CDF of
one uniform ``U[e, t]`` drawn from ``seed``, so every policy scored with the same seed faces
the same luck, and a deeper discount never lowers the realised demand.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np
import torch

from promogym.distributions import negative_binomial_icdf
from promogym.envs.core import (
    CampaignParams,
    CampaignState,
    repair_actions,
    transition,
)
from promogym.envs.demand import DemandModel, Memory

PERIOD_FIELDS = (
    "reward",
    "revenue",
    "units_sold",
    "lost_units",
    "holding_cost",
    "order_cost",
    "order_quantity",
    "discount",
    "price",
    "demand",
    "on_hand",
)


class Policy(abc.ABC):
    """Batched decision rule: ``act`` returns ``(discount_idx, order_idx)``, each ``(B,)`` long."""

    name: str = "policy"

    def reset(self, state: CampaignState, params: CampaignParams, seed: int | None = None) -> None:  # noqa: B027
        """Called once before a batch of campaigns starts (optional)."""

    @abc.abstractmethod
    def act(
        self, state: CampaignState, params: CampaignParams, memory: Memory
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions for every campaign in ``state`` (infeasible ones are repaired by the caller)."""


@dataclass
class Rollout:
    """Per-episode outcomes of one policy: ``periods[name]`` is ``(episodes, horizon)``."""

    policy: str
    profit: np.ndarray  # (E,) total profit per campaign, currency
    salvage: np.ndarray  # (E,)
    ending_inventory: np.ndarray  # (E,) units left after the last period
    periods: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_episodes(self) -> int:
        return int(self.profit.shape[0])

    def summary(self) -> dict[str, float]:
        """Mean profit and its standard error (currency)."""
        e = self.n_episodes
        return {
            "mean_profit": float(self.profit.mean()),
            "se_profit": float(self.profit.std(ddof=1) / np.sqrt(e)) if e > 1 else float("nan"),
        }


def simulate(
    policy: Policy,
    demand_model: DemandModel,
    params: CampaignParams,
    start: CampaignState,
    *,
    n_episodes: int,
    seed: int = 0,
    memory: Memory | None = None,
) -> Rollout:
    """Play ``n_episodes`` campaigns from ``start`` to the horizon.

    Args:
        policy: the decision rule (its choices are repaired to feasible ones).
        demand_model: where demand comes from (reference market or learned forecaster).
        params: campaign parameters.
        start: a batch of 1 state (repeated ``n_episodes`` times) or of ``n_episodes`` states.
        n_episodes: number of campaigns.
        seed: seed of the common random numbers (and of the policy's own randomness).
        memory: demand-model memory matching ``start`` (default: ``initial_memory(start)``).
    """
    if start.batch_size == 1 and n_episodes > 1:
        rows = torch.zeros(n_episodes, dtype=torch.long, device=params.device)
        memory = demand_model.select(memory, rows) if memory is not None else None
        state = start.index(rows)
    elif start.batch_size == n_episodes:
        state = start
    else:
        raise ValueError(f"start has {start.batch_size} states; give 1 or n_episodes={n_episodes}")
    if memory is None:
        memory = demand_model.initial_memory(state)
    remaining = int(params.horizon - int(state.t.max().item()))
    if bool((state.t != state.t[0]).any()):
        raise ValueError("all start states must be at the same period t")
    generator = torch.Generator(device=params.device).manual_seed(seed)
    uniforms = torch.rand(
        (remaining, n_episodes), generator=generator, dtype=torch.float64, device=params.device
    )
    policy.reset(state, params, seed=seed)
    records: dict[str, list[torch.Tensor]] = {name: [] for name in PERIOD_FIELDS}
    profit = torch.zeros(n_episodes, dtype=torch.float64, device=params.device)
    salvage = torch.zeros_like(profit)
    left = state.on_hand.clone()
    for step in range(remaining):
        discount_idx, order_idx = policy.act(state, params, memory)
        discount_idx, order_idx = repair_actions(state, params, discount_idx, order_idx)
        discount = params.discounts[discount_idx]
        mean, dispersion = demand_model.distribution(state, memory, discount.unsqueeze(1))
        demand = negative_binomial_icdf(uniforms[step], mean[:, 0], dispersion[:, 0])
        records["on_hand"].append(state.on_hand)
        next_state, reward, _, info = transition(state, params, discount_idx, order_idx, demand)
        memory = demand_model.update_memory(memory, state, discount, info["units_sold"], demand)
        records["reward"].append(reward)
        for name in PERIOD_FIELDS:
            if name in info:
                records[name].append(info[name])
        profit += reward
        salvage += info["salvage"]
        left = info["left"]
        state = next_state
    periods = {
        name: torch.stack(values, dim=1).cpu().numpy() for name, values in records.items() if values
    }
    return Rollout(
        policy=policy.name,
        profit=profit.cpu().numpy(),
        salvage=salvage.cpu().numpy(),
        ending_inventory=left.cpu().numpy(),
        periods=periods,
    )
