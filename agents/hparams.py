"""Default hyper-parameters per algorithm, and how users override them.

The defaults assume the FlashSale VecEnv with ``n_envs = 256`` campaigns of ``horizon = 28``
periods (rewards of order 1 per period: profit / (list price x typical demand)).

============================  =========================  =========================  ===================
key                           ppo                        maskable-ppo               dqn
============================  =========================  =========================  ===================
learning_rate                 3e-4                       3e-4                       2.5e-4
n_steps (per env, rollout)    28 (one campaign)          28                         -
batch_size                    1024                       1024                       256
n_epochs                      20                         20                         -
gamma                         1.0 (finite horizon)       1.0                        0.99
gae_lambda                    0.95                       0.95                       -
clip_range                    0.2                        0.2                        -
ent_coef                      0.003                      0.003                      -
vf_coef                       0.5                        0.5                        -
max_grad_norm                 0.5                        0.5                        10
buffer_size                   -                          -                          200000
learning_starts               -                          -                          10000
train_freq (vec steps)        -                          -                          1
gradient_steps                -                          -                          8
target_update_interval        -                          -                          2000
exploration_fraction          -                          -                          0.3
exploration_final_eps         -                          -                          0.02
net_arch                      [128, 128]                 [128, 128]                 [128, 128]
activation                    tanh                       tanh                       relu
============================  =========================  =========================  ===================

Why: ``gamma = 1`` because a campaign is a finite-horizon problem whose observation carries
the periods left (the optimum maximises undiscounted profit including the terminal salvage);
DQN keeps ``0.99`` because bootstrapping an undiscounted Q-target is unstable. ``n_steps``
is 28, the default campaign's horizon, so each rollout holds whole campaigns of all
``n_envs`` (also for horizons that divide 28; set it to the horizon for others). ``n_epochs = 20``
and ``ent_coef = 0.003`` (instead of SB3's 10 and our first 0.01): PPO trained 300k steps on
the demo shop's true market reached 94.6% of the DP optimum against 91.9% (sku-0, 500
campaigns, se 0.4%); ``learning_rate = 1e-3`` gave no gain (91.6%).

Override from the CLI (``promogym train --set learning_rate=1e-4 --set net_arch=[64,64]``,
values are TOML literals) or from a TOML file (``--hparams file.toml``; a flat table, or a
``[ppo]`` / ``[maskable-ppo]`` / ``[dqn]`` table per algorithm). Unknown keys are errors.
"""

from __future__ import annotations

import copy
import math
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from promogym.errors import ConfigError

ALGOS = ("ppo", "maskable-ppo", "dqn")

_PPO = {
    "learning_rate": 3e-4,
    "n_steps": 28,
    "batch_size": 1024,
    "n_epochs": 20,
    "gamma": 1.0,
    "gae_lambda": 0.95,
    "clip_range": 0.2,
    "ent_coef": 0.003,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "net_arch": [128, 128],
    "activation": "tanh",
}

DEFAULT_HPARAMS: dict[str, dict[str, Any]] = {
    "ppo": dict(_PPO),
    "maskable-ppo": dict(_PPO),
    "dqn": {
        "learning_rate": 2.5e-4,
        "batch_size": 256,
        "gamma": 0.99,
        "max_grad_norm": 10.0,
        "buffer_size": 200_000,
        "learning_starts": 10_000,
        "train_freq": 1,
        "gradient_steps": 8,
        "target_update_interval": 2000,
        "exploration_fraction": 0.3,
        "exploration_final_eps": 0.02,
        "net_arch": [128, 128],
        "activation": "relu",
    },
}
"""The table above, as data: ``DEFAULT_HPARAMS[algo][key]``."""

ACTIVATIONS = ("tanh", "relu")


def check_algo(algo: str) -> str:
    """Return ``algo`` if known, else raise a one-line :class:`ConfigError`."""
    if algo == "planner":
        raise ConfigError(
            "--algo planner: the planner needs no training; every fitted run has it "
            "(promogym recommend --agent planner, promogym evaluate)"
        )
    if algo not in ALGOS:
        raise ConfigError(f"--algo: unknown algorithm {algo!r}; choose one of {list(ALGOS)}")
    return algo


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``--set key=value`` strings; values are TOML literals (bare words are strings).

    >>> parse_set(["learning_rate=1e-4", "net_arch=[64, 64]", "activation=relu"])
    {'learning_rate': 0.0001, 'net_arch': [64, 64], 'activation': 'relu'}
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key or not raw:
            raise ConfigError(
                f"--set: bad entry {item!r}; write KEY=VALUE, e.g. learning_rate=3e-4"
            )
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        out[key] = value
    return out


def load_hparams_file(path: str | Path, algo: str) -> dict[str, Any]:
    """Read overrides for ``algo`` from a TOML file (flat, or one table per algorithm)."""
    from promogym.io import read_toml

    path = Path(path)
    raw = read_toml(path, f"--hparams {path}")
    tables = {k: v for k, v in raw.items() if isinstance(v, dict)}
    unknown_tables = sorted(set(tables) - set(ALGOS))
    if unknown_tables:
        raise ConfigError(
            f"--hparams {path}: unknown table(s) {unknown_tables}; use keys at top level or "
            f"tables named {list(ALGOS)}"
        )
    flat = {k: v for k, v in raw.items() if not isinstance(v, dict)}
    flat.update(tables.get(algo, {}))
    return flat


def resolve_hparams(
    algo: str, *overrides: Mapping[str, Any], source: str = "--set"
) -> dict[str, Any]:
    """Defaults of ``algo`` updated by each mapping in turn; unknown keys, bad types: errors."""
    check_algo(algo)
    params = copy.deepcopy(DEFAULT_HPARAMS[algo])
    for mapping in overrides:
        for key, value in mapping.items():
            if key not in params:
                raise ConfigError(
                    f"{source}: unknown hyper-parameter {key!r} for {algo}; "
                    f"expected one of {sorted(params)}"
                )
            params[key] = _check_value(algo, key, value, params[key], source)
    return params


AT_LEAST_ONE = frozenset(
    {
        "n_steps",
        "batch_size",
        "n_epochs",
        "buffer_size",
        "train_freq",
        "gradient_steps",
        "target_update_interval",
    }
)
"""Integer hyper-parameters that must be >= 1 (0 would train nothing or fail inside SB3)."""
POSITIVE = frozenset({"learning_rate", "clip_range", "max_grad_norm"})
"""Number hyper-parameters that must be > 0."""
FRACTIONS = frozenset({"gamma", "gae_lambda", "exploration_fraction", "exploration_final_eps"})
"""Number hyper-parameters that must lie in [0, 1]."""


def _check_value(algo: str, key: str, value: Any, default: Any, source: str) -> Any:
    where = f"{source}: {algo} {key}"
    if key == "net_arch":
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        ):
            raise ConfigError(f"{where} must be a list of positive integers, got {value!r}")
        return list(value)
    if key == "activation":
        if value not in ACTIVATIONS:
            raise ConfigError(f"{where} must be one of {list(ACTIVATIONS)}, got {value!r}")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        low = 1 if key in AT_LEAST_ONE else 0
        if key == "batch_size" and algo != "dqn":
            low = 2  # PPO normalises advantages over a minibatch
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{where} must be an integer >= {low}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if key in FRACTIONS and not 0 <= value <= 1:
        raise ConfigError(f"{where} must be in [0, 1], got {value!r}")
    if key in POSITIVE and value <= 0:
        raise ConfigError(f"{where} must be > 0, got {value!r}")
    if value < 0:
        raise ConfigError(f"{where} must be a number >= 0, got {value!r}")
    return float(value)
