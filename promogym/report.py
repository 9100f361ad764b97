"""Policy evaluation reports: statistics over simulated campaigns, and their rendering.

:func:`summarise` turns per-episode rollouts (one per policy per demand model, all played
with the same common random numbers) into an :class:`EvaluationReport`;
:func:`write_report` writes it as ``report.json`` (every number plus the per-episode
totals that reproduce them), ``report.md`` and a self-contained ``report.html`` (inline CSS,
plots as inline base64 PNG, no external resource), atomically.

Statistics (all per policy per demand model, over ``E`` episodes):

- **mean profit** with a 95% **percentile bootstrap** CI. The bootstrap draws one index
  matrix ``numpy.random.default_rng(seed).integers(0, E, size=(R, E))`` (``R = 2000`` by
  default) and reuses it for every policy and every demand model, so paired differences
  (policy minus best baseline, learned simulator minus reference market) resample episodes
  jointly, which is valid because episode ``e`` faces the same demand luck everywhere.
- **IQM**: interquartile mean, the mean of the middle 50% of episodes after dropping
  ``floor(E / 4)`` from each end (``scipy.stats.trim_mean(x, 0.25)``; Agarwal et al. 2021,
  "Deep RL at the Edge of the Statistical Precipice").
- revenue, units sold, ending inventory, periods on sale, orders placed, units ordered: means
  of per-episode totals.
- **sell-through**: units sold / (units on hand at the start + units received), pooled over
  episodes; by stock conservation the denominator equals units sold + ending inventory.
- **lost-sales rate**: lost units / demand, pooled over episodes.
- **average discount**: mean discount over all periods; **sale depth**: mean discount over
  the periods on sale.
- **% of optimum**: mean profit / the exact DP optimum's expected profit (reference market);
  left out when the optimum is not positive.

Verdicts compare each policy with the best baseline of the same demand model (highest mean
profit): "earns x% [lo, hi] more/less than" when the 95% CI of the paired difference excludes
zero, "is not distinguishable from" when it straddles zero.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from promogym.errors import PromogymInputError
from promogym.io import atomic_directory, dumps, jsonable
from promogym.response import NOTE as RESPONSE_NOTE
from promogym.response import TITLE as RESPONSE_TITLE
from promogym.response import ResponseBin, caution, response_summary, response_table

REPORT_FILES = ("report.json", "report.md", "report.html")
PLOTS_DIR = "plots"
KINDS = ("baseline", "agent", "optimum")
EPISODE_FIELDS = (
    "profit",
    "revenue",
    "units_sold",
    "lost_units",
    "demand",
    "ending_inventory",
    "periods_on_sale",
    "discount_sum",
    "orders_placed",
    "units_ordered",
)
VERSION_PACKAGES = ("torch", "numpy", "pandas", "gymnasium", "stable-baselines3", "promogym")


# ---- statistics ------------------------------------------------------------------------------
def bootstrap_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """Episode indices of ``n_resamples`` bootstrap resamples of ``n`` episodes, ``(R, n)``."""
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def bootstrap_means(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Resampled means of each row of ``values`` (``(k, n)`` or ``(n,)``): ``(k, R)`` / ``(R,)``.

    Rows share the resamples (a paired bootstrap). Computed in chunks of resamples so the
    gathered block stays near 4 million floats whatever ``k``, ``n`` and ``R`` are.
    """
    values = np.asarray(values, dtype=np.float64)
    squeeze = values.ndim == 1
    rows = values[None, :] if squeeze else values
    out = np.empty((rows.shape[0], indices.shape[0]), dtype=np.float64)
    chunk = max(1, 4_000_000 // (rows.shape[0] * rows.shape[1]))
    for lo in range(0, indices.shape[0], chunk):
        idx = indices[lo : lo + chunk]
        out[:, lo : lo + chunk] = rows[:, idx].mean(axis=2)
    return out[0] if squeeze else out


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Central ``level`` interval of bootstrap ``samples`` (percentile method)."""
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(samples, [tail, 100.0 - tail])
    return float(lo), float(hi)


def bootstrap_mean_ci(
    values: np.ndarray, *, n_resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """95% percentile-bootstrap CI of the mean of ``values``.

    >>> x = np.arange(100.0)
    >>> lo, hi = bootstrap_mean_ci(x, seed=0)
    >>> lo < x.mean() < hi and hi - lo < 15
    True
    """
    values = np.asarray(values, dtype=np.float64)
    means = bootstrap_means(values, bootstrap_indices(values.shape[0], n_resamples, seed))
    return percentile_interval(means, level)


def interquartile_mean(values: np.ndarray) -> float:
    """Mean of the middle 50%: drop ``floor(n / 4)`` values from each end of the sorted data.

    >>> interquartile_mean(np.array([0.0, 1.0, 2.0, 3.0, 100.0, -100.0, 4.0, 5.0]))
    2.5
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    cut = int(0.25 * x.shape[0])
    return float(x[cut : x.shape[0] - cut].mean())


def episode_totals(rollout: Any) -> dict[str, np.ndarray]:
    """Per-episode totals of a :class:`~promogym.envs.rollout.Rollout` (``EPISODE_FIELDS``)."""
    p = rollout.periods
    return {
        "profit": np.asarray(rollout.profit, dtype=np.float64),
        "revenue": p["revenue"].sum(axis=1),
        "units_sold": p["units_sold"].sum(axis=1),
        "lost_units": p["lost_units"].sum(axis=1),
        "demand": p["demand"].sum(axis=1),
        "ending_inventory": np.asarray(rollout.ending_inventory, dtype=np.float64),
        "periods_on_sale": (p["discount"] > 0).sum(axis=1).astype(np.float64),
        "discount_sum": p["discount"].sum(axis=1),
        "orders_placed": (p["order_quantity"] > 0).sum(axis=1).astype(np.float64),
        "units_ordered": p["order_quantity"].sum(axis=1),
    }


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


def policy_stats(
    episodes: Mapping[str, np.ndarray],
    horizon: int,
    boot_means: np.ndarray,
    level: float,
    optimum: float | None,
) -> dict[str, float]:
    """Summary numbers of one policy in one demand model (see the module docstring)."""
    profit = episodes["profit"]
    n = profit.shape[0]
    lo, hi = percentile_interval(boot_means, level)
    sold = float(episodes["units_sold"].sum())
    on_sale = float(episodes["periods_on_sale"].sum())
    stats = {
        "mean_profit": float(profit.mean()),
        "ci_low": lo,
        "ci_high": hi,
        "iqm_profit": interquartile_mean(profit),
        "sd_profit": float(profit.std(ddof=1)) if n > 1 else float("nan"),
        "median_profit": float(np.median(profit)),
        "revenue": float(episodes["revenue"].mean()),
        "units_sold": float(episodes["units_sold"].mean()),
        "sell_through": _ratio(sold, sold + float(episodes["ending_inventory"].sum())),
        "lost_sales_rate": _ratio(
            float(episodes["lost_units"].sum()), float(episodes["demand"].sum())
        ),
        "avg_discount": float(episodes["discount_sum"].sum()) / (n * horizon),
        "sale_depth": _ratio(float(episodes["discount_sum"].sum()), on_sale),
        "periods_on_sale": float(episodes["periods_on_sale"].mean()),
        "ending_inventory": float(episodes["ending_inventory"].mean()),
        "orders_placed": float(episodes["orders_placed"].mean()),
        "units_ordered": float(episodes["units_ordered"].mean()),
    }
    if optimum is not None and optimum > 0:  # a share of a loss would rank bigger losses higher
        stats["pct_of_optimum"] = 100.0 * stats["mean_profit"] / optimum
    return stats


@dataclass
class Comparison:
    """Paired difference ``policy - reference`` of mean profit, with bootstrap CIs."""

    policy: str
    reference: str
    diff: float
    diff_ci: tuple[float, float]
    pct: float  # 100 * diff / |reference mean| (nan when the reference mean is 0)
    pct_ci: tuple[float, float]

    @property
    def distinguishable(self) -> bool:
        return self.diff_ci[0] > 0 or self.diff_ci[1] < 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "reference": self.reference,
            "diff": self.diff,
            "diff_ci": list(self.diff_ci),
            "pct": self.pct,
            "pct_ci": list(self.pct_ci),
            "distinguishable": self.distinguishable,
        }


