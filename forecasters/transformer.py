"""The transformer demand forecaster: pretrained base, fine-tuned per shop, probabilistic.

Built on Hugging Face ``transformers.TimeSeriesTransformerForPrediction`` (encoder-decoder,
``distribution_output="negative_binomial"`` with mean scaling by default, or a normal on log
units, see *Likelihood*; lagged values). Per period it sees
the covariates of :mod:`promogym.forecasters.features` (discount, promo, log relative price,
calendar, age, promotion streak, censoring, plus any extra numeric known-future covariates of
the history such as Dominick's ``feat``) as ``past_time_features`` / ``future_time_features``,
and the item as a static categorical embedding.

* **Item vocabulary**: item ``i`` of :attr:`TransformerForecaster.item_ids` uses embedding row
  ``i + 1``; row 0 is the *generic* item that the base model was pretrained with. A fine-tuned
  model starts with every item's row equal to the base's generic row, so fine-tuning starts
  from exactly the base's forecasts.
* **Censoring**: a period whose demand was censored by a stock-out (``censored`` in the
  history, ``past_observed=False`` in a :class:`DemandContext`) is excluded from the scaler
  (``past_observed_mask``), and its value is replaced by the window's observed mean before it
  enters any lag feature, so the model's output does not depend on the units sold in that
  period. In the loss it counts as what it is, "demand was at least the stock": its term is
  ``-log P(Y >= stock)`` (``censored_loss="survival"``, the default), which only ever pushes
  the predicted demand up. Dropping such periods instead (``censored_loss="drop"``) biases
  the learned discount response down, because deep discounts sell out most often and only
  their low-demand draws would remain (on a price-sensitive reference market where 72% of
  the 50%-off periods sold out, the model's lift at 50% off was 25-40% too low).
* **Gaps**: each item's rows are placed on its regular calendar (one period per ``freq`` step
  from its first date); a period without a row is *missing*: unobserved like a censored one
  (out of the scaler and the lags) but with no loss term at all, with its price carried
  forward from the last recorded period, promo 0 and extra covariates carried forward. So
  lags and calendar features always refer to true calendar periods.
* **Extra covariates**: numeric history columns beyond the contract and the categorical ones
  (as :func:`~promogym.forecasters.baselines.extra_numeric_columns`; ``future`` must carry
  them) are appended to the per-period features. Fine-tuning adds their input columns to the
  base with zero weights, so it starts from exactly the base's forecasts.
* **Price response head** (``price_head=True``): the NB head's log mean (log_normal: the
  normal's mean of ``log1p(units)``) gets
  ``elasticity[item] * -log(1 - discount) + jump[item] * promo`` added, two coefficients per
  item row (the generic row is learned in pre-training; fine-tuning starts every item from
  it and trains them like the item embedding). This is the log-log demand model with a
  promotion dummy of retail econometrics, on top of everything the network learns: an
  item's discount response is two numbers learned from all its periods, not something the
  decoder has to rebuild from a 4-wide embedding. Rows start at zero, so adding the head to
  a network starts from exactly its forecasts.
* **Quantiles**: the first forecast period's are the likelihood's exact quantiles; later
  periods' are those of the mixture of the Monte-Carlo paths' distributions
  (``quantile_draws`` cheap draws per path, inverse empirical CDF). After training, the NB
  dispersion is scaled to minimise the validation pinball loss and each quantile level is
  mapped, per forecast period, to the model level that held that share of the validation
  actuals (quantile recalibration): on Dominick's OJ the NB's lower tail was too heavy (1% of
  actuals under its 5% quantile), which pulled the MAPE-optimal point down. Options: separate
  maps for promotion and regular periods (``recalibrate_by_promo``) and early stopping and
  calibration on disjoint items (``split_calibration``).
* **Refit** (``refit``, on by default): early stopping and calibration need held-out
  periods, so the early-stopped network never trained on the last ``validation_periods``
  periods, the ones nearest the forecast. It is then trained again from the same start on
  every period for the chosen number of epochs (as LightGBM refits on the whole history),
  keeping the calibration of the early-stopped network.
* **Likelihood** (``likelihood``): the negative binomial above, or ``"log_normal"``: a normal
  on ``log1p(units)`` (the network reads and predicts log units, std-scaled), whose counts
  are ``round(max(expm1(X), 0))``: draws, quantiles, mean and variance are those of these
  counts, and the loss is their probability (an interval of the normal, which stays bounded
  on runs of zeros). A deal's lift is then multiplicative and
  its median the geometric-mean lift; the NB centres it on the arithmetic mean, which on
  Dominick's OJ overstated the median deal lift (log lift 0.77 predicted vs 0.54 actual).
  :meth:`~TransformerForecaster.one_step` returns the NB with the log-normal's mean and
  variance, so the simulator's contract is the same for both. Each likelihood has its own
  shipped base (:data:`BASE_WEIGHTS_DIRS`); both families live in
  :mod:`promogym.forecasters.likelihood`, so nothing here branches on the name.
* **Context**: :attr:`TransformerForecaster.context_length` periods of history feed every
  forecast: the encoder reads the last ``context_length - max(lags)`` of them and the lag
  features reach back the rest.

>>> cfg = TransformerConfig(context_length=14, lags=(1, 2, 7), d_model=16, heads=2, ffn_dim=16)
>>> cfg.encoder_length
7
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Self

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from transformers import TimeSeriesTransformerConfig, TimeSeriesTransformerForPrediction

from promogym.data import CANONICAL_COLUMNS, SalesHistory, unrecorded
from promogym.errors import ConfigError, DataError
from promogym.forecasters import TRANSFORMER_CONTEXT_LENGTH
from promogym.forecasters.base import (
    DEFAULT_QUANTILES,
    DemandContext,
    Forecaster,
    candidate_discounts,
    check_frequency,
    check_history_columns,
    check_horizon,
    check_n_samples,
    check_one_row_per_period,
    check_quantiles,
    check_seed,
)
from promogym.forecasters.features import (
    NUM_TIME_FEATURES,
    default_promo_rates,
    fit_promo_rates,
    next_period_features,
    promo_rate_bins,
    time_features,
)
from promogym.forecasters.likelihood import (
    LIKELIHOODS,
    MIN_SCALE,
    NEGATIVE_BINOMIAL,
    Likelihood,
    calibrate_dispersion,
    mixture_quantiles,
    nb_mixture,
)
from promogym.io import atomic_write_text, atomic_write_with
from promogym.response import ResponseRows

BASE_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights" / "base"
BASE_WEIGHTS_DIRS = {
    "negative_binomial": BASE_WEIGHTS_DIR,
    "log_normal": BASE_WEIGHTS_DIR.with_name("base_log_normal"),
}
"""The shipped base of each likelihood (``promogym pretrain --likelihood L``)."""
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "promogym-transformer/1"
MIN_RECALIBRATION_POINTS = 50  # validation periods per forecast step needed to recalibrate
PIT_CHUNK = 4096  # validation origins per Monte-Carlo batch of the quantile recalibration

ARCHITECTURE_FIELDS = (
    "context_length",
    "prediction_length",
    "lags",
    "d_model",
    "encoder_layers",
    "decoder_layers",
    "heads",
    "ffn_dim",
    "item_embedding_dim",
)
"""Fields that fix the network's shape; fine-tuning takes them from the base model."""

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TransformerConfig:
    """Architecture and training settings, saved as JSON beside the weights.

    Attributes:
        context_length: periods of history fed to every forecast (encoder window + largest lag).
        prediction_length: decoder periods trained jointly per window (teacher forcing).
        lags: lagged values fed to each period (1 = the previous period).
        d_model, encoder_layers, decoder_layers, heads, ffn_dim: transformer size.
        item_embedding_dim: width of the item embedding.
        dropout: dropout in attention, activations and residuals during training.
        learning_rate, weight_decay: AdamW settings.
        epochs: maximum training epochs (early stopping may end sooner).
        batch_size: windows per optimiser step.
        windows_per_epoch: training windows drawn (without replacement) per epoch.
        validation_periods: last periods of each item held out for early stopping and metrics;
            ``None`` (default): :data:`DEFAULT_VALIDATION_PERIODS` of the data's frequency, 28
            days or 8 weeks (resolved by :meth:`TransformerForecaster.fit`, whose config keeps
            the number). 28 weeks would hold out over half a year of a weekly history and
            needs 74 weeks of it; on five OJ stores (validation split, rounds 0-5) 8 weeks
            scored 44.7% MAPE against 46.4% for 16.
        patience: epochs without validation improvement before stopping. 10: with 4,
            fine-tuning stopped after 5-7 epochs with the base's generic discount
            response still in place (held-out lifts within +-10%: 53.3% vs 63.3%).
        item_learning_rate_scale, item_weight_decay: learning-rate multiplier and weight decay
            of the item embedding (fine-tuning: fast and undecayed, so items can differ).
        num_samples: Monte-Carlo paths for multi-period forecasts.
        quantile_draws: extra NB draws per path and period from the path's own NB distribution
            for the quantiles of periods after the first (cheap: no network pass); the
            quantiles are those of the mixture of the paths' NB distributions, with far less
            Monte-Carlo noise in the tails than the paths' single draws.
        extra_covariates: extra numeric columns used as known-future covariates; ``None`` =
            every numeric column of the history's frame beyond the contract and the
            categorical ones. ``load_history`` keeps none (they are not campaign decisions,
            and the simulator's ``one_step`` has no extra covariates, so a run cannot use
            them); a :class:`~promogym.data.SalesHistory` built in Python with such columns
            (as ``benchmarks/bench_oj.py`` adds ``feat``) uses them in ``predict``.
        group_price_features: add, for each categorical column of the history (e.g. store),
            the item's log price relative to the mean log price of its group in the same
            period (cross-price competition; ``future`` must then hold every item of a group).
            Off by default: the simulator's ``one_step`` has no extra covariates.
        calibrate_dispersion: (NB only) after training, scale the NB dispersion by the factor that
            minimises the validation pinball loss of one-step forecasts (fixes a too wide or too
            narrow predictive distribution; the means are unchanged).
        recalibrate_quantiles: after training, map each quantile level to the model level
            that held that share of the validation actuals, per forecast period (forecasts
            made like :meth:`TransformerForecaster.predict`); fixes a mis-shaped tail (the NB's
            lower tail was too heavy on OJ: 1% of actuals below its 5% quantile). The maps
            rest on the few validation periods: where series share shocks (a chain's weekly
            deals), one period moves every item's map. On OJ they hurt the log-normal, whose
            shape needs no fixing (``bench_oj.py``'s ``TFT_LN_SETTINGS`` turn them off).
        recalibrate_by_promo: recalibrate promotion and regular periods separately (two maps
            per forecast period, each from its own validation periods; a kind with fewer than
            ``MIN_RECALIBRATION_POINTS`` keeps the pooled map). Fixes a promotion lift whose
            size is off where the network did not learn it: on Dominick's OJ the fine-tuned
            model's median deal lift was 1.26x the actual one.
        split_calibration: early-stop on the validation periods of every other item only and
            fit the dispersion scale and the quantile recalibration on the others'. Choosing
            the epoch on the same periods makes them look better than new data, so their
            quantiles came out too narrow (Dominick's OJ: 80% intervals covered 75%). Off by
            default: half the items' validation periods leave early stopping.
        refit: after early stopping and calibration, train the network again from its starting
            weights (the base, or the same random initialisation) on every period, validation
            periods included, for the early-stopped run's number of epochs; the calibration
            maps, dispersion scale and :attr:`~TransformerForecaster.validation_metrics` stay
            those of the early-stopped network. Roughly doubles the training time. Measured:
            Dominick's OJ validation split (rounds 0-5), MAPE 36.95% -> 35.32% (log-normal),
            37.40% -> 36.91% (NB); held-out reference market (``bench_forecaster.py``), lifts
            within +-10% 63.3% -> 66.7% of item x level pairs, 10%-off bias +7.3% -> +2.8%.
        price_head: add the per-item log-linear price response to the NB head (see above).
            Configs saved before it existed load with ``False``.
        likelihood: the head's distribution. ``"negative_binomial"`` (counts, mean scaling) or
            ``"log_normal"``: a normal on ``log1p(units)`` (std scaling of the log values,
            inputs and lags in log units), so a promotion's lift is multiplicative and its
            median is the geometric-mean lift rather than the arithmetic one. Draws and
            quantiles are ``round(expm1(.))`` of the normal's; :meth:`one_step` (the
            simulator) returns the NB with the log-normal's mean and variance. Fine-tuning
            needs a base pretrained with the same likelihood.
        censored_loss: ``"survival"`` (a censored period adds ``-log P(Y >= stock)`` to the
            loss) or ``"drop"`` (censored periods are left out of the loss).
        unknown_items: ``"error"`` (DataError) or ``"generic"`` (use the generic item row) for
            items outside the vocabulary at predict time.
        seed: seeds initialisation, window order, dropout and Monte-Carlo paths.
        device: torch device of the model (``"cpu"``, ``"cuda"``, ``"cuda:1"``, or ``"auto"``,
            the default: CUDA when available, else the CPU). Not kept by :meth:`load`, which
            puts the model where it is asked to, ``"auto"`` by default.
    """

    context_length: int = TRANSFORMER_CONTEXT_LENGTH
    prediction_length: int = 4
    lags: tuple[int, ...] = (1, 2, 3, 7, 14)
    d_model: int = 32
    encoder_layers: int = 2
    decoder_layers: int = 2
    heads: int = 4
    ffn_dim: int = 64
    item_embedding_dim: int = 4
    dropout: float = 0.1
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    epochs: int = 30
    batch_size: int = 64
    windows_per_epoch: int = 4096
    validation_periods: int | None = None
    patience: int = 10
    item_learning_rate_scale: float = 10.0
    item_weight_decay: float = 0.0
    num_samples: int = 64
    quantile_draws: int = 32
    extra_covariates: tuple[str, ...] | None = None
    group_price_features: bool = False
    calibrate_dispersion: bool = True
    recalibrate_quantiles: bool = True
    recalibrate_by_promo: bool = False
    split_calibration: bool = False
    refit: bool = True
    price_head: bool = True
    likelihood: str = "negative_binomial"
    censored_loss: str = "survival"
    unknown_items: str = "error"
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "lags", tuple(int(x) for x in self.lags))
        if self.extra_covariates is not None:
            object.__setattr__(
                self, "extra_covariates", tuple(str(c) for c in self.extra_covariates)
            )
        self.validate()

    @property
    def encoder_length(self) -> int:
        """Periods the encoder attends to (``context_length - max(lags)``)."""
        return self.context_length - max(self.lags)

    def validate(self, source: str = "transformer config") -> None:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"{source}: {key} {why}, got {getattr(self, key)!r}")

        for key in (
            "prediction_length",
            "d_model",
            "encoder_layers",
            "decoder_layers",
            "heads",
            "ffn_dim",
            "item_embedding_dim",
            "epochs",
            "batch_size",
            "windows_per_epoch",
            "num_samples",
            "quantile_draws",
        ):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise bad(key, "must be an integer >= 1")
        if not self.lags or min(self.lags) < 1:
            raise bad("lags", "must be a non-empty list of integers >= 1")
        if self.encoder_length < 1:
            raise bad("context_length", f"must exceed the largest lag ({max(self.lags)})")
        if self.d_model % self.heads:
            raise bad("heads", f"must divide d_model ({self.d_model})")
        if self.validation_periods is not None and not (
            isinstance(self.validation_periods, int)
            and self.validation_periods >= self.prediction_length
        ):
            raise bad(
                "validation_periods",
                f"must be an integer >= prediction_length ({self.prediction_length}) or null",
            )
        if not 0.0 <= self.dropout < 1.0:
            raise bad("dropout", "must be in [0, 1)")
        if self.learning_rate <= 0:
            raise bad("learning_rate", "must be > 0")
        if self.unknown_items not in ("error", "generic"):
            raise bad("unknown_items", "must be 'error' or 'generic'")
        if self.recalibrate_by_promo and not self.recalibrate_quantiles:
            raise ConfigError(
                f"{source}: recalibrate_by_promo=True needs recalibrate_quantiles=True; "
                "set recalibrate_by_promo=False to fit without quantile maps"
            )
        if self.censored_loss not in ("survival", "drop"):
            raise bad("censored_loss", "must be 'survival' or 'drop'")
        if self.likelihood not in LIKELIHOODS:
            raise bad("likelihood", f"must be one of {list(LIKELIHOODS)}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError):
                raise bad("device", "must be cpu, cuda, cuda:N or auto") from None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["lags"] = list(self.lags)
        if self.extra_covariates is not None:
            data["extra_covariates"] = list(self.extra_covariates)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "transformer config") -> Self:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {unknown}; expected some of {sorted(known)}"
            )
        tuples = ("lags", "extra_covariates")
        return cls(**{k: tuple(v) if k in tuples and v is not None else v for k, v in data.items()})


