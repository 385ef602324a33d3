"""What a study's trials are compared under, kept with the study so that a resume keeps it.

A front mixes trials only if they trained alike: the training config (budget, batch size,
recipe and its overrides, teacher path), the quality config (samples, guard and its bounds)
and the base seed. A new study stores them; a resume that does not name them (no training
flag, no `--space`, no `--seed`) takes them from the study, and one that names other values is
refused in one line naming both. Device, cohort and worker count are not settings: they
change how fast trials train, not what they are.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from gas_nas.common.errors import GasNasError
from gas_nas.models.spec import QualityConfig, TrainConfig
from gas_nas.study.record import TrialRecord

SETTINGS_ATTR = "gas_nas:settings"  # study user attribute: StudySettings.to_dict()
PARTS = ("train", "quality", "seed")


@dataclass(frozen=True)
class StudySettings:
    train: TrainConfig
    quality: QualityConfig | None  # None: an older study, whose trials did not record it
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {"train": self.train.to_dict(), "quality": self.quality.to_dict() if self.quality else None, "seed": self.seed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySettings:
        quality = data.get("quality")
        return cls(TrainConfig.from_dict(data["train"]), QualityConfig.from_dict(quality) if quality else None, int(data["seed"]))


def stored_settings(study: Any) -> StudySettings | None:
    """The study's settings; for a study from before they were stored, what its first trained
    trial recorded (its train config, and its base seed: a trial's seed is base + number)."""
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if isinstance(stored, dict):
        return StudySettings.from_dict(stored)
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        r = TrialRecord.of(t)
        if r.train and r.metrics is not None:
            return StudySettings(TrainConfig.from_dict(r.train), None, int(r.metrics.seed) - t.number)
    return None


def keep_settings(study: Any, wanted: StudySettings, named: set[str]) -> StudySettings:
    """The settings this run trains with: the study's, where the run did not name them (`named`:
    parts of PARTS the user gave on the command line or through `--space`); a named part that
    differs is refused. A study with none stored gets `wanted`, stored now."""
    had = stored_settings(study)
    if had is None:
        study.set_user_attr(SETTINGS_ATTR, wanted.to_dict())
        return wanted
    for part in PARTS:
        old, new = getattr(had, part), getattr(wanted, part)
        if part in named and old is not None and old != new:
            raise GasNasError(f"study {study.study_name!r} trains with {_describe(part, old, new)}; this run asks {_describe(part, new, old)}. "
                              f"Resume without that setting to continue the study as it is, or use another --study")
    kept = StudySettings(had.train, had.quality or wanted.quality, had.seed)
    if not isinstance(study.user_attrs.get(SETTINGS_ATTR), dict):
        study.set_user_attr(SETTINGS_ATTR, kept.to_dict())  # an older study: from now on stored
    return kept


def _describe(part: str, value: Any, other: Any) -> str:
    """`value` in the words of what differs from `other`: "iterations 40, batch_size 32", "seed 3"."""
    if part == "seed":
        return f"seed {value}"
    mine, theirs = value.to_dict(), other.to_dict()
    keys = [k for k in mine if mine.get(k) != theirs.get(k)] or list(mine)[:3]
    return ", ".join(f"{part}.{k} {mine.get(k)}" for k in keys)


def apply(space: Any, settings: StudySettings) -> Any:
    """The space with the study's training and quality settings."""
    return dataclasses.replace(space, train=settings.train, quality=settings.quality or space.quality)


__all__ = ["SETTINGS_ATTR", "StudySettings", "apply", "keep_settings", "stored_settings"]