def compare(
    name: str,
    reference: str,
    a: np.ndarray,
    b: np.ndarray,
    boot_a: np.ndarray,
    boot_b: np.ndarray,
    level: float,
) -> Comparison:
    """Paired comparison of per-episode values ``a`` vs ``b`` from shared bootstrap means."""
    mean_b = float(b.mean())
    diff = float(a.mean()) - mean_b
    boot_diff = boot_a - boot_b
    if mean_b != 0:
        pct = 100.0 * diff / abs(mean_b)
        with np.errstate(divide="ignore", invalid="ignore"):
            pct_ci = percentile_interval(100.0 * boot_diff / np.abs(boot_b), level)
    else:
        pct, pct_ci = float("nan"), (float("nan"), float("nan"))
    return Comparison(name, reference, diff, percentile_interval(boot_diff, level), pct, pct_ci)


def verdict(comparison: Comparison, reference_label: str, market: str) -> str:
    """Plain-language sentence for a :class:`Comparison`.

    >>> c = Comparison("PPO", "fixed-20", 30.0, (25.0, 35.0), 14.2, (12.9, 15.4))
    >>> verdict(c, "the best baseline (fixed-20)", "reference")
    'PPO earns 14.2% [12.9, 15.4] more than the best baseline (fixed-20) in the reference market (+30.0 [25.0, 35.0] per campaign).'
    """
    c = comparison
    money = f"{c.diff:+,.1f} [{c.diff_ci[0]:,.1f}, {c.diff_ci[1]:,.1f}] per campaign"
    where = f"in the {market} market"
    if math.isnan(c.pct):
        pct = ""
    else:
        pct = f"{abs(c.pct):.1f}% [{_abs_interval(c.pct_ci, c.pct)}] "
    if not c.distinguishable:
        shown = f"{c.pct:+.1f}% [{c.pct_ci[0]:.1f}, {c.pct_ci[1]:.1f}], " if pct else ""
        return f"{c.policy} is not distinguishable from {reference_label} {where} ({shown}{money})."
    direction = "more" if c.diff > 0 else "less"
    return f"{c.policy} earns {pct}{direction} than {reference_label} {where} ({money})."


def _abs_interval(ci: tuple[float, float], point: float) -> str:
    lo, hi = ci if point >= 0 else (-ci[1], -ci[0])
    return f"{lo:.1f}, {hi:.1f}"


# ---- the report ------------------------------------------------------------------------------
@dataclass
class PolicyResult:
    """One policy scored in one demand model."""

    name: str
    kind: str  # "baseline", "agent" or "optimum"
    episodes: dict[str, np.ndarray]
    stats: dict[str, float]
    vs_best: Comparison | None = None
    verdict: str | None = None
    rollout: Any = None  # the Rollout (per-period arrays) for plots; not serialised


@dataclass
class MarketResult:
    """Every policy scored in one demand model."""

    name: str
    policies: dict[str, PolicyResult]
    best_baseline: str | None
    optimum: float | None = None  # exact expected profit of the DP optimum, when known


@dataclass
class Gap:
    """Learned-simulator mean minus reference-market mean of one policy."""

    policy: str
    learned: float
    reference: float
    comparison: Comparison

    def to_dict(self) -> dict[str, Any]:
        c = self.comparison
        return {
            "learned": self.learned,
            "reference": self.reference,
            "gap": c.diff,
            "gap_ci": list(c.diff_ci),
            "gap_pct": c.pct,
            "gap_pct_ci": list(c.pct_ci),
        }


