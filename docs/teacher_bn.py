#!/usr/bin/env python
"""How should a frozen batch-norm teacher judge generated digits: running statistics or the batch's?

The GAS discriminator (paper case 1) has batch norm and is trained in train mode: every call
normalises with the statistics of the batch it is given, and D(real) and D(fake) are separate
calls, so during training the teacher judged each fake batch with that fake batch's own
statistics. Its running statistics are an average over real and fake batches. This script
trains a teacher (case 1) for a short budget, then judges generated digits both ways and
compares with what the teacher output during training:

  eval   the teacher in eval mode (running statistics): what the `dgl` recipe does;
  batch  each batch's own statistics, computed without updating the buffers (a copy whose
         batch-norm layers do not track running statistics).

Generated digits come from the teacher's own generator (what training saw) and from the
generator of a small student (paper case 6) trained alone for the same budget (what a `dgl`
student's generator looks like at the stage switch).

    OMP_NUM_THREADS=1 python docs/teacher_bn.py --iterations 400
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch
from torch import nn


def batch_stats_view(D: nn.Module) -> nn.Module:
    """A copy of D whose batch norms use each batch's statistics and update nothing."""
    view = copy.deepcopy(D)
    for m in view.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
            m.running_mean = m.running_var = m.num_batches_tracked = None
    return view.requires_grad_(False)


def judge(D: nn.Module, batches: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([D(b).flatten() for b in batches])


def grad_on_images(D: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    x = batch.clone().requires_grad_(True)
    (0.5 * (D(x) - 1).square().mean()).backward()
    return x.grad.flatten()


def main() -> None:
    from gas_nas.models.space import load_space
    from gas_nas.models.spec import TrainConfig
    from gas_nas.trial.data import load_mnist
    from gas_nas.trial.train import train_cohort

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=400)
    p.add_argument("--batches", type=int, default=20, help="batches of 32 judged per source")
    p.add_argument("--data-dir")
    args = p.parse_args()
    torch.set_num_threads(1)
    real, _ = load_mnist(args.data_dir, train=True)
    cases = load_space().cases
    train = TrainConfig(iterations=args.iterations, log_every=max(1, args.iterations // 8))
    start = time.perf_counter()
    teacher_cohort, (teacher_hist,) = train_cohort([cases[0].spec], [0], train, real)
    student_cohort, _ = train_cohort([cases[5].spec], [1], train, real)
    seconds = time.perf_counter() - start
    D = teacher_cohort.discriminators[0]
    eval_view = copy.deepcopy(D).eval().requires_grad_(False)
    batch_view = batch_stats_view(D)
    gen = torch.Generator().manual_seed(7)
    reals = [real[torch.randint(0, real.shape[0], (32,), generator=gen)] for _ in range(args.batches)]
    out = {"iterations": args.iterations, "train_seconds": round(seconds, 1),
           "teacher_last_interval": {"d_loss": teacher_hist.d_losses[-1], "g_loss": teacher_hist.g_losses[-1]}}
    with torch.no_grad():
        scores_real = {"eval": judge(eval_view, reals), "batch": judge(batch_view, reals)}
    for source, cohort in (("teacher's G", teacher_cohort), ("student's G (case 6)", student_cohort)):
        G = cohort.generator(0).train()  # as during training: G's own batch statistics
        with torch.no_grad():
            fakes = [G(torch.randn(32, 100, generator=gen)) for _ in range(args.batches)]
        row = {}
        for mode, view in (("eval", eval_view), ("batch", batch_view)):
            with torch.no_grad():
                f = judge(view, fakes)
            r = scores_real[mode]
            row[mode] = {
                "mean D(real)": float(r.mean()),
                "mean D(fake)": float(f.mean()),
                "teacher G loss 0.5*(D(fake)-1)^2": float((0.5 * (f - 1).square()).mean()),
                "P(D(real) > D(fake))": float((r[:, None] > f[None, :]).float().mean()),
            }
        g_eval, g_batch = grad_on_images(eval_view, fakes[0]), grad_on_images(batch_view, fakes[0])
        row["cosine of the two modes' gradients on the fakes"] = float(torch.nn.functional.cosine_similarity(g_eval, g_batch, dim=0))
        out[source] = row
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
