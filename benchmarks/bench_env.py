"""FlashSale env throughput: one env vs the batched VecEnv, forecaster-backed, on CPU.

Measures, in one run and with the same torch thread count (default 2):

* env steps per second of ``FlashSaleEnv`` (one campaign, one forecaster call per step) and
  of ``FlashSaleVecEnv`` at N = 64, 256, 1024 (one forecaster call per step for all N), with
  the reference market behind the same env for comparison; each figure is the median of
  ``--repeats`` runs with different seeds (random actions, campaigns auto-restart);
* peak RSS of a fresh process that builds the forecaster-backed VecEnv at N = 1024 and runs
  two campaigns (and the same process's RSS before the env existed);
* PPO training throughput (frames per second) on the forecaster-backed VecEnv vs the same
  PPO on the reference-market VecEnv (same spaces, nearly free to step).

Forecaster: the transformer of :mod:`promogym.forecasters.transformer` at its default
architecture. Its weights are the shipped base (item rows initialised as fine-tuning does)
when ``forecasters/weights/base`` exists, else a seeded random initialisation: throughput does
not depend on the weight values, and the output says which was used. ``--forecaster snaive``
uses the seasonal-naive baseline instead (a stand-in, named as such in the output).

Writes ``benchmarks/results/bench_env.json`` and prints a table.

Example: .venv/bin/python benchmarks/bench_env.py --repeats 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from promogym.config import CampaignConfig
from promogym.data import SalesHistory, history_from_frame
from promogym.envs.demand import DemandModel, MarketDemand
from promogym.envs.flash_sale import FlashSaleEnv
from promogym.envs.forecaster_demand import ForecasterDemand
from promogym.envs.market import default_market
from promogym.envs.vec_env import FlashSaleVecEnv
from promogym.io import atomic_write_text
from promogym.simulate import simulate_history

RESULTS = Path(__file__).resolve().parent / "results" / "bench_env.json"
BATCH_SIZES = (64, 256, 1024)


def shop_history(seed: int = 0) -> SalesHistory:
    """Two years of the 8-item demo shop, as the forecaster's history."""
    frame = simulate_history(default_market(8, seed=0), periods=730, seed=seed)
    return history_from_frame(frame, source="<demo shop>")


def build_forecaster(kind: str, history: SalesHistory) -> tuple[Any, str]:
    """The forecaster behind the env and a description naming exactly what it is."""
    if kind == "snaive":
        from promogym.forecasters.baselines import SeasonalNaive

        return SeasonalNaive().fit(
            history
        ), "seasonal-naive baseline (STAND-IN, not the transformer)"
    from promogym.forecasters import transformer as tf

    model = tf.TransformerForecaster()
    base_dir = tf.BASE_WEIGHTS_DIR
    model.item_ids = history.item_ids
    model.freq = history.freq
    if (base_dir / tf.WEIGHTS_FILE).exists():
        base = tf.TransformerForecaster.load(base_dir)
        model.config = base.config
        model.model = tf.build_network(model.config, len(model.item_ids))
        model._init_from_base(base)
        weights = f"shipped base weights ({base_dir.name})"
    else:
        torch.manual_seed(0)
        model.model = tf.build_network(model.config, len(model.item_ids))
        weights = "random init (no shipped weights yet; speed does not depend on weights)"
    model.model.eval()
    c = model.config
    arch = f"d_model {c.d_model}, {c.encoder_layers}+{c.decoder_layers} layers, context {c.context_length}"
    return model, f"transformer ({arch}; {weights})"


def build_demand(kind: str, history: SalesHistory) -> tuple[DemandModel, str]:
    if kind == "market":
        return MarketDemand(default_market(8, seed=0)), "reference market (ground truth)"
    forecaster, description = build_forecaster(kind, history)
    return ForecasterDemand(forecaster, history), description


def env_kwargs(history: SalesHistory) -> dict[str, Any]:
    # Same spaces for every demand model: the market env starts from the same history windows.
    return {"history": history, "device": "cpu"}


def time_single(demand: DemandModel, history: SalesHistory, steps: int, seed: int) -> float:
    env = FlashSaleEnv(demand, CampaignConfig(), **env_kwargs(history))
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(steps)]
    env.reset(seed=seed)
    env.step(actions[0])  # warm-up
    started = time.perf_counter()
    for action in actions:
        _, _, terminated, _, _ = env.step(action)
        if terminated:
            env.reset()
    return steps / (time.perf_counter() - started)