@dataclass
class EvaluationReport:
    """Everything :func:`write_report` renders; build it with :func:`summarise`."""

    markets: dict[str, MarketResult]
    episodes: int
    seed: int
    horizon: int
    discounts: list[float]
    order_quantities: list[float]
    n_resamples: int
    bootstrap_seed: int
    level: float
    gaps: dict[str, Gap] = field(default_factory=dict)
    optimum_policy: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    title: str = "Policy evaluation"
    price_response: dict[str, Any] | None = None  # a run's held-out check (promogym.response)

    @property
    def primary_market(self) -> str:
        """The market plots describe: the reference market when present."""
        return "reference" if "reference" in self.markets else next(iter(self.markets))

    def verdicts(self) -> list[str]:
        """Plain-language verdict lines, per market: agents first, then by mean profit."""
        return _ordered_verdicts(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping of every number, plus per-episode totals to recompute them."""
        markets = {}
        for market in self.markets.values():
            markets[market.name] = {
                "best_baseline": market.best_baseline,
                "optimum": market.optimum,
                "policies": {
                    r.name: {
                        "kind": r.kind,
                        "stats": r.stats,
                        "vs_best_baseline": r.vs_best.to_dict() if r.vs_best else None,
                        "verdict": r.verdict,
                        "episodes": {k: v.tolist() for k, v in r.episodes.items()},
                    }
                    for r in market.policies.values()
                },
            }
        return {
            "title": self.title,
            "settings": {
                "episodes": self.episodes,
                "seed": self.seed,
                "horizon": self.horizon,
                "discounts": self.discounts,
                "order_quantities": self.order_quantities,
                "bootstrap": {
                    "method": "percentile",
                    "resamples": self.n_resamples,
                    "seed": self.bootstrap_seed,
                    "level": self.level,
                    "indices": "numpy.random.default_rng(seed).integers(0, episodes, "
                    "size=(resamples, episodes)), shared by every policy and market",
                },
            },
            "optimum_policy": self.optimum_policy,
            "markets": markets,
            "gaps": {name: gap.to_dict() for name, gap in self.gaps.items()},
            "verdicts": self.verdicts(),
            "price_response": self.price_response,
            "provenance": self.provenance,
        }


def summarise(
    rollouts: Mapping[str, Mapping[str, Any]],
    *,
    kinds: Mapping[str, str],
    discounts: Sequence[float],
    order_quantities: Sequence[float],
    seed: int,
    optimum: float | None = None,
    optimum_policy: str | None = None,
    n_resamples: int = 2000,
    level: float = 0.95,
    provenance: Mapping[str, Any] | None = None,
    title: str = "Policy evaluation",
) -> EvaluationReport:
    """Statistics of ``rollouts[market][policy]`` (common random numbers, equal episode counts).

    Args:
        rollouts: per demand model, per policy, a :class:`~promogym.envs.rollout.Rollout`.
        kinds: policy name -> ``"baseline"``, ``"agent"`` or ``"optimum"``; the best
            baseline (highest mean profit) of each market is the yardstick of the verdicts.
        discounts, order_quantities: the campaign's ladders (labels of the plots).
        seed: the simulation seed; the bootstrap uses the same seed.
        optimum: exact expected profit of the DP optimum in the ``"reference"`` market.
        optimum_policy: name of the DP policy among the policies, if simulated.
        n_resamples, level: bootstrap resamples and CI level.
        provenance: run description shown in the report (config, data, algorithm, ...).
    """
    if not rollouts or not all(rollouts.values()):
        raise PromogymInputError("nothing to report: give at least one market and one policy")
    if optimum is not None and "reference" not in rollouts:
        raise PromogymInputError("optimum is the DP value in the reference market; add it")
    lengths = {r.n_episodes for m in rollouts.values() for r in m.values()}
    if len(lengths) != 1:
        raise PromogymInputError(f"every rollout needs the same episode count, got {lengths}")
    n = lengths.pop()
    # periods simulated (the horizon, or fewer when the campaigns start part-way)
    horizon = next(iter(next(iter(rollouts.values())).values())).periods["discount"].shape[1]
    if n < 2:
        raise PromogymInputError("episodes must be >= 2 for a confidence interval")
    for name in {p for m in rollouts.values() for p in m}:
        if kinds.get(name) not in KINDS:
            raise PromogymInputError(f"policy {name!r}: kind must be one of {KINDS}")

    indices = bootstrap_indices(n, n_resamples, seed)
    totals = {m: {p: episode_totals(r) for p, r in pols.items()} for m, pols in rollouts.items()}
    keys = [(m, p) for m, pols in totals.items() for p in pols]
    stacked = np.stack([totals[m][p]["profit"] for m, p in keys])
    boot = dict(zip(keys, bootstrap_means(stacked, indices), strict=True))

    markets: dict[str, MarketResult] = {}
    for m, pols in totals.items():
        market_optimum = optimum if m == "reference" else None
        results = {
            p: PolicyResult(
                name=p,
                kind=kinds[p],
                episodes=ep,
                stats=policy_stats(ep, horizon, boot[(m, p)], level, market_optimum),
                rollout=rollouts[m][p],
            )
            for p, ep in pols.items()
        }
        baselines = [p for p in results if results[p].kind == "baseline"]
        best = max(baselines, key=lambda p: results[p].stats["mean_profit"], default=None)
        if best is not None:
            label = f"the best baseline ({best})"
            for p, r in results.items():
                if p == best:
                    continue
                r.vs_best = compare(
                    p,
                    best,
                    r.episodes["profit"],
                    results[best].episodes["profit"],
                    boot[(m, p)],
                    boot[(m, best)],
                    level,
                )
                r.verdict = verdict(r.vs_best, label, m)
        markets[m] = MarketResult(m, results, best, market_optimum)

    gaps: dict[str, Gap] = {}
    if "learned" in totals and "reference" in totals:
        for p in totals["learned"]:
            if p not in totals["reference"]:
                continue
            learned = totals["learned"][p]["profit"]
            reference = totals["reference"][p]["profit"]
            cmp = compare(
                p,
                p,
                learned,
                reference,
                boot[("learned", p)],
                boot[("reference", p)],
                level,
            )
            gaps[p] = Gap(p, float(learned.mean()), float(reference.mean()), cmp)

    return EvaluationReport(
        markets=markets,
        episodes=n,
        seed=seed,
        horizon=horizon,
        discounts=[float(d) for d in discounts],
        order_quantities=[float(q) for q in order_quantities],
        n_resamples=n_resamples,
        bootstrap_seed=seed,
        level=level,
        gaps=gaps,
        optimum_policy=optimum_policy,
        provenance=dict(provenance or {}),
        title=title,
    )


def package_versions() -> dict[str, str]:
    """Versions of python and the packages a result depends on (``"not installed"`` if absent)."""
    from promogym.run import package_versions as versions

    out = versions(VERSION_PACKAGES)
    return {"python": out.pop("python"), "platform": platform.platform(), **out}


# ---- training logs ---------------------------------------------------------------------------
@dataclass
class TrainingCurve:
    """Evaluation reward against training timesteps."""

    timesteps: np.ndarray
    mean_reward: np.ndarray
    std_reward: np.ndarray | None
    source: str


def read_training_log(path: str | os.PathLike[str]) -> TrainingCurve:
    """Read a training curve from one of these (a directory is searched in this order):

    - SB3 ``EvalCallback`` output ``evaluations.npz`` (``timesteps``, ``results``),
    - a simple CSV with header ``timesteps,mean_reward`` (optional ``std_reward`` column;
      ``promogym train`` writes ``agents/NAME/evaluations.csv`` in this format),
    - an SB3 logger ``progress.csv`` (``time/total_timesteps`` with ``eval/mean_reward`` or
      ``rollout/ep_rew_mean``),
    - an SB3 ``*monitor.csv`` (``#{json}`` line, then ``r,l,t``; episode rewards against
      cumulative steps, smoothed over 1/50 of the episodes).
    """
    path = Path(path)
    if path.is_dir():
        found = (
            sorted(path.glob("evaluations.npz"))
            + sorted(path.glob("evaluations.csv"))
            + sorted(path.glob("training_curve.csv"))
            + sorted(path.glob("progress.csv"))
            + sorted(path.glob("*monitor.csv"))
        )
        if not found:
            raise PromogymInputError(
                f"{path}: no training log (evaluations.npz, evaluations.csv, training_curve.csv, "
                "progress.csv or *monitor.csv); pass the log file itself"
            )
        path = found[0]
    if not path.is_file():
        raise PromogymInputError(f"{path}: training log not found; pass an existing file")
    if path.suffix == ".npz":
        with np.load(path) as data:
            if "timesteps" not in data or "results" not in data:
                raise PromogymInputError(
                    f"{path}: expected arrays 'timesteps' and 'results' (SB3 evaluations.npz)"
                )
            results = np.asarray(data["results"], dtype=np.float64).reshape(
                len(data["timesteps"]), -1
            )
            return TrainingCurve(
                np.asarray(data["timesteps"], dtype=np.float64),
                results.mean(axis=1),
                results.std(axis=1),
                path.name,
            )
    import pandas as pd

    try:
        with path.open(encoding="utf-8") as handle:
            first = handle.readline()
            monitor = first.startswith("#")
            if not monitor:
                handle.seek(0)
            frame = pd.read_csv(handle)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise PromogymInputError(f"{path}: cannot read the training log as CSV ({exc})") from None
    cols = set(frame.columns)
    if monitor and {"r", "l"} <= cols:
        steps = frame["l"].to_numpy(np.float64).cumsum()
        reward = frame["r"].to_numpy(np.float64)
        window = max(1, len(reward) // 50)
        smooth = pd.Series(reward).rolling(window, min_periods=1).mean().to_numpy()
        return TrainingCurve(steps, smooth, None, f"{path.name} (rolling mean of {window})")
    if {"timesteps", "mean_reward"} <= cols:
        std = frame["std_reward"].to_numpy(np.float64) if "std_reward" in cols else None
        return TrainingCurve(
            frame["timesteps"].to_numpy(np.float64),
            frame["mean_reward"].to_numpy(np.float64),
            std,
            path.name,
        )
    if "time/total_timesteps" in cols:
        for reward_col in ("eval/mean_reward", "rollout/ep_rew_mean"):
            if reward_col in cols:
                rows = frame.dropna(subset=[reward_col])
                return TrainingCurve(
                    rows["time/total_timesteps"].to_numpy(np.float64),
                    rows[reward_col].to_numpy(np.float64),
                    None,
                    f"{path.name} ({reward_col})",
                )
    raise PromogymInputError(
        f"{path}: unknown training log columns {sorted(cols)[:8]}; write a CSV with header "
        "'timesteps,mean_reward' (optional std_reward)"
    )


# ---- plots -----------------------------------------------------------------------------------
def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    # No "Software" PNG text chunk: the file embeds no URL at all.
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _policy_order(report: EvaluationReport, market: str) -> list[str]:
    pols = report.markets[market].policies
    return sorted(pols, key=lambda p: pols[p].stats["mean_profit"], reverse=True)


def plot_profit_distribution(report: EvaluationReport) -> bytes:
    """Box-and-violin plot of per-episode profit per policy, one panel per demand model."""
    import matplotlib
    import matplotlib.pyplot as plt

    names = list(report.markets)
    order = _policy_order(report, report.primary_market)
    # matplotlib 3.10 renamed vert=False to orientation="horizontal" (3.11 warns on vert)
    new_api = tuple(int(v) for v in matplotlib.__version__.split(".")[:2]) >= (3, 10)
    horizontal = {"orientation": "horizontal"} if new_api else {"vert": False}
    height = 1.0 + 0.45 * len(order)
    fig, axes = plt.subplots(1, len(names), figsize=(6.2 * len(names), height), squeeze=False)
    for ax, m in zip(axes[0], names, strict=True):
        pols = report.markets[m].policies
        shown = [p for p in order if p in pols] + [p for p in pols if p not in order]
        data = [pols[p].episodes["profit"] for p in shown]
        pos = np.arange(len(shown))[::-1]
        ax.violinplot(data, positions=pos, showextrema=False, widths=0.8, **horizontal)
        ax.boxplot(data, positions=pos, widths=0.25, showfliers=False, **horizontal)
        means = [pols[p].stats["mean_profit"] for p in shown]
        ax.scatter(means, pos, color="black", zorder=3, s=14, label="mean")
        if report.markets[m].optimum is not None:
            ax.axvline(
                report.markets[m].optimum, color="tab:red", ls="--", lw=1, label="DP E[profit]"
            )
        ax.set_yticks(pos, shown)
        ax.set_xlabel("profit per campaign")
        ax.set_title(f"{m} market ({report.episodes} episodes)")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def plot_training_curve(curve: TrainingCurve) -> bytes:
    """Mean evaluation reward (and +-1 sd band if known) against timesteps."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(curve.timesteps, curve.mean_reward, color="tab:blue", lw=1.5)
    if curve.std_reward is not None:
        ax.fill_between(
            curve.timesteps,
            curve.mean_reward - curve.std_reward,
            curve.mean_reward + curve.std_reward,
            color="tab:blue",
            alpha=0.2,
        )
    ax.set_xlabel("timesteps")
    ax.set_ylabel("mean reward")
    ax.set_title(f"training curve: {curve.source}")
    ax.grid(alpha=0.3)
    return _png(fig)


def typical_episode(profit: np.ndarray) -> int:
    """Index of the episode whose profit is closest to the median (first one on ties)."""
    return int(np.argmin(np.abs(profit - np.median(profit))))


def trajectory_table(result: PolicyResult) -> dict[str, list[float]]:
    """Per-period record of the policy's typical episode (closest to median profit)."""
    e = typical_episode(result.episodes["profit"])
    p = result.rollout.periods
    out = {"episode": e, "profit": float(result.episodes["profit"][e])}
    for name in ("discount", "demand", "units_sold", "lost_units", "on_hand", "order_quantity"):
        out[name] = [float(v) for v in p[name][e]]
    return out


def plot_trajectory(result: PolicyResult, market: str) -> bytes:
    """Discount, demand vs sales, on-hand and orders per period of the typical episode."""
    import matplotlib.pyplot as plt

    tr = trajectory_table(result)
    t = np.arange(len(tr["discount"]))
    fig, axes = plt.subplots(4, 1, figsize=(8, 7.5), sharex=True)
    axes[0].bar(t, 100 * np.asarray(tr["discount"]), color="tab:red")
    axes[0].set_ylabel("discount %")
    axes[1].bar(t - 0.2, tr["demand"], width=0.4, label="demand", color="tab:gray")
    axes[1].bar(t + 0.2, tr["units_sold"], width=0.4, label="sales", color="tab:green")
    axes[1].set_ylabel("units")
    axes[1].legend(fontsize=8, loc="upper right")
    axes[2].plot(t, tr["on_hand"], marker="o", ms=3, color="tab:blue")
    axes[2].set_ylabel("on hand")
    axes[3].bar(t, tr["order_quantity"], color="tab:orange")
    axes[3].set_ylabel("ordered")
    axes[3].set_xlabel("period of the campaign")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"{result.name}, {market} market: episode {tr['episode']} "
        f"(profit {tr['profit']:,.1f}, closest to the median)"
    )
    fig.tight_layout()
    return _png(fig)


