"""gas-nas: neural architecture search for small GAN discriminators (after the GAS study).

Public names load on first use (module `__getattr__`), so `gas-nas --help`, `--version` and
usage errors answer without importing torch or Optuna.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_HOMES = {
    "DataError": "errors",
    "GasNasError": "errors",
    "SpaceError": "errors",
    "StorageError": "errors",
    "param_count": "metrics",
    "param_mb": "metrics",
    "RECIPES": "recipes",
    "Recipe": "recipes",
    "get_recipe": "recipes",
    "build_discriminator": "models",
    "build_generator": "models",
    "SearchSpace": "space",
    "load_space": "space",
    "sample": "space",
    "DiscriminatorSpec": "spec",
    "QualityConfig": "spec",
    "SearchConfig": "spec",
    "TrainConfig": "spec",
    "load_arch": "spec",
    "save_arch": "spec",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'gas_nas' has no attribute {name!r}")
    return getattr(importlib.import_module(f"gas_nas.{_HOMES[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