def build_network(
    config: TransformerConfig, n_items: int, n_extra: int = 0
) -> TimeSeriesTransformerForPrediction:
    """The network for ``config``, ``n_items`` items (+ the generic row), ``n_extra`` covariates."""
    lik = LIKELIHOODS[config.likelihood]
    hf_config = TimeSeriesTransformerConfig(
        prediction_length=config.prediction_length,
        context_length=config.encoder_length,
        distribution_output=lik.distribution_output,
        lags_sequence=list(config.lags),
        scaling=lik.scaling,
        minimum_scale=lik.minimum_scale,
        default_scale=MIN_SCALE,  # never fall back to the batch's scale: batch-independent
        num_time_features=NUM_TIME_FEATURES + n_extra,
        num_static_categorical_features=1,
        cardinality=[n_items + 1],
        embedding_dimension=[config.item_embedding_dim],
        d_model=config.d_model,
        encoder_layers=config.encoder_layers,
        decoder_layers=config.decoder_layers,
        encoder_attention_heads=config.heads,
        decoder_attention_heads=config.heads,
        encoder_ffn_dim=config.ffn_dim,
        decoder_ffn_dim=config.ffn_dim,
        dropout=config.dropout,
        attention_dropout=config.dropout,
        activation_dropout=config.dropout,
        encoder_layerdrop=0.0,
        decoder_layerdrop=0.0,
        use_cache=False,
    )
    model = TimeSeriesTransformerForPrediction(hf_config)
    if config.price_head:
        model.price_response = PriceResponse(n_items + 1)
    return model


