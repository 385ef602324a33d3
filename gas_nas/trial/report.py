"""Files a trial leaves behind: checkpoints that carry their spec, a sample grid, loss curves."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torchvision.utils import save_image

from gas_nas.models import sparsity
from gas_nas.models.spec import DiscriminatorSpec, TrainConfig, save_arch
from gas_nas.trial.results import TrialOutcome

SAMPLES_PNG = "samples.png"
LOSSES_PNG = "losses.png"
FEW_POINTS = 50  # up to this many logged points, each is drawn as a marker too


def save_grid(images: torch.Tensor, path: Path) -> Path:
    """An 8-wide grid of (B, 1, 28, 28) images in [-1, 1]."""
    save_image(images.float().clamp(-1, 1), path, nrow=8, normalize=True, value_range=(-1, 1), padding=2)
    return path


def save_loss_plot(metrics: dict, path: Path, title: str = "", curve: dict | None = None) -> Path:
    """The loss-curve PNG (see `loss_figure`)."""
    import matplotlib.pyplot as plt

    fig = loss_figure(metrics, title, curve)
    fig.savefig(path)
    plt.close(fig)
    return path


def loss_figure(metrics: dict, title: str = "", curve: dict | None = None):
    """D and G loss over training, readable for 3, 40 or 2000 iterations.

    `curve` (a trial's `TrialOutcome.curve`: a point per iteration up to 200 iterations, else
    per bin of iterations) draws the lines; the logged interval means (`metrics`, what the
    imbalance is computed from) are hollow squares, and the last quarter of them, the imbalance's
    window, is shaded. Without `curve` (older runs) the logged means are the lines. The dashed
    lines are the LSGAN equilibrium (0.25, 0.125); the x axis always starts at iteration 0.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    steps, d, g = metrics["log_steps"], metrics["d_losses"], metrics["g_losses"]
    fine = curve if curve and curve.get("steps") else {"steps": steps, "d_losses": d, "g_losses": g}
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    marker = "o" if len(fine["steps"]) <= FEW_POINTS else None
    every = _spacing(fine["steps"])
    what = "per iteration" if every == 1 else f"mean of every {every} iterations"
    ax.plot(fine["steps"], fine["d_losses"], color="C0", lw=1.2, marker=marker, markersize=3.5, label=f"D loss ({what})")
    ax.plot(fine["steps"], fine["g_losses"], color="C1", lw=1.2, marker=marker, markersize=3.5, label=f"G loss ({what})")
    if fine is curve:
        ax.plot(steps, d, ls="none", marker="s", markersize=6, mfc="white", mec="C0", mew=1.2, label="logged means (the imbalance uses these)")
        ax.plot(steps, g, ls="none", marker="s", markersize=6, mfc="white", mec="C1", mew=1.2, label="_logged G")
    keep = max(1, math.ceil(len(steps) / 4))  # gas_nas.trial.metrics.last_quarter_mean's window
    if len(steps) > keep:  # shaded only where it is part of the run: one logged mean is the whole run
        ax.axvspan(steps[-keep - 1], steps[-1], color="0.92", zorder=0, label="imbalance window (last quarter of the log)")
    ax.axhline(0.25, color="C0", ls="--", lw=0.8, label="equilibrium: D 0.25, G 0.125")
    ax.axhline(0.125, color="C1", ls="--", lw=0.8, label="_G at equilibrium")
    last = max([*fine["steps"], *steps, 1])
    ax.set_xlim(0, last + max(0.5, last * 0.03))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if metrics.get("teacher_losses"):  # recipe dgl: the teacher's term, beside (not inside) G's own loss
        ax.plot(steps, metrics["teacher_losses"], label="teacher term (logged means)", marker="o" if len(steps) <= FEW_POINTS else None, markersize=3.5, color="C2")
    ax.set_xlabel("iteration")
    ax.set_ylabel("LSGAN loss")
    imbalance = metrics.get("imbalance")
    score = f"imbalance {imbalance:.3f}" if isinstance(imbalance, (int, float)) else ""
    ax.set_title(": ".join(t for t in (title, score) if t), fontsize=11)
    ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def _spacing(steps: list[int]) -> int:
    """Iterations between curve points (the first point may come after a shorter bin: the last one)."""
    return steps[1] - steps[0] if len(steps) > 1 else max(steps[0], 1) if steps else 1


def save_trial(outcome: TrialOutcome, out_dir: str | Path, spec: DiscriminatorSpec, train: TrainConfig, title: str = "") -> dict[str, Path]:
    """Write checkpoints (each carrying what rebuilds its model, and the recipe it was trained
    with), PNGs, metrics.json and arch.yaml."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = outcome.metrics.to_dict()
    paths = {
        "generator": out / "generator.pt",
        "discriminator": out / "discriminator.pt",
        "samples": save_grid(outcome.grid, out / SAMPLES_PNG),
        "losses": save_loss_plot(metrics, out / LOSSES_PNG, title, outcome.curve),
        "metrics": out / "metrics.json",
        "arch": save_arch(out / "arch.yaml", spec, train, {"metrics": _scalars(metrics)}),
    }
    trained = train.to_dict()  # the recipe and its overrides, as in arch.yaml
    torch.save({"state_dict": outcome.generator.state_dict(), "z_dim": train.z_dim, "train": trained}, paths["generator"])
    torch.save(discriminator_checkpoint(outcome.discriminator, spec, trained), paths["discriminator"])
    paths["metrics"].write_text(json.dumps(metrics | {"loss_curve": outcome.curve}, indent=2))  # the curve: for plots, not a metric
    return paths


def discriminator_checkpoint(D: torch.nn.Module, spec: DiscriminatorSpec, train: dict) -> dict:
    """What `discriminator.pt` holds: the spec, the recipe and the weights; a sparse D's masked
    weights as nonzero values plus mask bits (`sparsity.sparse_state`), so the file is as small
    as the `d_size_mb` it reports."""
    weights = {"sparse_state": sparsity.sparse_state(D)} if sparsity.masks_of(D) is not None else {"state_dict": D.state_dict()}
    return weights | {"spec": spec.to_dict(), "train": train}


def load_discriminator(path: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, DiscriminatorSpec, dict]:
    """A `discriminator.pt` back as (model, spec, train dict); tensors only (`weights_only`)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model, spec = discriminator_from_checkpoint(ckpt)
    return model.to(device), spec, ckpt.get("train", {})


def discriminator_from_checkpoint(ckpt: dict, where: str = "discriminator.pt", device: torch.device | str = "cpu") -> tuple[torch.nn.Module, DiscriminatorSpec]:
    """Rebuild the model a loaded `discriminator.pt` holds, dense or sparse (`discriminator_checkpoint`)."""
    from gas_nas.models.networks import build_discriminator

    spec = DiscriminatorSpec.from_dict(ckpt["spec"], f"{where}: spec")
    model = build_discriminator(spec, device=device)
    if "sparse_state" in ckpt:
        sparsity.load_sparse_state(model, ckpt["sparse_state"], spec.density)
    else:
        model.load_state_dict(ckpt["state_dict"])
    return model, spec


def _scalars(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not isinstance(v, list)}
