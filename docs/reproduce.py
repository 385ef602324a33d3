#!/usr/bin/env python
"""Reproduce the GAS study with gas-nas and write docs/gas-reproduction.md.

Three parts, all with gas_nas's own functions:
  (a) the six paper discriminators (plus case 1 with leaky ReLU) trained at the paper budget
      over several seeds with `gas_nas.trial.train.run_cohort` (cohorts of `auto_cohort`: 1 on a
      CPU, many on CUDA), reported as mean ± std. Resumable: every run is stored as it
      finishes (OUT/gas-reproduction/runs/, its metrics and sample grid), keyed by what
      changes its numbers, and skipped when the same command runs again;
  (b) an Optuna search (`open_study` / `run_search`) whose Pareto front is plotted
      (`--trials 0` skips it);
  (c) a Markdown page with the table, sample grids, the front and a verdict on each of the
      three GAS conclusions, computed from the numbers by the rules printed on the page. It is
      rewritten after every stored run, so it always shows what is stored.

GPU run (the real one):  python docs/reproduce.py --seeds 3 --trials 50 --device cuda
CPU, beside other work:  python docs/reproduce.py --seeds 3 --trials 0 --device cpu --threads 1
CPU smoke test:          python docs/reproduce.py --tiny --out /tmp/repro --device cpu
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from gas_nas.argtypes import positive_int
from gas_nas.common.paths import atomic_write
from gas_nas.trial.guard import violations

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
STUDY_NAME = "gas-reproduction"
PAGE_NAME = "gas-reproduction.md"
ASSETS = "gas-reproduction"  # folder next to the page: grids and the front
RUNS = "runs"  # under ASSETS: one JSON (metrics, key) and one PNG (samples) per finished run
LEAKY = "1 original + leaky_relu"
BANNER = "> **SMOKE TEST — tiny CPU budget, not a reproduction.** These numbers say nothing about the GAS study."
TINY = {"seeds": 2, "iterations": 3, "batch_size": 8, "n_samples": 64, "trials": 7}

# Verdict rules (printed on the page as well).
FID_TOLERANCE = 1.25  # "trains about as well": FID within 25% of case 1's
IMBALANCE_SLACK = 0.10  # imbalance comparable: <= 1.25 x case 1's + 0.10
D_LOSS_CRASH = 0.40  # a D that ignores its input scores 0.25-0.5 (sigmoid output); >= 0.4 is "near its max"


# ---------------------------------------------------------------- arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=positive_int, help="seeds per case (default 3; --tiny: 2)")
    p.add_argument("--trials", type=non_negative_int, help="search trials, the six cases included; 0 skips the search (default 50; --tiny: 7)")
    p.add_argument("--iterations", type=positive_int, help="iterations per run (default: the space's, the paper's 2000)")
    p.add_argument("--batch-size", type=positive_int, help="batch size (default: the space's, the paper's 32)")
    p.add_argument("--n-samples", type=positive_int, help="samples for FID and class coverage (default: the space's)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--data-dir", help="MNIST folder (default: $GAS_NAS_DATA, else the gas-nas cache)")
    p.add_argument("--out", default=str(DOCS), help="where the page and its images go (default: docs)")
    p.add_argument("--storage", default="sqlite:///studies/reproduction.db", help="Optuna storage URL of the search")
    p.add_argument("--artifacts", help="Optuna artifact folder (default: studies/artifacts; --tiny: OUT/artifacts)")
    p.add_argument("--space", help="search-space YAML (default: search_spaces/gas.yaml)")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch (default: torch's, every core); 1 leaves the other cores free")
    p.add_argument("--max-runs", type=non_negative_int, help="train at most this many missing runs, then write the page and stop (resume later); 0 rewrites the page from the stored runs")
    p.add_argument("--tiny", action="store_true", help="CPU smoke test: 2 seeds, 3 iterations, batch 8, 64 samples, 7 trials")
    args = p.parse_args(argv)
    from gas_nas.study.evidence import command_line

    args.command = command_line(sys.argv[1:] if argv is None else argv)
    if args.tiny and _same_dir(args.out, DOCS):
        p.error("--tiny writes a smoke-test page; give --out DIR outside docs/ (it must never replace docs/gas-reproduction.md)")
    if args.tiny:
        for key, value in TINY.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    args.seeds = args.seeds or 3
    args.trials = 50 if args.trials is None else args.trials
    if 0 < args.trials < 6:
        p.error("--trials must be 0 (no search) or at least 6: the six paper cases are the first trials")
    args.artifacts = args.artifacts or (str(Path(args.out) / "artifacts") if args.tiny else "studies/artifacts")
    return args


def non_negative_int(text: str) -> int:
    value = int(text) if text.strip().isdigit() else -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def _same_dir(a: str | Path, b: Path) -> bool:
    return Path(a).resolve() == b.resolve()


def resolve_device(name: str):
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("reproduce.py: --device cuda but no CUDA device is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def budget_space(args: argparse.Namespace):
    """The space with this run's budget: paper defaults, overridden by the flags."""
    from gas_nas.models.space import load_space

    space = load_space(args.space)
    train = space.train
    changes = {k: v for k, v in (("iterations", args.iterations), ("batch_size", args.batch_size)) if v is not None}
    if args.iterations is not None:
        changes["log_every"] = min(train.log_every, args.iterations)
    quality = dataclasses.replace(space.quality, n_samples=args.n_samples) if args.n_samples else space.quality
    return dataclasses.replace(space, train=dataclasses.replace(train, **changes), quality=quality)


