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
]
