"""Forecasters: one contract for the transformer and the baseline demand forecasters."""
