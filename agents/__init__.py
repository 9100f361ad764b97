"""Agents: planning and SB3 training in the learned simulator, and campaign recommendations.

* :mod:`promogym.agents.planner`: :class:`~promogym.agents.planner.PlannerPolicy`, the exact
  DP over the learned simulator's demand distilled into a (period, discount, streak) table;
  every run's built-in decision maker and the default of ``recommend``.

* :mod:`promogym.agents.hparams`: default hyper-parameters per algorithm (documented table)
  and ``--set`` / ``--hparams`` overrides.
* :mod:`promogym.agents.train`: :func:`~promogym.agents.train.train_agent`, the library
  behind ``promogym train`` (held-out evaluation, best model, checkpoints, resume).
* :mod:`promogym.agents.policy`: :class:`~promogym.agents.policy.AgentPolicy`, a trained
  model as a batched rollout policy (observations from the env's own builder).
* :mod:`promogym.agents.scoring`: score agents, baselines and the DP optimum in the true
  market.
* :mod:`promogym.agents.demo`: ``promogym demo``.

The run directory and ``Run.recommend`` live in :mod:`promogym.run`.
"""
