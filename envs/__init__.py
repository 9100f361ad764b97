"""Environments: the reference market, its exact optimum, baselines and the FlashSale env.

Importing this package registers ``promogym/FlashSale-v0`` with Gymnasium
(:class:`promogym.envs.flash_sale.FlashSaleEnv`, also importable as
``promogym.envs.FlashSaleEnv``; keyword arguments of ``gymnasium.make`` go to its
constructor).
"""

from typing import Any

import gymnasium

FLASH_SALE_ID = "promogym/FlashSale-v0"

if FLASH_SALE_ID not in gymnasium.registry:
    gymnasium.register(id=FLASH_SALE_ID, entry_point="promogym.envs.flash_sale:FlashSaleEnv")

__all__ = ["FLASH_SALE_ID", "FlashSaleEnv"]


def __getattr__(name: str) -> Any:
    # Lazy: importing the package (e.g. for the registration) does not load the env module.
    if name == "FlashSaleEnv":
        from promogym.envs.flash_sale import FlashSaleEnv

        return FlashSaleEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