# ---------------------------------------------------------------- (a) the paper cases


@dataclass
class CaseResult:
    name: str
    paper_mb: float | None
    spec: object
    runs: list  # TrialMetrics, one per stored seed
    grids: list  # sample grid of each stored seed, relative to the page
    planned: int = 0  # seeds asked for
    seconds: float = 0.0  # training compute summed over the stored runs (whichever session trained them)

    @property
    def complete(self) -> bool:
        return len(self.runs) >= self.planned

    def values(self, key: str) -> list[float]:
        return [float(getattr(m, key)) for m in self.runs]

    def mean(self, key: str) -> float:
        from gas_nas.study.evidence import mean_std

        return mean_std(self.values(key))[0]

    def failures(self, quality) -> int:
        """Seeds whose samples fail the quality guard (or whose training diverged)."""
        return sum(1 for m in self.runs if violations(m, quality))

    def fails_guard(self, quality) -> bool:
        return self.failures(quality) * 2 > len(self.runs)  # a majority of seeds


def reproduction_cases(space) -> list[tuple[str, float | None, object]]:
    """(name, paper MB, spec): the six paper cases, then case 1 with leaky ReLU."""
    rows = [(c.name, c.paper_mb, c.spec) for c in space.cases]
    original = space.cases[0].spec
    rows.append((LEAKY, None, dataclasses.replace(original, activation="leaky_relu")))
    return rows


def plan_runs(space, seeds: int, machine: dict, classifier: str) -> list:
    """Every (case, seed) run in training order: seed 0 of every paper case first, so a
    stopped run leaves whole seeds behind; the leaky-ReLU variant last."""
    from gas_nas.study.cases import slug
    from gas_nas.study.evidence import plan_run

    cases = reproduction_cases(space)
    order = [(name, spec, seed) for seed in range(seeds) for name, _, spec in cases if name != LEAKY]
    order += [(name, spec, seed) for name, _, spec in cases if name == LEAKY for seed in range(seeds)]
    return [plan_run(name, slug(name), spec, seed, space.train, space.quality, machine, classifier) for name, spec, seed in order]


