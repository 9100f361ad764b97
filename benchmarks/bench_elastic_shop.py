"""The simulator's discount response on a shop outside the pre-training family.

The reference markets behind the shipped base (and :mod:`bench_forecaster`'s fidelity test)
have flash-sale effects: a jump when a sale starts, fatigue as it goes on. Many shops have
none: demand follows the price alone. This benchmark draws such a shop, a small weekly one
as an analyst might bring (4 items, 2 years, the last item starting after 40 weeks):

* demand ``mu = base * season * (price / list_price) ** -2.5``, NB with dispersion 10, so the
  true lift at discount ``d`` is ``(1 - d) ** -2.5``: 1.30 / 1.75 / 2.44 / 3.59 at 10-40% off;
* 12 / 10 / 7 / 3% of weeks at 10 / 20 / 30 / 40% off (``promo`` = 1 on exactly those), 40%
  of the other weeks 0-3% below list (price noise, ``promo`` 0);
* a stock drawn per week (1.2-4x the base level, 10% of weeks below it), so deep discounts
  often sell out; 10 weeks dropped (``fill_gaps="missing"``).

Each variant is fitted on each of several draws of the shop (``--shop-seeds``: with 3% of
weeks at 40% off, a draw holds a handful of such weeks, most sold out, so one draw says little)
with the library (``fit_forecaster``), and its ``one_step`` lift ``mean(d) / mean(0)`` is
averaged over every context of the last 52 weeks whose previous week was not on sale (below
5% off), as the environment would start a campaign there. Target, as issue 3's fidelity test:
the average lift within +-10% of the truth at every depth.

Writes ``benchmarks/results/bench_elastic_shop.json`` and prints a table.

Example: .venv/bin/python benchmarks/bench_elastic_shop.py --variants default:0,scratch:0 --shop-seeds 0,1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from promogym.config import CampaignConfig
from promogym.data import SalesHistory, history_from_frame
from promogym.envs.core import CampaignParams, initial_state
from promogym.envs.forecaster_demand import ForecasterDemand
from promogym.errors import ConfigError
from promogym.forecasters.transformer import (
    TransformerConfig,
    base_dirs,
    fit_forecaster,
    weights_record,
)
from promogym.io import atomic_write_text

ELASTICITY = 2.5
LADDER = (0.0, 0.1, 0.2, 0.3, 0.4)
ITEMS = {  # base weekly units, list price, unit cost
    "A-cola": (30, 4.0, 2.0),
    "B-chips": (18, 3.0, 1.4),
    "C-soap": (10, 6.0, 3.5),
    "D-newbar": (14, 2.5, 1.1),
}
VARIANTS = {
    "default": {},
    "scratch": {},
    "no-head": {"price_head": False},
    "log-normal": {"likelihood": "log_normal"},
}


def elastic_shop(seed: int, weeks: int = 104) -> pd.DataFrame:
    """The shop's weekly history (contract columns), drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2023-01-02", periods=weeks, freq="7D")
    rows = []
    for item, (base, list_price, cost) in ITEMS.items():
        for w in range(40 if item == "D-newbar" else 0, weeks):
            date = dates[w]
            season = 1 + 0.3 * np.sin(2 * np.pi * date.day_of_year / 365.25)
            season *= 1.3 if date.month == 12 else 1.0
            u = rng.random()
            d = (
                0.1
                if u < 0.12
                else 0.2
                if u < 0.22
                else 0.3
                if u < 0.29
                else 0.4
                if u < 0.32
                else 0
            )
            noise = rng.uniform(-0.03, 0.0) if d == 0 and rng.random() < 0.4 else 0.0
            price = round(list_price * (1 - d) * (1 + noise), 2)
            mu = base * season * (price / list_price) ** -ELASTICITY
            demand = rng.negative_binomial(10, 10 / (10 + mu))
            low = rng.random() <= 0.1
            stock = int(rng.integers(0, base) if low else rng.integers(int(base * 1.2), base * 4))
            rows.append(
                {
                    "date": date.date().isoformat(),
                    "item_id": item,
                    "units_sold": min(demand, stock),
                    "price": price,
                    "list_price": list_price,
                    "promo": int(d > 0),
                    "stock": stock,
                    "unit_cost": cost,
                }
            )
    frame = pd.DataFrame(rows)
    return frame.drop(rng.choice(frame.index, size=10, replace=False)).reset_index(drop=True)


