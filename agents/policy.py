"""A trained SB3 model as a batched :class:`~promogym.envs.rollout.Policy`.

:class:`AgentPolicy` lets a model trained in the FlashSale env act on bare
:class:`~promogym.envs.core.CampaignState` batches, so it runs through
:func:`promogym.envs.rollout.simulate` next to the baselines and the DP optimum, in the
learned simulator or in the reference market, with common random numbers.

The observation is built by the env's own builder (a
:class:`~promogym.envs.flash_sale.CampaignBatch` used only for its ``observation``,
``refresh`` and ``masks``), never re-implemented here. What the builder needs beyond the
state, the policy tracks like a deployed agent would, from what it sees:

* recent units sold and discounts: at the first decision, the ``context`` history's periods
  before the campaign day (a period it does not record sold the item's typical units, as in
  the env); afterwards, each period's units sold, inferred from the state
  change (``sold = on_hand_after_order - (next_on_hand - arrivals)``, exact because a
  feasible order never lets on-hand + pipeline exceed capacity) and the discount it chose;
* the expected-demand features: the ``feature_model`` (the run's forecaster, or the market
  for a policy trained on it) conditioned on its own memory, which it extends with the units
  sold (a sell-out period is marked unobserved, as the forecaster treats stock-outs). With
  ``shared_memory=True`` the policy instead reads the memory of the model it is simulated
  in (it must then be the same demand model), which is exactly what it saw in training.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from promogym.envs.core import CampaignParams, CampaignState, place_order, repair_actions
from promogym.envs.demand import DemandModel, Memory
from promogym.envs.flash_sale import CampaignBatch, flat_masks
from promogym.envs.forecaster_demand import HistoryWindows, units_or_typical
from promogym.envs.rollout import Policy


class AgentPolicy(Policy):
    """Deterministic actions of an SB3 model for batched campaign states.

    Args:
        model: a trained ``PPO``, ``MaskablePPO`` or ``DQN``.
        builder: the observation builder, made exactly like the training env's core (same
            config, history, item vocabulary, list price, observation options).
        feature_model: demand model behind the expected-demand features (ignored when the
            builder has ``expected_demand_obs=False``).
        context: the history whose periods before the campaign day give the first recent
            sales and discounts (default: the builder's history).
        flat: the model acts on the flattened ``Discrete`` action space (DQN).
        masked: pass action masks to ``predict`` (MaskablePPO).
        shared_memory: use the simulating model's memory for the features (see module doc).
        name: policy name in reports.
    """

    def __init__(
        self,
        model: Any,
        builder: CampaignBatch,
        feature_model: DemandModel | None = None,
        *,
        context: HistoryWindows | None = None,
        flat: bool = False,
        masked: bool = False,
        shared_memory: bool = False,
        name: str = "agent",
    ) -> None:
        self.model = model
        self.builder = builder
        if feature_model is not None:
            builder.demand_model = feature_model
        self.feature_model = builder.demand_model
        self.context = context if context is not None else builder.windows
        self.flat = flat
        self.masked = masked
        self.shared_memory = shared_memory
        self.name = name
        self._prev: dict[str, Any] | None = None

    def reset(self, state: CampaignState, params: CampaignParams, seed: int | None = None) -> None:
        self._prev = None

    # ---- tracking what the agent has seen --------------------------------------------------
    def _continues(self, state: CampaignState) -> bool:
        prev = self._prev
        if prev is None or prev["state"].batch_size != state.batch_size:
            return False
        before = prev["state"]
        return bool(torch.equal(state.t, before.t + 1) and torch.equal(state.item, before.item))

    def _start(self, state: CampaignState, memory: Memory) -> None:
        k = self.builder.recent_periods
        b, device = state.batch_size, self.builder.device
        item = state.item.to(device)
        typical = self.builder.typical[item]
        if self.context is not None:
            window = self.context.window(item, state.day.to(device), k)
            units = units_or_typical(window, typical)
            discount = window["discount"].to(torch.float64)
        else:
            units = typical.unsqueeze(1).expand(b, k).clone()
            discount = torch.zeros(b, k, dtype=torch.float64, device=device)
        self._recent_units, self._recent_discount = units, discount
        if self.shared_memory:
            self._memory = memory
        else:
            self._memory = self.feature_model.initial_memory(state)

    def _advance(self, state: CampaignState, params: CampaignParams, memory: Memory) -> None:
        prev = self._prev
        assert prev is not None
        before: CampaignState = prev["state"]
        ordered, _ = place_order(before, params, prev["order_idx"])
        arrivals = ordered.pipeline[:, 0]
        left = torch.clamp(state.on_hand - arrivals, min=0.0)
        sold = torch.clamp(ordered.on_hand - left, min=0.0)
        discount = params.discounts[prev["discount_idx"]]
        device = self.builder.device
        self._recent_units = torch.cat(
            [self._recent_units[:, 1:], sold.to(device).unsqueeze(1)], dim=1
        )
        self._recent_discount = torch.cat(
            [self._recent_discount[:, 1:], discount.to(device).unsqueeze(1)], dim=1
        )
        if self.shared_memory:
            self._memory = memory
            return
        updated = self.feature_model.update_memory(self._memory, before, discount, sold, sold)
        if "past_observed" in updated:
            # A sell-out hides demand: the forecaster must not read it as low demand.
            observed = updated["past_observed"].clone()
            observed[:, -1] = left > 0
            updated = dict(updated, past_observed=observed)
        self._memory = updated

    # ---- acting ----------------------------------------------------------------------------
    def observe(self, state: CampaignState) -> np.ndarray:
        """The env observation of ``state`` given what the policy has tracked (``(B, D)``)."""
        builder = self.builder
        builder.state = state.to(builder.device)  # the rollout's device may not be the policy's
        builder.memory = {key: value.to(builder.device) for key, value in self._memory.items()}
        builder.recent_units = self._recent_units
        builder.recent_discount = self._recent_discount
        if builder.expected_demand_obs:
            builder.refresh()
        return builder.observation()

    def act(
        self, state: CampaignState, params: CampaignParams, memory: Memory
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self._continues(state):
            self._advance(state, params, memory)
        else:
            self._start(state, memory)
        obs = self.observe(state)
        kwargs: dict[str, Any] = {"deterministic": True}
        if self.masked:
            d_mask, o_mask = self.builder.masks()
            kwargs["action_masks"] = flat_masks(d_mask, o_mask, self.flat)
        actions, _ = self.model.predict(obs, **kwargs)
        actions = np.asarray(actions, dtype=np.int64)
        if self.flat:
            d = actions.reshape(-1) // params.n_orders
            o = actions.reshape(-1) % params.n_orders
        else:
            actions = actions.reshape(-1, 2)
            d, o = actions[:, 0], actions[:, 1]
        device = state.t.device
        d_idx, o_idx = repair_actions(
            state, params, torch.as_tensor(d, device=device), torch.as_tensor(o, device=device)
        )
        self._prev = {"state": state, "discount_idx": d_idx, "order_idx": o_idx}
        return d_idx, o_idx
