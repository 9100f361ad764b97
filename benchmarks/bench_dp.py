"""The DP on stock lots against the exact DP: value, simulated profit, solve time and memory.

For a capacity too large for every stock level, :func:`promogym.envs.dp.solve_table` solves
the campaign on a grid of lots (:func:`promogym.envs.dp.dp_lot`). This measures, on the
reference market where the exact DP can still be solved, what a lot grid costs, side by side
in one run:

* the lot grid's value against the exact optimum (``value / exact``),
* the simulated profit of the lot grid's policy (acting at the lot nearest the real stock)
  against the exact policy's, on the same random numbers (``profit / exact profit``),
* the solve time and :func:`~promogym.envs.dp.dp_memory_bytes` relative to the exact DP's.

Cases: the default campaign (capacity 160, orders of 40 and 80) on items ``sku-0`` and
``sku-2`` of the demo market with lots of 2 .. 40 units, and a larger one (capacity 1,200,
orders of 300 and 600, initial stock 450) on the same items with demand scaled up 10x, with
lots of 5 .. 60 units. The last table row is the OJ-sized check: capacity 60,000 with orders
of 5,000 (only on lots; ``dp_lot`` picks the lot).

Writes ``benchmarks/results/bench_dp.json`` and prints a table.

Example: .venv/bin/python benchmarks/bench_dp.py --episodes 2000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from promogym.config import CampaignConfig
from promogym.envs.core import CampaignParams, initial_state
from promogym.envs.demand import MarketDemand
from promogym.envs.dp import DEFAULT_START_DATE, dp_lot, dp_memory_bytes, solve
from promogym.envs.market import ReferenceMarket, day_number, default_market
from promogym.envs.rollout import simulate
from promogym.io import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results" / "bench_dp.json"
START_DAY = day_number(DEFAULT_START_DATE)


def scaled_market(factor: float) -> ReferenceMarket:
    """The demo market with every item's base demand times ``factor``."""
    market = default_market(8, 0)
    params = dataclasses.replace(market.params, base_demand=market.params.base_demand * factor)
    return ReferenceMarket(params, market.freq)


def run_case(
    name: str,
    market: ReferenceMarket,
    config: CampaignConfig,
    item: str,
    lots: list[int],
    episodes: int,
    seed: int,
) -> list[dict[str, Any]]:
    params = CampaignParams.from_config(config)
    start = initial_state(
        params, torch.tensor([market.item_index(item)]), torch.tensor([START_DAY])
    )
    rows: list[dict[str, Any]] = []
    for lot in [1, *lots]:
        began = time.perf_counter()
        sol = solve(market, item, params, START_DAY, lot=lot)
        seconds = time.perf_counter() - began
        out = simulate(
            sol.policy(), MarketDemand(market), params, start, n_episodes=episodes, seed=seed
        )
        profit = out.summary()
        row = {
            "case": name,
            "item": item,
            "lot": lot,
            "levels": int(sol.values.shape[1]),
            "value": sol.expected_profit,
            "mc_profit": profit["mean_profit"],
            "mc_se": profit["se_profit"],
            "solve_seconds": seconds,
            "memory_bytes": dp_memory_bytes(params, lot),
        }
        if lot == 1:
            exact, exact_profits = row, out.profit
        # Same random numbers for every lot: the profit difference has little noise.
        diff = out.profit - exact_profits
        row.update(
            value_ratio=row["value"] / exact["value"],
            profit_ratio=row["mc_profit"] / exact["mc_profit"],
            profit_diff_se=float(np.std(diff, ddof=1) / np.sqrt(len(diff))),
            time_ratio=seconds / exact["solve_seconds"],
            memory_ratio=row["memory_bytes"] / exact["memory_bytes"],
        )
        rows.append(row)
        print(
            f"{name:<14}{item:<7}{lot:>5}{row['levels']:>7}{row['value_ratio']:>10.4f}"
            f"{row['profit_ratio']:>10.4f} +- {1.96 * row['profit_diff_se'] / exact['mc_profit']:.4f}"
            f"{row['time_ratio']:>9.3f}{row['memory_ratio']:>9.4f}",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"{'case':<14}{'item':<7}{'lot':>5}{'levels':>7}{'value/ex':>10}{'profit/ex':>10}"
        f"{'(95%)':>9}{'time/ex':>9}{'mem/ex':>9}"
    )
    rows: list[dict[str, Any]] = []
    default = CampaignConfig()
    for item in ("sku-0", "sku-2"):
        rows += run_case(
            "capacity 160",
            default_market(8, 0),
            default,
            item,
            [2, 4, 10, 20, 40],
            args.episodes,
            args.seed,
        )
    large = default.replace(
        inventory={"capacity": 1200, "initial": 450, "order_quantities": [0, 300, 600]}
    )
    for item in ("sku-0", "sku-2"):
        rows += run_case(
            "capacity 1200",
            scaled_market(10.0),
            large,
            item,
            [5, 10, 20, 60],
            args.episodes,
            args.seed,
        )
    huge = default.replace(
        inventory={"capacity": 60_000, "initial": 15_000, "order_quantities": [0, 5_000]}
    )
    params = CampaignParams.from_config(huge)
    lot = dp_lot(params)
    began = time.perf_counter()
    sol = solve(scaled_market(400.0), "sku-0", params, START_DAY)
    huge_row = {
        "case": "capacity 60000",
        "item": "sku-0",
        "lot": lot,
        "levels": int(sol.values.shape[1]),
        "value": sol.expected_profit,
        "solve_seconds": time.perf_counter() - began,
        "memory_bytes": dp_memory_bytes(params, sol.lot),
        "memory_bytes_every_unit": dp_memory_bytes(params),
    }
    print(
        f"capacity 60000 (demand x400, sku-0): lot {sol.lot}, {huge_row['levels']} levels, "
        f"{huge_row['memory_bytes'] / 2**20:,.0f} MB (every unit: "
        f"{huge_row['memory_bytes_every_unit'] / 2**40:,.1f} TB), "
        f"solved in {huge_row['solve_seconds']:.1f} s"
    )
    record = {
        "benchmark": "bench_dp",
        "episodes": args.episodes,
        "seed": args.seed,
        "threads": args.threads,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "machine": platform.machine(),
        "rows": rows,
        "large": huge_row,
    }
    atomic_write_text(args.out, json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
