"""Forecasters: one contract for the transformer and the baseline demand forecasters."""

TRANSFORMER_CONTEXT_LENGTH = 42
"""The default of ``TransformerConfig.context_length``: periods of history every forecast and
every campaign start needs. Here, not in :mod:`.transformer`, so that ``check-data`` can name
it without importing torch and transformers."""
