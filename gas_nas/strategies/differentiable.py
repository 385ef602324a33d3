"""One-shot differentiable search (after alphaGAN, Tian et al.): train a discriminator supernet
and its architecture weights in one run, then hand the most probable discrete discriminators
to the study as ordinary trials.

Bilevel, first order (DARTS): the inner level trains the supernet's weights and the generator
with the recipe's losses, schedule and optimiser on one half of MNIST's training images; the
outer level moves the architecture weights alpha (Adam) on the other half to minimise

    calibrated L_D(G, D_alpha) on held-out images + lambda * log E_alpha[parameters]

where the expectation is exact (every combination's parameter count, `supernet.param_table`)
and the calibrated loss is the supernet's LSGAN loss after the best non-negative affine
recalibration of its outputs (`calibrated_d_loss`): a constant 0.5 discriminator scores 0.25,
the worst value, so a supernet cannot win by giving up (why not the plain loss, nor alphaGAN's
best-response term: docs/guide-differentiable.md and docs/differentiable.md).

Mixing weights are Gumbel-softmax samples of alpha whose temperature anneals from TAU_START to
TAU_END over the run; the first WARMUP of the iterations train the weights only, then weight
iterations and alpha steps alternate, alpha's Adam rate scaled to the run (`alpha_lr`).
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import optuna
import torch

from gas_nas.common.errors import GasNasError
from gas_nas.common.events import Events, human_time
from gas_nas.common.interrupt import Interrupted
from gas_nas.models.networks import build_generator
from gas_nas.models.recipes import get_recipe, lsgan_d_loss, lsgan_g_loss, make_optimizer
from gas_nas.models.space import SearchSpace, sampled_params
from gas_nas.models.spec import DiscriminatorSpec, TrainConfig
from gas_nas.models.supernet import AXES, SuperDiscriminator, SupernetSpace, entropy, expected_params, param_table
from gas_nas.study.record import TrialRecord

STRATEGY = "differentiable"
WARMUP = 0.25  # fraction of the iterations before alpha moves (DARTS-style warm-up; our choice, not measured)
TAU_START, TAU_END = 5.0, 0.5  # Gumbel-softmax temperature (FBNet starts at 5.0; annealed exponentially to 0.5)
ALPHA_LR, ALPHA_BETAS, ALPHA_DECAY = 3e-4, (0.5, 0.999), 1e-3  # DARTS' architecture Adam, as alphaGAN's
DARTS_ALPHA_STEPS = 19_550  # DARTS' search: 50 epochs of 25,000 CIFAR-10 images at batch 64, one alpha step each
OBJECTIVE = "calibrated_d_loss"  # in each supernet's record: a study's supernets of an earlier objective are run again
REPORTS = 10  # how often the terminal hears the argmax and alpha's entropy after warm-up


@dataclass
class Report:
    """Where the supernet stands after an alpha phase."""

    iteration: int
    iterations: int
    argmax: DiscriminatorSpec
    entropy: float  # nats, summed over the mixed axes
    outer: float  # the last outer loss


@dataclass
class Derived:
    """A discrete discriminator derived from a supernet, with what made it."""

    spec: DiscriminatorSpec
    probability: float  # joint probability under the final alpha
    rank: int  # 0: the argmax


@dataclass
class SupernetResult:
    lam: float
    iterations: int
    seed: int
    probs: dict[str, list[float]]  # per mixed axis, over its candidates (in the space's order)
    candidates: dict[str, list]  # the candidates those probabilities are over
    fixed: dict
    derived: list[Derived]
    seconds: float
    entropy: float
    reports: list[Report] = field(default_factory=list)
    terms: list[tuple[float, float]] = field(default_factory=list)  # per alpha step: held-out L_D as it stands, and calibrated (the outer term)
    networks: tuple | None = None  # (supernet, generator, final probabilities), for measurements; never stored

    def provenance(self, item: Derived) -> dict:
        """The record a derived trial carries (`TrialRecord.provenance`)."""
        return {
            "strategy": STRATEGY, "lambda": self.lam, "iterations": self.iterations, "seed": self.seed,
            "rank": item.rank, "probability": item.probability, "alpha_probs": self.probs,
            "candidates": self.candidates, "fixed": self.fixed, "supernet_seconds": round(self.seconds, 1),
        }


def schedule(iterations: int) -> tuple[int, list[bool]]:
    """(warm-up iterations, per iteration: is it an alpha step?). Warm-up first, then weight
    iterations and alpha steps alternate (alpha first), so even 2 iterations move alpha once."""
    warmup = max(1, int(iterations * WARMUP)) if iterations > 1 else iterations
    return warmup, [i >= warmup and (i - warmup) % 2 == 0 for i in range(iterations)]


def alpha_lr(alpha_steps: int) -> float:
    """Adam moves a logit by about its learning rate per step, so at DARTS' 3e-4 a run of a few
    hundred alpha steps leaves alpha uniform (113 steps at 300 iterations moved no probability
    by more than 0.01). A shorter run gets a larger rate, so alpha may travel as far as in
    DARTS' search (3e-4 x 19,550 = 5.9 logits); a longer one keeps DARTS' rate."""
    return max(ALPHA_LR, ALPHA_LR * DARTS_ALPHA_STEPS / max(1, alpha_steps))


def temperature(i: int, iterations: int) -> float:
    return TAU_START * (TAU_END / TAU_START) ** (i / max(1, iterations - 1))


def gumbel_softmax(logits: torch.Tensor, tau: float, gen: torch.Generator) -> torch.Tensor:
    """torch's `F.gumbel_softmax` draws from the global generator; this one from `gen`."""
    u = torch.rand(logits.shape, generator=gen, device=logits.device, dtype=logits.dtype).clamp(1e-10, 1 - 1e-7)
    return torch.softmax((logits - torch.log(-torch.log(u))) / tau, dim=-1)


