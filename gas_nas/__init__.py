"""gas-nas: neural architecture search for small GAN discriminators (after the GAS study)."""

from __future__ import annotations

from gas_nas.errors import DataError, GasNasError, SpaceError, StorageError
from gas_nas.metrics import param_count, param_mb
from gas_nas.models import build_discriminator, build_generator
from gas_nas.recipes import RECIPES, Recipe, get_recipe
from gas_nas.space import SearchSpace, load_space, sample
from gas_nas.spec import DiscriminatorSpec, QualityConfig, SearchConfig, TrainConfig, load_arch, save_arch

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "DiscriminatorSpec",
    "GasNasError",
    "QualityConfig",
    "RECIPES",
    "Recipe",
    "SearchConfig",
    "SearchSpace",
    "SpaceError",
    "StorageError",
    "TrainConfig",
    "build_discriminator",
    "build_generator",
    "get_recipe",
    "load_arch",
    "load_space",
    "param_count",
    "param_mb",
    "sample",
    "save_arch",
]
