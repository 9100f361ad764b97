"""The transformer demand forecaster: pretrained base, fine-tuned per shop, negative binomial.

Built on Hugging Face ``transformers.TimeSeriesTransformerForPrediction`` (encoder-decoder,
``distribution_output="negative_binomial"``, mean scaling, lagged values). Per period it sees
the covariates of :mod:`promogym.forecasters.features` (discount, promo, log relative price,
calendar, age, promotion streak, censoring) as ``past_time_features`` /
``future_time_features``, and the item as a static categorical embedding.

* **Item vocabulary**: item ``i`` of :attr:`TransformerForecaster.item_ids` uses embedding row
  ``i + 1``; row 0 is the *generic* item that the base model was pretrained with. A fine-tuned
  model starts with every item's row equal to the base's generic row, so fine-tuning starts
  from exactly the base's forecasts.
* **Censoring**: a period whose demand was censored by a stock-out (``censored`` in the
  history, ``past_observed=False`` in a :class:`DemandContext`) is excluded from the scaler
  (``past_observed_mask``) and from the loss (``future_observed_mask``), and its value is
  replaced by the window's observed mean before it enters any lag feature, so the model's
  output does not depend on the (meaningless) units sold in that period.
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
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from transformers import TimeSeriesTransformerConfig, TimeSeriesTransformerForPrediction

from promogym.data import SalesHistory
from promogym.distributions import negative_binomial_icdf, sample_negative_binomial
from promogym.errors import ConfigError, DataError
from promogym.forecasters.base import DEFAULT_QUANTILES, DemandContext, Forecaster
from promogym.forecasters.features import (
    NUM_TIME_FEATURES,
    next_period_features,
    time_features,
)
from promogym.io import atomic_write_text, atomic_write_with

BASE_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights" / "base"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "promogym-transformer/1"
MIN_SCALE = 1.0  # counts: a window averaging < 1 unit is scaled like one averaging 1

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
        validation_periods: last periods of each item held out for early stopping and metrics.
        patience: epochs without validation improvement before stopping.
        item_learning_rate_scale, item_weight_decay: learning-rate multiplier and weight decay
            of the item embedding (fine-tuning: fast and undecayed, so items can differ).
        num_samples: Monte-Carlo paths for multi-period forecasts.
        unknown_items: ``"error"`` (DataError) or ``"generic"`` (use the generic item row) for
            items outside the vocabulary at predict time.
        seed: seeds initialisation, window order, dropout and Monte-Carlo paths.
        device: torch device of the model (``"cpu"``, ``"cuda"``).
    """

    context_length: int = 42
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
    validation_periods: int = 28
    patience: int = 4
    item_learning_rate_scale: float = 10.0
    item_weight_decay: float = 0.0
    num_samples: int = 200
    unknown_items: str = "error"
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "lags", tuple(int(x) for x in self.lags))
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
        ):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise bad(key, "must be an integer >= 1")
        if not self.lags or min(self.lags) < 1:
            raise bad("lags", "must be a non-empty list of integers >= 1")
        if self.encoder_length < 1:
            raise bad("context_length", f"must exceed the largest lag ({max(self.lags)})")
        if self.d_model % self.heads:
            raise bad("heads", f"must divide d_model ({self.d_model})")
        if self.validation_periods < self.prediction_length:
            raise bad(
                "validation_periods", f"must be >= prediction_length ({self.prediction_length})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise bad("dropout", "must be in [0, 1)")
        if self.learning_rate <= 0:
            raise bad("learning_rate", "must be > 0")
        if self.unknown_items not in ("error", "generic"):
            raise bad("unknown_items", "must be 'error' or 'generic'")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["lags"] = list(self.lags)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "transformer config") -> Self:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {unknown}; expected some of {sorted(known)}"
            )
        return cls(**{k: tuple(v) if k == "lags" else v for k, v in data.items()})