class ArchWeights:
    """alpha: one logit vector per mixed axis (an axis with one candidate has none: weight 1)."""

    def __init__(self, sspace: SupernetSpace, device: torch.device):
        self.sspace, self.device = sspace, device
        self.alpha = {a: torch.zeros(n, device=device, requires_grad=True) for a, n in zip(AXES, sspace.sizes) if n > 1}

    def probs(self) -> dict[str, torch.Tensor]:
        return {a: torch.softmax(self.alpha[a], -1) if a in self.alpha else torch.ones(1, device=self.device) for a in AXES}

    def sample(self, tau: float, gen: torch.Generator, grad: bool) -> dict[str, torch.Tensor]:
        out = {}
        for a in AXES:
            if a not in self.alpha:
                out[a] = torch.ones(1, device=self.device)
            else:
                logits = self.alpha[a] if grad else self.alpha[a].detach()
                out[a] = gumbel_softmax(logits, tau, gen)
        return out

    def ranked(self, k: int) -> list[tuple[dict[str, int], float]]:
        """The k most probable combinations (index dicts) with their joint probabilities."""
        probs = {a: p.detach().double().cpu() for a, p in self.probs().items()}
        joint = [(choice, math.prod(float(probs[a][choice[a]]) for a in AXES)) for choice in self.sspace.choices()]
        return sorted(joint, key=lambda cp: -cp[1])[:k]