def discount_frequencies(result: PolicyResult, discounts: Sequence[float]) -> np.ndarray:
    """Share of episodes choosing each discount in each period: ``(n_discounts, horizon)``."""
    chosen = result.rollout.periods["discount"]
    ladder = np.asarray(discounts, dtype=np.float64)
    idx = np.abs(chosen[..., None] - ladder).argmin(axis=-1)
    counts = np.stack([(idx == a).sum(axis=0) for a in range(len(ladder))])
    return counts / chosen.shape[0]


def plot_discount_heatmap(report: EvaluationReport) -> bytes:
    """One heatmap per policy: share of episodes at each discount (rows) by period (columns)."""
    import matplotlib.pyplot as plt

    m = report.primary_market
    order = _policy_order(report, m)
    ncols = 2 if len(order) > 1 else 1
    nrows = math.ceil(len(order) / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(6.2 * ncols, 0.6 + 2.4 * nrows),
        squeeze=False,
        sharex=True,
        layout="constrained",
    )
    labels = [f"{100 * d:.0f}%" for d in report.discounts]
    image = None
    for ax, p in zip(axes.flat, order, strict=False):
        share = discount_frequencies(report.markets[m].policies[p], report.discounts)
        image = ax.imshow(
            share, aspect="auto", origin="lower", vmin=0, vmax=1, cmap="viridis",
            interpolation="nearest",
        )  # fmt: skip
        ax.set_yticks(range(len(labels)), labels)
        ax.set_title(p, fontsize=10)
    for ax in axes[-1]:
        ax.set_xlabel("period of the campaign")
    for ax in list(axes.flat)[len(order) :]:
        ax.axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="share of episodes")
    fig.suptitle(f"discount chosen by period ({m} market)")
    return _png(fig)


