"""LSGAN trials: train the GAS generator against spec discriminators, then measure them.

`run_cohort(specs, seeds, ...)` trains K trials as one (a fused generator, K discriminators,
one backward per step) and `run_trial` is its cohort of one. Neither has flags or globals,
and neither raises for a run that goes bad: divergence ends a trial early with a reason.
Speed: MNIST sits on the training device, batches are drawn there, losses are summed on the
device and read once per log interval (no host sync in between), K trials share every
generator kernel, and on CUDA the whole iteration replays as one CUDA graph.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
from torch import nn

from gas_nas.common.interrupt import Interrupted
from gas_nas.common.machine import cpu_model, describe
from gas_nas.models import sparsity
from gas_nas.models.networks import FusedGenerator, build_discriminator, build_generator
from gas_nas.models.recipes import get_recipe, make_optimizer
from gas_nas.models.spec import DiscriminatorSpec, QualityConfig, TrainConfig
from gas_nas.trial.metrics import imbalance as imbalance_of
from gas_nas.trial.metrics import last_quarter_mean, param_count, sample_quality
from gas_nas.trial.results import TrialMetrics, TrialOutcome
from gas_nas.trial.steps import step_parts


class Teacher(Protocol):
    """What training reads of a frozen teacher (gas_nas.trial.teacher.Teacher builds one)."""

    module: nn.Module
    sha256: str
    params: int
    mb: float

GRID_SAMPLES = 64
CPU_COHORT = 1  # benchmarks/search_speed.py on 2 CPU cores: cohorts of 2 and 4 were no faster (0.97x, 0.98x)
CUDA_COHORT_MAX = 16  # the H100 reference: gains level off well before this many trials per kernel
CUDA_MEMORY_HEADROOM = 4  # a sampled discriminator may need several times what paper case 1 does
Progress = Callable[[int, int], None]


@dataclass
class TrialHistory:
    """One trial's training log: interval-mean losses (every `log_every` iterations: what the
    imbalance is computed from), the finer loss curve drawn in losses.png, and how training ended."""

    log_steps: list[int] = field(default_factory=list)
    d_losses: list[float] = field(default_factory=list)
    g_losses: list[float] = field(default_factory=list)
    teacher_losses: list[float] = field(default_factory=list)  # recipes with a teacher only
    status: str = "complete"
    reason: str = ""
    iterations: int = 0
    curve_steps: list[int] = field(default_factory=list)  # end of each curve bin (`curve_every` iterations)
    curve_d: list[float] = field(default_factory=list)  # bin-mean D loss: for the plot only, never an objective
    curve_g: list[float] = field(default_factory=list)


CURVE_POINTS = 200  # the plotted loss curve has at most this many points (every iteration up to 200)


def curve_every(iterations: int) -> int:
    """Iterations per point of the plotted loss curve: 1 up to CURVE_POINTS iterations (3 -> 3
    points, 40 -> 40), then as few as keep CURVE_POINTS points (2000 -> every 10)."""
    return max(1, math.ceil(iterations / CURVE_POINTS))


class Cohort:
    """K trials trained as one: a fused generator, K discriminators, one optimiser per side.

    Trial i's initial weights come from `torch.manual_seed(seeds[i])` alone and its real-batch
    indices and noise from its own `torch.Generator`, so its numbers do not depend on the
    cohort it runs in. Losses are summed over trials for one backward per step; gradients do
    not cross trials (grouped convs, per-trial BatchNorm, separate discriminators).
    Every tensor is created on `real.device` explicitly. `step()` is one whole iteration on
    static buffers (what a CUDA graph captures); `draw()` refills those buffers.

    What the recipe adds to the plain updates (a teacher's term, the one-stage update) lives in
    `parts` (gas_nas.trial.steps); a recipe with a teacher takes `teacher`, a frozen discriminator in
    eval mode.
    """

    def __init__(self, specs: list[DiscriminatorSpec], seeds: list[int], train: TrainConfig, real: torch.Tensor, *, capturable: bool = False, teacher: nn.Module | None = None):
        device = self.device = real.device
        self.train, self.real, self.k = train, real, len(specs)
        self.recipe = recipe = get_recipe(train.recipe)  # its loss and init; its settings are already in `train`
        gens, self.discriminators = [], []
        for spec, seed in zip(specs, seeds):
            torch.manual_seed(seed)
            gens.append(build_generator(train.z_dim, train.init_std, recipe.init, device=device))
            self.discriminators.append(build_discriminator(spec, train.init_std, recipe.init, device=device))
        self.G = FusedGenerator.from_generators(gens)
        if train.channels_last:
            self.G.to(memory_format=torch.channels_last)
            for D in self.discriminators:
                D.to(memory_format=torch.channels_last)
        # Sparse discriminators (density < 1): ERK masks from each trial's own stream, applied after every
        # D update; attached after any layout change, which would replace the mask buffers it holds.
        self.mask_rngs = [sparsity.mask_generator(seed) for seed in seeds]
        self.masks = [sparsity.attach(D, spec.density, rng) for D, spec, rng in zip(self.discriminators, specs, self.mask_rngs)]
        self.g_params = list(self.G.parameters())
        self.d_params = [list(D.parameters()) for D in self.discriminators]
        self.opt_g = make_optimizer(self.g_params, train, device, capturable=capturable)
        self.opt_d = make_optimizer([p for ps in self.d_params for p in ps], train, device, capturable=capturable)
        self.rngs = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        steps, batch = train.d_steps + train.g_steps, train.batch_size
        self.index = torch.zeros(self.k, train.d_steps, batch, dtype=torch.int64, device=device)
        self.noise = torch.zeros(self.k, steps, batch, train.z_dim, device=device)
        self.sums = torch.zeros(self.k, 3, device=device)  # per trial: D loss, G loss, teacher term summed over the log interval
        self.no_teacher = torch.zeros(self.k, device=device)
        self.parts = step_parts(recipe, train, self.k, device, teacher, capturable)

    def draw(self) -> None:
        """This iteration's real-batch indices and noise, from each trial's own generator."""
        n = self.real.shape[0]
        for i, rng in enumerate(self.rngs):
            torch.randint(0, n, self.index[i].shape, generator=rng, device=self.device, out=self.index[i])
            self.noise[i].normal_(generator=rng)

    def _autocast(self):
        # no cast cache: a CUDA graph must not replay casts of last iteration's weights (PyTorch's advice)
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.train.precision == "bf16", cache_enabled=False)

    def step(self) -> None:
        """One iteration for every trial: d_steps D updates, then g_steps G updates. A one-stage
        recipe (OSGAN) takes the last D update and the first G update from one backward."""
        train, one_stage = self.train, self.parts.one_stage
        for s in range(train.d_steps):
            if one_stage is not None and s == train.d_steps - 1:
                d_losses, g_losses = one_stage.backward(self, s)
                self.opt_d.step()
                self.opt_g.step()
            else:
                d_losses = self.d_backward(s)
                self.opt_d.step()
            self.apply_masks()
        t_terms = self.no_teacher
        for s in range(train.d_steps + (one_stage is not None), train.d_steps + train.g_steps):
            g_losses, t_terms = self.g_backward_terms(s)
            self.opt_g.step()
        self.sums += torch.stack([d_losses.detach(), g_losses.detach(), t_terms.detach()], dim=1)

    def apply_masks(self) -> None:
        """Keep every sparse discriminator's masked-out weights at zero (in place, graph-safe)."""
        for masks in self.masks:
            if masks is not None:
                masks.apply()

    def update_masks(self, iteration: int) -> None:
        """Prune and regrow the sparse discriminators' masks when due (between iterations, in place)."""
        if not sparsity.update_due(iteration, self.train):
            return
        fraction = sparsity.update_fraction(iteration, self.train)
        for masks, rng in zip(self.masks, self.mask_rngs):
            if masks is not None:
                masks.update(fraction, self.train.sparse_regrow, rng)

    def d_backward(self, s: int) -> torch.Tensor:
        """D's gradients (real -> 1, fake -> 0) on noise slot `s`; per-trial D losses."""
        Ds = self.discriminators
        x = self.real[self.index[:, s]]  # (K, B, 1, 28, 28)
        with torch.no_grad(), self._autocast():
            fake = self.G(self.noise[:, s])
        with self._autocast():
            d_losses = torch.stack([self.recipe.d_loss(D(x[i]), D(fake[i])) for i, D in enumerate(Ds)])
        self.opt_d.zero_grad(set_to_none=False)
        d_losses.sum().backward()
        return d_losses

    def g_backward(self, s: int) -> torch.Tensor:
        """G's gradients (D(G(z)) -> 1) on noise slot `s`; they flow through each D, only G's are kept."""
        return self.g_backward_terms(s)[0]

    def g_backward_terms(self, s: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`g_backward`, plus the teacher term when it is on: per-trial student G losses and
        teacher terms (zeros without a teacher); G's gradient is that of their sum."""
        Ds = self.discriminators
        with self._autocast():
            fake = self.G(self.noise[:, s])
            g_losses = torch.stack([self.recipe.g_loss(D(fake[i])) for i, D in enumerate(Ds)])
            t_terms = self.parts.teacher(fake) if self.parts.teacher is not None else None
        self.opt_g.zero_grad(set_to_none=False)
        if t_terms is None:
            g_losses.sum().backward(inputs=self.g_params)
            return g_losses, self.no_teacher
        (g_losses.sum() + t_terms.sum()).backward(inputs=self.g_params)
        return g_losses, t_terms

    def read_interval(self, span: int) -> tuple[list[float], list[float], list[float], list[float]]:
        """Per-trial interval-mean D and G losses, teacher term and largest |weight|: the one host sync per log."""
        k = self.k
        g_max = torch.stack([p.detach().reshape(k, -1).abs().amax(dim=1) for p in self.g_params]).amax(dim=0)
        d_max = torch.stack([torch.stack([p.detach().abs().amax() for p in ps]).amax() for ps in self.d_params])
        table = torch.cat([self.sums / span, torch.maximum(g_max, d_max).unsqueeze(1)], dim=1).tolist()
        self.sums.zero_()
        return [r[0] for r in table], [r[1] for r in table], [r[2] for r in table], [r[3] for r in table]

    def generator(self, i: int) -> nn.Module:
        return self.G.generator(i)


def train_cohort(
    specs: list[DiscriminatorSpec],
    seeds: list[int],
    train: TrainConfig,
    real: torch.Tensor,
    *,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    cuda_graph: bool = True,
    teacher: nn.Module | None = None,
) -> tuple[Cohort, list[TrialHistory]]:
    """Train len(specs) trials together on `real` (N, 1, 28, 28) on its device.

    A trial that diverges stops being logged (its reason recorded) while the others go on; its
    weights keep changing but never reach another trial's. On CUDA the iteration is captured
    as one CUDA graph (`gas_nas.trial.graphs`) unless `cuda_graph` is False or capture fails.
    A recipe with a teacher needs `teacher` (frozen, eval mode); its term joins G's loss after
    iteration `train.teacher_start`. Raises `Interrupted` when `should_stop()` turns true.
    """
    from gas_nas.trial.graphs import make_runner

    use_graph = cuda_graph and real.device.type == "cuda"
    cohort = Cohort(specs, seeds, train, real, capturable=use_graph, teacher=teacher)
    run = make_runner(cohort, use_graph)
    hists = [TrialHistory() for _ in specs]
    live = set(range(cohort.k))
    curve = _Curve(cohort, curve_every(train.iterations))
    last_log = 0
    for it in range(1, train.iterations + 1):
        if should_stop is not None and should_stop():
            raise Interrupted
        if it == (train.teacher_start or 0) + 1 and cohort.parts.teacher is not None:
            cohort.parts.teacher.switch(True)  # stage two: the teacher joins G's loss
        cohort.draw()
        run()
        cohort.update_masks(it)
        curve.mark(it, last=it == train.iterations)
        if it % train.log_every == 0 or it == train.iterations:
            d_means, g_means, t_means, w_max = cohort.read_interval(it - last_log)
            curve.logged(d_means, g_means, it - last_log)
            last_log = it
            for i in sorted(live):
                h = hists[i]
                h.log_steps.append(it)
                h.d_losses.append(d_means[i])
                h.g_losses.append(g_means[i])
                if cohort.recipe.has_teacher:
                    h.teacher_losses.append(t_means[i])
                h.iterations = it
                reason = _divergence(d_means[i], g_means[i], w_max[i], train.divergence_loss)
                if reason:
                    h.status, h.reason = "diverged", f"{reason} at iteration {it}"
                    live.discard(i)
        if progress is not None:  # every iteration, from the host's count: no device sync
            progress(it, train.iterations)
        if not live:
            break
    curve.fill(hists)
    return cohort, hists


class _Curve:
    """The finer loss curve for losses.png, kept beside the log without another device sync.

    Every `every` iterations one small device copy snapshots the running interval sums
    (`cohort.sums`, which the log interval reads and zeroes); the host keeps the sums of the
    intervals already read. Once training ends (the last iteration always reads the log, so the
    device is in step) the snapshots come over in one transfer and become bin means. The log
    itself, and so every objective, is exactly what it was without this.
    """

    def __init__(self, cohort: Cohort, every: int):
        self.cohort, self.every = cohort, every
        n = math.ceil(cohort.train.iterations / every)
        self.snaps = torch.zeros(n, cohort.k, 2, device=cohort.device)
        self.steps: list[int] = []
        self.read = [[0.0, 0.0] for _ in range(cohort.k)]  # per trial: D and G loss sums of the intervals read so far
        self.bases: list[list[list[float]]] = []

    def mark(self, it: int, last: bool) -> None:
        if it % self.every and not last:
            return
        self.snaps[len(self.steps)].copy_(self.cohort.sums[:, :2])  # D and G (a teacher's term is logged, not drawn finer)
        self.steps.append(it)
        self.bases.append([list(r) for r in self.read])

    def logged(self, d_means: list[float], g_means: list[float], span: int) -> None:
        for r, d, g in zip(self.read, d_means, g_means):
            r[0] += d * span
            r[1] += g * span

    def fill(self, hists: list[TrialHistory]) -> None:
        snaps = self.snaps[: len(self.steps)].tolist()  # (points, K, 2)
        for i, h in enumerate(hists):
            prev_step, prev = 0, (0.0, 0.0)
            for j, step in enumerate(self.steps):
                if step > h.iterations:  # a diverged trial's curve ends where its log does
                    break
                total = (self.bases[j][i][0] + snaps[j][i][0], self.bases[j][i][1] + snaps[j][i][1])
                width = step - prev_step
                h.curve_steps.append(step)
                h.curve_d.append((total[0] - prev[0]) / width)
                h.curve_g.append((total[1] - prev[1]) / width)
                prev_step, prev = step, total


def train_gan(
    spec: DiscriminatorSpec,
    train: TrainConfig,
    real: torch.Tensor,
    *,
    seed: int = 0,
    progress: Progress | None = None,
    teacher: nn.Module | None = None,
) -> tuple[nn.Module, nn.Module, dict]:
    """One trial alone (a cohort of one). Returns (G, D, history as a dict)."""
    cohort, (hist,) = train_cohort([spec], [seed], train, real, progress=progress, teacher=teacher)
    return cohort.generator(0), cohort.discriminators[0], dataclasses.asdict(hist)


def seconds_per_trial(spec: DiscriminatorSpec, train: TrainConfig, real: torch.Tensor, *, timed: int = 3, seed: int = 0, teacher: nn.Module | None = None) -> float:
    """About how long `train.iterations` iterations of `spec` take on `real`'s device, from
    `timed` real ones after one untimed warm-up iteration (cheap: a few iterations; with a
    teacher, its stages in about their share)."""
    stamps: list[float] = []
    short = dataclasses.replace(train, iterations=1 + timed, log_every=1)
    train_gan(spec, short, real, seed=seed, progress=lambda done, total: stamps.append(time.perf_counter()), teacher=teacher)
    if len(stamps) < 2:  # diverged on the first iteration: nothing to time
        return 0.0
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1) * train.iterations


def _divergence(d_loss: float, g_loss: float, weight_max: float, limit: float) -> str:
    """Why training has diverged, or '' while it has not."""
    if not (math.isfinite(d_loss) and math.isfinite(g_loss)):
        return "loss is not finite"
    if max(abs(d_loss), abs(g_loss)) > limit:
        return f"loss exploded past {limit:g}"
    if not math.isfinite(weight_max):
        return "weights are not finite"
    return ""


@torch.no_grad()
def generate(G: nn.Module, n: int, z_dim: int, device: torch.device, seed: int, chunk: int = 500) -> torch.Tensor:
    """n samples from G in eval mode (BN running statistics), from seeded noise."""
    G.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    out = [G(torch.randn(min(chunk, n - i), z_dim, device=device, generator=gen)) for i in range(0, n, chunk)]
    return torch.cat(out)


def run_cohort(
    specs: list[DiscriminatorSpec],
    seeds: list[int],
    train: TrainConfig,
    quality: QualityConfig,
    *,
    real: torch.Tensor,
    held_out: torch.Tensor,
    classifier: nn.Module,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    cuda_graph: bool = True,
    teacher: Teacher | None = None,
) -> list[TrialOutcome]:
    """Train a cohort, then measure each trial's size, balance (imbalance, duality gap) and sample quality.

    A recipe with a teacher needs `teacher` (`gas_nas.trial.teacher`), one for all K trials; each
    trial records its sha256 and size. Balance is measured on the student's losses only.

    `held_out` is never trained on. A trial's `seconds` is the cohort's wall time divided by
    its size (what the trial cost). `peak_mb` (CUDA only) is `peak_train_memory_mb` of its spec,
    measured alone after the cohort: trials of a cohort share the device's memory, and the same
    definition then holds for every cohort size and for `gas-nas cases`.
    """
    from gas_nas.trial.balance import duality_gap
    from gas_nas.trial.discrimination import measure_discrimination

    device = real.device
    start = time.perf_counter()
    module = teacher.module if teacher is not None else None
    cohort, hists = train_cohort(specs, seeds, train, real, progress=progress, should_stop=should_stop, cuda_graph=cuda_graph, teacher=module)
    peaks = [peak_train_memory_mb(spec, train, device, teacher=module) if device.type == "cuda" else None for spec in specs]
    used = teacher if cohort.parts.teacher is not None else None
    measured = []
    for i, (spec, seed, hist) in enumerate(zip(specs, seeds, hists)):
        if should_stop is not None and should_stop():
            raise Interrupted
        G, D = cohort.generator(i), cohort.discriminators[i]
        fake = generate(G, quality.n_samples, train.z_dim, device, seed + 1)
        pick = torch.randperm(held_out.shape[0], generator=torch.Generator(device="cpu").manual_seed(seed), device="cpu")[: quality.n_samples]
        q = sample_quality(classifier, fake, held_out[pick.to(held_out.device)])
        grid = generate(G, GRID_SAMPLES, train.z_dim, device, seed=12345).cpu()
        steps = gap_steps(quality, train) if hist.status == "complete" else 0
        gap = duality_gap(G, D, held_out, train, steps, seed) if steps else math.nan
        disc = measure_discrimination(G, D, held_out, train.batch_size, train.z_dim, seed) if hist.status == "complete" else None
        measured.append((G, D, hist, q, grid, gap, disc))
    seconds = (time.perf_counter() - start) / len(specs)
    machine = describe(torch.cuda.get_device_name(device)) if device.type == "cuda" else describe(cpu_model(), torch.get_num_threads())
    outcomes = []
    for spec, seed, peak, (G, D, hist, q, grid, gap, disc) in zip(specs, seeds, peaks, measured):
        metrics = TrialMetrics(
            status=hist.status,
            reason=hist.reason,
            iterations=hist.iterations,
            d_params=param_count(D),
            d_param_mb=sparsity.stored_bytes(D) / 2**20,
            imbalance=imbalance_of(hist.d_losses, hist.g_losses),
            d_loss=last_quarter_mean(hist.d_losses),
            g_loss=last_quarter_mean(hist.g_losses),
            fid=float(q.fid),
            classes=int(q.classes),
            entropy=float(q.entropy),
            class_histogram=[int(c) for c in q.histogram],
            classifier_accuracy=float(getattr(classifier, "test_accuracy", float("nan"))),
            seconds=seconds,
            device=str(device),
            machine=machine,
            seed=seed,
            cohort=len(specs),
            peak_mb=peak,
            log_steps=hist.log_steps,
            d_losses=hist.d_losses,
            g_losses=hist.g_losses,
            duality_gap=gap,
            d_nonzero=sparsity.nonzero_params(D),
            teacher_sha256=used.sha256 if used else None,
            teacher_params=used.params if used else None,
            teacher_mb=used.mb if used else None,
            teacher_losses=hist.teacher_losses,
            **(dataclasses.asdict(disc) if disc else {}),
        )
        curve = {"steps": hist.curve_steps, "d_losses": hist.curve_d, "g_losses": hist.curve_g}
        outcomes.append(TrialOutcome(metrics=metrics, generator=G, discriminator=D, grid=grid, curve=curve))
    return outcomes


GAP_SHARE = 10  # the duality gap takes at most one best-response step per this many iterations


def gap_steps(quality: QualityConfig, train: TrainConfig) -> int:
    """`quality.duality_gap_steps`, but at most a tenth of the trial's iterations (200 at the
    paper's 2000), so the gap's share of a trial stays small and a quick look stays quick."""
    if not quality.duality_gap_steps:
        return 0
    return max(1, min(quality.duality_gap_steps, train.iterations // GAP_SHARE))


def run_trial(
    spec: DiscriminatorSpec,
    train: TrainConfig,
    quality: QualityConfig,
    *,
    real: torch.Tensor,
    held_out: torch.Tensor,
    classifier: nn.Module,
    seed: int = 0,
    progress: Progress | None = None,
    teacher: Teacher | None = None,
) -> TrialOutcome:
    """One trial alone: `run_cohort` with a cohort of one."""
    return run_cohort([spec], [seed], train, quality, real=real, held_out=held_out, classifier=classifier, progress=progress, teacher=teacher)[0]


def peak_train_memory_mb(spec: DiscriminatorSpec, train: TrainConfig, device: torch.device, teacher: nn.Module | None = None) -> float:
    """CUDA peak memory of one training iteration (G and D, batch from `train`), in MB, over
    what was already allocated (MNIST or other trials' tensors are not this one's)."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    resident = torch.cuda.memory_allocated(device)
    real = torch.rand(train.batch_size * 4, 1, 28, 28, device=device) * 2 - 1
    one = dataclasses.replace(train, iterations=1, log_every=1)
    if teacher is None and get_recipe(train.recipe).has_teacher:
        one = dataclasses.replace(one, teacher_weight=0.0)  # no teacher at hand: the student's own peak
    elif teacher is not None:
        one = dataclasses.replace(one, teacher_from=0.0)  # the teacher's forward and backward included
    train_cohort([spec], [0], one, real, cuda_graph=False, teacher=teacher)
    return (torch.cuda.max_memory_allocated(device) - resident) / 2**20


def auto_cohort(device: torch.device, train: TrainConfig, share: int = 1, teacher: nn.Module | None = None) -> int:
    """`search.cohort: auto`: 1 on a CPU; on CUDA as many trials as half the free memory holds
    at `CUDA_MEMORY_HEADROOM` times paper case 1's peak (a cohort that still runs out of
    memory is split by the search), at most `CUDA_COHORT_MAX`. `share`: workers on this GPU
    (`--jobs`), each counting on its part of the free memory."""
    if device.type != "cuda":
        return CPU_COHORT
    free, _ = torch.cuda.mem_get_info(device)
    free //= share
    per_trial_mb = peak_train_memory_mb(DiscriminatorSpec(), train, device, teacher=teacher) * CUDA_MEMORY_HEADROOM
    return max(1, min(CUDA_COHORT_MAX, int(free / 2**20 / 2 // per_trial_mb)))
