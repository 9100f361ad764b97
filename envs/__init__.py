"""Environments: the reference market, its exact optimum, baselines and the FlashSale env."""
