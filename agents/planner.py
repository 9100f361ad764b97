"""The planner: the exact optimum of the learned simulator's demand, distilled to a Markov table.

PPO learns a policy by trial in the learned simulator; the planner computes one. It asks the
simulator (:class:`~promogym.envs.forecaster_demand.ForecasterDemand`, or any
:class:`~promogym.envs.demand.DemandModel`) what demand it expects in every remaining period
``t`` of the campaign, at every discount ``d`` on the ladder, after ``s`` consecutive sale
periods, and solves the campaign over that table with the exact finite-horizon DP of
:mod:`promogym.envs.dp` (inventory, pipeline, sale streak and sale budget as state; for a
capacity too large for every stock level, over stock lots: :func:`~promogym.envs.dp.dp_lot`).

Distillation (:func:`learned_demand_table`): from the campaign state's context window, one
batched autoregressive unroll per (period ``t``, streak ``s``, earlier sale depth ``p``): the
periods before ``t`` run without a sale except the last ``s``, which run at discount ``p``;
each simulated period's units are the model's expected demand (certainty equivalence), then
period ``t`` is queried at every discount of the ladder. The table keeps ``p = d`` for a sale
that continues a streak and averages over ``p`` for the first regular-price period after a
sale. Every (t, s, p) path is one row of a single batch that drops a path once it has
reached its period, so the whole table costs ``horizon`` calls of the model on shrinking
batches (about a second for the default campaign on 2 CPU cores).

Support: the plan runs no sale longer than the item's history ever ran one
(:func:`longest_sale_runs`): the simulator has no evidence about longer sales and its
extrapolation there is what a planner would exploit.

What the table drops: the simulator's dependence on how many units earlier periods really
sold (the plan assumes expected sales) and on sale depths other than the streak's own.
:class:`PlannerPolicy` solves once per campaign start it meets and then acts by table
look-up on the true state, so it reacts to inventory, arrivals, streak and budget at once;
:meth:`promogym.run.Run.recommend` builds a fresh planner from the latest history at every
call, i.e. it re-plans each period with what has really been sold.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from promogym.data import SalesHistory
from promogym.envs.core import CampaignParams, CampaignState
from promogym.envs.demand import DemandModel, Memory
from promogym.envs.dp import DemandTable, DPSolution, same_grid, solve_table
from promogym.envs.forecaster_demand import HistoryWindows, is_sale
from promogym.envs.market import MAX_STREAK, next_streak
from promogym.envs.rollout import Policy
from promogym.forecasters.features import promo_run_length


def learned_demand_table(
    model: DemandModel,
    params: CampaignParams,
    state: CampaignState,
    memory: Memory | None = None,
    *,
    max_sale_run: int | None = None,
) -> DemandTable:
    """Distil ``model``'s demand for the rest of the campaign of ``state`` into a table.

    Args:
        model: the demand model (learned simulator).
        params: campaign parameters.
        state: a batch of one campaign state; the table covers periods ``state.t`` to the
            horizon (earlier rows repeat row ``state.t``; no reachable state reads them).
        memory: the model's memory at ``state`` (default ``model.initial_memory(state)``).
        max_sale_run: passed on to the table (:attr:`DemandTable.max_sale_run`).

    Returns:
        ``DemandTable`` with ``mean``/``dispersion`` of shape
        ``(horizon, n_discounts, MAX_STREAK + 1)`` on the CPU.
    """
    if state.batch_size != 1:
        raise ValueError(f"learned_demand_table takes one campaign state, got {state.batch_size}")
    t0, horizon = int(state.t[0]), params.horizon
    if not 0 <= t0 < horizon:
        raise ValueError(f"state.t = {t0} is outside the campaign's periods 0..{horizon - 1}")
    if memory is None:
        memory = model.initial_memory(state)
    discounts = params.discounts
    n_d, n_s = params.n_discounts, MAX_STREAK + 1
    n_p = max(n_d - 1, 1)  # earlier sale depths (index 1..n_d-1); none without a sale ladder
    p_lo = 1 if n_d > 1 else 0
    device = discounts.device
    t, s, p = torch.meshgrid(
        torch.arange(t0, horizon, device=device),
        torch.arange(n_s, device=device),
        torch.arange(n_p, device=device) + p_lo,
        indexing="ij",
    )
    t, s, p = t.reshape(-1), s.reshape(-1), p.reshape(-1)
    keep = (s > 0) | (p == p_lo)  # without a streak the earlier sale depth plays no part
    t, s, p = t[keep], s[keep], p[keep]
    rows = torch.zeros(t.shape[0], dtype=torch.long, device=state.t.device)
    paths, memory = state.index(rows), model.select(memory, rows)
    shape = (horizon - t0, n_s, n_p, n_d)
    mean = torch.zeros(shape, dtype=torch.float64, device=device)
    dispersion = torch.zeros_like(mean)
    for k in range(t0, horizon):
        mu, r = model.distribution(paths, memory, discounts)  # (B, n_d)
        now = t == k
        mean[t[now] - t0, s[now], p[now] - p_lo] = mu[now]
        dispersion[t[now] - t0, s[now], p[now] - p_lo] = r[now]
        later = torch.nonzero(t > k).squeeze(1)  # paths still to reach their period
        if later.numel() == 0:
            break
        on_sale = (k >= t - s) & (k < t)
        d_idx = torch.where(on_sale, p, torch.zeros_like(p))
        expected = mu.gather(1, d_idx.unsqueeze(1)).squeeze(1)
        memory = model.update_memory(memory, paths, discounts[d_idx], expected, expected)
        paths = paths.replace(
            t=paths.t + 1,
            day=paths.day + params.period_days,
            streak=next_streak(paths.streak, on_sale),
            sale_used=paths.sale_used + on_sale.long(),
        )
        t, s, p = t[later], s[later], p[later]
        paths, memory = paths.index(later), model.select(memory, later)
    table_mean = torch.empty(horizon - t0, n_d, n_s, dtype=torch.float64, device=device)
    table_disp = torch.empty_like(table_mean)
    # Streak 0: no sale before t, every p is the same path.
    table_mean[:, :, 0] = mean[:, 0, 0, :]
    table_disp[:, :, 0] = dispersion[:, 0, 0, :]
    # A sale that continues a streak: the streak ran at the same depth.
    for d in range(1, n_d):
        table_mean[:, d, 1:] = mean[:, 1:, d - 1, d]
        table_disp[:, d, 1:] = dispersion[:, 1:, d - 1, d]
    # The first regular-price period after a sale: averaged over the sale's depth.
    table_mean[:, 0, 1:] = mean[:, 1:, :, 0].mean(dim=2)
    table_disp[:, 0, 1:] = dispersion[:, 1:, :, 0].mean(dim=2)

    def pad_before_t0(rows: torch.Tensor) -> torch.Tensor:  # periods before t0 repeat t0
        return torch.cat([rows[:1].expand(t0, -1, -1), rows]).cpu()

    return DemandTable(pad_before_t0(table_mean), pad_before_t0(table_disp), max_sale_run)


def longest_sale_runs(
    history: SalesHistory, item_ids: Sequence[str], threshold: float = 0.0
) -> list[int]:
    """Per item of ``item_ids``, the most consecutive sale periods its history shows.

    A sale period is a row whose discount is a sale at ``threshold``
    (:func:`~promogym.envs.forecaster_demand.is_sale`; the campaign ladder's
    :func:`~promogym.envs.forecaster_demand.sale_threshold`); a missing period ends a run. An
    item without a sale in ``history`` gets the longest run of any item (0 if there is none).
    """
    windows = HistoryWindows(history, item_ids)
    items = torch.arange(len(item_ids))
    end = torch.full_like(items, int(windows.day_of(torch.tensor(windows.n_periods))))
    discount = windows.window(items, end, windows.n_periods)["discount"]  # missing: 0
    longest = promo_run_length(is_sale(discount, threshold).float()).max(dim=1).values.tolist()
    fallback = max(longest, default=0)
    return [run or fallback for run in longest]


class PlannerPolicy(Policy):
    """Exact DP over the demand table distilled from ``model``; acts by look-up.

    Args:
        model: the demand model to plan in (the run's learned simulator).
        max_sale_run: per item index, the longest sale the plans may run
            (:func:`longest_sale_runs` of the history the model learned from); ``None``: no
            limit. The simulator has never seen longer sales, and trusting its extrapolation
            there cost up to 12 points of the optimum on a benchmark item (83% -> 91%).
        name: policy name in reports.

    The first time it meets a campaign (an item and campaign start day), it distils the table
    from the first such row's state and the model's own memory there (``model.initial_memory``, i.e.
    the history window before the state's day, whatever demand model it is simulated in),
    solves the DP and keeps the solution. A state off the DP grid (a pipeline quantity that
    is not on the order ladder) is looked up at the nearest ladder quantity.
    """

    def __init__(
        self,
        model: DemandModel,
        *,
        max_sale_run: Sequence[int] | None = None,
        name: str = "planner",
    ) -> None:
        self.model = model
        self.max_sale_run = None if max_sale_run is None else list(max_sale_run)
        self.name = name
        self.solutions: dict[tuple[int, int], tuple[int, DPSolution]] = {}

    def solution(self, state: CampaignState, params: CampaignParams) -> DPSolution:
        """The DP solution for the campaign of the single state ``state``.

        Solved once per (item, campaign start day) and kept across :meth:`reset`; solved
        again for a state earlier in the campaign than the one it was solved from, or for
        other campaign params. (One planner serves one history: a state of the same
        campaign and period with another memory reuses the first plan.)
        """
        item, t = int(state.item[0]), int(state.t[0])
        params = params.for_item(item)  # as solve_table: the item's own list price
        start_day = int(state.day[0]) - t * params.period_days
        key = (item, start_day)
        cached = self.solutions.get(key)
        if cached is None or cached[0] > t or not _same_params(cached[1].params, params):
            limit = None if self.max_sale_run is None else self.max_sale_run[item]
            table = learned_demand_table(self.model, params, state, max_sale_run=limit)
            self.solutions[key] = (t, solve_table(table, params, start_day, item))
        return self.solutions[key][1]

    def act(
        self, state: CampaignState, params: CampaignParams, memory: Memory
    ) -> tuple[torch.Tensor, torch.Tensor]:
        start_day = state.day - state.t * params.period_days
        flat = torch.zeros(state.batch_size, dtype=torch.long)
        keys = torch.stack([state.item, start_day], dim=1).cpu()
        for key in torch.unique(keys, dim=0):
            rows = torch.nonzero((keys == key).all(dim=1)).squeeze(1)
            solution = self.solution(state.index(rows[:1].to(state.t.device)), params)
            snapped = on_grid(state.index(rows.to(state.t.device)), params)
            flat[rows] = solution.actions[solution.grid_index(snapped)]
        flat = flat.to(state.t.device)
        return flat // params.n_orders, flat % params.n_orders


def _same_params(a: CampaignParams, b: CampaignParams) -> bool:
    """Whether a plan made for campaign params ``a`` holds for ``b``."""
    scalars = ("list_price", "unit_cost", "holding_cost", "order_fixed_cost")
    scalars += ("lost_sale_penalty", "salvage_value", "period_days")
    return a is b or (same_grid(a, b) and all(getattr(a, f) == getattr(b, f) for f in scalars))


def on_grid(state: CampaignState, params: CampaignParams) -> CampaignState:
    """The nearest state on the DP grid, keeping the units: whole units on hand, pipeline
    quantities on the order ladder.

    The DP tracks the pipeline slots ``0 .. lead_time - 2`` at decision time (this period's
    order fills the last one), each holding one ladder quantity. Each tracked slot is set to
    the ladder quantity nearest its units; what that leaves over, and the units of untracked
    slots, count as on hand (clamped to ``0 .. capacity``): the plan treats them as arriving
    earlier than they will.
    """
    slots = max(params.lead_time - 1, 0)
    pipeline = torch.zeros_like(state.pipeline)
    leftover = state.pipeline[:, slots:].sum(dim=1)
    if slots:
        ladder = params.order_quantities.to(pipeline.device)
        tracked = state.pipeline[:, :slots]
        pipeline[:, :slots] = ladder[(tracked.unsqueeze(-1) - ladder).abs().argmin(dim=-1)]
        leftover = leftover + (tracked - pipeline[:, :slots]).sum(dim=1)
    on_hand = (state.on_hand + leftover).round().clamp(0, params.capacity)
    return state.replace(on_hand=on_hand, pipeline=pipeline)
