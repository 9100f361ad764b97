"""Dominick's orange-juice scanner data (bayesm ``orangeJuice``) as a promogym SalesHistory.

Source: Debian's ``r-cran-bayesm`` package, fetched with ``apt-get download`` (no R needed),
unpacked with ``dpkg -x``; ``data/orangeJuice.rda`` is read with the ``rdata`` package. The
converted frame is cached as Parquet in ``benchmarks/_cache/`` (git-ignored).

Conversion (``yx`` table: 83 stores x 11 brands, weeks 40..160, 106,139 rows):

=============== ==========================================================================
column          from
=============== ==========================================================================
item_id         ``"{store}-{brand}"``
date            week start: 1989-09-14 + 7 * (week - 1) (the TSPerf calendar)
units_sold      ``round(exp(logmove))``
price           the brand's own price column ``price{brand}`` (dollars per ounce)
list_price      the item's running maximum of ``price`` (the contract's default)
promo           ``deal``
store, brand    categorical columns (strings)
feat            kept as an extra numeric column (share of the week the brand was featured)
=============== ==========================================================================

Weeks without a scanner record are left out (the series have gaps); ``stock`` and
``unit_cost`` are unknown (NaN), nothing is censored.

Run ``python benchmarks/oj_data.py`` to fetch, convert and print a summary.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from promogym.data import CANONICAL_COLUMNS, SalesHistory
from promogym.errors import DataError

CACHE_DIR = Path(__file__).resolve().parent / "_cache"
DEBIAN_PACKAGE = "r-cran-bayesm"
RDA_MEMBER = "usr/lib/R/site-library/bayesm/data/orangeJuice.rda"
FIRST_WEEK_START = pd.Timestamp("1989-09-14")
FRAME_FILE = "orange_juice.parquet"
CATEGORICAL = ("store", "brand")


def week_to_date(week: np.ndarray | pd.Series | int) -> pd.DatetimeIndex | pd.Timestamp:
    """Start date of Dominick's week number ``week`` (week 1 starts 1989-09-14)."""
    if np.ndim(week) == 0:
        return FIRST_WEEK_START + pd.Timedelta(days=7 * (int(week) - 1))
    return FIRST_WEEK_START + pd.to_timedelta(7 * (np.asarray(week, dtype=np.int64) - 1), unit="D")


def date_to_week(date: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Inverse of :func:`week_to_date`."""
    days = (pd.DatetimeIndex(date) - FIRST_WEEK_START).days.to_numpy()
    return days // 7 + 1


def fetch_rda(cache_dir: Path = CACHE_DIR) -> Path:
    """Path of ``orangeJuice.rda``, downloading and unpacking the Debian package if needed."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    rda = cache_dir / "bayesm" / RDA_MEMBER
    if rda.is_file():
        return rda
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise DataError(
                f"{tool} not found: the OJ benchmark reads Debian's {DEBIAN_PACKAGE}; run it on "
                f"Debian/Ubuntu, or put orangeJuice.rda at {rda}"
            )
    debs = sorted(cache_dir.glob(f"{DEBIAN_PACKAGE}_*.deb"))
    if not debs:
        download = ["apt-get", "download", DEBIAN_PACKAGE]
        result = subprocess.run(download, cwd=cache_dir, capture_output=True, text=True)
        if result.returncode != 0:
            # A fresh container has no package lists yet: refresh them once and retry.
            subprocess.run(["apt-get", "update"], capture_output=True, text=True, check=False)
            result = subprocess.run(download, cwd=cache_dir, capture_output=True, text=True)
        if result.returncode != 0:
            raise DataError(
                f"apt-get download {DEBIAN_PACKAGE} failed: {result.stderr.strip()[-300:]}; "
                "run `apt-get update` (as root) and retry"
            )
        debs = sorted(cache_dir.glob(f"{DEBIAN_PACKAGE}_*.deb"))
    subprocess.run(["dpkg", "-x", str(debs[-1]), str(cache_dir / "bayesm")], check=True)
    if not rda.is_file():
        raise DataError(f"{debs[-1]}: has no {RDA_MEMBER}; this bayesm build is not supported")
    return rda


def read_yx(rda: Path) -> pd.DataFrame:
    """The ``yx`` table of ``orangeJuice.rda`` (store, brand, week, logmove, price1..11, ...)."""
    import rdata

    data = rdata.read_rda(str(rda))["orangeJuice"]
    yx = data["yx"]
    return yx.reset_index(drop=True)


def yx_to_frame(yx: pd.DataFrame) -> pd.DataFrame:
    """Convert ``yx`` into the canonical SalesHistory frame (module docstring)."""
    store = yx["store"].astype(np.int64).to_numpy()
    brand = yx["brand"].astype(np.int64).to_numpy()
    prices = yx[[f"price{b}" for b in range(1, 12)]].to_numpy(dtype=np.float64)
    frame = pd.DataFrame(
        {
            "date": week_to_date(yx["week"].astype(np.int64).to_numpy()).astype("datetime64[ns]"),
            "item_id": [f"{s}-{b}" for s, b in zip(store, brand, strict=True)],
            "units_sold": np.round(np.exp(yx["logmove"].to_numpy(dtype=np.float64))).astype(
                np.int64
            ),
            "price": prices[np.arange(len(yx)), brand - 1],
        }
    )
    frame = frame.assign(store=store.astype(str), brand=brand.astype(str))
    frame["feat"] = yx["feat"].to_numpy(dtype=np.float64)
    frame["promo"] = yx["deal"].astype(np.int64).to_numpy().astype(np.int8)
    frame = frame.sort_values(["item_id", "date"], kind="stable").reset_index(drop=True)
    frame["list_price"] = frame.groupby("item_id")["price"].cummax()
    frame["discount"] = np.clip(1.0 - frame["price"] / frame["list_price"], 0.0, 1.0)
    frame["stock"] = np.nan
    frame["censored"] = False
    frame["unit_cost"] = np.nan
    columns = [
        *CANONICAL_COLUMNS,
        *CATEGORICAL,
        "feat",
    ]
    return frame[columns]


def load_oj(cache_dir: Path = CACHE_DIR) -> SalesHistory:
    """Dominick's orange juice as a weekly SalesHistory (cached Parquet after the first call)."""
    cached = cache_dir / FRAME_FILE
    if cached.is_file():
        frame = pd.read_parquet(cached)
    else:
        from promogym.io import atomic_write_with

        frame = yx_to_frame(read_yx(fetch_rda(cache_dir)))
        atomic_write_with(cached, lambda tmp: frame.to_parquet(tmp, index=False))
    return SalesHistory(
        frame=frame, freq="W", source=f"Dominick's orange juice ({cached})", categorical=CATEGORICAL
    )


def main() -> None:
    history = load_oj()
    print(history.describe())
    print(f"weeks           {date_to_week(history.frame['date']).min()}..", end="")
    print(date_to_week(history.frame["date"]).max())


if __name__ == "__main__":
    sys.exit(main())
