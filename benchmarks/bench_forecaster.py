"""Transformer forecaster: price-response fidelity and one-step batch speed, on CPU.

(a) **Price-response fidelity.** A held-out reference market (drawn with
``random_market_params(8, default_rng(HELD_OUT_SEED))``, a generator stream the pre-training
corpus never uses) is simulated for two years under the behaviour policy; the transformer is
fine-tuned from the shipped base (and, with ``--from-scratch``, also trained from scratch).
For every item and every discount ``d`` on the ladder, the model's lift
``mean(d) / mean(0)`` from :meth:`one_step` is averaged (geometric mean) over contexts in the
last 120 periods whose previous period was not on sale (fatigue streak 0) and compared with
the market's true lift ``mean_demand(d, streak 0) / mean_demand(0, streak 0)``. Target:
|model lift / true lift - 1| <= 10% at every level.

(b) **Batch speed.** ``one_step`` on ``B`` contexts x 6 candidate discounts at B = 1, 64, 256,
1024 at each of ``--threads`` torch thread counts (default 2, then 1): contexts/s, candidate
predictions/s, and the batched/single ratio; also the same work with the candidates expanded
into the batch (``B * A`` contexts, one candidate each), to show what sharing the encoder saves.

Writes ``benchmarks/results/bench_forecaster.json`` and prints a table.

Example: .venv/bin/python benchmarks/bench_forecaster.py --threads 2,1 --from-scratch
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from promogym.config import CampaignConfig
from promogym.data import SalesHistory, history_from_frame
from promogym.envs.market import (
    MAX_STREAK,
    ReferenceMarket,
    day_numbers,
    day_of_year,
    random_market_params,
    weekday,
)
from promogym.errors import PromogymInputError
from promogym.forecasters.base import DemandContext
from promogym.forecasters.ensemble import EnsembleForecaster
from promogym.forecasters.features import promo_run_length
from promogym.forecasters.likelihood import negative_binomial_survival
from promogym.forecasters.transformer import (
    BASE_WEIGHTS_DIR,
    TransformerConfig,
    TransformerForecaster,
    build_network,
    series_from_frame,
    weights_record,
)
from promogym.io import atomic_write_text
from promogym.simulate import simulate_history

RESULTS = Path(__file__).resolve().parent / "results" / "bench_forecaster.json"
HELD_OUT_SEED = 20_261_123
LADDER = CampaignConfig().campaign.discounts
BATCH_SIZES = (1, 64, 256, 1024)


def held_out_history(periods: int = 730, seed: int = 1) -> tuple[ReferenceMarket, SalesHistory]:
    market = ReferenceMarket(random_market_params(8, np.random.default_rng(HELD_OUT_SEED)), "D")
    frame = simulate_history(market, periods, "2024-01-01", seed)
    return market, history_from_frame(frame, source="<held-out market>")


def contexts(
    model: TransformerForecaster | EnsembleForecaster,
    history: SalesHistory,
    last: int,
    streak_zero: bool,
) -> DemandContext:
    """Contexts ending before each of the last ``last`` periods of every item."""
    data, items = series_from_frame(history.frame, history.freq, model.vocab)
    c = model.context_length
    rows = []
    for s in range(len(items)):
        n = int(data.length[s])
        for t in range(max(c, n - last), n):
            if streak_zero and float(data.promo[s, t - 1]) > 0:
                continue
            rows.append((s, t))
    idx = torch.tensor(rows)
    w = data.windows(idx - torch.tensor([0, c]), c)
    return DemandContext(
        past_units=w.units,
        past_observed=w.observed,
        past_discount=w.discount,
        past_promo=w.promo,
        past_day=w.day,
        item=w.item - 1,
        day=data.day[idx[:, 0], idx[:, 1]],
    )


def fidelity(
    model: TransformerForecaster | EnsembleForecaster,
    market: ReferenceMarket,
    history: SalesHistory,
) -> dict[str, Any]:
    ctx = contexts(model, history, last=120, streak_zero=True)
    ladder = torch.tensor(LADDER)
    mean, _ = model.one_step(ctx, ladder)
    log_lift = torch.log(mean / mean[:, :1])
    model_lifts, true_lifts = [], []
    for i, item_id in enumerate(model.item_ids):
        rows = ctx.item == i
        model_lift = torch.exp(log_lift[rows].mean(0))
        m_item = torch.full((len(LADDER),), market.item_index(item_id))
        day = torch.full((len(LADDER),), int(ctx.day[rows][0]))
        true = market.mean_demand(
            m_item, day, ladder.double(), torch.zeros(len(LADDER), dtype=torch.long)
        )
        model_lifts.append(model_lift.numpy())
        true_lifts.append((true / true[0]).numpy())
    return {
        **lift_error_summary(np.stack(model_lifts), np.stack(true_lifts), list(model.item_ids)),
        "contexts": int(ctx.batch_size),
        "validation_metrics": getattr(model, "validation_metrics", {}),
        "fit_seconds": getattr(model, "training", {}).get("seconds"),
        "epochs_run": getattr(model, "training", {}).get("epochs_run"),
    }


def over_seeds(runs: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """Fidelity figures averaged over fits with different ``seeds`` (one run: itself)."""
    if len(runs) == 1:
        return {**runs[0], "seeds": seeds}
    levels = []
    for k, first in enumerate(runs[0]["levels"]):
        at = [r["levels"][k] for r in runs]
        levels.append(
            {
                "discount": first["discount"],
                "mean_abs_error": float(np.mean([lv["mean_abs_error"] for lv in at])),
                "worst_abs_error": float(max(lv["worst_abs_error"] for lv in at)),
                "mean_error": float(np.mean([lv["mean_error"] for lv in at])),
                "items_within_10pct": int(sum(lv["items_within_10pct"] for lv in at)),
                "average_lift_error": float(np.mean([lv["average_lift_error"] for lv in at])),
                "average_lift_worst_abs_error": float(
                    max(abs(lv["average_lift_error"]) for lv in at)
                ),
            }
        )
    return {
        "seeds": seeds,
        "levels": levels,
        "items": runs[0]["items"] * len(runs),
        "contexts": runs[0]["contexts"],
        "share_within_10pct": float(np.mean([r["share_within_10pct"] for r in runs])),
        "share_within_10pct_per_seed": [r["share_within_10pct"] for r in runs],
        "average_lift_within_10pct": all(r["average_lift_within_10pct"] for r in runs),
        "fit_seconds": float(np.mean([r["fit_seconds"] for r in runs])),
        "epochs_run": [r["epochs_run"] for r in runs],
        "validation_metrics": runs[0]["validation_metrics"],
        "per_seed": runs,
    }


def lift_error_summary(
    model_lift: np.ndarray, true_lift: np.ndarray, item_ids: list[str]
) -> dict[str, Any]:
    """Per-level and overall figures of the lift errors ``model_lift / true_lift - 1`` (items x
    ladder levels, level 0 first): per item, and of the items' average lift
    (``average_lift_error``: mean model lift over the items / mean true lift - 1, the error a
    campaign over all of them would see)."""
    err = model_lift / true_lift - 1.0
    average = model_lift.mean(axis=0) / true_lift.mean(axis=0) - 1.0
    levels = []
    for a, d in enumerate(LADDER):
        if d == 0:
            continue
        levels.append(
            {
                "discount": d,
                "mean_abs_error": float(np.abs(err[:, a]).mean()),
                "worst_abs_error": float(np.abs(err[:, a]).max()),
                "mean_error": float(err[:, a].mean()),
                "items_within_10pct": int((np.abs(err[:, a]) <= 0.10).sum()),
                "average_lift_error": float(average[a]),
            }
        )
    return {
        "levels": levels,
        "items": len(item_ids),
        "share_within_10pct": float((np.abs(err[:, 1:]) <= 0.10).mean()),
        "average_lift_within_10pct": bool((np.abs(average[1:]) <= 0.10).all()),
        "per_item_error": {item: err[i, 1:].round(4).tolist() for i, item in enumerate(item_ids)},
    }


def oracle_fidelity(market: ReferenceMarket, history: SalesHistory) -> dict[str, Any]:
    """The same lift errors for the market's **own** parametric family fitted to the history.

    Per item, the exact form of :meth:`ReferenceMarket.mean_demand` (level, weekday profile,
    yearly cosine, elasticity, urgency and its decay with the streak, post-sale dip) and an NB
    dispersion are fitted by maximum likelihood, stock-outs as ``P(Y >= stock)``. No model can
    know more about the market than this, so its errors are the noise floor of the data: what
    two years of behaviour-policy history can tell about each item's discount response.
    """
    frame = history.frame.sort_values(["item_id", "date"])
    ladder = torch.tensor(LADDER, dtype=torch.float64)
    fitted_lifts, true_lifts = [], []
    for item_id in market.item_ids:
        g = frame[frame["item_id"] == item_id]
        fitted = fit_item_family(
            torch.tensor(g["units_sold"].to_numpy(np.float64)),
            torch.tensor(g["discount"].to_numpy(np.float64)).clamp(0.0, 0.99),
            torch.tensor(g["censored"].to_numpy(bool)),
            torch.tensor(day_numbers(g["date"])),
            ladder,
        )
        i = torch.full((len(LADDER),), market.item_index(item_id))
        true = market.mean_demand(i, torch.zeros_like(i), ladder, torch.zeros_like(i))
        fitted_lifts.append(fitted.numpy())
        true_lifts.append((true / true[0]).numpy())
    return lift_error_summary(np.stack(fitted_lifts), np.stack(true_lifts), list(market.item_ids))


def fit_item_family(
    y: torch.Tensor,
    discount: torch.Tensor,
    censored: torch.Tensor,
    day: torch.Tensor,
    ladder: torch.Tensor,
) -> torch.Tensor:
    """Fit one item's reference-market model by NB maximum likelihood; its lift at ``ladder``
    over no discount at fatigue streak 0."""
    on = discount > 0
    # Fatigue streak before each period (the market's next_streak, run over the history).
    run = promo_run_length(on.unsqueeze(0).double())[0].clamp(max=MAX_STREAK)
    streak = torch.cat((run.new_zeros(1), run[:-1])).double()
    dow = weekday(day)
    angle = 2.0 * np.pi * day_of_year(day.double()) / 365.25
    names = ("level", "cos", "sin", "urgency", "decay", "dip", "disp", "elasticity")
    x = {k: torch.zeros(1, dtype=torch.float64) for k in names}
    x["dow"] = torch.zeros(7, dtype=torch.float64)
    x["level"] += float(np.log(max(float(y.mean()), 0.5)))
    x["elasticity"] += 2.0
    x["disp"] += 2.0
    for v in x.values():
        v.requires_grad_(True)
    stockout = censored & (y > 0)
    opt = torch.optim.LBFGS(list(x.values()), max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        lift = 1.0 + torch.exp(x["urgency"]) * torch.sigmoid(x["decay"]) ** streak
        after = torch.where(streak > 0, 1.0 - torch.sigmoid(x["dip"]), torch.ones_like(streak))
        season = 1.0 + x["cos"] * torch.cos(angle) + x["sin"] * torch.sin(angle)
        m = (
            torch.exp(x["level"] + x["dow"][dow])
            * season.clamp_min(1e-3)
            * (1.0 - discount) ** (-x["elasticity"])
            * torch.where(on, lift, after)
        )
        k = torch.exp(x["disp"])
        loss = -torch.distributions.NegativeBinomial(k, logits=torch.log(m / k)).log_prob(y)
        loss = loss[~censored].sum()
        if bool(stockout.any()):
            surv = negative_binomial_survival(
                k.expand_as(m)[stockout], torch.log(m / k)[stockout], y[stockout]
            )
            loss = loss - torch.log(surv).sum()
        loss = loss / len(y)
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    with torch.no_grad():
        jump = torch.where(ladder > 0, 1.0 + torch.exp(x["urgency"]), torch.ones_like(ladder))
        return (1.0 - ladder) ** (-x["elasticity"]) * jump


def speed(model: TransformerForecaster, history: SalesHistory, repeats: int) -> dict[str, Any]:
    pool = contexts(model, history, last=400, streak_zero=False)
    ladder = torch.tensor(LADDER)
    a = len(LADDER)
    out: dict[str, Any] = {}
    for b in BATCH_SIZES:
        idx = torch.arange(b) % pool.batch_size
        ctx = DemandContext(
            **{f.name: getattr(pool, f.name)[idx] for f in dataclasses.fields(pool)}
        )
        expanded = DemandContext(
            **{
                f.name: getattr(ctx, f.name).repeat_interleave(a, dim=0)
                for f in dataclasses.fields(ctx)
            }
        )
        cand = ladder.repeat(b).unsqueeze(1)

        def timed(fn, *args) -> float:
            fn(*args)  # warm-up
            calls, start = 0, time.perf_counter()
            while calls < repeats or time.perf_counter() - start < 1.0:
                fn(*args)
                calls += 1
            return (time.perf_counter() - start) / calls

        shared = timed(model.one_step, ctx, ladder)
        flat = timed(model.one_step, expanded, cand)
        out[str(b)] = {
            "seconds_per_call": shared,
            "contexts_per_s": b / shared,
            "predictions_per_s": b * a / shared,
            "expanded_seconds_per_call": flat,
            "shared_speedup": flat / shared,
        }
    single = out["1"]["predictions_per_s"]
    for b in BATCH_SIZES:
        out[str(b)]["batched_over_single"] = out[str(b)]["predictions_per_s"] / single
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads",
        default="2,1",
        help="Comma-separated torch thread counts for the speed test (first = headline).",
    )
    parser.add_argument("--fit-threads", type=int, default=1, help="Threads for fine-tuning.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--seeds",
        default=None,
        help="Comma-separated fine-tuning seeds for the fidelity test (default: --seed); "
        "figures are averaged over them (one fit is noisy: 40-70%% within 10%% by seed).",
    )
    parser.add_argument("--from-scratch", action="store_true", help="Also train from scratch.")
    parser.add_argument(
        "--ensemble",
        action="store_true",
        help="Also score the EnsembleForecaster of the fine-tuned seeds (equal weights).",
    )
    parser.add_argument("--skip-fidelity", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--base", type=Path, default=BASE_WEIGHTS_DIR, help="Base weights dir.")
    parser.add_argument("--epochs", type=int, default=None, help="Fine-tuning epochs cap.")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override a TransformerConfig training field, e.g. --set learning_rate=5e-4.",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.fit_threads)
    market, history = held_out_history()
    results: dict[str, Any] = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "threads": args.threads,
            "note": "speed at each thread count; on a shared, loaded machine 2 threads can be "
            "far slower than 1 (OpenMP threads wait on a descheduled peer)",
            "fit_threads": args.fit_threads,
            "platform": platform.platform(),
            "torch": torch.__version__,
            "load_avg_1min": os.getloadavg()[0],
        },
        "ladder": list(LADDER),
        "held_out_seed": HELD_OUT_SEED,
    }
    config = TransformerConfig(seed=args.seed)
    if args.epochs is not None:
        config = dataclasses.replace(config, epochs=args.epochs)
    if args.set and args.skip_fidelity:
        parser.error("--set changes the fits; with --skip-fidelity the base's config is timed")
    for item in args.set:
        key, _, value = item.partition("=")
        try:  # a TOML literal: 5e-4, true, [1, 2, 7], "log_normal"
            parsed = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value
        try:
            config = TransformerConfig.from_dict({**config.to_dict(), key: parsed}, "--set")
        except (PromogymInputError, TypeError, ValueError) as exc:
            parser.error(f"--set {item}: {exc}")
    results["config"] = config.to_dict()
    results["base"] = weights_record(args.base)
    if args.skip_fidelity:  # speed only: base weights, item rows initialised as fine-tuning does
        tuned = TransformerForecaster(config, base_dir=args.base)
        base = TransformerForecaster.load(args.base)
        tuned.config = dataclasses.replace(base.config, unknown_items="error")
        tuned.item_ids, tuned.freq = history.item_ids, history.freq
        tuned.model = build_network(tuned.config, len(tuned.item_ids))
        tuned._init_from_base(base)
        tuned.model.eval()
        results["config"] = tuned.config.to_dict()  # what is timed: the base's
    else:
        seeds = [int(x) for x in (args.seeds or str(args.seed)).split(",")]
        tuned_runs, scratch_runs, tuned_models = [], [], []
        for seed in seeds:
            seeded = dataclasses.replace(config, seed=seed)
            tuned = TransformerForecaster(seeded, base_dir=args.base).fit(history)
            tuned_runs.append(fidelity(tuned, market, history))
            tuned_models.append(tuned)
            if args.from_scratch:
                scratch = TransformerForecaster(seeded, from_scratch=True).fit(history)
                scratch_runs.append(fidelity(scratch, market, history))
        results["fidelity_fine_tuned"] = over_seeds(tuned_runs, seeds)
        if args.ensemble:
            ensemble = EnsembleForecaster(tuned_models)
            results["fidelity_seed_ensemble"] = {
                **fidelity(ensemble, market, history),
                "seeds": seeds,
                "fit_seconds": float(sum(r["fit_seconds"] for r in tuned_runs)),
                "epochs_run": [r["epochs_run"] for r in tuned_runs],
            }
        if scratch_runs:
            results["fidelity_from_scratch"] = over_seeds(scratch_runs, seeds)
        results["fidelity_oracle"] = oracle_fidelity(market, history)
    if not args.skip_speed:
        results["speed"] = {}
        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            load = os.getloadavg()[0]
            results["speed"][str(threads)] = {
                "load_avg_1min": load,
                **speed(tuned, history, args.repeats),
            }
    results["machine"]["load_avg_1min_end"] = os.getloadavg()[0]
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")

    for key in (
        "fidelity_fine_tuned",
        "fidelity_seed_ensemble",
        "fidelity_from_scratch",
        "fidelity_oracle",
    ):
        if key not in results:
            continue
        r = results[key]
        if key == "fidelity_oracle":
            print(f"\n{key}: the market's own model family fitted to the same history")
        else:
            print(
                f"\n{key}: seeds {r['seeds']}, {r['items']} held-out item fits, "
                f"{r['contexts']} streak-0 contexts, fit {r['fit_seconds']:.1f} s "
                f"({r['epochs_run']} epochs)"
            )
        print(
            f"{'discount':>8} {'mean |err|':>10} {'worst |err|':>11} {'mean err':>9} "
            f"{'items <=10%':>11} {'average lift err':>16}"
        )
        for lv in r["levels"]:
            print(
                f"{lv['discount']:>8.2f} {lv['mean_abs_error']:>10.1%} "
                f"{lv['worst_abs_error']:>11.1%} {lv['mean_error']:>+9.1%} "
                f"{lv['items_within_10pct']:>6}/{r['items']:<4} {lv['average_lift_error']:>+16.1%}"
            )
        print(f"item x level pairs within 10%: {r['share_within_10pct']:.1%}")
        print(
            "items' average lift within 10% at every level"
            + (" and seed" if len(r.get("seeds", [])) > 1 else "")
            + f": {'yes' if r['average_lift_within_10pct'] else 'no'}"
        )
        if "validation_metrics" in r:
            print(f"validation: {r['validation_metrics']}")
    for threads, table in results.get("speed", {}).items():
        print(
            f"\none_step speed ({threads} thread(s), {len(LADDER)} candidates per context, "
            f"load average {table['load_avg_1min']:.1f} on {os.cpu_count()} CPUs)"
        )
        print(
            f"{'batch':>6} {'ms/call':>8} {'contexts/s':>11} {'preds/s':>10} {'vs single':>9} "
            f"{'shared vs expanded':>18}"
        )
        for b in BATCH_SIZES:
            r = table[str(b)]
            print(
                f"{b:>6} {1000 * r['seconds_per_call']:>8.2f} {r['contexts_per_s']:>11.0f} "
                f"{r['predictions_per_s']:>10.0f} {r['batched_over_single']:>8.1f}x "
                f"{r['shared_speedup']:>17.2f}x"
            )
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