def average_lifts(model: object, history: SalesHistory) -> tuple[np.ndarray, int]:
    """The model's mean ``one_step`` lift at each :data:`LADDER` depth over the streak-0
    contexts of each item's last 52 weeks, and how many contexts."""
    demand = ForecasterDemand(model, history)  # type: ignore[arg-type]
    windows = demand.windows
    lo, hi = windows.start_range(demand.context_length)
    params = CampaignParams.from_config(CampaignConfig(), device="cpu")
    ladder = torch.tensor(LADDER, dtype=torch.float64)
    items, days = [], []
    for i in range(len(history.item_ids)):
        for k in range(max(int(lo[i]), int(hi[i]) - 52), int(hi[i]) + 1):
            day = windows.day_of(torch.tensor([k]))
            if float(windows.window(torch.tensor([i]), day, 1)["discount"][0, 0]) < 0.05:
                items.append(i)
                days.append(int(day[0]))
    state = initial_state(params, torch.tensor(items), torch.tensor(days))
    mean, _ = demand.distribution(state, demand.initial_memory(state), ladder)
    return (mean / mean[:, :1]).mean(dim=0).numpy(), len(items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variants",
        default="default:0,scratch:0,no-head:0,log-normal:0",
        help=f"comma-separated NAME:SEED, NAME one of {', '.join(VARIANTS)}",
    )
    parser.add_argument(
        "--shop-seeds", default="0,1,2,3,4", help="comma-separated seeds of the shop's draw"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--bases",
        type=Path,
        default=None,
        help="directory laid out as forecasters/weights (base/, base_log_normal/) whose bases "
        "the variants fine-tune (default: the shipped ones)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "bench_elastic_shop.json"
    )
    args = parser.parse_args(argv)
    try:
        bases = base_dirs(args.bases)
    except ConfigError as exc:
        parser.error(f"--bases {exc}")
    torch.set_num_threads(args.threads)
    truth = (1.0 - np.array(LADDER)) ** -ELASTICITY
    print(f"true lift at {LADDER[1:]}: {np.round(truth[1:], 2).tolist()}")
    specs = []
    for spec in args.variants.split(","):
        name, _, seed = spec.partition(":")
        if name not in VARIANTS:
            parser.error(f"--variants: unknown variant {name!r}; use one of {', '.join(VARIANTS)}")
        specs.append((name, int(seed or 0)))
    rows = []
    for shop_seed in [int(x) for x in args.shop_seeds.split(",")]:
        frame = elastic_shop(shop_seed)
        history = history_from_frame(frame, f"<elastic shop {shop_seed}>", fill_gaps="missing")
        deep = int((frame["price"] <= frame["list_price"] * 0.61).sum())
        for name, seed in specs:
            config = dataclasses.replace(TransformerConfig(seed=seed), **VARIANTS[name])
            started = time.perf_counter()
            model = fit_forecaster(
                history, config, from_scratch=name == "scratch", base_dir=bases[config.likelihood]
            )
            lift, contexts = average_lifts(model, history)
            error = lift / truth - 1.0
            rows.append(
                {
                    "shop_seed": shop_seed,
                    "weeks_at_40pct": deep,
                    "variant": name,
                    "seed": seed,
                    "lift": lift[1:].round(4).tolist(),
                    "error": error[1:].round(4).tolist(),
                    "within_10pct": bool(np.all(np.abs(error[1:]) <= 0.10)),
                    "contexts": contexts,
                    "fit_seconds": round(time.perf_counter() - started, 1),
                }
            )
            errors = " / ".join(f"{100 * e:+.1f}" for e in error[1:])
            print(
                f"shop {shop_seed} ({deep} weeks at 40% off) {name:>10} seed {seed}: "
                f"lift {np.round(lift[1:], 2).tolist()}, error % {errors}",
                flush=True,
            )
    summary = {}
    for name, seed in specs:
        errors = np.array([r["error"] for r in rows if (r["variant"], r["seed"]) == (name, seed)])
        summary[f"{name}:{seed}"] = {
            "mean_error": errors.mean(axis=0).round(4).tolist(),
            "mean_abs_error": np.abs(errors).mean(axis=0).round(4).tolist(),
            "shops_within_10pct": int(np.all(np.abs(errors) <= 0.10, axis=1).sum()),
        }
        row = summary[f"{name}:{seed}"]
        print(
            f"{name:>10} seed {seed} over {len(errors)} shops: mean error % "
            + " / ".join(f"{100 * e:+.1f}" for e in row["mean_error"])
            + ", mean |error| % "
            + " / ".join(f"{100 * e:.1f}" for e in row["mean_abs_error"])
            + f", shops within 10% at every depth {row['shops_within_10pct']}"
        )
    results = {
        "machine": {"platform": platform.platform(), "threads": args.threads},
        "bases": {name: weights_record(d) for name, d in bases.items()},
        "ladder": list(LADDER),
        "true_lift": truth.round(4).tolist(),
        "runs": rows,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
