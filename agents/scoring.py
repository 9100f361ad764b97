"""Score a run's agents in the true market, as fractions of the exact DP optimum.

The agent acts step by step on the true campaign state (seeing only what a deployed agent
would: its history, its own choices and the units it sold), while demand comes from the
reference market (``RUN/market.json``). Every policy is played on the same common random
numbers (:func:`promogym.envs.rollout.simulate`); baselines are tuned on other random
numbers (``seed + 1``) so their scores carry no selection bias.

The campaign starts on the period right after the item's history ends, with the config's
initial stock, an empty pipeline and the sale streak the history ends with
(:meth:`promogym.run.Run.next_campaign`): the "next campaign" the shop would ask about.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promogym.errors import PromogymInputError

if TYPE_CHECKING:
    from promogym.run import Run

OPTIMUM = "dp-optimum"


@dataclass
class MarketCase:
    """A campaign in the true market with every policy to score there."""

    item: str
    start_day: int
    optimum: float
    demand: Any  # MarketDemand
    params: Any  # CampaignParams
    start: Any  # CampaignState, batch of one
    policies: dict[str, Any]  # name -> Policy
    kinds: dict[str, str]  # name -> "agent" | "baseline" | "optimum"


def market_case(
    run: Run,
    item_id: str,
    *,
    agents: Sequence[str] | None = None,
    seed: int = 0,
    tune_episodes: int = 200,
    log: Callable[[str], None] | None = None,
) -> MarketCase:
    """Solve the DP, tune the baselines (on ``seed + 1``) and load ``agents`` for one item."""
    from promogym.envs import dp
    from promogym.envs.baselines import baseline_suite
    from promogym.envs.demand import MarketDemand

    say = log or (lambda _msg: None)
    market = run.market()
    if market is None:
        raise PromogymInputError(
            f"{run.path}: no market.json, so there is no true market to score in"
        )
    if item_id not in market.item_ids:
        raise PromogymInputError(
            f"unknown item {item_id!r}; the market has {list(market.item_ids)}"
        )
    params = run.params()
    market_item = market.item_index(item_id)  # the run's vocabulary order (Run.market)
    start = run.next_campaign(item_id)
    day = int(start.day[0])
    demand = MarketDemand(market)
    solution = dp.solve(market, market_item, params, day)
    optimum = float(solution.value(start)[0])  # from the real streak, not a fresh one
    say(f"  {item_id}: DP optimum {optimum:.2f} ({solution.solve_seconds:.1f} s)")
    policies: dict[str, Any] = {OPTIMUM: solution.policy()}
    kinds = {OPTIMUM: "optimum"}
    suite = baseline_suite(demand, params, start, seed=seed + 1, n_episodes=tune_episodes)
    for name, policy in suite.items():
        policies[name], kinds[name] = policy, "baseline"
    for name in agents if agents is not None else run.agents():
        policies[name], kinds[name] = run.policy(name), "agent"
    return MarketCase(item_id, day, optimum, demand, params, start, policies, kinds)


def score_in_market(
    run: Run,
    item_id: str,
    *,
    agents: Sequence[str] | None = None,
    episodes: int = 1000,
    seed: int = 0,
    tune_episodes: int = 200,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Expected profit of the DP optimum, the baselines and ``agents`` for one item.

    Returns a JSON-ready dict: ``item``, ``start_date``, ``optimum`` (exact expected profit),
    and ``policies``: name -> ``mean``, ``se``, ``fraction`` (mean / optimum), ``kind``
    (``agent``, ``baseline`` or ``optimum``, whose Monte-Carlo mean checks the DP) and
    ``seconds`` (the rollouts, with any planning the policy does).
    """
    from promogym.envs.dp import share_of_optimum
    from promogym.envs.market import day_date
    from promogym.envs.rollout import simulate

    started = time.perf_counter()
    case = market_case(run, item_id, agents=agents, seed=seed, tune_episodes=tune_episodes, log=log)
    out: dict[str, Any] = {}
    for name, policy in case.policies.items():
        began = time.perf_counter()
        rollout = simulate(
            policy, case.demand, case.params, case.start, n_episodes=episodes, seed=seed
        )
        summary = rollout.summary()
        out[name] = {
            "kind": case.kinds[name],
            "mean": summary["mean_profit"],
            "se": summary["se_profit"],
            "fraction": share_of_optimum(summary["mean_profit"], case.optimum),
            "seconds": round(time.perf_counter() - began, 2),
        }
    return {
        "item": item_id,
        "start_date": day_date(case.start_day).isoformat(),
        "optimum": case.optimum,
        "episodes": episodes,
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 2),
        "policies": out,
    }


def format_scores(scores: dict[str, Any]) -> str:
    """Table of :func:`score_in_market` output, best first."""
    from promogym.envs.dp import format_share

    lines = [
        f"{scores['item']} from {scores['start_date']}: DP optimum {scores['optimum']:.2f} "
        f"({scores['episodes']} campaigns per policy, common random numbers)",
        f"  {'policy':<24} {'kind':<9} {'mean profit':>12} {'se':>7} {'of optimum':>11}",
    ]
    rows = sorted(scores["policies"].items(), key=lambda kv: -kv[1]["mean"])
    for name, row in rows:
        lines.append(
            f"  {name:<24} {row['kind']:<9} {row['mean']:>12.2f} {row['se']:>7.2f} "
            f"{format_share(row['fraction']):>10}"
        )
    return "\n".join(lines)