def run_supernet(
    sspace: SupernetSpace,
    train: TrainConfig,
    real: torch.Tensor,
    lam: float,
    seed: int,
    *,
    derive: int = 1,
    on_iteration: Callable[[int, int], None] | None = None,
    on_report: Callable[[Report], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SupernetResult:
    """Train one supernet for `train.iterations` iterations at size weight `lam` and derive the
    `derive` most probable discriminators. Raises `Interrupted` when `should_stop()` turns true."""
    start = time.perf_counter()
    device = real.device
    recipe = get_recipe(train.recipe)
    gen = torch.Generator(device=device).manual_seed(seed)
    order = torch.randperm(real.shape[0], generator=gen, device=device)
    inner_images, outer_images = real[order[: real.shape[0] // 2]], real[order[real.shape[0] // 2 :]]
    torch.manual_seed(seed)
    with torch.device(device):
        D = SuperDiscriminator(sspace)
    recipe.init(D, train.init_std)
    G = build_generator(train.z_dim, train.init_std, recipe.init, device)
    arch = ArchWeights(sspace, device)
    opt_d, opt_g = make_optimizer(D.parameters(), train, device), make_optimizer(G.parameters(), train, device)
    warmup, alpha_steps = schedule(train.iterations)
    opt_a = torch.optim.Adam(list(arch.alpha.values()), lr=alpha_lr(sum(alpha_steps)), betas=ALPHA_BETAS, weight_decay=ALPHA_DECAY)
    table = param_table(sspace).to(device)
    g_params = list(G.parameters())
    batch, z_dim = train.batch_size, train.z_dim

    def images(pool: torch.Tensor) -> torch.Tensor:
        return pool[torch.randint(0, pool.shape[0], (batch,), generator=gen, device=device)]

    def noise() -> torch.Tensor:
        return torch.randn(batch, z_dim, generator=gen, device=device)

    every = max(1, sum(alpha_steps) // REPORTS)
    reports, terms, outer = [], [], math.nan
    for i, is_alpha in enumerate(alpha_steps):
        if should_stop is not None and should_stop():
            raise Interrupted
        tau = temperature(i, train.iterations)
        if is_alpha:
            x = images(outer_images)
            with torch.no_grad():
                fake = G(noise())
            w = arch.sample(tau, gen, grad=True)
            d_real, d_fake = D(x, w), D(fake, w)
            term = calibrated_d_loss(d_real, d_fake)
            loss = term + lam * torch.log(expected_params(table, arch.probs()))
            opt_a.zero_grad(set_to_none=False)
            loss.backward(inputs=list(arch.alpha.values()))
            opt_a.step()
            outer = float(loss.detach())
            terms.append((float(lsgan_d_loss(d_real, d_fake).detach()), float(term.detach())))
            if not math.isfinite(outer):
                raise GasNasError(f"supernet (lambda {lam:g}) diverged at iteration {i + 1}: outer loss {outer}")
            if len(terms) % every == 0 or i == train.iterations - 1:
                probs = arch.probs()
                reports.append(Report(i + 1, train.iterations, sspace.spec(arch.ranked(1)[0][0]), entropy({a: probs[a] for a in arch.alpha}), outer))
                if on_report is not None:
                    on_report(reports[-1])
        else:
            w = arch.sample(tau, gen, grad=False)  # one draw for the iteration's weight updates
            d_loss = _d_steps(D, G, w, lambda: images(inner_images), noise, opt_d, train)
            g_loss = _g_steps(D, G, w, noise, opt_g, g_params, train)
            if not (math.isfinite(d_loss) and math.isfinite(g_loss)):
                raise GasNasError(f"supernet (lambda {lam:g}) diverged at iteration {i + 1}: D loss {d_loss}, G loss {g_loss}")
        if on_iteration is not None:
            on_iteration(i + 1, train.iterations)
    probs = arch.probs()
    mixed = {a: probs[a].detach().double().cpu().tolist() for a in arch.alpha}
    derived = [Derived(sspace.spec(choice), p, rank) for rank, (choice, p) in enumerate(arch.ranked(derive))]
    candidates = sspace.candidate_lists(tuple(arch.alpha))
    return SupernetResult(lam, train.iterations, seed, mixed, candidates, dict(sspace.fixed), derived, time.perf_counter() - start,
                          entropy({a: probs[a] for a in arch.alpha}), reports, terms, (D, G, {a: p.detach() for a, p in probs.items()}))


def calibrated_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """The LSGAN discriminator loss after the best recalibration of D's outputs, a*D + b with
    a >= 0: 0.25 * (1 - max(rho, 0)^2), rho the correlation of D's outputs with the real/fake
    label over both batches (of equal size). A constant discriminator scores 0.25, the worst
    value; any discriminator that rates real images above fakes scores less, whatever offset
    or scale the generator's last steps left its outputs at."""
    d = torch.cat([d_real.flatten(), d_fake.flatten()])
    y = torch.cat([torch.ones_like(d_real.flatten()), torch.zeros_like(d_fake.flatten())])
    dc, yc = d - d.mean(), y - y.mean()
    rho = (dc * yc).sum() / torch.sqrt(dc.square().sum() * yc.square().sum() + 1e-12)
    return 0.25 * (1 - rho.clamp(min=0).square())


def _d_steps(D, G, w, real, noise, opt_d, train: TrainConfig) -> float:
    """The recipe's d_steps discriminator updates on the supernet with mixing weights `w`; the last loss."""
    recipe = get_recipe(train.recipe)
    for _ in range(train.d_steps):
        x = real()
        with torch.no_grad():
            fake = G(noise())
        d_loss = recipe.d_loss(D(x, w), D(fake, w))
        opt_d.zero_grad(set_to_none=False)
        d_loss.backward()
        opt_d.step()
    return float(d_loss.detach())


def _g_steps(D, G, w, noise, opt_g, g_params, train: TrainConfig) -> float:
    """The recipe's g_steps generator updates against the supernet with mixing weights `w`; the last loss."""
    recipe = get_recipe(train.recipe)
    for _ in range(train.g_steps):
        g_loss = recipe.g_loss(D(G(noise()), w))
        opt_g.zero_grad(set_to_none=False)
        g_loss.backward(inputs=g_params)
        opt_g.step()
    return float(g_loss.detach())


# ---------------------------------------------------------------- proposals for a study


@dataclass
class Proposal:
    """A derived spec as the study received it."""

    lam: float
    derived: Derived
    trial: int  # its trial number
    enqueued: bool  # False: the study already had a trial of this spec (that one's number)


def supernet_key(space, sspace: SupernetSpace, lam: float, seed: int) -> dict:
    """Everything that changes a supernet's result: a study holding a record with this key has run it."""
    return {"lambda": lam, "seed": seed, "objective": OBJECTIVE, "alpha_lr": alpha_lr(sum(schedule(space.train.iterations)[1])), "train": space.train.to_dict(), "derive": space.search.derive,
            "candidates": sspace.candidate_lists(), "fixed": sspace.fixed}


def supernets_to_run(study, space, sspace: SupernetSpace, seed: int) -> list[float]:
    """The size weights whose supernet the study has not recorded with these settings."""
    recorded = [r.get("key") for r in supernet_records(study)]
    return [lam for lam in space.search.lambdas if supernet_key(space, sspace, lam, seed) not in recorded]


def propose(study, space, real: torch.Tensor, seed: int, events: Events | None = None, should_stop: Callable[[], bool] | None = None,
            on_done: Callable[[SupernetResult], None] | None = None) -> list[Proposal]:
    """One supernet per `space.search.lambdas`, each one's `derive` most probable specs enqueued
    into `study` with their provenance (a spec the study has is not enqueued again). A supernet
    already recorded in the study with the same settings is not run again, so a stopped
    search resumes where it stopped. `events` hears a bar over the phase and a line per alpha report."""
    from gas_nas.models.supernet import supernet_space, uniform_entropy

    events = events or Events()
    sspace = supernet_space(space)
    uniform = uniform_entropy(sspace)
    todo = supernets_to_run(study, space, sspace, seed)
    out: list[Proposal] = []

    def report(r: Report) -> None:
        events.say(f"  {r.iteration}/{r.iterations}: argmax {mixed_axes(r.argmax)}; alpha entropy {r.entropy:.2f} nats (uniform {uniform:.2f}); outer loss {r.outer:.4f}")

    with events.supernets(len(todo), space.train.iterations) as bar:
        for lam in todo:
            bar.next(f"supernet lambda {lam:g}")
            events.say(f"supernet lambda {lam:g}: {space.train.iterations} iterations (a quarter warm-up, then weight and alpha steps alternate)")
            result = run_supernet(sspace, space.train, real, lam, seed, derive=space.search.derive,
                                  on_iteration=bar.on_iteration, on_report=report, should_stop=should_stop)
            placed = enqueue_proposals(study, space, [(d.spec, result.provenance(d)) for d in result.derived])
            add_supernet_record(study, {"key": supernet_key(space, sspace, lam, seed), "seconds": round(result.seconds, 1), "probs": result.probs,
                                        "entropy": result.entropy, "trials": [number for number, _ in placed]})
            out += [Proposal(lam, d, number, new) for d, (number, new) in zip(result.derived, placed)]
            events.say(f"supernet lambda {lam:g} took {human_time(result.seconds)}")
            if on_done is not None:
                on_done(result)
    return out


def mixed_axes(spec: DiscriminatorSpec) -> str:
    """A discriminator in the words of the axes a supernet mixes."""
    layer = ("depthwise-separable" if spec.conv == "depthwise_separable" else "standard") + (" inception" if spec.inception else "")
    return f"{layer}, {spec.downsample}, base {spec.base_filters}, depth {spec.depth}"


def fixed_line(sspace: SupernetSpace) -> str:
    """What one supernet run mixes and what it holds fixed (printed before it starts)."""
    from gas_nas.models.supernet import FIXED

    mixed = ", ".join(f"{a} ({len(sspace.candidates(a))})" for a in sspace.mixed)
    fixed = ", ".join(f"{k}={sspace.fixed[k]}" for k in FIXED)
    return f"supernet mixes {mixed}; fixed at the space's defaults: {fixed}"


def unsupported_recipe(train: TrainConfig) -> str:
    """Why a supernet cannot train with this recipe ("" when it can): its loop has the recipe's
    losses, schedule and optimiser, not a teacher's term nor one-stage updates, and a supernet
    trained without them would propose for another recipe than the trials train with."""
    recipe = get_recipe(train.recipe)
    if recipe.one_stage_scale is not None:
        return f"--strategy differentiable: recipe {recipe.name} uses one-stage updates, which the supernet's loop does not have; search it with --strategy optuna"
    if recipe.has_teacher and train.teacher_weight:
        return f"--strategy differentiable: recipe {recipe.name} adds a teacher's term to G's loss, which the supernet's loop does not have; search it with --strategy optuna"
    return ""


# ---------------------------------------------------------------- the outer objective, checked


def held_out_d_loss(D: Callable[[torch.Tensor], torch.Tensor], G: torch.nn.Module, images: torch.Tensor, z: torch.Tensor) -> float:
    """The outer level's discriminator term: L_D of `D` on held-out images and G's samples."""
    with torch.no_grad():
        return float(lsgan_d_loss(D(images), D(G(z))))


def best_response_d_loss(D: Callable[[torch.Tensor], torch.Tensor], G: torch.nn.Module, images: torch.Tensor, z: torch.Tensor,
                         train: TrainConfig, steps: int, seed: int) -> float:
    """alphaGAN's discriminator-side term: L_D of `D` against G', a copy of G trained `steps`
    steps of the recipe's optimiser against the frozen `D` (as gas_nas.trial.balance's best response)."""
    device = images.device
    gen = torch.Generator(device=device).manual_seed(seed)
    best = copy.deepcopy(G).train()
    params = list(best.parameters())
    opt = make_optimizer(params, train, device)
    for _ in range(steps):
        opt.zero_grad(set_to_none=False)
        lsgan_g_loss(D(best(torch.randn(train.batch_size, train.z_dim, generator=gen, device=device)))).backward(inputs=params)
        opt.step()
    return held_out_d_loss(D, best, images, z)


__all__ = ["ArchWeights", "Derived", "Proposal", "Report", "fixed_line", "mixed_axes", "propose", "supernets_to_run", "unsupported_recipe", "STRATEGY", "SupernetResult", "best_response_d_loss", "calibrated_d_loss", "held_out_d_loss", "run_supernet", "schedule", "supernet_key"]


# ---------------------------------------------------------------- the strategy's records in the study

SUPERNETS_ATTR = "gas_nas:supernets"  # study user attribute: the supernet runs whose proposals were enqueued


def enqueue_proposals(study: optuna.Study, space: SearchSpace, proposals: list[tuple[DiscriminatorSpec, dict]]) -> list[tuple[int, bool]]:
    """Enqueue each (spec, provenance) as a trial after those already queued, unless a trial of
    that spec is in the study (asked, finished or waiting). Returns, for each, (trial number,
    whether it was enqueued now)."""
    have: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        params = t.system_attrs.get("fixed_params", t.params)  # a waiting trial has only its fixed params
        have.setdefault(_params_key(params), t.number)
    out = []
    for spec, provenance in proposals:
        key = _params_key(sampled_params(space, spec))
        if key in have:
            out.append((have[key], False))
            continue
        study.enqueue_trial(sampled_params(space, spec), user_attrs=TrialRecord(provenance=provenance).case_attrs())
        have[key] = study.get_trials(deepcopy=False)[-1].number
        out.append((have[key], True))
    return out


def _params_key(params: dict) -> str:
    return json.dumps(params, sort_keys=True)


def supernet_records(study: optuna.Study) -> list[dict]:
    return list(study.user_attrs.get(SUPERNETS_ATTR) or [])


def add_supernet_record(study: optuna.Study, record: dict) -> None:
    study.set_user_attr(SUPERNETS_ATTR, supernet_records(study) + [record])
