"""The learned simulator on Dominick's orange-juice stores: held-out one-step fit, with the
history's promotion rates per discount depth against "every discount is a promotion".

For each store (its 11 brands as one shop, as ``promogym fit`` would see a store's CSV: no
``feat``, no store or brand columns), fit the default forecaster (negative binomial,
fine-tuned from the shipped base) without the refit, so the network is the one that never
saw the held-out last 8 weeks. Then, for every held-out week with a record, ask the
simulator's one-step distribution at the week's own discount (``TransformerForecaster.
_simulator_nb``, what ``one_step`` returns) twice:

- ``rule``: every discount is a promotion (``promo_rates = None``; the simulator until
  2026-12-01);
- ``rates``: a discount is a promotion with the history's rate at that depth (the fitted
  ``promo_rates``, from the weeks before the held-out ones).

Scores: mean negative-binomial log loss of the held-out weeks' units (lower is better; paired
per store), and actual / simulated units per discount bin pooled over stores (1 is right),
also split by whether the chain advertised the week (``feat`` > 0.5, which the store's CSV
does not carry): the history's deep discounts sold far more when advertised.

Example: python benchmarks/bench_simulator_oj.py --stores 20 --out benchmarks/results/bench_simulator_oj.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oj_data import load_oj  # noqa: E402

from promogym.data import CANONICAL_COLUMNS, SalesHistory  # noqa: E402
from promogym.forecasters.likelihood import nb_nll  # noqa: E402
from promogym.forecasters.transformer import (  # noqa: E402
    TransformerConfig,
    TransformerForecaster,
    series_from_frame,
    to_days,
)
from promogym.io import atomic_write_text  # noqa: E402
from promogym.response import BINS, bin_of  # noqa: E402


def store_history(full: SalesHistory, store: str) -> SalesHistory:
    """One store's brands as a shop: the contract's columns only."""
    frame = full.frame[full.frame["store"] == store]
    frame = frame[[c for c in frame.columns if c in CANONICAL_COLUMNS]]
    return SalesHistory(frame.reset_index(drop=True), "W", f"OJ store {store}")


def held_out(
    model: TransformerForecaster, history: SalesHistory, feat: dict[tuple[str, int], float]
) -> dict[str, np.ndarray]:
    """Actual units, discount, ``feat`` (from ``feat[(item, day)]``) and the simulator's NB log
    loss and mean of every held-out week with a record, under ``rule`` and ``rates``."""
    data, _ = series_from_frame(history.frame, history.freq, model.vocab)
    val_end = data.length - int(model.config.validation_periods or 0)
    c = model.context_length
    w = model._validation_windows(data, val_end, range(data.length.shape[0]))
    assert w is not None
    ok = w.observed[:, c]
    past = w.select(slice(None), slice(0, c))
    actual = w.units[ok, c].double()
    items = np.asarray(model.item_ids, dtype=object)[w.item[ok].numpy() - 1]
    days = w.day[ok, c].numpy()
    out = {
        "actual": actual.numpy(),
        "discount": w.discount[ok, c].double().numpy(),
        "feat": np.array([feat[(i, int(d))] for i, d in zip(items, days, strict=True)]),
    }
    rates = model.promo_rates
    for name, value in (("rule", None), ("rates", rates)):
        model.promo_rates = value
        with torch.inference_mode():
            mean, disp = model._simulator_nb(past, w.day[:, c], w.discount[:, c : c + 1])
        out[f"{name}_mean"] = mean[ok, 0].numpy()
        out[f"{name}_nll"] = nb_nll(mean[ok, 0], disp[ok, 0], actual).numpy()
    model.promo_rates = rates
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=20, help="first N stores by number")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--likelihood",
        default="negative_binomial",
        help="the forecaster's likelihood (log_normal: fine-tuned from its own base)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.stores < 1:
        parser.error(f"--stores must be >= 1, got {args.stores}")
    torch.set_num_threads(args.threads)
    full = load_oj()
    stores = sorted(full.frame["store"].unique(), key=int)[: args.stores]
    per_store = []
    pooled: dict[str, list[np.ndarray]] = {}
    started = time.perf_counter()
    for store in stores:
        history = store_history(full, store)
        t = time.perf_counter()
        config = TransformerConfig(seed=args.seed, refit=False, likelihood=args.likelihood)
        model = TransformerForecaster(config)
        model.fit(history)
        frame = full.frame[full.frame["store"] == store]
        days = to_days(frame["date"])
        keys = zip(frame["item_id"], days.tolist(), strict=True)
        feat = dict(zip(keys, frame["feat"], strict=True))
        rows = held_out(model, history, feat)
        for key, value in rows.items():
            pooled.setdefault(key, []).append(value)
        entry = {
            "store": store,
            "weeks": int(len(rows["actual"])),
            "promo_rates": model.promo_rates,
            "nll_rule": float(rows["rule_nll"].mean()),
            "nll_rates": float(rows["rates_nll"].mean()),
            "actual_over_mean_rule": float(rows["actual"].sum() / rows["rule_mean"].sum()),
            "actual_over_mean_rates": float(rows["actual"].sum() / rows["rates_mean"].sum()),
            "seconds": round(time.perf_counter() - t, 1),
        }
        per_store.append(entry)
        print(
            f"store {store:>4}: {entry['weeks']:3d} weeks, log loss rule {entry['nll_rule']:.3f} "
            f"rates {entry['nll_rates']:.3f}, actual / simulated {entry['actual_over_mean_rule']:.2f}"
            f" -> {entry['actual_over_mean_rates']:.2f} ({entry['seconds']} s)",
            flush=True,
        )
    all_rows = {k: np.concatenate(v) for k, v in pooled.items()}
    labels = np.array([bin_of(float(d)) for d in all_rows["discount"]])
    bins = []
    for label, _, _ in BINS:
        sel = labels == label
        if not sel.any():
            continue
        bins.append(
            {
                "bin": label,
                "weeks": int(sel.sum()),
                "actual_over_mean_rule": float(
                    all_rows["actual"][sel].sum() / all_rows["rule_mean"][sel].sum()
                ),
                "actual_over_mean_rates": float(
                    all_rows["actual"][sel].sum() / all_rows["rates_mean"][sel].sum()
                ),
                "nll_rule": float(all_rows["rule_nll"][sel].mean()),
                "nll_rates": float(all_rows["rates_nll"][sel].mean()),
            }
        )
    advertised = all_rows["feat"] > 0.5
    by_feat = []
    for label, _, _ in BINS:
        for ad in (True, False):
            sel = (labels == label) & (advertised == ad)
            if not sel.any():
                continue
            by_feat.append(
                {
                    "bin": label,
                    "advertised": ad,
                    "weeks": int(sel.sum()),
                    "actual_over_mean_rates": float(
                        all_rows["actual"][sel].sum() / all_rows["rates_mean"][sel].sum()
                    ),
                }
            )
    better = sum(s["nll_rates"] < s["nll_rule"] for s in per_store)
    summary = {
        "stores": len(per_store),
        "weeks": int(len(all_rows["actual"])),
        "nll_rule": float(all_rows["rule_nll"].mean()),
        "nll_rates": float(all_rows["rates_nll"].mean()),
        "stores_better_with_rates": better,
        "actual_over_mean_rule": float(all_rows["actual"].sum() / all_rows["rule_mean"].sum()),
        "actual_over_mean_rates": float(all_rows["actual"].sum() / all_rows["rates_mean"].sum()),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    print()
    print(
        "| discount | weeks | actual / simulated, rule | with rates | log loss, rule | with rates |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for b in bins:
        print(
            f"| {b['bin']} | {b['weeks']} | {b['actual_over_mean_rule']:.3f} | "
            f"{b['actual_over_mean_rates']:.3f} | {b['nll_rule']:.3f} | {b['nll_rates']:.3f} |"
        )
    print(
        f"| all | {summary['weeks']} | {summary['actual_over_mean_rule']:.3f} | "
        f"{summary['actual_over_mean_rates']:.3f} | {summary['nll_rule']:.3f} | "
        f"{summary['nll_rates']:.3f} |"
    )
    print(f"\nlog loss lower with the rates in {better} of {len(per_store)} stores")
    print("\nactual / simulated units with rates, by whether the week was advertised (feat):")
    print("| discount | advertised | weeks | actual / simulated |")
    print("|---|---|---:|---:|")
    for b in by_feat:
        print(
            f"| {b['bin']} | {'yes' if b['advertised'] else 'no'} | {b['weeks']} | "
            f"{b['actual_over_mean_rates']:.3f} |"
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "benchmark": "bench_simulator_oj",
            "args": {k: str(v) for k, v in vars(args).items()},
            "machine": {"python": platform.python_version(), "torch": torch.__version__},
            "summary": summary,
            "bins": bins,
            "bins_by_advertising": by_feat,
            "stores": per_store,
        }
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
