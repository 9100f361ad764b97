"""FlashSaleVecEnv: ``N`` FlashSale campaigns as one SB3 ``VecEnv`` over one batched core.

Unlike ``DummyVecEnv`` (a Python loop over ``N`` envs, hence ``N`` forecaster calls per
period), every ``step`` advances all ``N`` campaigns with one call to the demand model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

from promogym.config import CampaignConfig
from promogym.envs.demand import DemandModel
from promogym.envs.flash_sale import (
    CampaignBatch,
    decode_actions,
    flat_masks,
    infos_from_step,
    key_from_rng,
    key_from_seed,
    make_spaces,
)
from promogym.errors import PromogymInputError


class FlashSaleVecEnv(VecEnv):
    """``n_envs`` campaigns of :class:`~promogym.envs.flash_sale.FlashSaleEnv`, batched.

    Spaces, observation, reward and info are those of ``FlashSaleEnv`` (see its docstring).
    SB3 conventions: a finished campaign is reset automatically; its last observation is in
    ``info["terminal_observation"]`` and the returned observation starts the next campaign
    (``info["TimeLimit.truncated"]`` is always False: the campaign end is a true
    termination). ``seed(s)`` gives campaign ``i`` the seed ``s + i`` at the next
    :meth:`reset`, which makes it replay what ``FlashSaleEnv.reset(seed=s + i)`` followed by
    the same actions would: the same demand, sales and rewards, and on the true market the
    same observations. With a learned simulator and ``expected_demand_obs`` the expected
    demand features come from one batched float32 network pass instead of single ones, so
    they can differ in the last digits (up to about 2e-6 measured); ``set_options`` passes
    per-campaign reset options.
    :meth:`action_masks` (also via ``env_method("action_masks")``) serves MaskablePPO.

    Args:
        n_envs: number of campaigns stepped together.
        demand_model, config, flatten_actions, **batch_kwargs: as for ``FlashSaleEnv``.

    >>> venv = FlashSaleVecEnv(4, device="cpu")
    >>> _ = venv.seed(0)
    >>> obs = venv.reset()
    >>> obs.shape, venv.action_masks().shape
    ((4, 25), (4, 9))
    >>> obs, rewards, dones, infos = venv.step(np.zeros((4, 2), dtype=np.int64))
    >>> rewards.dtype, dones.any(), sorted(infos[0])[:3]
    (dtype('float32'), np.False_, ['action', 'demand', 'discount'])
    """

    def __init__(
        self,
        n_envs: int,
        demand_model: DemandModel | None = None,
        config: CampaignConfig | None = None,
        *,
        flatten_actions: bool = False,
        **batch_kwargs: Any,
    ) -> None:
        self.core = CampaignBatch(demand_model, config, n_envs=n_envs, **batch_kwargs)
        self.flatten_actions = flatten_actions
        self.render_mode = None
        action_space, observation_space = make_spaces(self.core, flatten_actions)
        super().__init__(n_envs, observation_space, action_space)
        self._keyed = [False] * n_envs
        self._entropy = np.random.default_rng()
        self._actions: np.ndarray | None = None
        self._scales = [1.0] * n_envs

    # ---- VecEnv API ------------------------------------------------------------------------
    def reset(self) -> VecEnvObs:
        rows, keys = [], []
        for i, seed in enumerate(self._seeds):
            if seed is not None:
                rows.append(i)
                keys.append(key_from_seed(seed))
            elif not self._keyed[i]:
                rows.append(i)
                keys.append(key_from_rng(self._entropy))
            self._keyed[i] = True
        if rows:
            self.core.set_keys(rows, keys)
        options = [opt or None for opt in self._options]
        infos = self.core.reset(None, options)
        self.reset_infos = infos
        self._scales = [info["reward_scale"] for info in infos]
        self._reset_seeds()
        self._reset_options()
        if self.core.expected_demand_obs:
            self.core.refresh()
        return self.core.observation()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise PromogymInputError("step_wait() without step_async(actions)")
        if self.core.state is None:
            raise PromogymInputError("call reset() before step()")
        p = self.core.params
        d, o = decode_actions(
            self._actions, self.num_envs, p.n_discounts, p.n_orders, self.flatten_actions
        )
        self._actions = None
        result = self.core.step(torch.from_numpy(d), torch.from_numpy(o))
        infos = infos_from_step(result)
        for i, info in enumerate(infos):
            info["reward_scale"] = self._scales[i]
        dones = result.done.cpu().numpy()
        done_rows = np.flatnonzero(dones)
        if done_rows.size:
            rows = torch.as_tensor(done_rows, device=self.core.device)
            terminal = self.core.observation(rows)
            for j, i in enumerate(done_rows.tolist()):
                infos[i]["terminal_observation"] = terminal[j]
                infos[i]["TimeLimit.truncated"] = False
            for i, info in zip(
                done_rows.tolist(), self.core.reset(done_rows.tolist()), strict=True
            ):
                self.reset_infos[i] = info
                self._scales[i] = info["reward_scale"]
        # One demand-model call for all N: continuing campaigns and the fresh starts together.
        if self.core.expected_demand_obs:
            self.core.refresh()
        obs = self.core.observation()
        rewards = result.reward.cpu().numpy().astype(np.float32)
        return obs, rewards, dones.astype(bool), infos

    def close(self) -> None:
        """Nothing to release (no subprocesses)."""

    def action_masks(self) -> np.ndarray:
        """``(n_envs, mask_size)`` bool: feasible actions per campaign, sb3-contrib layout."""
        d, o = self.core.masks()
        return flat_masks(d, o, self.flatten_actions)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The attribute of this env, once per requested campaign (they share one core)."""
        value = getattr(self, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Campaigns share one core, so an attribute can only be set for all of them."""
        if indices is not None and sorted(self._get_indices(indices)) != list(range(self.num_envs)):
            raise PromogymInputError(
                f"set_attr({attr_name!r}) applies to all campaigns of FlashSaleVecEnv"
            )
        setattr(self, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        """Per-campaign methods; only ``action_masks`` has a per-campaign meaning here."""
        rows = list(self._get_indices(indices))
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks[i] for i in rows]
        raise PromogymInputError(
            f"FlashSaleVecEnv campaigns share one batched core; env_method({method_name!r}) "
            "is not available (supported: 'action_masks')"
        )

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]
