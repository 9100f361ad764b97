"""Demand models the campaign simulator can run on: the env never knows which one it has.

A demand model gives, for ``B`` campaigns in a :class:`CampaignState`, the negative-binomial
demand distribution of the current period at any candidate discount. Models with memory
(the learned forecaster looks at a window of recent sales) keep it in an explicit ``memory``
dict of ``(B, ...)`` tensors that the caller threads through, like the state itself.
"""

from __future__ import annotations

import abc

import torch

from promogym.distributions import sample_negative_binomial
from promogym.envs.core import CampaignState
from promogym.envs.market import ReferenceMarket

Memory = dict[str, torch.Tensor]


class DemandModel(abc.ABC):
    """Batched one-period demand: ``distribution`` -> (mean, dispersion), each ``(B, A)``."""

    @abc.abstractmethod
    def distribution(
        self, state: CampaignState, memory: Memory, discounts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Demand mean and dispersion (float64, ``(B, A)``) for ``discounts``.

        ``discounts`` is ``(A,)`` (the same candidates for every campaign) or ``(B, A)``.
        """

    def initial_memory(self, state: CampaignState) -> Memory:
        """Memory for campaigns starting at ``state`` (empty for memoryless models)."""
        return {}

    def update_memory(
        self,
        memory: Memory,
        state: CampaignState,
        discount: torch.Tensor,
        units_sold: torch.Tensor,
        demand: torch.Tensor,
    ) -> Memory:
        """Memory after period ``state.t`` ran at ``discount`` and sold ``units_sold``."""
        return memory

    def select(self, memory: Memory, rows: torch.Tensor) -> Memory:
        """Memory of the sub-batch ``rows``."""
        return {key: value[rows] for key, value in memory.items()}

    def sample(
        self,
        state: CampaignState,
        memory: Memory,
        discount: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One demand draw per campaign at its chosen ``discount`` (``(B,)``)."""
        mean, dispersion = self.distribution(state, memory, discount.unsqueeze(1))
        return sample_negative_binomial(mean[:, 0], dispersion[:, 0], generator)


class MarketDemand(DemandModel):
    """The reference market as a demand model (ground truth; memory is the state's streak)."""

    def __init__(self, market: ReferenceMarket) -> None:
        self.market = market

    def distribution(
        self, state: CampaignState, memory: Memory, discounts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b = state.batch_size
        discounts = discounts.to(device=state.item.device, dtype=torch.float64)
        if discounts.dim() == 1:
            discounts = discounts.unsqueeze(0).expand(b, -1)
        a = discounts.shape[1]

        def per_candidate(x: torch.Tensor) -> torch.Tensor:
            return x.unsqueeze(1).expand(b, a)

        mean = self.market.mean_demand(
            per_candidate(state.item),
            per_candidate(state.day),
            discounts,
            per_candidate(state.streak),
        )
        return mean, per_candidate(self.market.dispersion(state.item))
