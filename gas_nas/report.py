"""Files a trial leaves behind: checkpoints that carry their spec, a sample grid, loss curves."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torchvision.utils import save_image

from gas_nas.spec import DiscriminatorSpec, TrainConfig, save_arch
from gas_nas.train import TrialOutcome

SAMPLES_PNG = "samples.png"
LOSSES_PNG = "losses.png"
FEW_POINTS = 50  # up to this many logged points, each is drawn as a marker too


def save_grid(images: torch.Tensor, path: Path) -> Path:
    """An 8-wide grid of (B, 1, 28, 28) images in [-1, 1]."""
    save_image(images.float().clamp(-1, 1), path, nrow=8, normalize=True, value_range=(-1, 1), padding=2)
    return path


def save_loss_plot(metrics: dict, path: Path, title: str = "") -> Path:
    """D and G loss per log interval, with the LSGAN equilibrium levels (0.25, 0.125) dashed."""
    import matplotlib.pyplot as plt

    fig = loss_figure(metrics, title)
    fig.savefig(path)
    plt.close(fig)
    return path


def loss_figure(metrics: dict, title: str = ""):
    """The loss-curve figure; few logged points get markers (one point alone draws no line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    marker = "o" if len(metrics["log_steps"]) <= FEW_POINTS else None
    ax.plot(metrics["log_steps"], metrics["d_losses"], label="D loss", marker=marker, markersize=4)
    ax.plot(metrics["log_steps"], metrics["g_losses"], label="G loss", marker=marker, markersize=4)
    if metrics.get("teacher_losses"):  # recipe dgl: the teacher's term, beside (not inside) G's own loss
        ax.plot(metrics["log_steps"], metrics["teacher_losses"], label="teacher term", marker=marker, markersize=4, color="C2")
    ax.axhline(0.25, color="C0", ls="--", lw=0.8, label="D at equilibrium")
    ax.axhline(0.125, color="C1", ls="--", lw=0.8, label="G at equilibrium")
    ax.set_xlabel("iteration")
    ax.set_ylabel("LSGAN loss")
    ax.set_title(title or f"imbalance {metrics['imbalance']:.3f}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


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
        "losses": save_loss_plot(metrics, out / LOSSES_PNG, title),
        "metrics": out / "metrics.json",
        "arch": save_arch(out / "arch.yaml", spec, train, {"metrics": _scalars(metrics)}),
    }
    trained = train.to_dict()  # the recipe and its overrides, as in arch.yaml
    torch.save({"state_dict": outcome.generator.state_dict(), "z_dim": train.z_dim, "train": trained}, paths["generator"])
    torch.save({"state_dict": outcome.discriminator.state_dict(), "spec": spec.to_dict(), "train": trained}, paths["discriminator"])
    paths["metrics"].write_text(json.dumps(metrics, indent=2))
    return paths


def _scalars(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not isinstance(v, list)}