def build_network(config: TransformerConfig, n_items: int) -> TimeSeriesTransformerForPrediction:
    """The Hugging Face network for ``config`` with ``n_items`` items (+ the generic row)."""
    hf_config = TimeSeriesTransformerConfig(
        prediction_length=config.prediction_length,
        context_length=config.encoder_length,
        distribution_output="negative_binomial",
        lags_sequence=list(config.lags),
        scaling="mean",
        minimum_scale=MIN_SCALE,
        default_scale=MIN_SCALE,  # never fall back to the batch's scale: batch-independent
        num_time_features=NUM_TIME_FEATURES,
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
    return TimeSeriesTransformerForPrediction(hf_config)


# ---- series and windows ------------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesData:
    """``S`` series, left-aligned and right-padded to a common length ``T``.

    ``item`` is the embedding row (0 = generic); ``daily`` 1.0 for daily, 0.0 for weekly.
    """

    units: torch.Tensor  # (S, T) float32
    observed: torch.Tensor  # (S, T) bool
    discount: torch.Tensor  # (S, T) float32
    promo: torch.Tensor  # (S, T) float32
    day: torch.Tensor  # (S, T) long
    item: torch.Tensor  # (S,) long
    daily: torch.Tensor  # (S,) float32
    length: torch.Tensor  # (S,) long

    def to(self, device: torch.device | str) -> SeriesData:
        return SeriesData(
            **{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)}
        )

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
        )


@dataclass(frozen=True)
class Windows:
    """``N`` windows of equal length (same fields as :class:`SeriesData`, no padding)."""

    units: torch.Tensor
    observed: torch.Tensor
    discount: torch.Tensor
    promo: torch.Tensor
    day: torch.Tensor
    item: torch.Tensor
    daily: torch.Tensor


def impute_censored(units: torch.Tensor, observed: torch.Tensor, n_past: int) -> torch.Tensor:
    """Replace unobserved values by the rounded observed mean of the first ``n_past`` periods.

    The result does not depend on the units in unobserved periods (0 if none is observed).
    """
    obs = observed[:, :n_past].to(units.dtype)
    fill = torch.round((units[:, :n_past] * obs).sum(1) / obs.sum(1).clamp_min(1.0))
    return torch.where(observed, units, fill.unsqueeze(1))


