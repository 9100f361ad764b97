"""Errors a user can fix. The CLI prints them on one line and exits with code 2."""

from __future__ import annotations


class PromogymInputError(ValueError):
    """Bad input from the user (data file, config, CLI option, API argument).

    The message is one line that names the source (file, row, column or key) and the fix.
    """

    exit_code = 2


class DataError(PromogymInputError):
    """A sales-history file breaks the data contract."""


class ConfigError(PromogymInputError):
    """A campaign config is missing a key, has an unknown key, or a value out of range."""