def time_vec(demand: DemandModel, history: SalesHistory, n: int, steps: int, seed: int) -> float:
    venv = FlashSaleVecEnv(n, demand, CampaignConfig(), **env_kwargs(history))
    rng = np.random.default_rng(seed)
    actions = [rng.integers(0, venv.action_space.nvec, size=(n, 2)) for _ in range(steps)]
    venv.seed(seed)
    venv.reset()
    venv.step(actions[0])  # warm-up
    started = time.perf_counter()
    for action in actions:
        venv.step(action)
    return n * steps / (time.perf_counter() - started)


def ppo_fps(demand: DemandModel, history: SalesHistory, n: int, timesteps: int, seed: int) -> float:
    from stable_baselines3 import PPO

    venv = FlashSaleVecEnv(n, demand, CampaignConfig(), **env_kwargs(history))
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=256, n_epochs=4, seed=seed, device="cpu")
    started = time.perf_counter()
    model.learn(timesteps)
    # SB3 collects whole rollouts (n_steps x n envs), so it may run more steps than asked
    return model.num_timesteps / (time.perf_counter() - started)


def rss_mib(field: str = "VmRSS") -> float:
    """Current (``VmRSS``) or peak (``VmHWM``) resident set size of this process, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # not Linux: peak only


def rss_child(args: argparse.Namespace) -> None:
    """Child process: peak RSS of the forecaster-backed VecEnv at N = ``args.rss``."""
    torch.set_num_threads(args.threads)
    history = shop_history()
    demand, _ = build_demand(args.forecaster, history)
    before = rss_mib()
    venv = FlashSaleVecEnv(args.rss, demand, CampaignConfig(), **env_kwargs(history))
    venv.seed(0)
    venv.reset()
    rng = np.random.default_rng(0)
    for _ in range(2 * CampaignConfig().campaign.horizon):
        venv.step(rng.integers(0, venv.action_space.nvec, size=(args.rss, 2)))
    print(
        json.dumps(
            {
                "rss_before_env_mib": before,
                "rss_after_env_mib": rss_mib(),
                "peak_rss_mib": rss_mib("VmHWM"),
            }
        )
    )


def campaign_profit(model: Any, venv: FlashSaleVecEnv, seed: int) -> np.ndarray:
    """Profit (currency) of one campaign per row under the model's deterministic policy."""
    venv.seed(seed)
    obs = venv.reset()
    total = np.zeros(venv.num_envs)
    while True:
        actions, _ = model.predict(obs, deterministic=True)
        obs, _, dones, infos = venv.step(actions)
        total += [info["profit"] for info in infos]
        if dones.all():
            return total


def obs_ablation(history: SalesHistory, timesteps: int, seeds: int) -> dict[str, Any]:
    """Does the expected-demand-per-discount observation help PPO? (reference market)."""
    from stable_baselines3 import PPO

    demand = MarketDemand(default_market(8, seed=0))
    out: dict[str, Any] = {"timesteps": timesteps, "demand": "reference market", "runs": {}}
    for flag in (True, False):
        profits = []
        for seed in range(seeds):
            kwargs = {**env_kwargs(history), "expected_demand_obs": flag}
            venv = FlashSaleVecEnv(64, demand, CampaignConfig(), **kwargs)
            venv.seed(100 + seed)
            model = PPO("MlpPolicy", venv, n_steps=64, batch_size=256, seed=seed, device="cpu")
            model.learn(timesteps)
            out["timesteps"] = model.num_timesteps  # whole rollouts: at least one of 64 x 64
            evaluation = FlashSaleVecEnv(1024, demand, CampaignConfig(), **kwargs)
            profits.append(float(campaign_profit(model, evaluation, seed=10_000).mean()))
        out["runs"]["with_expected_demand" if flag else "without"] = profits
    return out


def stall_probe_us() -> float:
    """Median time of ``sin`` over 1,500 float64 values at the current thread count (us).

    A few us on an idle machine; milliseconds when the cores are busy with other jobs and
    intra-op threads wait for each other, which then dominates every figure of the run.
    """
    x = torch.rand(1500, dtype=torch.float64)
    times = []
    for _ in range(50):
        started = time.perf_counter()
        x.sin()
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e6)