class PriceResponse(torch.nn.Module):
    """Per-item log-linear price response added to the NB head's log mean (log_normal: to the
    mean of ``log1p(units)``).

    ``weight[row] = (elasticity, jump)``; the term is
    ``elasticity * -log(1 - discount) + jump * promo``, read from the period features of
    :func:`~promogym.forecasters.features.time_features` (``promo`` = feature 1,
    ``log(1 - discount)`` = feature 2). Initialised to zero (no effect).
    """

    def __init__(self, n_rows: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(n_rows, 2))

    def forward(self, feats: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """``(N, K)`` log-mean offsets for features ``(N, K, F)`` of embedding rows ``(N,)``."""
        w = self.weight[item].unsqueeze(1)  # (N, 1, 2)
        return -w[..., 0] * feats[..., 2] + w[..., 1] * feats[..., 1]


def price_offset(
    model: TimeSeriesTransformerForPrediction, feats: torch.Tensor, item: torch.Tensor
) -> torch.Tensor | None:
    """The model's price-response log-mean offset ``(N, K)``, or ``None`` without a head."""
    head = getattr(model, "price_response", None)
    return None if head is None else head(feats, item)


# ---- series and windows ------------------------------------------------------------------------


class _PeriodTensors:
    """What :class:`SeriesData` and :class:`Windows` share: optional fields filled in, ``to``."""

    units: torch.Tensor
    observed: torch.Tensor
    extra: torch.Tensor
    censored: torch.Tensor
    stock: torch.Tensor

    def __post_init__(self) -> None:
        if self.extra is None:
            object.__setattr__(self, "extra", self.units.new_zeros(*self.units.shape, 0))
        if self.censored is None:
            object.__setattr__(self, "censored", torch.zeros_like(self.observed))
        if self.stock is None:
            object.__setattr__(self, "stock", torch.full_like(self.units, math.inf))

    def to(self, device: torch.device | str) -> Self:
        """Every field on ``device``."""
        fields = dataclasses.fields(self)  # type: ignore[arg-type]
        return type(self)(**{f.name: getattr(self, f.name).to(device) for f in fields})


@dataclass(frozen=True)
class SeriesData(_PeriodTensors):
    """``S`` series, left-aligned and right-padded to a common length ``T``.

    ``item`` is the embedding row (0 = generic); ``daily`` 1.0 for daily, 0.0 for weekly;
    ``extra`` the ``(S, T, X)`` extra covariates (``X = 0`` when omitted); ``censored`` marks
    stock-outs (unobserved, ``units`` = the stock; ``None`` -> none), as opposed to missing
    periods (unobserved, not censored); ``stock`` each period's stock (inf where unknown;
    ``None`` -> unknown everywhere).
    """

    units: torch.Tensor  # (S, T) float32
    observed: torch.Tensor  # (S, T) bool
    discount: torch.Tensor  # (S, T) float32
    promo: torch.Tensor  # (S, T) float32
    day: torch.Tensor  # (S, T) long
    item: torch.Tensor  # (S,) long
    daily: torch.Tensor  # (S,) float32
    length: torch.Tensor  # (S,) long
    extra: torch.Tensor = None  # type: ignore[assignment]  # (S, T, X) float32; None -> X = 0
    censored: torch.Tensor = None  # type: ignore[assignment]  # (S, T) bool; None -> all False
    stock: torch.Tensor = None  # type: ignore[assignment]  # (S, T) float32; inf = unknown

    def window_starts(
        self, window: int, first_end: Sequence[int] | torch.Tensor | int, last_end: torch.Tensor
    ) -> torch.Tensor:
        """``(M, 2)`` (series, start) of every window of ``window`` periods ending in
        ``[first_end, last_end]`` (ends exclusive; per series)."""
        rows = []
        first = torch.as_tensor(first_end).expand(self.length.shape[0])
        for s in range(self.length.shape[0]):
            lo = max(int(first[s]), window)
            hi = int(last_end[s])
            if hi >= lo:
                ends = torch.arange(lo, hi + 1)
                rows.append(torch.stack((torch.full_like(ends, s), ends - window), dim=1))
        if not rows:
            return torch.zeros(0, 2, dtype=torch.long)
        return torch.cat(rows)

    def windows(self, index: torch.Tensor, window: int) -> Windows:
        """Gather the windows ``index`` (``(N, 2)`` series, start) of ``window`` periods."""
        s = index[:, 0].to(self.units.device)
        pos = index[:, 1:2].to(self.units.device) + torch.arange(window, device=self.units.device)
        rows = s.unsqueeze(1)
        return Windows(
            units=self.units[rows, pos],
            observed=self.observed[rows, pos],
            discount=self.discount[rows, pos],
            promo=self.promo[rows, pos],
            day=self.day[rows, pos],
            item=self.item[s],
            daily=self.daily[s],
            extra=self.extra[rows, pos],
            censored=self.censored[rows, pos],
            stock=self.stock[rows, pos],
        )


@dataclass(frozen=True)
class Windows(_PeriodTensors):
    """``N`` windows of equal length (same fields as :class:`SeriesData`, no padding)."""

    units: torch.Tensor
    observed: torch.Tensor
    discount: torch.Tensor
    promo: torch.Tensor
    day: torch.Tensor
    item: torch.Tensor
    daily: torch.Tensor
    extra: torch.Tensor = None  # type: ignore[assignment]  # (N, T, X); None -> X = 0
    censored: torch.Tensor = None  # type: ignore[assignment]  # (N, T) bool; None -> all False
    stock: torch.Tensor = None  # type: ignore[assignment]  # (N, T) float32; inf = unknown

    def select(self, rows: torch.Tensor | slice, periods: slice) -> Windows:
        """Rows ``rows`` and periods ``periods`` of every field."""
        return Windows(
            **{
                f.name: getattr(self, f.name)[rows]
                if f.name in ("item", "daily")
                else getattr(self, f.name)[rows, periods]
                for f in dataclasses.fields(self)
            }
        )

    def repeat(self, times: int) -> Windows:
        """Each window repeated ``times`` times in a row (``repeat_interleave``)."""
        return Windows(
            **{
                f.name: getattr(self, f.name).repeat_interleave(times, dim=0)
                for f in dataclasses.fields(self)
            }
        )


def impute_censored(units: torch.Tensor, observed: torch.Tensor, n_past: int) -> torch.Tensor:
    """Replace unobserved values by the rounded observed mean of the first ``n_past`` periods.

    The result does not depend on the units in unobserved periods (0 if none is observed).
    """
    past = observed[:, :n_past]
    kept = torch.where(past, units[:, :n_past], torch.zeros((), dtype=units.dtype))  # NaN-safe
    fill = torch.round(kept.sum(1) / past.to(units.dtype).sum(1).clamp_min(1.0))
    return torch.where(observed, units, fill.unsqueeze(1))


class Encoded(NamedTuple):
    """An encoder pass over ``N`` windows: ``hidden`` ``(N, E, d)``, the scaler's ``loc`` and
    ``scale`` ``(N, 1)``, the static features ``(N, S)`` and the scaled past ``(N, C)``."""

    hidden: torch.Tensor
    loc: torch.Tensor
    scale: torch.Tensor
    static: torch.Tensor
    scaled: torch.Tensor


PERIOD_DAYS = {"D": 1, "W": 7}
# Periods held out for early stopping when TransformerConfig.validation_periods is None.
DEFAULT_VALIDATION_PERIODS = {"D": 28, "W": 8}


def period_days(freq: str) -> int:
    """Days per period of a SalesHistory frequency (``"D"`` or ``"W"``)."""
    if freq not in PERIOD_DAYS:
        raise DataError(f"frequency {freq!r} is not supported; use 'D' or 'W'")
    return PERIOD_DAYS[freq]


def _forward_fill(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Carry each row's last present value forward along axis 1 (``(S, T, ...)``)."""
    t = present.shape[1]
    idx = np.where(present, np.arange(t), 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    return np.take_along_axis(values, idx.reshape(idx.shape + (1,) * (values.ndim - 2)), axis=1)


def series_from_frame(
    frame: pd.DataFrame,
    freq: str,
    vocab: dict[str, int] | None,
    *,
    extra: Sequence[str] = (),
    end_day: np.ndarray | None = None,
) -> tuple[SeriesData, list[str]]:
    """Per-item series of a canonical frame (see :mod:`promogym.data`), on a regular calendar.

    Each item's series runs from its first date, one period per ``freq`` step, to its last
    date (or to ``end_day[i]``, days since 1970-01-01 in ``sorted(item_ids)`` order, if later).
    A period without a row is missing: unobserved, units 0 (imputed later like a censored
    period), discount and ``extra`` carried forward from the last recorded period, promo 0.
    ``vocab`` maps item ids to embedding rows; ``None`` puts every item on the generic row 0.

    >>> f = pd.DataFrame({"item_id": ["a", "a"], "date": pd.to_datetime(["2024-01-01",
    ...     "2024-01-15"]), "units_sold": [3, 5], "price": [1.0, 1.0], "list_price": [1.0, 1.0],
    ...     "discount": [0.0, 0.0], "promo": [0, 0]})
    >>> data, _ = series_from_frame(f, "W", None)
    >>> data.units.tolist(), data.observed.tolist()
    ([[3.0, 0.0, 5.0]], [[True, False, True]])
    """
    extra = tuple(extra)
    check_finite(
        frame, ("units_sold", "price", "list_price", "discount", "promo", *extra), "history"
    )
    step = period_days(freq)
    f = frame.sort_values(["item_id", "date"], kind="stable")
    items = sorted(f["item_id"].unique().tolist())
    s = len(items)
    code = pd.Categorical(f["item_id"], categories=items).codes.astype(np.int64)
    days = to_days(f["date"])
    first = np.full(s, np.iinfo(np.int64).max)
    np.minimum.at(first, code, days)
    last = np.full(s, np.iinfo(np.int64).min)
    np.maximum.at(last, code, days)
    offset = days - first[code]
    if end_day is not None:
        end_day = np.asarray(end_day, dtype=np.int64)
        off_grid = (end_day - first) % step != 0
        if off_grid.any():
            i = int(np.argmax(off_grid))
            raise DataError(
                f"future covariates: item {items[i]!r}: the forecast periods are not on the "
                f"history's {freq} calendar (periods of {step} days from "
                f"{pd.Timestamp(int(first[i]), unit='D').date()})"
            )
        last = np.maximum(last, end_day)
    bad = offset % step != 0
    if bad.any():
        row = f.iloc[int(np.argmax(bad))]
        raise DataError(
            f"history: item {row['item_id']!r} on {pd.Timestamp(row['date']).date()} is off its "
            f"{freq} calendar ({step}-day periods from its first date); align the dates"
        )
    pos = offset // step
    length = (last - first) // step + 1
    t_max = int(length.max()) if s else 0
    present = np.zeros((s, t_max), bool)
    present[code, pos] = True
    if int(present.sum()) != len(f):
        raise DataError("history: an item has two rows for one period; aggregate them first")
    units = np.zeros((s, t_max), np.float32)
    units[code, pos] = f["units_sold"].to_numpy(np.float32)
    observed = np.zeros((s, t_max), bool)
    censored = f["censored"].to_numpy(bool) if "censored" in f else np.zeros(len(f), bool)
    observed[code, pos] = ~censored
    censored_grid = np.zeros((s, t_max), bool)
    censored_grid[code, pos] = censored & ~unrecorded(f)  # no record: a gap, not a stock-out
    stock_grid = np.full((s, t_max), np.inf, np.float32)
    if "stock" in f:
        stock = f["stock"].to_numpy(np.float64)
        stock_grid[code, pos] = np.where(np.isnan(stock), np.inf, stock)
    discount = np.zeros((s, t_max), np.float32)
    discount[code, pos] = np.clip(f["discount"].to_numpy(np.float32), 0.0, 0.99)
    promo = np.zeros((s, t_max), np.float32)
    promo[code, pos] = f["promo"].to_numpy(np.float32)
    extras = np.zeros((s, t_max, len(extra)), np.float32)
    if extra:
        extras[code, pos] = f[list(extra)].to_numpy(np.float32)
    day = first[:, None] + step * np.arange(t_max, dtype=np.int64)[None, :]
    rows = [0 if vocab is None else vocab[item] + 1 for item in items]
    data = SeriesData(
        units=torch.from_numpy(units),
        observed=torch.from_numpy(observed),
        discount=torch.from_numpy(_forward_fill(discount, present)),
        promo=torch.from_numpy(promo),
        day=torch.from_numpy(day),
        item=torch.tensor(rows, dtype=torch.long),
        daily=torch.full((s,), 1.0 if freq == "D" else 0.0),
        length=torch.from_numpy(length),
        extra=torch.from_numpy(_forward_fill(extras, present)),
        censored=torch.from_numpy(censored_grid),
        stock=torch.from_numpy(stock_grid),
    )
    return data, items


FLOAT_FIELDS = ("units", "discount", "promo", "extra", "stock")


def resolve_extra_columns(
    history: SalesHistory, requested: Sequence[str] | None
) -> tuple[str, ...]:
    """The extra covariates to use: ``requested``, or (``None``) every numeric column of the
    history beyond the contract and the categorical ones (as LightGBM picks them)."""
    frame = history.frame
    if requested is None:
        skip = set(CANONICAL_COLUMNS) | set(history.categorical)
        return tuple(
            c for c in frame.columns if c not in skip and pd.api.types.is_numeric_dtype(frame[c])
        )
    for c in requested:
        if c not in frame or not pd.api.types.is_numeric_dtype(frame[c]):
            raise ConfigError(
                f"transformer config: extra_covariates names {c!r}, which is not a numeric "
                f"column of {history.source} (load_history keeps no extra numeric column: "
                "the simulator has no future values for one); numeric columns: "
                f"{[x for x in frame.columns if pd.api.types.is_numeric_dtype(frame[x])]}"
            )
    return tuple(requested)


def observed_targets(
    data: SeriesData, index: torch.Tensor, window: int, n_future: int
) -> torch.Tensor:
    """The windows of ``index`` (``(M, 2)`` series, start; ``window`` periods) whose last
    ``n_future`` periods are not all missing (observed or censored: something to learn)."""
    if index.shape[0] == 0:
        return index
    w = data.windows(index, window)
    targets = (w.observed | w.censored)[:, window - n_future :]
    return index[targets.any(dim=1).cpu()]


def to_days(dates: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Calendar days since 1970-01-01 (int64)."""
    return np.asarray(pd.to_datetime(dates).to_numpy().astype("datetime64[D]").astype(np.int64))


def check_finite(frame: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    """DataError naming the first NaN/inf in ``columns`` (item and date)."""
    for col in columns:
        if col not in frame:
            continue
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            row = frame.iloc[int(np.argmax(bad))]
            raise DataError(
                f"{source}: column {col!r} has a missing or non-finite value for item "
                f"{row.get('item_id')!r} on {pd.Timestamp(row.get('date')).date()}; "
                "fill or drop it before forecasting"
            )


# ---- the forecaster -----------------------------------------------------------------------------


class TransformerForecaster(Forecaster):
    """Probabilistic, price-aware demand forecaster (see the module docstring).

    Build with a config, then :meth:`fit` (fine-tunes the shipped base of the config's
    likelihood, or ``base_dir``, unless ``from_scratch=True``), or :meth:`load` a saved one.

    Attributes:
        config: the :class:`TransformerConfig`.
        item_ids: the item vocabulary (embedding row ``i + 1`` for ``item_ids[i]``).
        extra_columns: the extra covariates it was fitted with (``future`` must carry those
            that are not group prices).
        group_columns: the categorical columns whose group-relative price is a covariate.
        dispersion_scale: the validation-calibrated factor on the NB dispersion (1 for the
            log-normal likelihood, whose spread the quantile recalibration alone adjusts).
        recalibration: per forecast period (up to ``prediction_length``), the model levels
            serving the nominal :data:`RECALIBRATION_LEVELS` (empty: none).
        promo_recalibration: ``[regular, promotion]`` maps like :attr:`recalibration`, used
            by the promo flag of the forecast period (empty: the pooled map serves all).
        freq: ``"D"`` or ``"W"``, the frequency of the data it was fitted on.
        validation_metrics: one-step metrics on the held-out last periods (``nll``, ``mape``
            of the median, ``pinball`` averaged over q = 0.1, 0.5, 0.9, ``coverage80``).
        training: how training went (epochs run, best epoch, losses, seconds, base used).
        promo_rates: how often the history's periods were promotions, per depth bin (no
            discount, 0-5%, 5-15%, ..., 45%+; :func:`~.features.fit_promo_rates`, from the
            periods before the validation ones, then with ``config.refit`` from every period). The simulator (:meth:`one_step`) treats a
            candidate discount as a promotion with that probability: a shop that ran deals
            on a third of its 20%-off weeks gets the mixture of the two forecasts, not a deal
            on every one. ``None`` (a base, or a model saved before): every discount is one.
        held_out_response: the simulator's one-step means on the held-out last periods at
            their own discount and at none, beside what sold (:mod:`promogym.response` turns
            them into the price-response check); set by :meth:`fit` before the refit, not
            saved (``None`` after :meth:`load`).
    """

    name = "transformer"
    probabilistic = True

    def __init__(
        self,
        config: TransformerConfig | None = None,
        *,
        from_scratch: bool = False,
        base_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.config = config or TransformerConfig()
        self.from_scratch = from_scratch
        self.base_dir = (
            Path(base_dir) if base_dir is not None else BASE_WEIGHTS_DIRS[self.config.likelihood]
        )
        self.item_ids: list[str] = []
        self.freq = "D"
        self.extra_columns: tuple[str, ...] = ()
        self.group_columns: tuple[str, ...] = ()
        self.dispersion_scale = 1.0
        self.recalibration: list[list[float]] = []
        self.promo_recalibration: list[list[list[float]]] = []
        self.validation_metrics: dict[str, float] = {}
        self.training: dict[str, Any] = {}
        self.held_out_response: ResponseRows | None = None
        self.promo_rates: list[float] | None = None
        self.model: TimeSeriesTransformerForPrediction | None = None

    # ---- properties -----------------------------------------------------------------------
    @property
    def likelihood(self) -> Likelihood:
        """The predictive family of ``config.likelihood`` (:mod:`.likelihood`)."""
        return LIKELIHOODS[self.config.likelihood]

    @property
    def context_length(self) -> int:
        """Periods of history each forecast needs (``DemandContext`` width)."""
        return self.config.context_length

    @property
    def device(self) -> torch.device:
        from promogym.envs.flash_sale import resolve_device

        return resolve_device(self.config.device)

    @property
    def vocab(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.item_ids)}

    def _network(self) -> TimeSeriesTransformerForPrediction:
        if self.model is None:
            raise RuntimeError("the transformer forecaster is not fitted: call fit() or load()")
        return self.model

    # ---- fitting ----------------------------------------------------------------------------
    def fit(self, history: SalesHistory, progress: Progress | None = None) -> Self:
        """Fine-tune the base (or train from scratch) on ``history``; returns ``self``.

        The last ``validation_periods`` periods of each item are held out: they drive early
        stopping (teacher-forced NLL), the one-step :attr:`validation_metrics` and the
        calibration. With ``config.refit`` the network is then trained again on every period,
        those included (see :class:`TransformerConfig`).
        """
        started = time.perf_counter()
        self.freq = history.freq
        self.item_ids = history.item_ids
        base_info = "scratch"
        if not self.from_scratch:
            base = TransformerForecaster.load(self.base_dir, device=self.config.device)
            if base.config.likelihood != self.config.likelihood:
                raise ConfigError(
                    f"{self.base_dir}: the base was pretrained with likelihood "
                    f"{base.config.likelihood!r}, this fit asks for {self.config.likelihood!r}; "
                    "pretrain a base with that likelihood (promogym pretrain --likelihood) or "
                    "train from scratch"
                )
            arch = {f: getattr(base.config, f) for f in ARCHITECTURE_FIELDS}
            self.config = dataclasses.replace(self.config, **arch)
            base_info = str(self.base_dir)
        if self.config.validation_periods is None:
            periods = DEFAULT_VALIDATION_PERIODS[history.freq]
            self.config = dataclasses.replace(self.config, validation_periods=periods)
        cfg = self.config
        assert cfg.validation_periods is not None
        self.dispersion_scale = 1.0
        self.recalibration = []
        self.promo_recalibration = []
        self.group_columns = history.categorical if cfg.group_price_features else ()
        frame = with_group_prices(history.frame, self.group_columns)
        self.extra_columns = resolve_extra_columns(history, cfg.extra_covariates) + tuple(
            group_price_column(c) for c in self.group_columns
        )
        data, _ = series_from_frame(frame, history.freq, self.vocab, extra=self.extra_columns)
        window = cfg.context_length + cfg.prediction_length
        need = window + cfg.validation_periods
        if int(data.length.max()) < need:
            raise DataError(
                f"{history.source}: history too short: the transformer needs at least {need} "
                f"periods for one item (context_length {cfg.context_length} + prediction_length "
                f"{cfg.prediction_length} + validation_periods {cfg.validation_periods}), the "
                f"longest item has {int(data.length.max())}; give a longer history (or, from Python, "
                "smaller TransformerConfig settings)"
            )
        torch.manual_seed(cfg.seed)
        self.model = build_network(cfg, len(self.item_ids), len(self.extra_columns))
        if not self.from_scratch:
            self._init_from_base(base)
        self.model.to(self.device)
        start = copy.deepcopy(self.model.state_dict()) if cfg.refit else None
        data = data.to(self.device)
        val_end = data.length - cfg.validation_periods
        p = cfg.prediction_length
        train_idx = observed_targets(data, data.window_starts(window, window, val_end), window, p)
        val_idx = observed_targets(
            data, data.window_starts(window, val_end + p, data.length), window, p
        )
        calibration = list(range(data.length.shape[0]))
        if cfg.split_calibration and len(calibration) > 1:
            calibration = calibration[1::2]
            val_idx = val_idx[val_idx[:, 0] % 2 == 0]
        log = train_network(self.model, data, train_idx, val_idx, cfg, progress)
        one_step = self._validation_one_step(data, val_end, calibration)
        if cfg.calibrate_dispersion and self.likelihood.has_dispersion and one_step is not None:
            first, second, sold, stock, _ = one_step
            self.dispersion_scale = calibrate_dispersion(first, second, sold, stock)
        self.validation_metrics = {}
        if one_step is not None:
            first, second, sold, _, observed = one_step  # metrics: the periods not sold out
            self.validation_metrics = validation_metrics(
                first[observed],
                self._dispersed(second[observed]),
                sold[observed],
                likelihood=self.likelihood,
            )
        present = data.observed | data.censored  # not a gap (nor padding)
        before = torch.arange(data.units.shape[1], device=data.units.device) < val_end[:, None]
        self.promo_rates = fit_promo_rates(
            data.discount[present & before], data.promo[present & before]
        )
        self.held_out_response = self._held_out_response(data, val_end)
        pits = (
            self._validation_pits(data, val_end, calibration) if cfg.recalibrate_quantiles else None
        )
        if pits is not None:
            pit, promo = pits
            self.recalibration = recalibration_maps(pit)
            if cfg.recalibrate_by_promo and self.recalibration:
                self.promo_recalibration = [
                    recalibration_maps(pit.masked_fill(promo != kind, math.nan), self.recalibration)
                    for kind in (False, True)
                ]
        if start is not None and log["best_epoch"] >= 0:
            self.model.load_state_dict(start)
            every = observed_targets(
                data, data.window_starts(window, window, data.length), window, p
            )
            again = dataclasses.replace(cfg, epochs=log["best_epoch"] + 1)
            refit_progress = None if progress is None else (lambda m: progress(f"refit {m}"))
            refit_log = train_network(self.model, data, every, every[:0], again, refit_progress)
            log["refit_epochs"] = refit_log["epochs_run"]
            log["refit_losses"] = [e["train"] for e in refit_log["losses"]]
            # like the network, the rates of the refitted simulator see every period
            self.promo_rates = fit_promo_rates(data.discount[present], data.promo[present])
        self.training = {
            **log,
            "dispersion_scale": self.dispersion_scale,
            "base": base_info,
            "seconds": round(time.perf_counter() - started, 2),
        }
        return self

    def _init_from_base(self, base: TransformerForecaster) -> None:
        """Copy the base's weights into the network on :attr:`device`; every item row starts
        as the base's generic row.

        Extra covariates beyond the base's are the last input features: their input weights
        start at zero, so the fine-tuned model starts from exactly the base's forecasts.
        """
        model = self._network()
        state = dict(base._network().state_dict())
        key = "model.embedder.embedders.0.weight"
        generic = state[key][0]
        state[key] = generic.unsqueeze(0).repeat(len(self.item_ids) + 1, 1)
        own = model.state_dict()
        head = "price_response.weight"
        if head in own:  # every item row starts as the base's generic row (zero if it has none)
            generic_head = state[head][0] if head in state else torch.zeros(own[head].shape[1])
            state[head] = generic_head.unsqueeze(0).repeat(own[head].shape[0], 1)
        else:
            state.pop(head, None)
        for part in ("encoder", "decoder"):
            key = f"model.{part}.value_embedding.value_projection.weight"
            weight = torch.zeros_like(own[key])
            weight[:, : state[key].shape[1]] = state[key]
            state[key] = weight
        model.load_state_dict(state, strict=True)
        model.to(self.device)  # callers may build the network on the CPU

    def _validation_one_step(
        self, data: SeriesData, val_end: torch.Tensor, series: Sequence[int]
    ) -> tuple[torch.Tensor, ...] | None:
        """One-step :meth:`_params`, units sold and stock (inf: unknown) of every validation
        period of ``series`` with a sale record, observed or sold out, and which were
        observed. Called by :meth:`fit` before the dispersion is calibrated, so the NB
        dispersion is the network's own (:attr:`dispersion_scale` is 1)."""
        c = self.config.context_length
        w = self._validation_windows(data, val_end, series)
        if w is None:
            return None
        ok = w.observed[:, c] | w.censored[:, c]
        past = w.select(slice(None), slice(0, c))
        with torch.inference_mode():
            # The recorded promo flag: data whose promo is not "discount > 0" (OJ's deals,
            # priced against a running maximum) would otherwise be validated on other inputs
            # than it was trained on.
            mean, disp = self._one_step_windows(
                past, w.day[:, c], w.discount[:, c : c + 1], w.extra[:, c], w.promo[:, c : c + 1]
            )
        return (
            mean[ok, 0],
            disp[ok, 0],
            w.units[ok, c].to(torch.float64),
            w.stock[ok, c].to(torch.float64),
            w.observed[ok, c],
        )

    def _validation_windows(
        self, data: SeriesData, val_end: torch.Tensor, series: Sequence[int]
    ) -> Windows | None:
        """Windows of ``context_length + 1`` periods ending in each validation period of
        ``series`` (the last period is the one predicted); ``None`` if none is observed."""
        c = self.config.context_length
        rows = [
            (s, t - c) for s in series for t in range(max(int(val_end[s]), c), int(data.length[s]))
        ]
        if not rows:
            return None
        w = data.windows(torch.tensor(rows, dtype=torch.long), c + 1)
        return w if bool(w.observed[:, c].any()) else None

    def _held_out_response(self, data: SeriesData, val_end: torch.Tensor) -> ResponseRows | None:
        """The simulator's one-step mean at each validation period's own discount and at no
        discount, and its dispersion at the period's discount, beside what sold
        (:mod:`promogym.response`), from the simulator's inputs (:meth:`_simulator_nb`; not the
        period's recorded promo flag). Periods that sold out are kept (``actual`` = the stock);
        missing periods are not. ``None`` if no validation period is observed."""
        c = self.config.context_length
        w = self._validation_windows(data, val_end, range(data.length.shape[0]))
        if w is None:
            return None
        ok = w.observed[:, c] | w.censored[:, c]
        discount = w.discount[:, c]
        candidates = torch.stack((discount, torch.zeros_like(discount)), dim=1)
        with torch.inference_mode():
            mean, disp = self._simulator_nb(
                w.select(slice(None), slice(0, c)), w.day[:, c], candidates, w.extra[:, c]
            )
        names = np.asarray(self.item_ids, dtype=object)[w.item[ok].cpu().numpy() - 1]
        return ResponseRows(
            item=names,
            discount=discount[ok].double().cpu().numpy(),
            actual=w.units[ok, c].double().cpu().numpy(),
            mean=mean[ok, 0].double().cpu().numpy(),
            mean_regular=mean[ok, 1].double().cpu().numpy(),
            day=w.day[ok, c].cpu().numpy(),
            dispersion=disp[ok, 0].double().cpu().numpy(),
        )

    def _dispersed(self, second: torch.Tensor) -> torch.Tensor:
        """``second`` times :attr:`dispersion_scale` for a family with a dispersion."""
        return second * self.dispersion_scale if self.likelihood.has_dispersion else second

    # ---- the network's pieces -------------------------------------------------------------
    def _encode(self, past: Windows) -> Encoded:
        """Encoder pass over ``past`` (length ``context_length``)."""
        net = self._network().model
        c = self.config.context_length
        values = self.likelihood.model_values(impute_censored(past.units, past.observed, c))
        feats = time_features(
            past.discount, past.promo, past.day, past.observed, past.daily, c, past.extra
        )
        inputs, loc, scale, static = net.create_network_inputs(
            past_values=values,
            past_time_features=feats,
            static_categorical_features=past.item.unsqueeze(1),
            past_observed_mask=past.observed.to(values.dtype),
        )
        hidden = net.encoder(inputs_embeds=inputs).last_hidden_state
        return Encoded(hidden, loc, scale, static, (values - loc) / scale)

    def _params(
        self, hidden: torch.Tensor, enc: Encoded, feats: torch.Tensor, item: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictive parameters, float64, from decoder states ``(N, K, d)`` of windows encoded
        as ``enc``; ``feats`` ``(N, K, F)`` the periods' features and ``item`` ``(N,)`` the
        embedding rows (for the price-response head).

        ``negative_binomial``: (mean, dispersion x :attr:`dispersion_scale`) in units;
        ``log_normal``: (mu, sigma) of ``log1p(units)`` (:meth:`Likelihood.params`).
        """
        first, second = self._network().parameter_projection(hidden)
        offset = price_offset(self._network(), feats, item)
        first, second = self.likelihood.params(enc.loc, enc.scale, first, second, offset)
        return first, self._dispersed(second)

    def _one_step_windows(
        self,
        past: Windows,
        day: torch.Tensor,
        discounts: torch.Tensor,
        next_extra: torch.Tensor | None = None,
        next_promo: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One-step :meth:`_params` ``(N, A)`` for each window and candidate discount.

        ``next_extra`` ``(N, X)``: the extra covariates of the predicted period; ``next_promo``
        ``(N, A)`` its promo flags (default ``discount > 0``, see :func:`next_period_features`).

        The encoder runs once per window; the ``A`` candidates are ``A`` decoder tokens that
        share its keys/values and attend only to themselves (a diagonal self-attention mask),
        which equals ``A`` separate one-step decodes.
        """
        net = self._network().model
        decoder = net.decoder
        n, a = discounts.shape
        enc = self._encode(past)
        lagged = net.get_lagged_subsequences(sequence=enc.scaled, subsequences_length=1, shift=1)
        future = next_period_features(
            past.promo, past.observed, day, discounts, past.daily, next_extra, next_promo
        )
        dec_in = torch.cat(
            (
                lagged.reshape(n, 1, -1).expand(n, a, -1),
                enc.static.unsqueeze(1).expand(n, a, -1),
                future,
            ),
            dim=-1,
        )
        h = decoder.value_embedding(dec_in)
        first = torch.tensor([self.config.encoder_length], device=h.device)
        h = decoder.layernorm_embedding(h + decoder.embed_positions(h.shape, position_ids=first))
        mask = None
        if a > 1:
            eye = torch.eye(a, dtype=torch.bool, device=h.device)
            mask = torch.zeros(a, a, dtype=h.dtype, device=h.device)
            mask = mask.masked_fill(~eye, torch.finfo(h.dtype).min).view(1, 1, a, a)
        for layer in decoder.layers:
            h = layer(
                h,
                mask,
                enc.hidden,
                encoder_attention_mask=None,
                use_cache=False,
            )
        return self._params(h, enc, future, past.item)

    def _decode_last(
        self, enc: Encoded, scaled_seq: torch.Tensor, future_feats: torch.Tensor, item: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hugging Face decoder over ``k`` future tokens; :meth:`_params` of the last one ``(N,)``.

        ``scaled_seq`` is the scaled past plus the ``k - 1`` future values already drawn;
        ``future_feats`` the ``(N, k, F)`` features of the ``k`` future periods; ``item`` the
        ``(N,)`` embedding rows.
        """
        net = self._network().model
        k = future_feats.shape[1]
        lagged = net.get_lagged_subsequences(sequence=scaled_seq, subsequences_length=k, shift=1)
        dec_in = torch.cat(
            (
                lagged.reshape(lagged.shape[0], k, -1),
                enc.static.unsqueeze(1).expand(-1, k, -1),
                future_feats,
            ),
            dim=-1,
        )
        out = net.decoder(inputs_embeds=dec_in, encoder_hidden_states=enc.hidden, use_cache=False)
        first, second = self._params(out.last_hidden_state[:, -1:], enc, future_feats[:, -1:], item)
        return first[:, 0], second[:, 0]

    # ---- simulator face ---------------------------------------------------------------------
    def _simulator_nb(
        self,
        past: Windows,
        day: torch.Tensor,
        discounts: torch.Tensor,
        next_extra: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """NB (mean, dispersion) ``(N, A)`` of the next period at each candidate discount, as
        the simulator sees it: a candidate is a promotion with the history's probability at
        its depth, :attr:`promo_rates` (the NB with the mean and variance of the mixture over
        promotion or not), or without them when ``discount > 0``. Rates that are that rule
        (a history whose promotions are its discounts) take the one-pass path."""
        rates = self.promo_rates
        if rates is None or rates == default_promo_rates():
            return self.likelihood.as_nb(*self._one_step_windows(past, day, discounts, next_extra))
        a = discounts.shape[1]
        both = torch.cat((discounts, discounts), dim=1)
        promo = torch.cat((torch.ones_like(discounts), torch.zeros_like(discounts)), dim=1)
        mean, disp = self.likelihood.as_nb(
            *self._one_step_windows(past, day, both, next_extra, promo)
        )
        p = self.promo_probability(discounts).to(mean.device)
        on, off = (mean[:, :a], disp[:, :a]), (mean[:, a:], disp[:, a:])
        mixed = nb_mixture([on, off], [p, 1.0 - p])
        # a sure promotion (or none) is that NB exactly
        return tuple(  # type: ignore[return-value]
            torch.where(p >= 1.0, x_on, torch.where(p <= 0.0, x_off, x_mix))
            for x_on, x_off, x_mix in zip(on, off, mixed, strict=True)
        )

    def item_rows(self, item: torch.Tensor) -> torch.Tensor:
        """Embedding rows of vocabulary indices (``-1`` = unknown item -> the generic row)."""
        n = len(self.item_ids)
        if item.numel() and (int(item.min()) < -1 or int(item.max()) >= n):
            raise DataError(
                f"one_step: item index out of range [-1, {n - 1}] (vocabulary of {n} items); "
                "use -1 for an item the forecaster was not fitted on"
            )
        return item.long() + 1

    def promo_probability(self, discount: torch.Tensor) -> torch.Tensor:
        """Probability (float64, same shape) that the simulator's period at ``discount`` is a
        promotion: :attr:`promo_rates` of its depth bin, or ``discount > 0`` without rates.
        The environment records it as the period's promo flag (its expected value)."""
        if self.promo_rates is None:
            return (discount > 0).to(torch.float64)
        rates = torch.tensor(self.promo_rates, dtype=torch.float64, device=discount.device)
        return rates[promo_rate_bins(discount)]

    @torch.inference_mode()
    def one_step(
        self, context: DemandContext, discounts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """NB (mean, dispersion), each ``(B, A)`` float64, for every context and candidate
        (``log_normal``: the NB with the predictive log-normal's mean and variance).

        ``context`` holds :attr:`context_length` past periods; ``discounts`` is ``(A,)`` or
        ``(B, A)``. One encoder pass per context, shared by its candidates; no Python loop
        over items. Item ``-1`` means an item outside the vocabulary (generic embedding).
        Runs on the forecaster's :attr:`device` and returns on ``context``'s (an environment
        on another device than its forecaster works, at the cost of the copies).
        """
        if self._network().training:
            self._network().eval()
        b = context.batch_size
        c = self.config.context_length
        if self.extra_columns:
            raise DataError(
                f"one_step: the forecaster was fitted with extra covariates "
                f"{list(self.extra_columns)}, which a DemandContext does not carry; refit it "
                "with TransformerConfig(extra_covariates=()) for the simulator"
            )
        if context.past_units.shape[1] != c:
            raise DataError(
                f"one_step: context has {context.past_units.shape[1]} past periods, the "
                f"forecaster needs exactly context_length = {c}"
            )
        dev = self.device
        discounts = candidate_discounts(discounts, b).to(dev, torch.float32)
        daily = torch.full((b,), 1.0 if self.freq == "D" else 0.0, device=dev)
        past = Windows(
            units=context.past_units.to(dev, torch.float32),
            observed=context.past_observed.to(dev, torch.bool),
            discount=context.past_discount.to(dev, torch.float32),
            promo=context.past_promo.to(dev, torch.float32),
            day=context.past_day.to(dev, torch.long),
            item=self.item_rows(context.item.to(dev)),
            daily=daily,
        )
        mean, disp = self._simulator_nb(past, context.day.to(dev, torch.long), discounts)
        return mean.to(context.device), disp.to(context.device)

    # ---- analyst face -----------------------------------------------------------------------
    def _prepare(
        self, history: SalesHistory, future: pd.DataFrame, horizon: int
    ) -> tuple[list[str], Windows, Windows, list[pd.DatetimeIndex]]:
        """Past windows ``(N, context_length)`` and future covariates ``(N, horizon)``.

        The past is each item's regular calendar (gaps = unobserved periods) up to the period
        before its first forecast period, so a history that ends early gets missing periods
        at its end rather than being read as adjacent to the forecast. An item's forecast
        periods are its first ``horizon`` rows of ``future`` after its last history date, and
        must be consecutive; a future that starts later than the period after the history
        leaves the periods between as missing ones (Dominick's stores have such gaps).
        """
        self._network()
        c = self.config.context_length
        check_frequency(history, self.freq, "the transformer")
        step = period_days(history.freq)
        group_cols = {group_price_column(g) for g in self.group_columns}
        given = [x for x in self.extra_columns if x not in group_cols]
        check_history_columns(history, given, "the transformer")
        for col in ("item_id", "date", "price", *given):
            if col not in future:
                raise DataError(
                    f"future covariates: missing column {col!r} (need item_id, date, price"
                    + "".join(f", {x}" for x in given)
                    + ")"
                )
        future = future.copy()
        future["item_id"] = future["item_id"].astype(str)
        future["date"] = pd.to_datetime(future["date"])
        check_finite(future, ("price", "list_price", "promo", *given), "future covariates")
        if self.group_columns:
            groups = history.frame.groupby("item_id")[list(self.group_columns)].last()
            future = with_group_prices(future, self.group_columns, groups)
        items = sorted(future["item_id"].unique().tolist())
        vocab = self.vocab
        if self.config.unknown_items == "error":
            unknown = [i for i in items if i not in vocab]
            if unknown:
                raise DataError(
                    f"predict: unknown item {unknown[0]!r}: the forecaster was fitted on "
                    f"{len(vocab)} items ({', '.join(self.item_ids[:5])}...); refit with it"
                )
        check_one_row_per_period(future, "future covariates")
        frame = with_group_prices(history.frame, self.group_columns)
        frame = frame[frame["item_id"].isin(items)]
        last_date = frame.groupby("item_id")["date"].max().reindex(items)
        if last_date.isna().any():
            item = last_date.index[int(np.argmax(last_date.isna().to_numpy()))]
            raise DataError(
                f"{history.source}: item {item!r} has 0 periods of history, the transformer "
                f"needs at least context_length = {c}"
            )
        fut = future[future["date"] > future["item_id"].map(last_date)]
        fut = fut.sort_values(["item_id", "date"], kind="stable")
        fut = fut[fut.groupby("item_id").cumcount() < horizon]
        counts = fut.groupby("item_id").size().reindex(items, fill_value=0)
        if (counts < horizon).any():
            item = counts.index[int(np.argmax((counts < horizon).to_numpy()))]
            raise DataError(
                f"future covariates: item {item!r} has {int(counts[item])} periods after the "
                f"history ends ({last_date[item].date()}), horizon is {horizon}"
            )
        fut_days = to_days(fut["date"]).reshape(len(items), horizon)
        if (np.diff(fut_days, axis=1) != step).any():
            item = items[int(np.argmax((np.diff(fut_days, axis=1) != step).any(axis=1)))]
            raise DataError(
                f"future covariates: item {item!r}: the {horizon} forecast dates are not "
                f"consecutive {history.freq} periods"
            )
        end_day = fut_days[:, 0] - step
        cutoff = pd.Series(end_day - (c - 1) * step, index=items)
        recent = frame[to_days(frame["date"]) >= frame["item_id"].map(cutoff).to_numpy()]
        check_finite(
            recent,
            ("units_sold", "price", "list_price", "discount", "promo", *self.extra_columns),
            history.source,
        )
        data, _ = series_from_frame(
            frame, history.freq, None, extra=self.extra_columns, end_day=end_day
        )
        gap = torch.from_numpy((end_day - to_days(last_date)) // step)  # periods without rows
        short = data.length - gap < c
        if bool(short.any()):
            i = int(torch.nonzero(short)[0])
            raise DataError(
                f"{history.source}: item {items[i]!r} has {int(data.length[i] - gap[i])} periods "
                f"of history, the transformer needs at least context_length = {c}"
            )
        rows = torch.tensor([vocab[i] + 1 if i in vocab else 0 for i in items], dtype=torch.long)
        index = torch.stack((torch.arange(len(items)), data.length - c), dim=1)
        past = dataclasses.replace(data.windows(index, c), item=rows)
        blind = ~(past.observed | past.censored).any(dim=1)
        if bool(blind.any()):
            i = int(torch.nonzero(blind)[0])
            raise DataError(
                f"future covariates: item {items[i]!r}: the forecast starts "
                f"{pd.Timestamp(int(fut_days[i, 0]), unit='D').date()}, after {int(gap[i])} "
                f"periods without rows since its history ends ({last_date[items[i]].date()}), "
                "so none of the "
                f"{c} periods the forecaster reads before it has a sale recorded; forecast from "
                "the period after the history (a longer horizon reaches later dates)"
            )
        list_price = (
            fut["list_price"].to_numpy(np.float64)
            if "list_price" in fut
            else np.repeat(
                frame.groupby("item_id")["list_price"].last().reindex(items), horizon
            ).to_numpy(np.float64)
        )
        price = fut["price"].to_numpy(np.float64)
        for column, values in (("price", price), ("list_price", list_price)):
            if (values <= 0).any():
                i = int(np.argmax(values <= 0))
                raise DataError(
                    f"future covariates: item {fut['item_id'].iloc[i]!r}, "
                    f"{fut['date'].iloc[i].date()}: column {column!r} is {values[i]!r}; give a "
                    "finite number > 0"
                )
        # As every forecaster (forecasters.baselines.future_covariates): a price above the
        # list price is a new regular price, not a negative discount.
        list_price = np.maximum(list_price, price)
        discount = np.clip(1.0 - price / list_price, 0.0, 0.99)
        if "promo" in fut:
            promo = fut["promo"].to_numpy(np.float64)
        else:  # the flag the history most often had at that depth (no rates: discount > 0)
            chance = self.promo_probability(torch.from_numpy(discount)).numpy()
            promo = (chance >= 0.5).astype(np.float64)
        shape = (len(items), horizon)
        n_extra = len(self.extra_columns)
        future_windows = Windows(
            units=torch.zeros(shape),
            observed=torch.ones(shape, dtype=torch.bool),
            discount=torch.tensor(discount.reshape(shape)),
            promo=torch.tensor(promo.reshape(shape)),
            day=torch.from_numpy(fut_days),
            item=rows,
            daily=data.daily,
            extra=torch.tensor(fut[list(self.extra_columns)].to_numpy(np.float64)).reshape(
                *shape, n_extra
            ),
        )
        dates = [pd.DatetimeIndex(d) for d in fut["date"].to_numpy().reshape(shape)]
        past = past.to(self.device)
        future_windows = Windows(
            **{
                f.name: getattr(future_windows, f.name).to(
                    self.device, torch.float32 if f.name in FLOAT_FIELDS else None
                )
                for f in dataclasses.fields(future_windows)
            }
        )
        return items, past, future_windows, dates

    @torch.inference_mode()
    def _paths(
        self, past: Windows, fut: Windows, horizon: int, n_samples: int, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Monte-Carlo paths: ``(samples, first, second)``, each ``(N, S, H)``.

        ``first``/``second`` are the :meth:`_params` of each path's period given the path's
        earlier draws; the first period's are the exact one-step distribution (same in every
        path).
        """
        if self._network().training:
            self._network().eval()
        cfg, lik = self.config, self.likelihood
        c, p = cfg.context_length, cfg.prediction_length
        n, s = past.units.shape[0], n_samples
        gen = torch.Generator(device=self.device).manual_seed(seed)
        units = impute_censored(past.units, past.observed, c)
        seq = Windows(
            **{
                f.name: getattr(past, f.name)
                if f.name in ("item", "daily")
                else torch.cat((getattr(past, f.name), getattr(fut, f.name)), 1)
                for f in dataclasses.fields(past)
            }
        )
        seq = dataclasses.replace(seq, units=torch.cat((units, fut.units.to(units.dtype)), 1))
        samples = torch.zeros(n * s, horizon, dtype=torch.float64, device=units.device)
        means = torch.zeros_like(samples)
        disps = torch.zeros_like(samples)
        for h0 in range(0, horizon, p):
            k = min(p, horizon - h0)
            if h0 == 0:
                enc = Encoded(*(x.repeat_interleave(s, dim=0) for x in self._encode(past)))
                block = seq.repeat(s).select(slice(None), slice(0, c + k))
            else:
                block = seq.repeat(s).select(slice(None), slice(h0, h0 + c + k))
                drawn_units = torch.cat(
                    (units.repeat_interleave(s, dim=0), samples[:, :h0].to(units.dtype)), 1
                )[:, h0 : h0 + c]
                window = dataclasses.replace(
                    block.select(slice(None), slice(0, c)), units=drawn_units
                )
                enc = self._encode(window)
            feats = time_features(
                block.discount, block.promo, block.day, block.observed, block.daily, c, block.extra
            )[:, c:]
            drawn = enc.scaled
            for j in range(k):
                first, second = self._decode_last(enc, drawn, feats[:, : j + 1], block.item)
                draw = lik.sample(first, second, gen)
                samples[:, h0 + j], means[:, h0 + j], disps[:, h0 + j] = draw, first, second
                value = lik.model_values(draw.to(enc.scaled.dtype)).unsqueeze(1)
                drawn = torch.cat((drawn, (value - enc.loc) / enc.scale), 1)
        shaped = tuple(x.view(n, s, horizon) for x in (samples, means, disps))
        return shaped  # type: ignore[return-value]

    def predict(
        self,
        history: SalesHistory,
        future: pd.DataFrame,
        horizon: int,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
    ) -> pd.DataFrame:
        """Mean and quantiles per item and period (see :class:`Forecaster`).

        The first period is exact (the predictive distribution's mean and quantiles). Later
        periods use ``num_samples`` Monte-Carlo paths: the mean averages the paths' means; the
        quantiles are those of the mixture of the paths' distributions, estimated from
        ``quantile_draws`` draws per path (inverse empirical CDF, the same definition as the
        exact first period).
        With a :attr:`recalibration` map, quantile ``q`` of period ``h`` is the model's
        quantile at the level that held a share ``q`` of the validation actuals at ``h``.
        """
        horizon = check_horizon(horizon)
        qs = check_quantiles(quantiles)
        items, past, fut, dates = self._prepare(history, future, horizon)
        cfg = self.config
        n_samples = 1 if horizon == 1 else cfg.num_samples
        _, means, disps = self._paths(past, fut, horizon, n_samples, cfg.seed)
        mean = self.likelihood.mean(means, disps).mean(dim=1)
        out = {
            "item_id": np.repeat(items, horizon),
            "date": np.concatenate([d.to_numpy() for d in dates]),
            "mean": mean.cpu().numpy().ravel(),
        }
        if self.promo_recalibration:
            regular, promo = (
                self._quantile_values(self.model_levels(qs, horizon, maps), means, disps)
                for maps in self.promo_recalibration
            )
            values = torch.where((fut.promo[:, :horizon] > 0.5).cpu(), promo, regular)
        else:
            values = self._quantile_values(self.model_levels(qs, horizon), means, disps)
        for i, q in enumerate(qs):
            out[f"q{q:g}"] = values[i].numpy().ravel()
        return pd.DataFrame(out)

    def _quantile_values(
        self, levels: torch.Tensor, means: torch.Tensor, disps: torch.Tensor
    ) -> torch.Tensor:
        """``(Q, N, H)`` quantiles at model ``levels`` ``(Q, H)`` of the paths' :meth:`_params`
        ``(N, S, H)``: exact for the first period, the paths' mixture after it."""
        q, (n, _, horizon) = levels.shape[0], means.shape
        lik = self.likelihood
        values = torch.zeros(q, n, horizon, dtype=torch.float64)
        for i in range(q):
            values[i, :, 0] = lik.quantile(
                float(levels[i, 0]), means[:, 0, 0], disps[:, 0, 0]
            ).cpu()
        if horizon > 1:
            gen = torch.Generator(device=self.device).manual_seed(self.config.seed + 1)
            values[:, :, 1:] = mixture_quantiles(
                levels[:, 1:],
                means[:, :, 1:],
                disps[:, :, 1:],
                self.config.quantile_draws,
                gen,
                likelihood=lik,
            ).cpu()
        return values

    def model_levels(
        self, quantiles: Sequence[float], horizon: int, maps: list[list[float]] | None = None
    ) -> torch.Tensor:
        """``(Q, horizon)`` levels of the model's distribution that serve as ``quantiles``
        (recalibrated per period by ``maps``, default :attr:`recalibration`; periods past the
        maps use the last one)."""
        q = np.asarray(quantiles, dtype=np.float64)
        maps = self.recalibration if maps is None else maps
        if not maps:
            return torch.tensor(np.repeat(q[:, None], horizon, axis=1))
        steps = [np.interp(q, (0.0, *RECALIBRATION_LEVELS, 1.0), (0.0, *m, 1.0)) for m in maps]
        cols = [steps[min(h, len(steps) - 1)] for h in range(horizon)]
        return torch.tensor(np.stack(cols, axis=1))

    def _validation_pits(
        self, data: SeriesData, val_end: torch.Tensor, series: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """PIT values ``(M, prediction_length)`` (NaN where missing; uniform above the stock's
        PIT where sold out) of forecasts made like
        :meth:`predict` (Monte-Carlo paths) from every origin of the validation periods of
        ``series`` that leaves ``prediction_length`` periods, and the periods' promo flags (bool).

        Every origin, not one per ``prediction_length`` periods: forecast step ``h``'s map then
        spans ``validation_periods - prediction_length + 1`` periods, not two or three, so one
        period's demand shock common to all items weighs less (Dominick's OJ, validation split,
        rounds 0-5: MAPE 37.55% -> 36.95% log-normal, 37.79% -> 37.40% NB). The paths run in
        chunks of :data:`PIT_CHUNK` origins (chunk ``k`` seeded ``seed + 2 + k``), which bounds
        the memory (about 0.5 MB per origin)."""
        cfg = self.config
        c, p = cfg.context_length, cfg.prediction_length
        rows = [
            (s, t0 - c)
            for s in series
            for t0 in range(max(int(val_end[s]), c), int(data.length[s]) - p + 1)
        ]
        if not rows:
            return None
        index = torch.tensor(rows, dtype=torch.long)
        pits, promos = [], []
        for k, lo in enumerate(range(0, index.shape[0], PIT_CHUNK)):
            w = data.windows(index[lo : lo + PIT_CHUNK], c + p)
            past = w.select(slice(None), slice(0, c))
            fut = w.select(slice(None), slice(c, c + p))
            fut = dataclasses.replace(fut, units=torch.zeros_like(fut.units))
            _, means, disps = self._paths(past, fut, p, min(cfg.num_samples, 16), cfg.seed + 2 + k)
            actual = w.units[:, c:].unsqueeze(1)
            pit = self.likelihood.pit(actual, means, disps).mean(dim=1)
            # A period that sold out had demand of at least its stock: its PIT is uniform
            # above the stock's (leaving it out keeps the low draws and shifts the maps down).
            censored = w.censored[:, c:]
            if bool(censored.any()):
                gen = torch.Generator(device=pit.device).manual_seed(cfg.seed + 7919 + k)
                u = torch.rand(pit.shape, generator=gen, dtype=pit.dtype, device=pit.device)
                pit = torch.where(censored, pit + u * (1.0 - pit), pit)
            present = w.observed[:, c:] | censored
            pits.append(torch.where(present, pit, torch.full_like(pit, math.nan)))
            promos.append(w.promo[:, c:] > 0.5)
        return torch.cat(pits), torch.cat(promos)

    def sample(
        self,
        history: SalesHistory,
        future: pd.DataFrame,
        horizon: int,
        n_samples: int,
        seed: int = 0,
    ) -> np.ndarray:
        """Sample paths ``(n_items, n_samples, horizon)`` in ``sorted(item_ids)`` order."""
        horizon, n_samples = check_horizon(horizon), check_n_samples(n_samples)
        seed = check_seed(seed)
        _, past, fut, _ = self._prepare(history, future, horizon)
        samples, _, _ = self._paths(past, fut, horizon, n_samples, seed)
        return samples.cpu().numpy()

    # ---- persistence -------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write ``config.json`` (config, vocabulary, scaling, metrics) + ``model.safetensors``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self._network().state_dict().items()}
        atomic_write_with(directory / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp)))
        meta = {
            "format": FORMAT,
            "config": self.config.to_dict(),
            "freq": self.freq,
            "items": self.item_ids,
            "extra_covariates": list(self.extra_columns),
            "group_price_columns": list(self.group_columns),
            "dispersion_scale": self.dispersion_scale,
            "promo_rates": self.promo_rates,
            "quantile_recalibration": {
                "levels": list(RECALIBRATION_LEVELS),
                "model_levels_per_step": self.recalibration,
                "model_levels_per_step_regular_promo": self.promo_recalibration,
            },
            "scaling": {
                **self.likelihood.scaling_info,
                "censored_fill": "rounded observed mean of the context window",
            },
            "validation_metrics": self.validation_metrics,
            "training": self.training,
        }
        atomic_write_text(directory / CONFIG_FILE, json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | os.PathLike[str], device: str | None = None) -> Self:
        """Read a forecaster written by :meth:`save` onto ``device`` (default ``"auto"``, not
        the device it was fitted on: a model fitted on a GPU loads on a machine without one)."""
        directory = Path(directory)
        path = directory / CONFIG_FILE
        if not path.exists() or not (directory / WEIGHTS_FILE).exists():
            raise DataError(
                f"{directory}: not a saved transformer forecaster "
                f"(need {CONFIG_FILE} and {WEIGHTS_FILE})"
            )
        meta = json.loads(path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise DataError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
        # Saved before the price-response head existed: load without it.
        config = TransformerConfig.from_dict({"price_head": False, **meta["config"]}, str(path))
        config = dataclasses.replace(config, device=device or "auto")
        self = cls(config)
        self.freq = meta["freq"]
        self.item_ids = list(meta["items"])
        self.extra_columns = tuple(meta.get("extra_covariates", ()))
        self.group_columns = tuple(meta.get("group_price_columns", ()))
        self.dispersion_scale = float(meta.get("dispersion_scale", 1.0))
        self.promo_rates = meta.get("promo_rates")
        recal = meta.get("quantile_recalibration", {})
        self.recalibration = [list(m) for m in recal.get("model_levels_per_step", [])]
        self.promo_recalibration = [
            [list(m) for m in maps] for maps in recal.get("model_levels_per_step_regular_promo", [])
        ]
        self.validation_metrics = meta.get("validation_metrics", {})
        self.training = meta.get("training", {})
        self.model = build_network(config, len(self.item_ids), len(self.extra_columns))
        self.model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)), strict=True)
        self.model.to(self.device).eval()
        return self


RECALIBRATION_LEVELS = tuple(round(0.01 * k, 2) for k in range(1, 100))
"""Nominal levels at which the quantile recalibration map is tabulated."""


def recalibration_maps(
    pit: torch.Tensor, fallback: Sequence[list[float]] | None = None
) -> list[list[float]]:
    """Per forecast period (column of ``pit`` ``(M, H)``, NaN = no value) the
    :func:`recalibration_map` of its values. Without ``fallback``, the maps stop at the first
    period with fewer than :data:`MIN_RECALIBRATION_POINTS` values; with it, such a period
    takes ``fallback``'s map (one per period of ``fallback``)."""
    maps = []
    for h, col in enumerate(pit.T):
        if fallback is not None and h >= len(fallback):
            break
        values = col[~torch.isnan(col)]
        if int(values.numel()) >= MIN_RECALIBRATION_POINTS:
            maps.append(recalibration_map(values))
        elif fallback is not None:
            maps.append(list(fallback[h]))
        else:
            break
    return maps


def recalibration_map(pit: torch.Tensor) -> list[float]:
    """Levels to ask the model for, per :data:`RECALIBRATION_LEVELS`: the quantiles of the
    validation PIT values ``pit`` (Kuleshov et al. 2018, "Accurate uncertainties for deep
    learning using calibrated regression"), kept inside [0.002, 0.998].

    >>> recalibration_map(torch.linspace(0.0, 1.0, 1001))[49]  # calibrated: identity
    0.5
    """
    levels = torch.tensor(RECALIBRATION_LEVELS, dtype=torch.float64, device=pit.device)
    mapped = torch.quantile(pit.to(torch.float64), levels).clamp(0.002, 0.998)
    return [round(float(x), 6) for x in torch.cummax(mapped, 0).values]


def validation_metrics(
    first: torch.Tensor,
    second: torch.Tensor,
    actual: torch.Tensor,
    likelihood: Likelihood = NEGATIVE_BINOMIAL,
) -> dict[str, float]:
    """One-step ``nll``, ``mape`` of the median, ``pinball`` (q 0.1/0.5/0.9), ``coverage80``
    of the predictive parameters of ``likelihood`` (NB mean and dispersion, or the
    log-normal's mu and sigma)."""
    qs = (0.1, 0.5, 0.9)
    quant = torch.stack([likelihood.quantile(q, first, second) for q in qs])
    nll = likelihood.nll(actual, first, second)
    pinball = torch.stack(
        [
            torch.maximum(q * (actual - quant[i]), (q - 1) * (actual - quant[i]))
            for i, q in enumerate(qs)
        ]
    ).mean()
    pos = actual > 0
    mape = (
        ((quant[1][pos] - actual[pos]).abs() / actual[pos]).mean()
        if bool(pos.any())
        else torch.tensor(float("nan"))
    )
    return {
        "nll": float(nll.mean()),
        "mape": float(mape),
        "pinball": float(pinball),
        "coverage80": float(((actual >= quant[0]) & (actual <= quant[2])).to(torch.float64).mean()),
        "n_periods": int(actual.shape[0]),
    }


def group_price_column(categorical: str) -> str:
    """Name of the group-relative log price covariate of a categorical column."""
    return f"log_relative_price_{categorical}"


def with_group_prices(
    frame: pd.DataFrame, categorical: Sequence[str], groups: pd.DataFrame | None = None
) -> pd.DataFrame:
    """``frame`` plus, per categorical column ``c``, :func:`group_price_column` ``(c)``: the
    row's log price minus the mean log price of the rows of its ``c`` group on its date.

    ``groups`` (indexed by ``item_id``) gives the categories when ``frame`` lacks them (future
    covariates). Returns ``frame`` itself when ``categorical`` is empty.

    >>> f = pd.DataFrame({"item_id": ["a", "b"], "date": ["d", "d"], "price": [1.0, 4.0],
    ...     "store": ["s", "s"]})
    >>> with_group_prices(f, ["store"])["log_relative_price_store"].round(3).tolist()
    [-0.693, 0.693]
    """
    if not categorical:
        return frame
    out = frame.copy()
    log_price = np.log(out["price"].to_numpy(np.float64))
    for c in categorical:
        key = out[c] if c in out else out["item_id"].map(groups[c]) if groups is not None else None
        if key is None:
            raise DataError(f"group prices: no {c!r} column and no item categories given")
        mean = pd.Series(log_price, index=out.index).groupby([key, out["date"]]).transform("mean")
        out[group_price_column(c)] = log_price - mean.to_numpy()
    return out


# ---- training ------------------------------------------------------------------------------------


def window_loss(
    model: TimeSeriesTransformerForPrediction, w: Windows, config: TransformerConfig
) -> torch.Tensor:
    """Mean negative log-likelihood of the future periods of windows ``w`` under
    ``config.likelihood`` (:meth:`Likelihood.window_loss`).

    Observed periods add ``-log P(Y = units)``; censored ones (stock-outs, ``units`` = the
    stock) add ``-log P(Y >= units)`` with ``config.censored_loss == "survival"`` and nothing
    with ``"drop"``; missing ones nothing. The mean is over the periods that add a term.
    Censored and missing periods are out of the scaler (``past_observed_mask``) and, through
    :func:`impute_censored`, every lag feature.
    """
    c = config.context_length
    lik = LIKELIHOODS[config.likelihood]
    units = lik.model_values(impute_censored(w.units, w.observed, c))
    feats = time_features(w.discount, w.promo, w.day, w.observed, w.daily, c, w.extra)
    observed = w.observed.to(units.dtype)
    out = model(
        past_values=units[:, :c],
        past_time_features=feats[:, :c],
        past_observed_mask=observed[:, :c],
        static_categorical_features=w.item.unsqueeze(1),
        future_values=units[:, c:],
        future_time_features=feats[:, c:],
        future_observed_mask=observed[:, c:],
    )
    # A stock of 0 says nothing about demand (and P(Y >= 0) = 1): such periods add no term.
    censored = w.censored[:, c:] & ~w.observed[:, c:] & (w.units[:, c:] > 0)
    if config.censored_loss == "drop":
        censored = torch.zeros_like(censored)
    offset = price_offset(model, feats[:, c:], w.item)
    return lik.window_loss(out, w.units[:, c:], w.observed[:, c:], censored, offset)


def train_network(
    model: TimeSeriesTransformerForPrediction,
    data: SeriesData,
    train_idx: torch.Tensor,
    val_idx: torch.Tensor,
    config: TransformerConfig,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """AdamW on random training windows; keeps the weights of the best validation epoch
    (without validation windows: runs ``config.epochs`` epochs and keeps the last).
    ``best_val_nll`` is None without validation windows or when every validation loss was NaN
    (then ``best_epoch`` is -1 and the starting weights are kept).

    Deterministic for a fixed ``config.seed`` on one device and thread count.
    """
    if train_idx.shape[0] == 0:
        raise DataError("no training windows: the history is too short for the context length")
    window = config.context_length + config.prediction_length
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    # Item rows learn faster and without decay by default: decay and a small step shrink
    # every item towards the generic one, which flattens item-specific price responses
    # (held-out fidelity at 40% off: mean |error| 13.3% -> 9.0%, benchmarks/bench_forecaster.py).
    item_params = list(model.model.embedder.parameters())
    if getattr(model, "price_response", None) is not None:
        item_params += list(model.price_response.parameters())
    item_ids = {id(p) for p in item_params}
    opt = torch.optim.AdamW(
        [
            {"params": [p for p in model.parameters() if id(p) not in item_ids]},
            {
                "params": item_params,
                "lr": config.learning_rate * config.item_learning_rate_scale,
                "weight_decay": config.item_weight_decay,
            },
        ],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
    )
    has_val = val_idx.shape[0] > 0
    best = (math.inf, -1)
    # Without validation the latest epoch is kept: its weights are the model's, no snapshot.
    best_state = copy.deepcopy(model.state_dict()) if has_val else None
    losses: list[dict[str, float | None]] = []

    def val_loss() -> float:
        if not has_val:
            return math.nan
        model.eval()
        total, count = 0.0, 0
        with torch.inference_mode():
            for lo in range(0, val_idx.shape[0], 1024):
                idx = val_idx[lo : lo + 1024]
                total += float(window_loss(model, data.windows(idx, window), config)) * idx.shape[0]
                count += idx.shape[0]
        return total / count

    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(train_idx.shape[0], generator=gen)[: config.windows_per_epoch]
        run, steps = 0.0, 0
        for lo in range(0, order.shape[0], config.batch_size):
            idx = train_idx[order[lo : lo + config.batch_size]]
            loss = window_loss(model, data.windows(idx, window), config)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            run += float(loss.detach())
            steps += 1
        vl = val_loss()
        # JSON-safe: no validation (or a diverged one) is None, not NaN.
        losses.append({"epoch": epoch, "train": _finite(run / max(steps, 1)), "val": _finite(vl)})
        if progress is not None:
            val_text = f"val nll {vl:.4f}" if has_val else "no validation windows"
            progress(
                f"epoch {epoch + 1}/{config.epochs}: train nll {run / max(steps, 1):.4f}, {val_text}"
            )
        if not has_val:
            best = (math.nan, epoch)
            continue
        score = math.inf if math.isnan(vl) else vl  # a diverged (NaN) epoch is never the best
        if score < best[0]:
            best = (score, epoch)
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best[1] >= config.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return {
        "epochs_run": len(losses),
        "best_epoch": best[1],
        "best_val_nll": _finite(best[0]),
        "losses": losses,
    }


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def base_dirs(root: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Each likelihood's base directory: the shipped ones (:data:`BASE_WEIGHTS_DIRS`), or,
    with ``root``, those under it laid out as ``forecasters/weights`` (``base/``,
    ``base_log_normal/``). Raises :class:`ConfigError` naming a missing one."""
    if root is None:
        return dict(BASE_WEIGHTS_DIRS)
    dirs = {name: Path(root) / d.name for name, d in BASE_WEIGHTS_DIRS.items()}
    for d in dirs.values():
        if not (d / WEIGHTS_FILE).is_file():
            raise ConfigError(
                f"{root}: no saved base in {d.name}/; lay it out as forecasters/weights "
                f"({', '.join(x.name + '/' for x in BASE_WEIGHTS_DIRS.values())})"
            )
    return dirs


def weights_record(directory: str | os.PathLike[str]) -> dict[str, str]:
    """Which weights a benchmark used (a base directory's files change between commits):
    ``{"dir": directory, "weights_sha256": the first 16 hex digits of the SHA-256 of its
    model.safetensors}``."""
    import hashlib

    digest = hashlib.sha256((Path(directory) / WEIGHTS_FILE).read_bytes()).hexdigest()[:16]
    return {"dir": str(directory), "weights_sha256": digest}


def fit_forecaster(
    history: SalesHistory,
    config: TransformerConfig | None = None,
    *,
    from_scratch: bool = False,
    base_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> TransformerForecaster:
    """Fit a transformer forecaster on ``history`` (fine-tuning the shipped base by default).

    Example: ``fit_forecaster(load_history("sales.csv")).save("model")``.
    """
    forecaster = TransformerForecaster(config, from_scratch=from_scratch, base_dir=base_dir)
    return forecaster.fit(history, progress=progress)