def series_from_frame(
    frame: pd.DataFrame, freq: str, vocab: dict[str, int] | None
) -> tuple[SeriesData, list[str]]:
    """Per-item series of a canonical frame (see :mod:`promogym.data`).

    ``vocab`` maps item ids to embedding rows; ``None`` puts every item on the generic row 0.
    """
    check_finite(frame, ("units_sold", "price", "list_price", "discount", "promo"), "history")
    items = sorted(frame["item_id"].unique().tolist())
    groups = {k: g for k, g in frame.sort_values(["item_id", "date"]).groupby("item_id", sort=True)}
    t_max = max(len(g) for g in groups.values())
    s = len(items)
    units = np.zeros((s, t_max), np.float32)
    observed = np.zeros((s, t_max), bool)
    discount = np.zeros((s, t_max), np.float32)
    promo = np.zeros((s, t_max), np.float32)
    day = np.zeros((s, t_max), np.int64)
    length = np.zeros(s, np.int64)
    for i, item in enumerate(items):
        g = groups[item]
        n = len(g)
        length[i] = n
        units[i, :n] = g["units_sold"].to_numpy(np.float32)
        censored = g["censored"].to_numpy(bool) if "censored" in g else np.zeros(n, bool)
        observed[i, :n] = ~censored
        discount[i, :n] = np.clip(g["discount"].to_numpy(np.float32), 0.0, 0.99)
        promo[i, :n] = g["promo"].to_numpy(np.float32)
        day[i, :n] = to_days(g["date"])
    rows = [0 if vocab is None else vocab[item] + 1 for item in items]
    data = SeriesData(
        units=torch.from_numpy(units),
        observed=torch.from_numpy(observed),
        discount=torch.from_numpy(discount),
        promo=torch.from_numpy(promo),
        day=torch.from_numpy(day),
        item=torch.tensor(rows, dtype=torch.long),
        daily=torch.full((s,), 1.0 if freq == "D" else 0.0),
        length=torch.from_numpy(length),
    )
    return data, items


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

    Build with a config, then :meth:`fit` (fine-tunes the shipped base unless
    ``from_scratch=True``), or :meth:`load` a saved one.

    Attributes:
        config: the :class:`TransformerConfig`.
        item_ids: the item vocabulary (embedding row ``i + 1`` for ``item_ids[i]``).
        freq: ``"D"`` or ``"W"``, the frequency of the data it was fitted on.
        validation_metrics: one-step metrics on the held-out last periods (``nll``, ``mape``
            of the median, ``pinball`` averaged over q = 0.1, 0.5, 0.9, ``coverage80``).
        training: how training went (epochs run, best epoch, losses, seconds, base used).
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
        self.base_dir = Path(base_dir) if base_dir is not None else BASE_WEIGHTS_DIR
        self.item_ids: list[str] = []
        self.freq = "D"
        self.validation_metrics: dict[str, float] = {}
        self.training: dict[str, Any] = {}
        self.model: TimeSeriesTransformerForPrediction | None = None

    # ---- properties -----------------------------------------------------------------------
    @property
    def context_length(self) -> int:
        """Periods of history each forecast needs (``DemandContext`` width)."""
        return self.config.context_length

    @property
    def device(self) -> torch.device:
        return torch.device(self.config.device)

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
        stopping (teacher-forced NLL) and the one-step :attr:`validation_metrics`.
        """
        started = time.perf_counter()
        self.freq = history.freq
        self.item_ids = history.item_ids
        base_info = "scratch"
        if not self.from_scratch:
            base = TransformerForecaster.load(self.base_dir)
            arch = {f: getattr(base.config, f) for f in ARCHITECTURE_FIELDS}
            self.config = dataclasses.replace(self.config, **arch)
            base_info = str(self.base_dir)
        cfg = self.config
        data, _ = series_from_frame(history.frame, history.freq, self.vocab)
        window = cfg.context_length + cfg.prediction_length
        need = window + cfg.validation_periods
        if int(data.length.max()) < need:
            raise DataError(
                f"{history.source}: history too short: the transformer needs at least {need} "
                f"periods for one item (context_length {cfg.context_length} + prediction_length "
                f"{cfg.prediction_length} + validation_periods {cfg.validation_periods}), the "
                f"longest item has {int(data.length.max())}; lower those settings or add history"
            )
        torch.manual_seed(cfg.seed)
        self.model = build_network(cfg, len(self.item_ids))
        if not self.from_scratch:
            self._init_from_base(base)
        self.model.to(self.device)
        data = data.to(self.device)
        val_end = data.length - cfg.validation_periods
        train_idx = data.window_starts(window, window, val_end)
        val_idx = data.window_starts(window, val_end + cfg.prediction_length, data.length)
        log = train_network(self.model, data, train_idx, val_idx, cfg, progress)
        self.validation_metrics = self._validation_metrics(data, val_end)
        self.training = {
            **log,
            "base": base_info,
            "seconds": round(time.perf_counter() - started, 2),
        }
        return self

    def _init_from_base(self, base: TransformerForecaster) -> None:
        """Copy the base's weights; every item row starts as the base's generic row."""
        model = self._network()
        state = base._network().state_dict()
        key = "model.embedder.embedders.0.weight"
        generic = state[key][0]
        state = dict(state)
        state[key] = generic.unsqueeze(0).repeat(len(self.item_ids) + 1, 1)
        model.load_state_dict(state, strict=True)

    def _validation_metrics(self, data: SeriesData, val_end: torch.Tensor) -> dict[str, float]:
        cfg = self.config
        c = cfg.context_length
        rows = []
        for s in range(data.length.shape[0]):
            for t in range(max(int(val_end[s]), c), int(data.length[s])):
                rows.append((s, t - c))
        if not rows:
            return {}
        index = torch.tensor(rows, dtype=torch.long)
        w = data.windows(index, c + 1)
        past = Windows(
            *(getattr(w, f)[:, :c] for f in ("units", "observed", "discount", "promo", "day")),
            w.item,
            w.daily,
        )
        with torch.inference_mode():
            mean, disp = self._one_step_windows(past, w.day[:, c], w.discount[:, c : c + 1])
        mean, disp = mean[:, 0], disp[:, 0]
        actual = w.units[:, c].to(torch.float64)
        ok = w.observed[:, c]
        if not bool(ok.any()):
            return {}
        mean, disp, actual = mean[ok], disp[ok], actual[ok]
        qs = (0.1, 0.5, 0.9)
        quant = torch.stack([nb_quantile(q, mean, disp) for q in qs])
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
        dist = torch.distributions.NegativeBinomial(
            total_count=disp, logits=torch.log(mean / disp), validate_args=False
        )
        return {
            "nll": float(-dist.log_prob(actual).mean()),
            "mape": float(mape),
            "pinball": float(pinball),
            "coverage80": float(
                ((actual >= quant[0]) & (actual <= quant[2])).to(torch.float64).mean()
            ),
            "n_periods": int(actual.shape[0]),
        }

    # ---- the network's pieces -------------------------------------------------------------
    def _encode(
        self, past: Windows
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encoder pass over ``past`` (length ``context_length``).

        Returns ``(encoder_hidden (N, E, d), scale (N, 1), static_feat (N, S), scaled_past (N, C))``.
        """
        net = self._network().model
        c = self.config.context_length
        units = impute_censored(past.units, past.observed, c)
        feats = time_features(past.discount, past.promo, past.day, past.observed, past.daily, c)
        inputs, loc, scale, static = net.create_network_inputs(
            past_values=units,
            past_time_features=feats,
            static_categorical_features=past.item.unsqueeze(1),
            past_observed_mask=past.observed.to(units.dtype),
        )
        hidden = net.encoder(inputs_embeds=inputs).last_hidden_state
        return hidden, scale, static, (units - loc) / scale

    def _nb_params(
        self, hidden: torch.Tensor, scale: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """NB (mean, dispersion) float64 from decoder states ``(N, K, d)``; scale ``(N, 1)``."""
        dispersion, logits = self._network().parameter_projection(hidden)
        dispersion = dispersion.to(torch.float64)
        mean = dispersion * torch.exp(logits.to(torch.float64)) * scale.to(torch.float64)
        return mean, dispersion

    def _one_step_windows(
        self, past: Windows, day: torch.Tensor, discounts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One-step NB params ``(N, A)`` for each window and candidate discount.

        The encoder runs once per window; the ``A`` candidates are ``A`` decoder tokens that
        share its keys/values and attend only to themselves (a diagonal self-attention mask),
        which equals ``A`` separate one-step decodes.
        """
        net = self._network().model
        decoder = net.decoder
        n, a = discounts.shape
        hidden, scale, static, scaled = self._encode(past)
        lagged = net.get_lagged_subsequences(sequence=scaled, subsequences_length=1, shift=1)
        future = next_period_features(past.promo, past.observed, day, discounts, past.daily)
        dec_in = torch.cat(
            (
                lagged.reshape(n, 1, -1).expand(n, a, -1),
                static.unsqueeze(1).expand(n, a, -1),
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
                h, mask, hidden, encoder_attention_mask=None, past_key_values=None, use_cache=False
            )
        return self._nb_params(h, scale)

    def _decode_last(
        self,
        hidden: torch.Tensor,
        scale: torch.Tensor,
        static: torch.Tensor,
        scaled_seq: torch.Tensor,
        future_feats: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hugging Face decoder over ``k`` future tokens; NB params of the last one ``(N,)``.

        ``scaled_seq`` is the scaled past plus the ``k - 1`` future values already drawn;
        ``future_feats`` the ``(N, k, F)`` features of the ``k`` future periods.
        """
        net = self._network().model
        k = future_feats.shape[1]
        lagged = net.get_lagged_subsequences(sequence=scaled_seq, subsequences_length=k, shift=1)
        dec_in = torch.cat(
            (
                lagged.reshape(lagged.shape[0], k, -1),
                static.unsqueeze(1).expand(-1, k, -1),
                future_feats,
            ),
            dim=-1,
        )
        out = net.decoder(inputs_embeds=dec_in, encoder_hidden_states=hidden, use_cache=False)
        mean, disp = self._nb_params(out.last_hidden_state[:, -1:], scale)
        return mean[:, 0], disp[:, 0]

    # ---- simulator face ---------------------------------------------------------------------
    def item_rows(self, item: torch.Tensor) -> torch.Tensor:
        """Embedding rows of vocabulary indices (``-1`` = unknown item -> the generic row)."""
        n = len(self.item_ids)
        if item.numel() and (int(item.min()) < -1 or int(item.max()) >= n):
            raise DataError(
                f"one_step: item index out of range [-1, {n - 1}] (vocabulary of {n} items); "
                "use -1 for an item the forecaster was not fitted on"
            )
        return item.long() + 1

    @torch.inference_mode()
    def one_step(
        self, context: DemandContext, discounts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """NB (mean, dispersion), each ``(B, A)`` float64, for every context and candidate.

        ``context`` holds :attr:`context_length` past periods; ``discounts`` is ``(A,)`` or
        ``(B, A)``. One encoder pass per context, shared by its candidates; no Python loop
        over items. Item ``-1`` means an item outside the vocabulary (generic embedding).
        """
        if self._network().training:
            self._network().eval()
        b = context.batch_size
        c = self.config.context_length
        if context.past_units.shape[1] != c:
            raise DataError(
                f"one_step: context has {context.past_units.shape[1]} past periods, the "
                f"forecaster needs exactly context_length = {c}"
            )
        discounts = torch.as_tensor(discounts, device=context.device).to(torch.float32)
        if discounts.dim() == 1:
            discounts = discounts.unsqueeze(0).expand(b, -1)
        daily = torch.full((b,), 1.0 if self.freq == "D" else 0.0, device=context.device)
        past = Windows(
            units=context.past_units.to(torch.float32),
            observed=context.past_observed.bool(),
            discount=context.past_discount.to(torch.float32),
            promo=context.past_promo.to(torch.float32),
            day=context.past_day.long(),
            item=self.item_rows(context.item),
            daily=daily,
        )
        return self._one_step_windows(past, context.day.long(), discounts)

    # ---- analyst face -----------------------------------------------------------------------
    def _prepare(
        self, history: SalesHistory, future: pd.DataFrame, horizon: int
    ) -> tuple[list[str], Windows, dict[str, torch.Tensor], list[pd.DatetimeIndex]]:
        """Past windows and future covariates ``(N, horizon)`` of the items in ``future``."""
        self._network()
        c = self.config.context_length
        if horizon < 1:
            raise DataError(f"predict: horizon must be >= 1, got {horizon}")
        for col in ("item_id", "date", "price"):
            if col not in future:
                raise DataError(
                    f"future covariates: missing column {col!r} (need item_id, date, price)"
                )
        future = future.copy()
        future["item_id"] = future["item_id"].astype(str)
        future["date"] = pd.to_datetime(future["date"])
        check_finite(future, ("price", "list_price", "promo"), "future covariates")
        items = sorted(future["item_id"].unique().tolist())
        vocab = self.vocab
        frame = history.frame
        past_rows, fut_rows, dates = [], [], []
        for item in items:
            if item not in vocab and self.config.unknown_items == "error":
                raise DataError(
                    f"predict: unknown item {item!r}: the forecaster was fitted on "
                    f"{len(vocab)} items ({', '.join(self.item_ids[:5])}...); refit with it"
                )
            hist = frame[frame["item_id"] == item].sort_values("date")
            if len(hist) < c:
                raise DataError(
                    f"{history.source}: item {item!r} has {len(hist)} periods of history, the "
                    f"transformer needs at least context_length = {c}"
                )
            hist = hist.iloc[-c:]
            check_finite(
                hist, ("units_sold", "price", "list_price", "discount", "promo"), history.source
            )
            fut = future[(future["item_id"] == item) & (future["date"] > hist["date"].iloc[-1])]
            fut = fut.sort_values("date").iloc[:horizon]
            if len(fut) < horizon:
                raise DataError(
                    f"future covariates: item {item!r} has {len(fut)} periods after the history "
                    f"ends ({hist['date'].iloc[-1].date()}), horizon is {horizon}"
                )
            list_price = (
                fut["list_price"].to_numpy(np.float64)
                if "list_price" in fut
                else np.full(horizon, float(hist["list_price"].iloc[-1]))
            )
            price = fut["price"].to_numpy(np.float64)
            if (price <= 0).any() or (list_price <= 0).any():
                raise DataError(f"future covariates: item {item!r} has a price <= 0")
            promo = (
                fut["promo"].to_numpy(np.float64)
                if "promo" in fut
                else (price < list_price).astype(np.float64)
            )
            past_rows.append(hist)
            fut_rows.append(
                (np.clip(1.0 - price / list_price, 0.0, 0.99), promo, to_days(fut["date"]))
            )
            dates.append(pd.DatetimeIndex(fut["date"]))
        dev = self.device
        past_frame = pd.concat(past_rows)
        data, _ = series_from_frame(past_frame, history.freq, None)
        rows = torch.tensor([vocab[i] + 1 if i in vocab else 0 for i in items], dtype=torch.long)
        past = Windows(
            units=data.units,
            observed=data.observed,
            discount=data.discount,
            promo=data.promo,
            day=data.day,
            item=rows,
            daily=data.daily,
        )
        past = Windows(*(getattr(past, f.name).to(dev) for f in dataclasses.fields(past)))
        fut_cov = {
            "discount": torch.tensor(
                np.stack([r[0] for r in fut_rows]), dtype=torch.float32, device=dev
            ),
            "promo": torch.tensor(
                np.stack([r[1] for r in fut_rows]), dtype=torch.float32, device=dev
            ),
            "day": torch.tensor(np.stack([r[2] for r in fut_rows]), dtype=torch.long, device=dev),
        }
        return items, past, fut_cov, dates

    @torch.inference_mode()
    def _paths(
        self, past: Windows, fut: dict[str, torch.Tensor], horizon: int, n_samples: int, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Monte-Carlo paths: ``(samples, means, first_mean, first_dispersion)``.

        ``samples`` and ``means`` (the NB mean of each path's period) are ``(N, S, H)``;
        the first period's distribution is exact: ``first_mean``/``first_dispersion`` ``(N,)``.
        """
        if self._network().training:
            self._network().eval()
        cfg = self.config
        c, p = cfg.context_length, cfg.prediction_length
        n, s = past.units.shape[0], n_samples
        gen = torch.Generator(device=self.device).manual_seed(seed)
        rep = lambda x: x.repeat_interleave(s, dim=0)  # noqa: E731
        units = impute_censored(past.units, past.observed, c)
        seq = {
            "units": units,
            "observed": past.observed,
            "discount": torch.cat((past.discount, fut["discount"]), 1),
            "promo": torch.cat((past.promo, fut["promo"]), 1),
            "day": torch.cat((past.day, fut["day"]), 1),
        }
        ones = torch.ones(n, horizon, dtype=torch.bool, device=units.device)
        observed_all = torch.cat((past.observed, ones), 1)
        samples = torch.zeros(n * s, horizon, dtype=torch.float64, device=units.device)
        means = torch.zeros_like(samples)
        first_mean = first_disp = None
        item, daily = past.item, past.daily
        for h0 in range(0, horizon, p):
            k = min(p, horizon - h0)
            window_units = torch.cat(
                (rep(seq["units"])[:, h0:], samples[:, :h0].to(torch.float32)), 1
            )[:, -c:]
            if h0 == 0:
                w = Windows(units, past.observed, past.discount, past.promo, past.day, item, daily)
                hidden, scale, static, scaled = self._encode(w)
                hidden, scale, static, scaled = map(rep, (hidden, scale, static, scaled))
            else:
                sl = slice(h0, h0 + c)
                w = Windows(
                    window_units,
                    rep(observed_all[:, sl]),
                    rep(seq["discount"][:, sl]),
                    rep(seq["promo"][:, sl]),
                    rep(seq["day"][:, sl]),
                    rep(item),
                    rep(daily),
                )
                hidden, scale, static, scaled = self._encode(w)
            sl = slice(h0, h0 + c + k)
            feats = time_features(
                rep(seq["discount"][:, sl]),
                rep(seq["promo"][:, sl]),
                rep(seq["day"][:, sl]),
                rep(observed_all[:, sl]),
                rep(daily),
                c,
            )[:, c:]
            drawn = scaled
            for j in range(k):
                mean, disp = self._decode_last(hidden, scale, static, drawn, feats[:, : j + 1])
                if h0 == 0 and j == 0:
                    first_mean, first_disp = mean[::s], disp[::s]
                draw = sample_negative_binomial(mean, disp, gen)
                samples[:, h0 + j] = draw
                means[:, h0 + j] = mean
                drawn = torch.cat((drawn, draw.to(scaled.dtype).unsqueeze(1) / scale), 1)
        assert first_mean is not None and first_disp is not None
        return samples.view(n, s, horizon), means.view(n, s, horizon), first_mean, first_disp

    def predict(
        self,
        history: SalesHistory,
        future: pd.DataFrame,
        horizon: int,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
    ) -> pd.DataFrame:
        """Mean and quantiles per item and period (see :class:`Forecaster`).

        The first period is exact (NB mean and quantiles); later periods are Monte-Carlo over
        ``num_samples`` paths (mean = average of the paths' NB means, quantiles empirical).
        """
        items, past, fut, dates = self._prepare(history, future, horizon)
        n_samples = 1 if horizon == 1 else self.config.num_samples
        samples, means, first_mean, first_disp = self._paths(
            past, fut, horizon, n_samples, self.config.seed
        )
        mean = means.mean(dim=1)
        mean[:, 0] = first_mean
        out = {
            "item_id": np.repeat(items, horizon),
            "date": np.concatenate([d.to_numpy() for d in dates]),
            "mean": mean.cpu().numpy().ravel(),
        }
        for q in quantiles:
            emp = (
                torch.quantile(samples, q, dim=1, interpolation="lower")
                if n_samples > 1
                else samples[:, 0]
            )
            emp = emp.clone()
            emp[:, 0] = nb_quantile(q, first_mean, first_disp)
            out[f"q{q:g}"] = emp.cpu().numpy().ravel()
        return pd.DataFrame(out)

    def sample(
        self,
        history: SalesHistory,
        future: pd.DataFrame,
        horizon: int,
        n_samples: int,
        seed: int = 0,
    ) -> np.ndarray:
        """Sample paths ``(n_items, n_samples, horizon)`` in ``sorted(item_ids)`` order."""
        _, past, fut, _ = self._prepare(history, future, horizon)
        samples, _, _, _ = self._paths(past, fut, horizon, n_samples, seed)
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
            "scaling": {
                "method": "mean of observed |units| over the encoder window, per window",
                "minimum_scale": MIN_SCALE,
                "censored_fill": "rounded observed mean of the context window",
            },
            "validation_metrics": self.validation_metrics,
            "training": self.training,
        }
        atomic_write_text(directory / CONFIG_FILE, json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | os.PathLike[str], device: str | None = None) -> Self:
        """Read a forecaster written by :meth:`save` (optionally onto another ``device``)."""
        directory = Path(directory)
        path = directory / CONFIG_FILE
        if not path.exists() or not (directory / WEIGHTS_FILE).exists():
            raise DataError(
                f"{directory}: not a saved transformer forecaster (need {CONFIG_FILE} and {WEIGHTS_FILE})"
            )
        meta = json.loads(path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise DataError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
        config = TransformerConfig.from_dict(meta["config"], str(path))
        if device is not None:
            config = dataclasses.replace(config, device=device)
        self = cls(config)
        self.freq = meta["freq"]
        self.item_ids = list(meta["items"])
        self.validation_metrics = meta.get("validation_metrics", {})
        self.training = meta.get("training", {})
        self.model = build_network(config, len(self.item_ids))
        self.model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)), strict=True)
        self.model.to(self.device).eval()
        return self


EXACT_QUANTILE_SUPPORT = 2000
"""Rows whose mean + 12 sd exceeds this many units use the gamma approximation."""


def nb_quantile(
    q: float, mean: torch.Tensor, dispersion: torch.Tensor, chunk: int = 1024
) -> torch.Tensor:
    """NB quantile ``q`` of each (mean, dispersion), float64 counts.

    Exact (inverse CDF over the support, in chunks of rows) when ``mean + 12 sd`` is below
    :data:`EXACT_QUANTILE_SUPPORT`; above it the summed pmf would need too much memory, so the
    quantile of the moment-matched gamma (Wilson-Hilferty) is used, rounded.

    >>> nb_quantile(0.5, torch.tensor([4.0, 5e4]), torch.tensor([3.0, 3.0])).tolist()
    [3.0, 44647.0]
    """
    mean = mean.to(torch.float64).reshape(-1).clamp_min(1e-12)
    dispersion = dispersion.to(torch.float64).reshape(-1)
    var = mean + mean * mean / dispersion
    big = mean + 12.0 * var.sqrt() > EXACT_QUANTILE_SUPPORT
    # Gamma(shape k, scale var/mean) with the NB's mean and variance; Wilson-Hilferty quantile.
    k = mean * mean / var
    z = math.sqrt(2.0) * torch.special.erfinv(torch.tensor(2.0 * q - 1.0, dtype=torch.float64))
    wh = k * (1.0 - 1.0 / (9.0 * k) + z / (3.0 * k.sqrt())).clamp_min(0.0) ** 3
    out = torch.round(wh * var / mean)
    small = torch.nonzero(~big).flatten()
    for lo in range(0, small.shape[0], chunk):
        rows = small[lo : lo + chunk]
        u = torch.full((rows.shape[0],), q, dtype=torch.float64, device=mean.device)
        out[rows] = negative_binomial_icdf(u, mean[rows], dispersion[rows])
    return out


# ---- training ------------------------------------------------------------------------------------


def window_loss(
    model: TimeSeriesTransformerForPrediction, w: Windows, config: TransformerConfig
) -> torch.Tensor:
    """Mean NB negative log-likelihood of the observed future periods of windows ``w``.

    Censored periods are excluded from the loss (``future_observed_mask``), the scaler
    (``past_observed_mask``) and, through :func:`impute_censored`, every lag feature.
    """
    c = config.context_length
    units = impute_censored(w.units, w.observed, c)
    feats = time_features(w.discount, w.promo, w.day, w.observed, w.daily, c)
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
    return out.loss


def train_network(
    model: TimeSeriesTransformerForPrediction,
    data: SeriesData,
    train_idx: torch.Tensor,
    val_idx: torch.Tensor,
    config: TransformerConfig,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """AdamW on random training windows; keeps the weights of the best validation epoch.

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
    best = (math.inf, -1)
    best_state = copy.deepcopy(model.state_dict())
    losses: list[dict[str, float]] = []

    def val_loss() -> float:
        if val_idx.shape[0] == 0:
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
        losses.append({"epoch": epoch, "train": run / max(steps, 1), "val": vl})
        if progress is not None:
            progress(
                f"epoch {epoch + 1}/{config.epochs}: train nll {run / max(steps, 1):.4f}, val nll {vl:.4f}"
            )
        score = vl if not math.isnan(vl) else run / max(steps, 1)
        if score < best[0]:
            best = (score, epoch)
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best[1] >= config.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return {
        "epochs_run": len(losses),
        "best_epoch": best[1],
        "best_val_nll": best[0],
        "losses": losses,
    }


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
