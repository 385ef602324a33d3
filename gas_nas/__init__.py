"""gas-nas: neural architecture search for small GAN discriminators (after the GAS study).

Public names load on first use (module `__getattr__`), so `gas-nas --help`, `--version` and
usage errors answer without importing torch or Optuna.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_HOMES = {
    "DataError": "common.errors",
    "GasNasError": "common.errors",
    "SpaceError": "common.errors",
    "StorageError": "common.errors",
    "param_count": "trial.metrics",
    "param_mb": "trial.metrics",
    "RECIPES": "models.recipes",
    "Recipe": "models.recipes",
    "get_recipe": "models.recipes",
    "build_discriminator": "models.networks",
    "build_generator": "models.networks",
    "SearchSpace": "models.space",
    "load_space": "models.space",
    "sample": "models.space",
    "DiscriminatorSpec": "models.spec",
    "QualityConfig": "models.spec",
    "SearchConfig": "models.spec",
    "TrainConfig": "models.spec",
    "load_arch": "models.spec",
    "save_arch": "models.spec",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'gas_nas' has no attribute {name!r}")
    return getattr(importlib.import_module(f"gas_nas.{_HOMES[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
