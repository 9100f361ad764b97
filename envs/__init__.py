"""Environments: the reference market, its exact optimum, baselines and the FlashSale env.

Importing this package registers ``promogym/FlashSale-v0`` with Gymnasium
(:class:`promogym.envs.flash_sale.FlashSaleEnv`; keyword arguments of ``gymnasium.make``
go to its constructor).
"""

import gymnasium

FLASH_SALE_ID = "promogym/FlashSale-v0"

if FLASH_SALE_ID not in gymnasium.registry:
    gymnasium.register(id=FLASH_SALE_ID, entry_point="promogym.envs.flash_sale:FlashSaleEnv")