def case_results(runs: list, runs_dir: Path, space) -> list[CaseResult]:
    """Each case with the runs stored so far (a case may have fewer seeds than asked, or none)."""
    from gas_nas.study.evidence import load_run
    from gas_nas.trial.train import TrialMetrics

    results = []
    for name, paper_mb, spec in reproduction_cases(space):
        mine = [r for r in runs if r.name == name]
        stored = [(r, load_run(runs_dir, r)) for r in mine]
        done = [(r, rec) for r, rec in stored if rec is not None]
        metrics = [TrialMetrics(**rec["metrics"]) for _, rec in done]
        grids = [f"{ASSETS}/{RUNS}/{rec['grid']}" for _, rec in done]
        seconds = sum(m.seconds for m in metrics)
        results.append(CaseResult(name, paper_mb, spec, metrics, grids, planned=len(mine), seconds=seconds))
    return results


# ---------------------------------------------------------------- (b) the search


def run_reproduction_search(space, args, device, log):
    """Open (or resume) the study through gas-nas's library layer, as `gas-nas search` does, and
    run trials until it holds `--trials` finished ones."""
    from optuna.trial import TrialState

    from gas_nas import run

    ready = run.prepare_search(run.SearchRequest(space=space, storage=args.storage, study=STUDY_NAME, artifacts=args.artifacts,
                                                 device=str(device), data_dir=args.data_dir, seed=0))
    finished = ready.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED))
    todo = max(0, args.trials - len(finished))
    log(f"search: study {STUDY_NAME!r}, {len(finished)} trials finished, running {todo} more, cohort {ready.cohort}")
    if todo:
        def on_start(number: int, case: str) -> None:
            log(f"  trial {number}" + (f" ({case})" if case else ""))

        if run.run_trials(ready, n_trials=todo, on_trial_start=on_start).stopped:
            raise KeyboardInterrupt
    return ready.study


def _record(trial):
    """What gas-nas recorded on a trial (imported late: this script's --help stays fast)."""
    from gas_nas.study.record import TrialRecord

    return TrialRecord.of(trial)


def dominating_trials(study) -> list:
    """Feasible front trials that dominate every paper case on (size, imbalance)."""
    from gas_nas.study.search import case_trials, front

    cases = [t.values for t in case_trials(study)]
    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))
    return [t for t in front(study) if not _record(t).case and all(dominates(t.values[:2], c[:2]) for c in cases)]


def export_found(study, found: list, space, assets: Path, export: bool, artifacts: str) -> list[dict]:
    """Save each found trial's samples next to the page and (unless --tiny) its architecture YAML."""
    from gas_nas.models.spec import save_arch
    from gas_nas.study.search import trial_spec

    rows = []
    for t in found:
        name = f"reproduction-trial-{t.number}"
        arch = None
        if export:
            meta = {"study": STUDY_NAME, "trial": t.number, "d_size_mb": t.values[0], "imbalance": t.values[1], "fid": _record(t).metrics.fid}
            arch = save_arch(ROOT / "search_spaces" / "found" / f"{name}.yaml", trial_spec(t), space.train, meta)
        grid = _download_samples(study, t, artifacts, assets / f"{name}.png")
        rows.append({"trial": t, "name": name, "arch": arch, "grid": f"{ASSETS}/{name}.png" if grid else None})
    return rows


def _download_samples(study, trial, artifacts: str, path: Path) -> Path | None:
    """The trial's sample grid from Optuna's artifact store (uploaded by the objective)."""
    import optuna
    from optuna.artifacts import FileSystemArtifactStore

    store = FileSystemArtifactStore(artifacts)
    for meta in optuna.artifacts.get_all_artifact_meta(trial, storage=study._storage):
        if meta.filename == "samples.png":
            path.unlink(missing_ok=True)
            optuna.artifacts.download_artifact(artifact_store=store, file_path=str(path), artifact_id=meta.artifact_id)
            return path
    return None