def make_plots(
    report: EvaluationReport, training_log: str | os.PathLike[str] | None, trajectory_policy: str
) -> dict[str, tuple[str, bytes]]:
    """``file stem -> (caption, PNG bytes)`` of every plot of the report."""
    import matplotlib

    matplotlib.use("Agg")
    m = report.primary_market
    plots = {
        "profit_distribution": (
            "Profit per campaign: distribution over episodes (violin, box = quartiles, "
            "dot = mean).",
            plot_profit_distribution(report),
        )
    }
    if training_log is not None:
        curve = read_training_log(training_log)
        plots["training_curve"] = (
            f"Training curve ({curve.source}): the agent's mean evaluation result as it "
            "trained (from promogym train: profit per campaign over its held-out start dates "
            "of every item, in the simulator it trained in; band: +-1 sd over those campaigns), "
            "so its level is not the tables' item and start.",
            plot_training_curve(curve),
        )
    plots["trajectory"] = (
        f"Typical campaign of {trajectory_policy} in the {m} market (the episode closest "
        "to its median profit).",
        plot_trajectory(report.markets[m].policies[trajectory_policy], m),
    )
    plots["discount_heatmap"] = (
        f"How often each discount is chosen in each period ({m} market).",
        plot_discount_heatmap(report),
    )
    return plots


def default_trajectory_policy(report: EvaluationReport) -> str:
    """The best agent of the primary market, else its best policy by mean profit."""
    pols = report.markets[report.primary_market].policies
    agents = [p for p in pols if pols[p].kind == "agent"]
    pool = agents or list(pols)
    return max(pool, key=lambda p: pols[p].stats["mean_profit"])


# ---- rendering -------------------------------------------------------------------------------
PROFIT_COLUMNS = (
    ("mean_profit", "mean profit", "{:,.1f}"),
    ("ci", "95% CI", None),
    ("iqm_profit", "IQM", "{:,.1f}"),
    ("pct_of_optimum", "% of optimum", "{:.1f}%"),
    ("vs_best", "vs best baseline (95% CI)", None),
)
OPERATIONS_COLUMNS = (
    ("revenue", "revenue", "{:,.1f}"),
    ("units_sold", "units sold", "{:,.1f}"),
    ("sell_through", "sell-through", "{:.1%}"),
    ("lost_sales_rate", "lost-sales rate", "{:.1%}"),
    ("avg_discount", "avg discount", "{:.1%}"),
    ("sale_depth", "depth on sale", "{:.1%}"),
    ("periods_on_sale", "periods on sale", "{:.1f}"),
    ("ending_inventory", "ending inventory", "{:,.1f}"),
    ("orders_placed", "orders placed", "{:.2f}"),
    ("units_ordered", "units ordered", "{:,.1f}"),
)


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return spec.format(value)


