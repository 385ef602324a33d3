"""The one exception type users see: a single line, no traceback (the CLI prints it and exits 2)."""

from __future__ import annotations


class GasNasError(Exception):
    """A problem with the user's input or environment, worded as one line that says what to do."""


class SpaceError(GasNasError):
    """A search-space or architecture YAML that cannot be used (names file, key path, what is allowed)."""


class DataError(GasNasError):
    """MNIST could not be found, read or downloaded."""


class StorageError(GasNasError):
    """An Optuna storage URL, study or directory that cannot be used."""
