"""The paper cases as rows: what `gas-nas cases` prints and the reproduction tables reuse."""

from __future__ import annotations

import re

import torch

from gas_nas.models import sparsity
from gas_nas.models.networks import build_discriminator
from gas_nas.models.space import SearchSpace
from gas_nas.trial.memory import MB, estimate
from gas_nas.trial.metrics import param_count


def slug(name: str) -> str:
    """A file-name-safe form of a case name: '3 inception k=32' -> 'case3-inception-k32'."""
    text = re.sub(r"[^a-z0-9]+", "-", name.lower().replace("=", "")).strip("-")
    return f"case{text}" if text[:1].isdigit() else text


def case_rows(space: SearchSpace) -> list[dict]:
    """One dict per case in paper order; `peak_mb` (training step on CUDA) only where CUDA exists.
    `param_mb` is the stored size (a sparse case's nonzeros and mask bits, see gas_nas/models/sparsity.py).
    `estimate_mb` is the predicted peak of a whole trial (`gas_nas.trial.memory`, the space's budget,
    on the device a default run would use), the figure a run is refused by.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for case in space.cases:
        model = build_discriminator(case.spec)
        sparsity.attach(model, case.spec.density, sparsity.mask_generator(0))
        row = {
            "name": case.name,
            "slug": slug(case.name),
            "params": param_count(model),
            "density": case.spec.density,
            "param_mb": round(sparsity.stored_bytes(model) / 2**20, 6),
            "estimate_mb": round(estimate([case.spec], space.train, space.quality, device).peak / MB, 1),
            "paper_mb": case.paper_mb,
            "note": case.note,
            "arch": case.spec.to_dict(),
        }
        if torch.cuda.is_available():
            from gas_nas.trial.train import peak_train_memory_mb

            row["peak_mb"] = round(peak_train_memory_mb(case.spec, space.train, torch.device("cuda")), 1)
        rows.append(row)
    return rows