def plot_front(study, path: Path) -> Path:
    """d_size_mb vs imbalance: complete trials grey, infeasible crossed, feasible front in colour, cases labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState

    from gas_nas.study.search import front

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    infeasible = [t for t in done if not _record(t).feasible]
    best = front(study)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.scatter([t.values[0] for t in done], [t.values[1] for t in done], c="0.7", s=22, label=f"complete trials ({len(done)})")
    ax.scatter([t.values[0] for t in infeasible], [t.values[1] for t in infeasible], marker="x", c="tab:red", s=30, label=f"infeasible (quality guard, {len(infeasible)})")
    if best:
        ax.plot([t.values[0] for t in best], [t.values[1] for t in best], "o-", c="tab:blue", ms=6, label=f"feasible Pareto front ({len(best)})")
    for t in done:
        if _record(t).case:
            ax.annotate(_record(t).case, (t.values[0], t.values[1]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("discriminator size (d_size_mb, log scale)")
    ax.set_ylabel("imbalance (0 = LSGAN equilibrium)")
    ax.set_title(f"study {study.study_name}: {len(done)} complete trials")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- (c) the page


def verdicts(results: list[CaseResult], quality) -> list[str]:
    """One line per GAS conclusion, each claim judged by the rule stated in `RULES` and named as
    holding or contradicted (a conclusion of two claims gets a word for each)."""
    by = {r.name.split()[0] if r.name != LEAKY else "leaky": r for r in results}
    c1, c2, c3, c4, c5, c6, leaky = (by[k] for k in ("1", "2", "3", "4", "5", "6", "leaky"))
    fid_ok = c3.mean("fid") <= FID_TOLERANCE * c1.mean("fid")
    imb_ok = c3.mean("imbalance") <= FID_TOLERANCE * c1.mean("imbalance") + IMBALANCE_SLACK
    smaller = c3.mean("d_param_mb") < c1.mean("d_param_mb")
    part_a = fid_ok and imb_ok and smaller and not c3.fails_guard(quality)
    part_b = c5.fails_guard(quality) and c6.fails_guard(quality)
    v1 = (
        f"{_holds(part_a)} that k=32 matches the original — guard passed in {_passed(c3, quality)} seeds, FID {_fid(c3, quality)} vs "
        f"{_fid(c1, quality)} ({'within' if fid_ok else 'not within'} 25% of the mean), imbalance {c3.mean('imbalance'):.3f} vs "
        f"{c1.mean('imbalance'):.3f} ({'comparable' if imb_ok else 'not comparable'}), "
        f"{c1.mean('d_param_mb') / max(c3.mean('d_param_mb'), 1e-12):.2f}x fewer parameter MB; "
        f"{_holds(part_b)} that k=16 and k=8 collapse — guard passed by k=16 in {_passed(c5, quality)} seeds, by k=8 in {_passed(c6, quality)}"
    )
    v2 = (
        f"{_holds(_crashed(c2, quality))} for {c2.name} — guard failed in {c2.failures(quality)}/{len(c2.runs)} seeds, D loss {c2.mean('d_loss'):.3f}; "
        f"{c4.name} fails the guard in {c4.failures(quality)}/{len(c4.runs)} seeds (D loss {c4.mean('d_loss'):.3f}, FID {_fid(c4, quality)}), "
        f"but it also has dense blocks and {_params(c4):,} parameters, so its failure {'does not isolate' if _crashed(c4, quality) else 'does not test'} "
        f"depthwise-separable convolutions"
    )
    leaky_bad = leaky.fails_guard(quality) or leaky.mean("fid") > FID_TOLERANCE * c1.mean("fid")
    v3 = f"{_holds(leaky_bad)} — leaky ReLU: guard failed in {leaky.failures(quality)}/{len(leaky.runs)} seeds, FID {_fid(leaky, quality)} vs original {_fid(c1, quality)}"
    return [
        f"**Conclusion 1** (inception k=32 matches the original; k=16 and k=8 collapse): {_pending((c1, c3, c5, c6)) or v1}",
        f"**Conclusion 2** (depthwise-separable convolutions crash LSGAN training): {_pending((c2, c4)) or v2}",
        f"**Conclusion 3** (leaky ReLU makes training crash): {_pending((c1, leaky)) or v3}",
    ]


def _holds(yes: bool) -> str:
    return "HOLDS" if yes else "CONTRADICTED"


def _crashed(case: CaseResult, quality) -> bool:
    return case.fails_guard(quality) or case.mean("d_loss") >= D_LOSS_CRASH


def _passed(case: CaseResult, quality) -> str:
    return f"{len(case.runs) - case.failures(quality)}/{len(case.runs)}"


def _fid(case: CaseResult, quality) -> str:
    """The mean FID, with the median beside it where some seeds (not all) failed the guard: one
    collapsed seed moves a mean of three far from what the others did."""
    import statistics

    mean = f"{case.mean('fid'):.1f}"
    if 0 < case.failures(quality) < len(case.runs):
        return f"{mean} (median {statistics.median(case.values('fid')):.1f})"
    return mean


def _params(case: CaseResult) -> int:
    from gas_nas.models.networks import build_discriminator
    from gas_nas.trial.metrics import param_count

    return param_count(build_discriminator(case.spec))


def _pending(cases) -> str:
    """'PENDING ...' while a case the verdict needs lacks some of its seeds, else ''."""
    short = [c for c in cases if not c.complete]
    if not short:
        return ""
    return "PENDING — waits for " + ", ".join(f"{c.name} ({len(c.runs)}/{c.planned} seeds stored)" for c in short)


RULES = f"""\
Rules (a case "fails the guard" when a majority of its seeds fail the quality guard or diverge):
1. Supported when inception k=32 passes the guard, its mean FID is within {FID_TOLERANCE - 1:.0%} of case 1's
   (<= {FID_TOLERANCE} x), its mean imbalance is comparable (<= {FID_TOLERANCE} x case 1's + {IMBALANCE_SLACK}),
   it has fewer parameter MB; and k=16 and k=8 collapse when both fail the guard. Each half is judged apart.
2. Supported when both depthwise cases (2 and 4) fail the guard or end with a mean D loss >= {D_LOSS_CRASH}
   (a D whose sigmoid output ignores its input scores between 0.25 and 0.5). Each case is judged apart.
3. Supported when "1 original + leaky_relu" fails the guard or its mean FID exceeds {FID_TOLERANCE} x case 1's."""


def _pm(r: CaseResult, key: str, fmt: str) -> str:
    from gas_nas.study.evidence import pm

    return pm(r.values(key), fmt)


def table(results: list[CaseResult], quality, cuda: bool) -> list[str]:
    from gas_nas.models.networks import build_discriminator
    from gas_nas.trial.metrics import param_count, param_mb

    lines = [
        "| case | paper MB (TF, GPU) | params | param MB | peak train MB | seeds | imbalance | D loss | FID | classes | entropy | guard passed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        paper = f"{r.paper_mb:g}" if r.paper_mb is not None else "–"
        peak = _pm(r, "peak_mb", ".1f") if cuda and all(m.peak_mb is not None for m in r.runs) else "n/a"
        passed = f"{len(r.runs) - r.failures(quality)}/{len(r.runs)}"
        model = build_discriminator(r.spec)
        lines.append(
            f"| {r.name} | {paper} | {param_count(model):,} | {param_mb(model):.3f} | {peak} | {len(r.runs)}/{r.planned} | "
            f"{_pm(r, 'imbalance', '.3f')} | {_pm(r, 'd_loss', '.3f')} | {_pm(r, 'fid', '.1f')} | "
            f"{_pm(r, 'classes', '.1f')} | {_pm(r, 'entropy', '.2f')} | {passed} |"
        )
    return lines


def run_table(results: list[CaseResult], quality) -> list[str]:
    """Every stored run, one row: the spread behind each mean."""
    lines = ["| case | seed | imbalance | D loss | G loss | FID | classes | entropy | guard | minutes |", "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in results:
        for m in r.runs:
            reasons = violations(m, quality)
            lines.append(
                f"| {r.name} | {m.seed} | {m.imbalance:.3f} | {m.d_loss:.3f} | {m.g_loss:.3f} | {m.fid:.1f} | {m.classes} | "
                f"{m.entropy:.2f} | {'pass' if not reasons else 'fail: ' + '; '.join(reasons)} | {m.seconds / 60:.1f} |"
            )
    return lines


def environment(device, cpu: str) -> dict[str, str]:
    import optuna
    import torch

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    return {
        "device": name,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": f"python {platform.python_version()}, torch {torch.__version__}, optuna {optuna.__version__}, gas-nas {gas_nas_version()}",
    }


def gas_nas_version() -> str:
    """The installed version, else the package's own (a GPU machine runs it from the checkout)."""
    try:
        return version("gas-nas")
    except PackageNotFoundError:
        import gas_nas

        return gas_nas.__version__


def write_page(path: Path, *, args, space, env: dict, results, search: dict | None, seconds: float, cuda: bool) -> Path:
    """The page from what is stored. `search` is None when no search ran in this invocation;
    otherwise {"study": ..., "found": [...]}."""
    t, q = space.train, space.quality
    stored = sum(len(r.runs) for r in results)
    planned = sum(r.planned for r in results)
    compute = sum(r.seconds for r in results)
    lines = ["# GAS reproduction with gas-nas", ""]
    if args.tiny:
        lines += [BANNER, ""]
    if not cuda:
        lines += [
            "> **A CPU run.** The paper cases were trained on a CPU; "
            + ("the search part was skipped (`--trials 0`) and waits for a GPU, where the same command with "
               "`--device cuda --trials 50` replaces or extends this page." if args.trials == 0 else
               "the search ran on the CPU too."),
            "",
        ]
    lines += [
        f"- **Device:** {env['device']}",
        f"- **Date:** {env['date']}",
        f"- **Versions:** {env['versions']}",
        f"- **Budget per run:** {t.iterations} iterations, batch {t.batch_size}, {t.d_steps} D step then {t.g_steps} G steps, "
        f"{t.optimizer} lr {t.lr:g}; quality on {q.n_samples} samples (guard: FID <= {q.max_fid:g}, >= {q.min_classes} digits, entropy >= {q.min_entropy:g})",
        f"- **Seeds per case:** {args.seeds} (0..{args.seeds - 1}); **runs stored:** {stored} of {planned}"
        + ("" if stored == planned else " (the command resumes where it stopped)"),
        f"- **Compute:** {compute / 60:.1f} min of training and measurement, summed over the stored runs (across resumes; "
        "wall time, on a machine that may have been doing other work too)",
        f"- **Wall time of the last invocation:** {seconds / 60:.1f} min",
        f"- **Command:** `python docs/reproduce.py {args.command}`",
        "",
        "## The six GAS discriminators (and case 1 with leaky ReLU)",
        "",
        "Mean ± std over the stored seeds. *Paper MB* is the GPU memory the write-up measured under TensorFlow, a reference "
        "column only; *param MB* is fp32 parameters; *peak train MB* is the CUDA peak of a training run (n/a on a CPU). "
        "*Guard passed*: seeds whose samples pass the quality guard.",
        "",
        *table(results, q, cuda),
        "",
        "### Every run",
        "",
        *run_table(results, q),
        "",
        "### Samples (every stored seed, left to right)",
        "",
        *[f"**{r.name}**  \n" + " ".join(f"![{r.name}, seed {i}]({g})" for i, g in enumerate(r.grids)) + "\n" for r in results if r.grids],
        "## Verdicts on the GAS conclusions",
        "",
        "```text",
        RULES,
        "```",
        "",
        *[f"- {v}" for v in verdicts(results, q)],
        "",
        "## The search",
        "",
        *search_section(args, search),
    ]
    with atomic_write(path) as f:
        f.write("\n".join(lines) + "\n")
    return path


def search_section(args, search: dict | None) -> list[str]:
    if args.trials == 0:
        return ["Not run (`--trials 0`). On a 2-core CPU a 50-trial search at the paper budget takes about 7 hours; "
                "it waits for a GPU (`python docs/reproduce.py --seeds 3 --trials 50 --device cuda`)."]
    if search is None:
        return ["Not run yet: the search runs once every paper-case run is stored."]
    return [f"![Pareto front]({ASSETS}/pareto.png)", "", *found_section(search["found"], args.tiny)]


def found_section(found: list, tiny: bool) -> list[str]:
    if not found:
        return ["No feasible trial dominates all six paper cases on both size and imbalance."]
    lines = [f"{len(found)} feasible trial(s) dominate all six paper cases on both objectives:", ""]
    for f in found:
        t = f["trial"]
        where = f"exported to `{f['arch'].relative_to(ROOT)}`" if f["arch"] else "not exported (--tiny)"
        lines.append(f"- trial {t.number}: {t.values[0]:.4f} MB, imbalance {t.values[1]:.3f}, FID {_record(t).metrics.fid:.1f}; {where}")
        if f["grid"]:
            lines.append(f"\n  ![trial {t.number}]({f['grid']})\n")
    return lines


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    warnings.filterwarnings("ignore", message=".*experimental.*")  # Optuna's notes on its own API, not the user's concern

    def log(text: str) -> None:
        print(text, flush=True)

    import torch

    from gas_nas.common.errors import GasNasError
    from gas_nas.study.evidence import classifier_fingerprint, load_run, machine_key, stored_cpus, train_missing
    from gas_nas.study.search import load_resources

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    page = out / PAGE_NAME
    if args.tiny and page.resolve() == (DOCS / PAGE_NAME).resolve():  # belt and braces: parse_args refuses this already
        raise SystemExit("reproduce.py: refusing to write a smoke test to docs/gas-reproduction.md")
    try:
        device = resolve_device(args.device)
        space = budget_space(args)
        assets = out / ASSETS
        runs_dir = assets / RUNS
        assets.mkdir(parents=True, exist_ok=True)
        if args.trials and args.storage.startswith("sqlite:///"):
            Path(args.storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        log(f"device {device}; {args.seeds} seeds; {space.train.iterations} iterations, batch {space.train.batch_size}; "
            f"{space.quality.n_samples} samples; {torch.get_num_threads()} thread(s)")
        res = load_resources(device, args.data_dir)
        runs = plan_runs(space, args.seeds, machine_key(device), classifier_fingerprint(res.classifier))

        def write(search: dict | None = None) -> None:
            env = environment(device, f"CPU ({stored_cpus(runs_dir, runs)}), {torch.get_num_threads()} torch thread(s)")
            write_page(page, args=args, space=space, env=env, results=case_results(runs, runs_dir, space), search=search,
                       seconds=time.perf_counter() - start, cuda=device.type == "cuda")

        train_missing(runs, space.quality, res, runs_dir, max_runs=args.max_runs, log=log, on_stored=write)
        search = None
        if args.trials and all(load_run(runs_dir, r) is not None for r in runs):
            study = run_reproduction_search(space, args, device, log)
            plot_front(study, assets / "pareto.png")
            search = {"study": study, "found": export_found(study, dominating_trials(study), space, assets, export=not args.tiny, artifacts=args.artifacts)}
        write(search)
    except GasNasError as exc:
        print(f"reproduce.py: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reproduce.py: interrupted; the stored runs are kept and the same command resumes", file=sys.stderr)
        return 130
    log(f"wrote {page} ({time.perf_counter() - start:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