def _cell(key: str, spec: str | None, result: PolicyResult, market: MarketResult) -> str:
    s = result.stats
    if key == "ci":
        return f"[{s['ci_low']:,.1f}, {s['ci_high']:,.1f}]"
    if key == "vs_best":
        c = result.vs_best
        if result.name == market.best_baseline:
            return "best baseline"
        if c is None:
            return "n/a"
        if math.isnan(c.pct):
            return f"{c.diff:+,.1f} [{c.diff_ci[0]:,.1f}, {c.diff_ci[1]:,.1f}]"
        return f"{c.pct:+.1f}% [{c.pct_ci[0]:.1f}, {c.pct_ci[1]:.1f}]"
    assert spec is not None
    return _fmt(s.get(key), spec)


def _label(result: PolicyResult) -> str:
    if result.name == "planner":  # promogym.run.PLANNER: an agent that is computed
        return "planner (DP on the learned simulator)"
    return result.name + {"agent": " (agent)", "optimum": " (reference-market DP policy)"}.get(
        result.kind, ""
    )


@dataclass
class Table:
    """A rendered table: header cells and ``(css class, cells)`` rows."""

    title: str
    header: list[str]
    rows: list[tuple[str, list[str]]]


def market_tables(report: EvaluationReport, market: MarketResult) -> list[Table]:
    """The profit table and the operations table of one market, best policy first."""
    shares = market.optimum is not None and market.optimum > 0
    profit_cols = [c for c in PROFIT_COLUMNS if c[0] != "pct_of_optimum" or shares]
    order = _policy_order(report, market.name)
    tables = []
    for title, cols in (
        ("Profit", profit_cols),
        ("Operations (means per campaign)", OPERATIONS_COLUMNS),
    ):
        rows = []
        if market.optimum is not None and title == "Profit":
            cells = ["" for _ in cols]
            cells[0] = f"{market.optimum:,.1f}"
            if shares:
                cells[[c[0] for c in cols].index("pct_of_optimum")] = "100.0%"
            lot = _optimum_lot(report)
            label = "exact expectation" if lot == 1 else f"expectation on {lot}-unit stock lots"
            rows.append(("optimum", [f"DP optimum ({label})", *cells]))
        for p in order:
            r = market.policies[p]
            cls = "best" if p == market.best_baseline else r.kind
            rows.append((cls, [_label(r), *(_cell(k, f, r, market) for k, _, f in cols)]))
        tables.append(Table(title, ["policy", *(c[1] for c in cols)], rows))
    return tables


def _response_bins(report: EvaluationReport) -> list[ResponseBin] | None:
    """The run's held-out price-response check (``None``: no run, or no held-out period)."""
    if not report.price_response:
        return None
    return [ResponseBin.from_dict(b) for b in report.price_response["bins"]]


def response_section(report: EvaluationReport) -> tuple[Table, str] | None:
    """The learned simulator's price response on the run's held-out periods, and its summary
    sentence (``None``: the report has no run, or the run held out no period)."""
    bins = _response_bins(report)
    if bins is None:
        return None
    header, rows = response_table(bins)
    table = Table(
        "Observed vs simulated lift, by discount (the held-out periods of all the run's items)",
        header,
        [("", r) for r in rows],
    )
    return table, response_summary(bins)


def gap_table(report: EvaluationReport) -> Table:
    """Learned-simulator mean minus reference-market mean, per policy."""
    rows = []
    for p, g in report.gaps.items():
        c = g.comparison
        rows.append(
            (
                "",
                [
                    p,
                    f"{g.learned:,.1f}",
                    f"{g.reference:,.1f}",
                    f"{c.diff:+,.1f}",
                    f"[{c.diff_ci[0]:,.1f}, {c.diff_ci[1]:,.1f}]",
                    _fmt(c.pct, "{:+.1f}%"),
                ],
            )
        )
    header = ["policy", "learned", "reference", "gap", "95% CI", "gap %"]
    return Table("Simulator gap (learned minus reference)", header, rows)


def _optimum_lot(report: EvaluationReport) -> int:
    """Stock step of the DP optimum's grid (1: every unit, exact), from the provenance."""
    optimum = report.provenance.get("optimum")
    return int(optimum.get("stock_lot", 1)) if isinstance(optimum, dict) else 1


def _dp_lines(report: EvaluationReport) -> list[str]:
    """Sentences about the DP optimum row: exact value, MC estimate, whether it is in the CI."""
    ref = report.markets.get("reference")
    left_out = report.provenance.get("optimum")
    if ref is not None and ref.optimum is None and isinstance(left_out, str):
        return [f"No DP optimum: {left_out.removeprefix('left out: ')}."]
    if ref is None or ref.optimum is None:
        return []
    lot = _optimum_lot(report)
    lines = [
        f"Exact DP optimum (expected profit per campaign): {ref.optimum:,.1f}."
        if lot == 1
        else f"DP optimum on a grid of {lot}-unit stock lots (the capacity is too large for "
        f"every unit; an approximation, so % of optimum is not an upper bound) (expected profit "
        f"per campaign): {ref.optimum:,.1f}."
    ]
    if ref.optimum <= 0:
        lines.append(
            "The optimum is not a profit, so no policy is shown as a % of it (a share of a loss "
            "would rank bigger losses higher): compare the mean profits."
        )
    if report.optimum_policy and report.optimum_policy in ref.policies:
        s = ref.policies[report.optimum_policy].stats
        inside = s["ci_low"] <= ref.optimum <= s["ci_high"]
        estimate = (
            f"Monte-Carlo estimate of the DP policy ({report.optimum_policy}): "
            f"{s['mean_profit']:,.1f} [{s['ci_low']:,.1f}, {s['ci_high']:,.1f}]"
        )
        if lot == 1:
            verdict = f"the exact value lies {'inside' if inside else 'OUTSIDE'} the 95% CI"
        else:  # the grid's value is not the policy's: no check
            verdict = f"the grid's value lies {'inside' if inside else 'outside'} it"
        lines.append(f"{estimate}; {verdict}.")
    return lines