def median_of(fn, repeats: int) -> dict[str, float]:
    values = [fn(seed) for seed in range(repeats)]
    return {
        "median": float(np.median(values)),
        "min": float(min(values)),
        "max": float(max(values)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--forecaster", choices=["transformer", "snaive"], default="transformer")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single-steps", type=int, default=300)
    parser.add_argument("--vec-steps", type=int, default=30)
    parser.add_argument("--ppo-envs", type=int, default=64)
    parser.add_argument("--ppo-timesteps", type=int, default=16384)
    parser.add_argument("--skip-ppo", action="store_true")
    parser.add_argument(
        "--obs-ablation",
        type=int,
        default=0,
        metavar="TIMESTEPS",
        help="also train PPO with and without the expected-demand features for TIMESTEPS",
    )
    parser.add_argument("--ablation-seeds", type=int, default=2)
    parser.add_argument("--rss", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.rss:
        rss_child(args)
        return
    torch.set_num_threads(args.threads)
    history = shop_history()
    models = {
        "forecaster": build_demand(args.forecaster, history),
        "market": build_demand("market", history),
    }
    results: dict[str, Any] = {
        "forecaster": models["forecaster"][1],
        "threads": args.threads,
        "repeats": args.repeats,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m_at_start": os.getloadavg()[0],
            "stall_probe_us_at_start": stall_probe_us(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "config": "default campaign (horizon 28, 6 discounts x 3 orders, lead time 2)",
        "steps_per_second": {},
    }
    for name, (demand, _) in models.items():
        rows: dict[str, Any] = {}
        rows["single"] = median_of(
            lambda s, d=demand: time_single(d, history, args.single_steps, s), args.repeats
        )
        for n in BATCH_SIZES:
            rows[f"vec_{n}"] = median_of(
                lambda s, n=n, d=demand: time_vec(d, history, n, args.vec_steps, s), args.repeats
            )
        results["steps_per_second"][name] = rows
        print(f"timed {name}", file=sys.stderr)
    child = subprocess.run(
        [
            sys.executable,
            __file__,
            "--rss",
            "1024",
            "--forecaster",
            args.forecaster,
            "--threads",
            str(args.threads),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    results["memory_n1024"] = json.loads(child.stdout.strip().splitlines()[-1])
    if not args.skip_ppo:
        results["ppo"] = {
            "n_envs": args.ppo_envs,
            "timesteps": args.ppo_timesteps,
            "fps": {
                name: ppo_fps(demand, history, args.ppo_envs, args.ppo_timesteps, seed=0)
                for name, (demand, _) in models.items()
            },
        }
        fps = results["ppo"]["fps"]
        results["ppo"]["forecaster_vs_market"] = fps["forecaster"] / fps["market"]
    if args.obs_ablation:
        results["obs_ablation"] = obs_ablation(history, args.obs_ablation, args.ablation_seeds)
    results["machine"]["load_average_1m_at_end"] = os.getloadavg()[0]
    results["machine"]["stall_probe_us_at_end"] = stall_probe_us()
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(format_table(results))


def format_table(results: dict[str, Any]) -> str:
    sps = results["steps_per_second"]
    lines = [
        f"FlashSale env steps/s on CPU, {results['threads']} torch threads "
        f"(median of {results['repeats']} runs)",
        f"forecaster: {results['forecaster']}",
        "",
        f"{'env':<14}{'forecaster':>14}{'x single':>10}{'market':>14}{'x single':>10}",
    ]
    for key in ["single", *[f"vec_{n}" for n in BATCH_SIZES]]:
        f, m = sps["forecaster"][key]["median"], sps["market"][key]["median"]
        fr = f / sps["forecaster"]["single"]["median"]
        mr = m / sps["market"]["single"]["median"]
        label = "single env" if key == "single" else f"VecEnv N={key[4:]}"
        lines.append(f"{label:<14}{f:>14,.0f}{fr:>10.1f}{m:>14,.0f}{mr:>10.1f}")
    mem = results["memory_n1024"]
    lines += [
        "",
        f"peak RSS, process with the forecaster VecEnv N=1024: {mem['peak_rss_mib']:.0f} MiB "
        f"(RSS {mem['rss_before_env_mib']:.0f} MiB before the env, "
        f"{mem['rss_after_env_mib']:.0f} MiB after 2 campaigns)",
    ]
    if "ppo" in results:
        ppo = results["ppo"]
        lines.append(
            f"PPO fps (N={ppo['n_envs']}, {ppo['timesteps']} steps): forecaster "
            f"{ppo['fps']['forecaster']:,.0f} vs market {ppo['fps']['market']:,.0f} "
            f"= {100 * ppo['forecaster_vs_market']:.0f}%"
        )
    if "obs_ablation" in results:
        runs = results["obs_ablation"]["runs"]
        lines.append(
            f"PPO {results['obs_ablation']['timesteps']} steps, mean campaign profit "
            f"(per seed): with expected demand {runs['with_expected_demand']}, "
            f"without {runs['without']}"
        )
    load = results["machine"]
    lines.append(
        f"load average (1 min) at start/end: {load['load_average_1m_at_start']:.1f}/"
        f"{load['load_average_1m_at_end']:.1f} on {load['cpus']} CPUs; stall probe "
        f"(sin of 1,500 float64) {load['stall_probe_us_at_start']:,.0f}/"
        f"{load['stall_probe_us_at_end']:,.0f} us (a few us when idle)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
