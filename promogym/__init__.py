"""promogym: learn a shop's demand simulator from its sales history, train promotion agents in it."""

from __future__ import annotations

from promogym.config import CampaignConfig, load_config
from promogym.errors import ConfigError, DataError, PromogymInputError

__version__ = "0.1.0"

__all__ = [
    "CampaignConfig",
    "ConfigError",
    "DataError",
    "PromogymInputError",
    "__version__",
    "load_config",
    "load_run",
]


def __getattr__(name: str) -> object:
    """Lazy exports: ``promogym.load_run`` imports torch and SB3 only when first used."""
    if name == "load_run":
        from promogym.run import load_run

        return load_run
    raise AttributeError(f"module 'promogym' has no attribute {name!r}")
