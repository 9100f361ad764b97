"""Score policies in demand models with common random numbers; the library behind ``evaluate``.

:func:`evaluate_policies` plays every policy in every demand model (``"reference"``: the
ground-truth market; ``"learned"``: the simulator fitted to the shop's history) for the same
``episodes`` campaigns, with the same ``seed`` for every policy, and returns an
:class:`~promogym.report.EvaluationReport`; :func:`~promogym.report.write_report` renders it.

:func:`evaluate_campaign` is what ``promogym evaluate`` runs. Without a run it builds the demo
shop's reference market; with ``--run`` it takes the run's agent, its learned simulator and,
when the history was simulated, its true market. Either way it tunes the baselines of
:mod:`promogym.envs.baselines`, solves the exact DP optimum (:mod:`promogym.envs.dp`) when a
reference market is evaluated, scores everything and writes the report.

>>> import torch
>>> from promogym.config import CampaignConfig
>>> from promogym.envs.baselines import NoPromotion
>>> setup = reference_setup(CampaignConfig().replace(campaign={"horizon": 4}))
>>> report = evaluate_policies({"none": NoPromotion(base_stock=60)},
...     {"reference": setup.demand_model}, setup.params, setup.start, episodes=50,
...     progress=False)
>>> report.markets["reference"].policies["none"].stats["mean_profit"] > 0
True
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from promogym.config import CampaignConfig
from promogym.envs.core import CampaignParams, CampaignState, initial_state
from promogym.envs.demand import DemandModel, MarketDemand
from promogym.envs.dp import dp_lot, dp_too_large
from promogym.envs.market import ReferenceMarket, day_date, day_number, default_market
from promogym.envs.rollout import Policy, Rollout, simulate
from promogym.errors import PromogymInputError
from promogym.report import (
    EvaluationReport,
    check_report_dir,
    package_versions,
    summarise,
    write_report,
)

MARKET_CHOICES = ("reference", "learned", "both")
OPTIMUM_POLICY = "dp-optimum"


def evaluate_policies(
    policies: Mapping[str, Policy],
    markets: Mapping[str, DemandModel],
    params: CampaignParams,
    start: CampaignState,
    *,
    episodes: int = 1000,
    seed: int = 0,
    optimum: float | None = None,
    provenance: Mapping[str, Any] | None = None,
    progress: bool = True,
    agents: Collection[str] = (),
    optimum_policy: str | None = None,
    n_resamples: int = 2000,
    level: float = 0.95,
    title: str = "Policy evaluation",
) -> EvaluationReport:
    """Simulate every policy in every demand model and compute the report's statistics.

    Args:
        policies: name -> policy. Every name not in ``agents`` and not ``optimum_policy`` is a
            baseline; the best baseline per market is the yardstick of the verdicts.
        markets: ``"reference"`` and/or ``"learned"`` -> demand model (any names work; the
            learned-minus-reference gap is reported when both of these two are present).
        params: campaign parameters.
        start: a batch of one start state (repeated ``episodes`` times).
        episodes: campaigns per policy per market (>= 2).
        seed: common random numbers: every policy in every market sees demand uniforms from
            this seed; the bootstrap uses it too.
        optimum: exact expected profit of the DP optimum in the ``"reference"`` market.
        provenance: run description (config, data fingerprint, forecaster metrics,
            algorithm, hyper-parameters, seeds); package versions are added here.
        progress: show a progress bar (on stderr) while simulating.
        agents: names of the trained policies among ``policies``.
        optimum_policy: name of the DP policy among ``policies`` (its Monte-Carlo estimate
            is checked against ``optimum``).
        n_resamples, level: bootstrap resamples and CI level.
    """
    if not policies:
        raise PromogymInputError("evaluate_policies: no policies given")
    if not markets:
        raise PromogymInputError("evaluate_policies: no demand models given")
    unknown = [a for a in (*agents, optimum_policy) if a is not None and a not in policies]
    if unknown:
        raise PromogymInputError(f"evaluate_policies: {unknown} are not among the policies")
    if episodes < 2:
        raise PromogymInputError(f"episodes must be >= 2 for a confidence interval, got {episodes}")
    kinds = {
        name: "agent" if name in agents else "optimum" if name == optimum_policy else "baseline"
        for name in policies
    }
    rollouts: dict[str, dict[str, Rollout]] = {m: {} for m in markets}
    jobs = [(m, p) for m in markets for p in policies]
    started = time.perf_counter()
    with _progress_bar(progress, len(jobs)) as advance:
        for market_name, policy_name in jobs:
            advance(f"{policy_name} in {market_name}")
            rollouts[market_name][policy_name] = simulate(
                policies[policy_name],
                markets[market_name],
                params,
                start,
                n_episodes=episodes,
                seed=seed,
            )
        advance(f"{len(jobs)} policy-market pairs")
    prov = dict(provenance or {})
    prov.setdefault("evaluation", {}).update(
        {
            "episodes": episodes,
            "seed": seed,
            "markets": list(markets),
            "policies": {name: kinds[name] for name in policies},
            "simulate_seconds": round(time.perf_counter() - started, 2),
        }
    )
    prov["packages"] = package_versions()
    return summarise(
        rollouts,
        kinds=kinds,
        discounts=params.discounts.tolist(),
        order_quantities=params.order_quantities.tolist(),
        seed=seed,
        optimum=optimum,
        optimum_policy=optimum_policy,
        n_resamples=n_resamples,
        level=level,
        provenance=prov,
        title=title,
    )


class _progress_bar:
    """Context manager yielding ``advance(label)``: a rich progress bar, or nothing."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total, self.bar, self.task = enabled, total, None, None

    def __enter__(self):  # noqa: ANN204 - returns a callable
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.bar = Progress(
                TextColumn("simulating {task.description:<40}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self.bar.start()
            self.task = self.bar.add_task("", total=self.total)
        first = [True]

        def advance(label: str) -> None:
            if self.bar is None:
                return
            if not first[0]:
                self.bar.advance(self.task)
            first[0] = False
            self.bar.update(self.task, description=label)

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


@dataclass
class ReferenceSetup:
    """The demo shop's reference market and one item's campaign in it."""

    config: CampaignConfig
    market: ReferenceMarket
    item: str
    item_index: int
    start_date: dt.date
    params: CampaignParams
    start: CampaignState

    @property
    def demand_model(self) -> MarketDemand:
        return MarketDemand(self.market)

    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex digits) of the market parameters: identifies the ground truth."""
        return hashlib.sha256(self.market.params.to_json().encode()).hexdigest()[:16]


def reference_setup(
    config: CampaignConfig | None = None,
    item: str = "sku-0",
    *,
    n_items: int = 8,
    market_seed: int = 0,
) -> ReferenceSetup:
    """Campaign of ``item`` in ``default_market(n_items, market_seed)``.

    Starts on ``config.campaign.start_date`` (default 2026-12-01) with the config's initial
    stock; the list price comes from the config, else from the market's item.
    """
    from promogym.envs.dp import campaign_start_date

    config = config or CampaignConfig()
    market = default_market(n_items, market_seed)
    if item not in market.item_ids:
        raise PromogymInputError(
            f"--item: unknown item {item!r}; choose one of {list(market.item_ids)}"
        )
    idx = market.item_index(item)
    params = CampaignParams.from_config(
        config,
        list_price=float(market.params.list_price[idx]),
        unit_cost=float(market.params.unit_cost[idx]),
        period_days=7 if market.freq == "W" else 1,
    )
    start_date = campaign_start_date(config)
    start = initial_state(params, torch.tensor([idx]), torch.tensor([day_number(start_date)]))
    return ReferenceSetup(config, market, item, idx, start_date, params, start)


def evaluate_campaign(
    out: str | Path,
    config: CampaignConfig | None = None,
    *,
    item: str | None = None,
    run: str | Path | None = None,
    policy: str = "best",
    market: str | None = None,
    episodes: int = 1000,
    seed: int = 0,
    tune_episodes: int = 400,
    progress: bool = True,
    log: Any = None,
) -> EvaluationReport:
    """Evaluate baselines, the DP optimum and (with ``run``) a trained agent; write the report.

    Without ``run``: the demo shop's reference market (``default_market(8, 0)``), campaign of
    ``item`` from ``config.campaign.start_date`` (default 2026-12-01). With ``run`` (a
    ``promogym fit``/``train`` directory): the run's config, its agent and learned simulator;
    the campaign starts the period after the run's history, and the reference market is the
    run's ``market.json`` when the history was simulated. The DP optimum is solved whenever a
    reference market is evaluated. Baselines are tuned on the random numbers of ``seed + 1``
    (in the reference market when there is one, else in the learned simulator) and scored on
    those of ``seed``, so their scores carry no selection bias.

    Args:
        out: report directory.
        config: campaign config (default: the built-in campaign, or the run's).
        item: item to run the campaign for (default: ``sku-0``, the demo shop's first; with a
            run, required unless the run has that item or only one).
        run: a trained run directory.
        policy: the run's agent model: ``best``, ``last``, or a PATH to one of the run's
            agent directories or model files (``RUN/agents/NAME[/best_model.zip]``).
        market: ``reference``, ``learned`` or ``both`` (default: ``reference`` without a run;
            with one, ``both`` when it knows its true market, else ``learned``).
        episodes, seed: evaluation campaigns and their seed.
        tune_episodes: campaigns per candidate when tuning the baselines.
        progress: show progress on stderr.
        log: ``callable(str)`` for status lines (default: silent).
    """
    from promogym.envs.baselines import torch_threads

    # Rollout batches are small tensor ops: one thread is as fast on an idle machine and
    # avoids thread oversubscription on a busy one (measured: 2 threads ran ~10x slower on a
    # loaded 2-core box).
    with torch_threads(1):
        say = log or (lambda _msg: None)
        if market is not None and market not in MARKET_CHOICES:
            raise PromogymInputError(f"--market must be one of {MARKET_CHOICES}, got {market!r}")
        check_report_dir(out)  # fail before the DP solve, tuning and simulation
        if run is None:
            inputs = demo_inputs(config, item or "sku-0", market or "reference")
        else:
            inputs = run_inputs(Path(run), config, item, policy, market)
        return _evaluate(
            inputs, out, episodes=episodes, seed=seed, tune_episodes=tune_episodes,
            progress=progress, say=say,
        )  # fmt: skip


@dataclass
class CampaignInputs:
    """What an evaluation needs besides the baselines: one campaign, its demand models, agents."""

    params: CampaignParams
    start: CampaignState
    item: str
    start_date: dt.date
    markets: dict[str, DemandModel]
    true_market: ReferenceMarket | None  # for the DP optimum (when "reference" is evaluated)
    agents: dict[str, Policy]
    provenance: dict[str, Any]
    training_log: Path | None = None
    price_response: dict[str, Any] | None = None  # the run's held-out check (run.json)


def demo_inputs(config: CampaignConfig | None, item: str, market: str) -> CampaignInputs:
    """The demo shop's reference market (no trained run)."""
    if market != "reference":
        raise PromogymInputError(
            f"--market {market}: the learned simulator comes from a trained run; pass --run "
            "or use --market reference"
        )
    setup = reference_setup(config, item)
    provenance = {
        "config": setup.config.to_dict(),
        "data": {
            "source": "demo shop: promogym.envs.market.default_market(8, 0) (no sales history)",
            "item": item,
            "start_date": setup.start_date.isoformat(),
            "market_fingerprint": setup.fingerprint(),
        },
        "forecaster": "none (reference market only; a trained run adds its validation metrics)",
        "algorithm": "none (baselines and the exact DP optimum)",
    }
    return CampaignInputs(
        setup.params,
        setup.start,
        item,
        setup.start_date,
        {"reference": setup.demand_model},
        setup.market,
        {},
        provenance,
    )


def run_inputs(
    path: Path, config: CampaignConfig | None, item: str | None, policy: str, market: str | None
) -> CampaignInputs:
    """A run: its planner and agent, learned simulator and (if simulated) true market.

    A run with no trained agent yet (``--policy best`` or ``last``) is evaluated with the
    planner (:data:`promogym.run.PLANNER`) and the baselines.
    """
    from promogym.agents.train import config_digest
    from promogym.run import PLANNER, load_run, unknown_item

    run = load_run(path)
    if config is not None and config_digest(config) != config_digest(run.config):
        raise PromogymInputError(
            f"--config differs from {path / 'config.toml'}; the run's agents were trained "
            "for the run's config: omit --config"
        )
    agent, which = _agent_choice(run, policy)
    true_market = run.market() if market != "learned" else None
    market = market or ("both" if true_market is not None else "learned")
    if market != "learned" and true_market is None:
        raise PromogymInputError(
            f"--market {market}: {path} has no market.json (the true market is known only "
            "for simulated histories); use --market learned"
        )
    vocab = run.item_vocabulary()
    if item is None:  # the demo's first item, or a run's only one
        item = "sku-0" if "sku-0" in vocab else vocab[0] if len(vocab) == 1 else None
    if item is None or item not in vocab:
        raise unknown_item(item, vocab)
    params = run.params()
    start = run.next_campaign(item)
    day = int(start.day[0])
    markets: dict[str, DemandModel] = {}
    if market in ("reference", "both"):
        markets["reference"] = MarketDemand(true_market)
    if market in ("learned", "both"):
        markets["learned"] = run.demand_model()
    provenance = run.provenance(agent)
    provenance["data"] = {**provenance.get("data", {}), "item": item}
    configured = run.config.campaign.start_date
    if configured is not None and str(configured) != day_date(day).isoformat():
        provenance["campaign_start"] = (
            f"{day_date(day).isoformat()}, the period after the item's history (evaluate scores "
            f"the next campaign; campaign.start_date {configured} is not used)"
        )
    # The planner keeps every stock level, or lots of them; where no grid fits it is left out.
    lot = dp_lot(params)  # the grid depends on capacity and ladders, not on the item
    too_large = dp_too_large(params) if lot is None else None
    if too_large is not None:
        provenance["planner"] = f"left out: {too_large}"
    elif lot != 1:
        provenance["planner"] = (
            f"DP over {lot}-unit stock lots (the capacity is too large for every unit)"
        )
    log = None
    if agent is not None:
        provenance["policy"] = {"agent": agent, "model": which}
        agent_dir = path / "agents" / agent
        log = next(
            (
                agent_dir / n
                for n in ("evaluations.npz", "evaluations.csv")
                if (agent_dir / n).is_file()
            ),
            None,
        )
    return CampaignInputs(
        params,
        start,
        item,
        day_date(day),
        markets,
        true_market if "reference" in markets else None,
        {
            **({PLANNER: run.policy(PLANNER)} if too_large is None else {}),
            **({agent: run.policy(agent, which)} if agent is not None else {}),
        },
        provenance,
        log,
        run.info.get("price_response"),
    )


def _agent_choice(run: Any, policy: str) -> tuple[str | None, str]:
    """``--policy best|last|PATH`` -> (agent name, ``best``/``last``); no agent yet: ``None``."""
    if policy in ("best", "last"):
        return (run.default_agent() if run.learned_agents() else None), policy
    target = Path(policy).resolve()
    agents_dir = (run.path / "agents").resolve()
    if target.parent == agents_dir and target.name in run.agents():
        return target.name, "best"
    if (
        target.parent.parent == agents_dir
        and target.parent.name in run.agents()
        and target.name in ("best_model.zip", "last_model.zip")
    ):
        return target.parent.name, target.name.split("_")[0]
    raise PromogymInputError(
        f"--policy {policy}: give best, last, or one of the run's agents "
        f"({[str(run.path / 'agents' / a) for a in run.agents()]}) or its "
        "best_model.zip/last_model.zip"
    )


def _evaluate(
    inputs: CampaignInputs,
    out: str | Path,
    *,
    episodes: int,
    seed: int,
    tune_episodes: int,
    progress: bool,
    say: Any,
) -> EvaluationReport:
    from promogym.envs import dp
    from promogym.envs.baselines import baseline_suite

    provenance = dict(inputs.provenance)
    optimum = None
    policies: dict[str, Policy] = {}
    too_large = dp_too_large(inputs.params) if inputs.true_market is not None else None
    if too_large is not None:  # as the planner: the report goes on without the optimum
        say(f"no DP optimum: {too_large}")
        provenance["optimum"] = f"left out: {too_large}"
    elif inputs.true_market is not None:
        say(f"solving the DP optimum for {inputs.item} from {inputs.start_date} ...")
        solution = dp.solve(
            inputs.true_market,
            inputs.item,
            inputs.params,
            int(inputs.start.day[0]),
        )
        # From the campaign's real start: a run's history may end mid-sale (streak > 0).
        optimum = float(solution.value(inputs.start)[0])
        policies[OPTIMUM_POLICY] = solution.policy()
        provenance["optimum"] = {
            "expected_profit": optimum,
            "solve_seconds": round(solution.solve_seconds, 3),
            "stock_lot": solution.lot,  # 1: every stock level, the exact optimum
        }
    tune_in = "reference" if "reference" in inputs.markets else next(iter(inputs.markets))
    say(f"tuning baselines in the {tune_in} market ({tune_episodes} episodes per candidate) ...")
    tuned_at = time.perf_counter()
    suite = baseline_suite(
        inputs.markets[tune_in],
        inputs.params,
        inputs.start,
        seed=seed + 1,
        n_episodes=tune_episodes,
    )
    clash = set(inputs.agents) & (set(suite) | set(policies))
    if clash:
        raise PromogymInputError(
            f"agent names {sorted(clash)} clash with baseline names; rename the agents"
        )
    policies = {**inputs.agents, **suite, **policies}
    provenance["baselines"] = {
        name: pol.describe(inputs.params) if hasattr(pol, "describe") else name
        for name, pol in suite.items()
    }
    agent_seeds = provenance.pop("seeds", None)
    provenance["seeds"] = {
        **({"agent_training": agent_seeds} if agent_seeds else {}),
        "evaluation": seed,
        "baseline_tuning": seed + 1,
        "bootstrap": seed,
    }
    provenance["tuning"] = {
        "market": tune_in,
        "episodes": tune_episodes,
        "seconds": round(time.perf_counter() - tuned_at, 2),
    }
    report = evaluate_policies(
        policies,
        inputs.markets,
        inputs.params,
        inputs.start,
        episodes=episodes,
        seed=seed,
        optimum=optimum,
        optimum_policy=OPTIMUM_POLICY if optimum is not None else None,
        agents=list(inputs.agents),
        provenance=provenance,
        progress=progress,
        title=f"Policy evaluation: {inputs.item}, campaign from {inputs.start_date.isoformat()}",
    )
    report.price_response = inputs.price_response
    say(f"writing the report to {out} ...")
    write_report(report, out, training_log=inputs.training_log)
    return report
