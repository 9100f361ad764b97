"""Forecast combination: the weighted quantile average of several forecasters.

``EnsembleForecaster([transformer, lightgbm], weights=(0.4, 0.6))`` fits every member on the
same history; its forecast of an item and period is the weighted average of the members'
means and, level by level, of their quantiles (quantile averaging, "Vincentization": the
combination's quantile function is the weighted mean of the members' quantile functions, so
the levels stay ordered and the combination is no wider than its members where they agree).
Members whose errors differ gain from it: on Dominick's orange juice (validation split,
``benchmarks/bench_oj.py``) the transformer scored 37.8% MAPE, LightGBM 34.1%, and their
0.4 / 0.6 combination 32.5%.

It has no ``sample``: a quantile average fixes each period's distribution, not a joint one
over periods (use a member's ``sample``). Its ``one_step`` (members that all have one, on one
item vocabulary and context length, e.g. transformers fitted with different seeds) is the
negative binomial with the mean and variance of the members' weighted mixture: averaging
seeds averages out their item-level errors in the price response (held-out market,
``benchmarks/bench_forecaster.py --ensemble``).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import reprlib
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import torch

from promogym.data import SalesHistory
from promogym.errors import ConfigError, DataError
from promogym.forecasters.base import (
    DEFAULT_QUANTILES,
    DemandContext,
    Forecaster,
    promo_probability,
)
from promogym.forecasters.likelihood import nb_mixture
from promogym.io import atomic_write_text

ENSEMBLE_FILE = "ensemble.json"
FORMAT = "promogym-ensemble/1"
MEMBER_CLASSES = {
    "TransformerForecaster": "promogym.forecasters.transformer",
    "LightGBMForecaster": "promogym.forecasters.baselines",
    "SeasonalNaive": "promogym.forecasters.baselines",
}
"""Member classes :meth:`EnsembleForecaster.load` can rebuild, and their modules."""


def combine_predictions(frames: Sequence[pd.DataFrame], weights: Sequence[float]) -> pd.DataFrame:
    """Weighted average of prediction frames (``item_id, date, mean, q...``) with the same rows,
    in the same order, and the same columns. ``weights`` are normalised to sum to 1.

    >>> a = pd.DataFrame({"item_id": ["x"], "date": ["2024-01-01"], "mean": [10.0], "q0.5": [8.0]})
    >>> combine_predictions([a, a.assign(mean=20.0, **{"q0.5": 18.0})], [3, 1])[["mean", "q0.5"]]
       mean  q0.5
    0  12.5  10.5
    """
    w = _check_weights(weights, len(frames))
    first = frames[0]
    keys = first[["item_id", "date"]].reset_index(drop=True)
    values = [c for c in first.columns if c not in ("item_id", "date")]
    for k, frame in enumerate(frames[1:], start=1):
        if list(frame.columns) != list(first.columns):
            raise DataError(
                f"ensemble member {k} predicts columns {list(frame.columns)}, member 0 "
                f"{list(first.columns)}; members must be asked for the same quantiles"
            )
        if not frame[["item_id", "date"]].reset_index(drop=True).equals(keys):
            raise DataError(
                f"ensemble member {k} predicts other rows (items x dates) than member 0; "
                "members must forecast the same future frame and horizon"
            )
    stacked = np.stack([f[values].to_numpy(dtype=np.float64) for f in frames])
    # one frame for all value columns: inserting 100 columns one by one fragments the frame
    # (pandas PerformanceWarning on every predict with the 99 quantiles of benchmarks/bench_oj)
    combined = pd.DataFrame(np.tensordot(w, stacked, axes=1), columns=values)
    return pd.concat([keys, combined], axis=1)


def _check_weights(weights: Sequence[float], n: int) -> np.ndarray:
    w = np.asarray([float(x) for x in weights], dtype=np.float64)
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ConfigError(
            f"ensemble weights must be {n} finite numbers >= 0 with a positive sum (one per "
            f"member), got {list(weights)}"
        )
    return w / w.sum()


class EnsembleForecaster(Forecaster):
    """Weighted quantile average of ``members`` (see the module docstring).

    Args:
        members: forecasters following the contract (fitted by :meth:`fit`).
        weights: one weight >= 0 per member (normalised); ``None`` = equal weights.
    """

    name = "ensemble"
    probabilistic = False

    def __init__(self, members: Sequence[Forecaster], weights: Sequence[float] | None = None):
        if not members:
            raise ConfigError("an ensemble needs at least one member forecaster")
        self.members = list(members)
        raw = [1.0] * len(self.members) if weights is None else weights
        self.weights = tuple(float(x) for x in _check_weights(raw, len(self.members)))

    def fit(self, history: SalesHistory) -> Self:
        """Fit every member on ``history``; returns ``self``."""
        for member in self.members:
            member.fit(history)
        return self

    def predict(
        self,
        history: SalesHistory,
        future: pd.DataFrame,
        horizon: int,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
    ) -> pd.DataFrame:
        """The weighted average of the members' means and quantiles (see :class:`Forecaster`)."""
        frames = [m.predict(history, future, horizon, quantiles) for m in self.members]
        return combine_predictions(frames, self.weights)

    def _common(self, attribute: str) -> object:
        values = [getattr(m, attribute, None) for m in self.members]
        if values[0] is None or any(v != values[0] for v in values[1:]):
            raise DataError(  # reprlib: a vocabulary of thousands of items stays one short line
                f"ensemble members differ in {attribute} (or lack it): {reprlib.repr(values)}; "
                "one_step needs members fitted on the same items with the same context length"
            )
        return values[0]

    @property
    def context_length(self) -> int:
        """The members' common context length (for :meth:`one_step` contexts)."""
        return int(self._common("context_length"))  # type: ignore[arg-type]

    @property
    def item_ids(self) -> list[str]:
        """The members' common item vocabulary (for :meth:`one_step` item indices)."""
        return list(self._common("item_ids"))  # type: ignore[call-overload]

    @property
    def vocab(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.item_ids)}

    def one_step(
        self, context: DemandContext, discounts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """NB (mean, dispersion) ``(B, A)`` float64 with the mean and variance of the members'
        weighted mixture (see :meth:`Forecaster.one_step`)."""
        if not getattr(self, "_one_step_checked", False):  # once: the members do not change
            self._common("context_length"), self._common("item_ids")
            self._one_step_checked = True
        return nb_mixture([m.one_step(context, discounts) for m in self.members], self.weights)

    def promo_probability(self, discount: torch.Tensor) -> torch.Tensor:
        """The members' weighted mean promotion probability at ``discount`` (members without
        ``promo_probability``: ``discount > 0``); see ``TransformerForecaster``."""
        return sum(
            w * promo_probability(m, discount)
            for w, m in zip(self.weights, self.members, strict=True)
        )

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Each member in ``member-<k>/`` and ``ensemble.json`` (classes, weights) beside them."""
        classes = [type(member).__name__ for member in self.members]
        unknown = sorted(set(classes) - set(MEMBER_CLASSES))
        if unknown:  # before writing anything
            raise ConfigError(
                f"cannot save ensemble members of class {unknown}; members must be one of "
                f"{sorted(MEMBER_CLASSES)}"
            )
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        entries = []
        for k, (member, cls) in enumerate(zip(self.members, classes, strict=True)):
            member.save(path / f"member-{k}")
            entries.append({"class": cls, "directory": f"member-{k}"})
        meta = {"format": FORMAT, "members": entries, "weights": list(self.weights)}
        atomic_write_text(path / ENSEMBLE_FILE, json.dumps(meta, indent=1) + "\n")

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Self:
        """Read an ensemble written by :meth:`save`."""
        path = Path(directory) / ENSEMBLE_FILE
        if not path.is_file():
            raise DataError(
                f"{directory}: no {ENSEMBLE_FILE}; pass a directory written by "
                "EnsembleForecaster.save()"
            )
        meta = json.loads(path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise DataError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
        members: list[Forecaster] = []
        for entry in meta["members"]:
            module = MEMBER_CLASSES.get(entry["class"])
            if module is None:
                raise DataError(f"{path}: unknown member class {entry['class']!r}")
            member_cls = getattr(importlib.import_module(module), entry["class"])
            members.append(member_cls.load(Path(directory) / entry["directory"]))
        weights = [float(w) for w in meta["weights"]]
        if not all(math.isfinite(w) for w in weights):
            raise DataError(f"{path}: weights must be finite numbers, got {weights}")
        model = cls(members, weights)
        model.weights = tuple(weights)  # as saved (already normalised): exact predictions
        return model