def _ordered_verdicts(report: EvaluationReport) -> list[str]:
    """Verdicts per market, agents first, then by mean profit."""
    out = []
    for market in report.markets.values():
        order = _policy_order(report, market.name)
        order.sort(key=lambda p: market.policies[p].kind != "agent")
        out += [market.policies[p].verdict for p in order if market.policies[p].verdict]
    bins = _response_bins(report)
    if bins is not None and "learned" in report.markets:
        if text := caution(bins):  # the learned simulator's verdicts rest on its response
            out.append(f"caution: {text}")
    return out


def _provenance_items(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Flatten nested provenance into ``(dotted key, text)`` rows."""
    if isinstance(value, Mapping):
        rows: list[tuple[str, str]] = []
        for key, sub in value.items():
            rows.extend(_provenance_items(sub, f"{prefix}.{key}" if prefix else str(key)))
        return rows
    if isinstance(value, list | tuple) and len(value) > 12:
        text = json.dumps(jsonable(list(value[:12])))[:-1] + f", ... ({len(value)} items)]"
        return [(prefix, text)]
    text = value if isinstance(value, str) else json.dumps(jsonable(value))
    return [(prefix, text)]


def _summary_line(report: EvaluationReport) -> str:
    return (
        f"{report.episodes} episodes per policy per demand model, seed {report.seed}, common "
        "random numbers (every policy faces the same demand luck); 95% CIs by percentile "
        f"bootstrap ({report.n_resamples} resamples, paired across policies)."
    )


GAP_NOTE = (
    "Learned-simulator mean minus reference-market mean. Positive: the learned simulator "
    "flatters the policy; negative: it underrates it. Paired over episodes with the same "
    "random numbers."
)

DEFINITIONS = (
    "IQM: mean of the middle 50% of episode profits.",
    "vs best baseline: paired difference of mean profit with the highest-earning baseline of "
    "the same market, in % of its mean, with a 95% bootstrap CI.",
    "Sell-through: units sold / (starting stock + units received). Lost-sales rate: unmet "
    "demand / demand (both pooled over episodes).",
    "Avg discount: mean over all periods; depth on sale: mean over the periods on sale.",
    "Reference market: the true demand model (a run's market.json, the market that generated "
    "its simulated history; without a run, the built-in reference market). Learned market: "
    "the run's fitted forecaster as the simulator. Each market's table is simulated in it.",
    "dp-optimum: the exact DP policy of the reference market, the optimum there; in the "
    "learned market it is that same policy replayed, not the learned simulator's optimum.",
    "planner: no training; the exact DP over the learned simulator's expected demand (its "
    "sales no longer than the item's longest in the history), re-planned at each campaign start.",
    "Baselines: no-promotion (never on sale), best-fixed-discount (the best sale depth, every "
    "period), periodic-flash-sale (a sale every 2, 3, 4 or 7 periods at the best depth), "
    "weekend-flash-sale (Saturday and Sunday; daily data), each with its tuned base-stock "
    "order level; random (a random feasible discount and order each period).",
)


def definitions(report: EvaluationReport) -> list[str]:
    """:data:`DEFINITIONS`, and where the baselines were tuned (from the provenance)."""
    tuning = report.provenance.get("tuning") or {}
    where = (
        [
            f"The baselines' depths, periods and stock levels were tuned by simulation in the "
            f"{tuning['market']} market ({tuning.get('episodes', '?')} campaigns per candidate, "
            "other random numbers than the scoring), then scored in every market."
        ]
        if tuning.get("market")
        else []
    )
    return [*DEFINITIONS, *where]


def render_markdown(report: EvaluationReport, plots: Mapping[str, tuple[str, bytes]]) -> str:
    """The report as GitHub-flavoured Markdown (plots linked from ``plots/*.png``)."""

    def md_table(table: Table) -> list[str]:
        lines = [f"### {table.title}", ""]
        lines.append("| " + " | ".join(table.header) + " |")
        lines.append("|---|" + "---:|" * (len(table.header) - 1))
        lines += ["| " + " | ".join(cells) + " |" for _, cells in table.rows]
        return [*lines, ""]

    out = [f"# {report.title}", "", _summary_line(report), ""]
    verdicts = report.verdicts()
    if verdicts:
        out += ["## Verdicts", ""] + [f"- {v}" for v in verdicts] + [""]
    for market in report.markets.values():
        out += [f"## {market.name.capitalize()} market", ""]
        if market.name == "reference":
            for line in _dp_lines(report):
                out += [line, ""]
        for table in market_tables(report, market):
            out += md_table(table)
    if report.gaps:
        out += ["## Simulator gap", "", GAP_NOTE, ""] + md_table(gap_table(report))
    response = response_section(report)
    if response is not None:
        out += [f"## {RESPONSE_TITLE}", "", RESPONSE_NOTE, ""] + md_table(response[0])
        out += [response[1], ""]
    out += ["## Plots", ""]
    for stem, (caption, _) in plots.items():
        out += [f"![{caption}]({PLOTS_DIR}/{stem}.png)", "", f"*{caption}*", ""]
    out += ["## Definitions", ""] + [f"- {d}" for d in definitions(report)] + [""]
    out += ["## Provenance", "", "| key | value |", "|---|---|"]
    for key, text in _provenance_items(report.provenance):
        escaped = text.replace("|", "\\|")
        out.append(f"| {key} | {escaped} |")
    out.append("")
    return "\n".join(out)


CSS = """
body{font-family:"DejaVu Sans","Liberation Sans",Arial,sans-serif;margin:24px auto;
max-width:1150px;color:#1d2330;line-height:1.45;padding:0 16px}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #d9dde5;padding-bottom:.2em;
margin-top:1.6em}h3{font-size:1.05em;margin:1em 0 .3em}.meta{color:#555}
table{border-collapse:collapse;font-size:.86em;margin:.4em 0}
th,td{border-bottom:1px solid #e3e6ec;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#f3f5f9;font-weight:600;white-space:normal;vertical-align:bottom}td:first-child,th:first-child{text-align:left}
tr.best td{background:#eef7ee}tr.optimum td{background:#f6f0fa}tr.agent td{font-weight:600}
.verdicts{background:#f4f8ff;border-left:4px solid #3a6fd8;padding:8px 14px;margin:1em 0}
.verdicts li{margin:.25em 0}.note{color:#555;font-size:.9em}
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #e3e6ec}
figcaption{color:#555;font-size:.9em}
table.prov td{text-align:left;white-space:normal;font-family:monospace;font-size:.95em}
.scroll{overflow-x:auto}
"""


def render_html(report: EvaluationReport, plots: Mapping[str, tuple[str, bytes]]) -> str:
    """The report as one self-contained HTML page (inline CSS and base64 PNGs)."""
    e = html.escape

    def html_table(table: Table) -> list[str]:
        lines = [f"<h3>{e(table.title)}</h3>", '<div class="scroll"><table><thead><tr>']
        lines += [f"<th>{e(h)}</th>" for h in table.header]
        lines.append("</tr></thead><tbody>")
        for cls, cells in table.rows:
            attr = f' class="{e(cls)}"' if cls else ""
            lines.append(f"<tr{attr}>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
        return [*lines, "</tbody></table></div>"]

    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(report.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(report.title)}</h1>",
        f'<p class="meta">{e(_summary_line(report))}</p>',
    ]
    verdicts = report.verdicts()
    if verdicts:
        out.append('<div class="verdicts"><b>Verdicts</b><ul>')
        out += [f"<li>{e(v)}</li>" for v in verdicts]
        out.append("</ul></div>")
    for market in report.markets.values():
        out.append(f"<h2>{e(market.name.capitalize())} market</h2>")
        if market.name == "reference":
            out += [f'<p class="note">{e(line)}</p>' for line in _dp_lines(report)]
        for table in market_tables(report, market):
            out += html_table(table)
    if report.gaps:
        out.append("<h2>Simulator gap</h2>")
        out.append(f'<p class="note">{e(GAP_NOTE)}</p>')
        out += html_table(gap_table(report))
    response = response_section(report)
    if response is not None:
        out.append(f"<h2>{e(RESPONSE_TITLE)}</h2>")
        out.append(f'<p class="note">{e(RESPONSE_NOTE)}</p>')
        out += html_table(response[0])
        out.append(f"<p>{e(response[1])}</p>")
    out.append("<h2>Plots</h2>")
    for stem, (caption, png) in plots.items():
        data = base64.b64encode(png).decode("ascii")
        out.append(
            f'<figure id="{e(stem)}"><img src="data:image/png;base64,{data}" '
            f'alt="{e(caption)}"><figcaption>{e(caption)}</figcaption></figure>'
        )
    out.append('<h2>Definitions</h2><ul class="note">')
    out += [f"<li>{e(d)}</li>" for d in definitions(report)]
    out.append('</ul><h2>Provenance</h2><table class="prov"><tbody>')
    for key, text in _provenance_items(report.provenance):
        out.append(f"<tr><td>{e(key)}</td><td>{e(text)}</td></tr>")
    out.append("</tbody></table></body></html>")
    return "\n".join(out)


def report_json(
    report: EvaluationReport, plots: Mapping[str, tuple[str, bytes]], trajectory_policy: str
) -> str:
    """``report.json``: :meth:`EvaluationReport.to_dict` plus the plotted data."""
    data = report.to_dict()
    m = report.primary_market
    data["plots"] = {stem: f"{PLOTS_DIR}/{stem}.png" for stem in plots}
    data["trajectory"] = {
        "market": m,
        "policy": trajectory_policy,
        **trajectory_table(report.markets[m].policies[trajectory_policy]),
    }
    data["discount_frequencies"] = {
        "market": m,
        "by_policy": {
            p: discount_frequencies(r, report.discounts).tolist()
            for p, r in report.markets[m].policies.items()
        },
    }
    return dumps(data, indent=1)


def check_report_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Refuse a report directory ``write_report`` would not replace; return it as a Path.

    ``out_dir`` may be missing or a directory holding nothing but a previous report
    (:data:`REPORT_FILES` and :data:`PLOTS_DIR`); anything else is a
    :class:`~promogym.errors.PromogymInputError`.
    """
    from promogym.io import check_output_path

    out_dir = Path(out_dir)
    check_output_path(out_dir, directory=True)
    if out_dir.exists():
        stray = sorted(
            p.name for p in out_dir.iterdir() if p.name not in (*REPORT_FILES, PLOTS_DIR)
        )
        if stray:
            raise PromogymInputError(
                f"--out {out_dir}: holds other files ({', '.join(stray[:3])}); "
                "pass a new or report-only directory"
            )
    return out_dir


def write_report(
    report: EvaluationReport,
    out_dir: str | os.PathLike[str],
    training_log: str | os.PathLike[str] | None = None,
    trajectory_policy: str | None = None,
) -> Path:
    """Write ``report.json``, ``report.md``, ``report.html`` and ``plots/`` into ``out_dir``.

    Atomic: everything is written into a temporary sibling directory that is renamed onto
    ``out_dir`` at the end; on any error nothing is left behind. An existing ``out_dir`` is
    replaced only if it holds nothing but a previous report.

    Args:
        report: from :func:`summarise` / :func:`promogym.evaluate.evaluate_policies`.
        out_dir: the report directory.
        training_log: a training log to plot (see :func:`read_training_log`), optional.
        trajectory_policy: policy whose typical campaign is plotted (default: the best
            agent, else the best policy, of the reference market).

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.
    """
    out_dir = check_report_dir(out_dir)
    traj = trajectory_policy or default_trajectory_policy(report)
    if traj not in report.markets[report.primary_market].policies:
        raise PromogymInputError(
            f"trajectory policy {traj!r} was not evaluated in the {report.primary_market} market"
        )
    plots = make_plots(report, training_log, traj)
    with atomic_directory(out_dir) as tmp:
        (tmp / PLOTS_DIR).mkdir()
        for stem, (_, png) in plots.items():
            (tmp / PLOTS_DIR / f"{stem}.png").write_bytes(png)
        (tmp / "report.json").write_text(report_json(report, plots, traj), encoding="utf-8")
        (tmp / "report.md").write_text(render_markdown(report, plots), encoding="utf-8")
        (tmp / "report.html").write_text(render_html(report, plots), encoding="utf-8")
    return out_dir
