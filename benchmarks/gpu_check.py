"""One command for a GPU machine: run every CUDA path of gas-nas and record its figures.

    python benchmarks/gpu_check.py --out DIR [--dry-run] [--budget S] [--only STEPS] [--reproduce]

Each step is a subprocess of this one with its own time limit, so a step that fails or hangs
is recorded (status, seconds, the end of its output) and the rest still run:

  environment   python, torch, CUDA, the device; the driver from nvidia-smi
  classifier    the shipped quality classifier, loaded onto the device
  cuda_tests    pytest -m cuda tests/test_cuda.py (skipped without CUDA), with their figures
  cases         gas-nas cases --json: the six paper cases with CUDA peak training memory
  trial_speed   benchmarks/trial_speed.py at the paper budget, one repeat
  search_speed  benchmarks/search_speed.py at the paper budget: 6 trials solo and as one cohort
  search        gas-nas search at the paper budget until the time budget runs out (then a
                SIGTERM, which gas-nas turns into a clean stop), the six paper cases first
  show          gas-nas show --json on that study
  reproduce     only with --reproduce (its own budget): docs/reproduce.py at the paper budget,
                page, images and found architectures packed into DIR/gas-reproduction.tar.gz

DIR gets gpu_check.json, gpu_check.md, gpu_check.log (every step's full output) and
search.db (the study), rewritten after every step so a killed run still leaves its figures.
`--dry-run` runs the same steps on a CPU with tiny budgets: CI checks the script with it.
This process uses the standard library only (and PyYAML for a dry run's space), so it still
reports when torch or Optuna break.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPACE = ROOT / "search_spaces" / "gas.yaml"  # gas_nas.models.space.DEFAULT_SPACE, without importing torch here
FIGURES_ENV = "GAS_NAS_GPU_FIGURES"  # tests/test_cuda.py writes its figures to this JSON file
STEPS = ("environment", "classifier", "cuda_tests", "cases", "trial_speed", "search_speed", "supernet", "search", "show", "reproduce")
BUDGET_S = 500  # all steps but reproduce; under 9 minutes with the wheel install and slack
REPRODUCE_BUDGET_S = 520  # with the wheel install, inside a 10-minute device call
GRACE_S = 30  # after SIGTERM, before SIGKILL: a search fails its running cohort and exits
STUDY = "gpu-check"
PAPER_BATCH = 32
DRY = {"iterations": 2, "batch_size": 8, "n_samples": 64, "trials": 3}
# Time limit of each step (seconds): on a GPU / in a dry run. None: what the budget leaves.
LIMITS = {
    "environment": (60, 120), "classifier": (120, 300), "cuda_tests": (180, 180), "cases": (60, 120),
    "trial_speed": (120, 240), "search_speed": (150, 300), "supernet": (60, 120), "search": (None, 300), "show": (30, 120),
}
SUPERNET_ITERATIONS = 100  # on a GPU: time per supernet iteration of the default space (--strategy differentiable)
SEARCH_FLOOR_S = 120  # kept for the search while the steps before it run
NEW_GROUP = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}


class StepFailed(Exception):
    """A step exited 0 but its figures show it did not do its job."""


@dataclass(frozen=True)
class Step:
    name: str
    command: list[str]
    limit_s: float | None  # None: whatever the total budget leaves after the later steps' floors
    figures: Callable[[str, Path], dict] = lambda stdout, work: {}
    stop_ok: bool = False  # stopped at its time limit counts as done (the search: as many trials as fit)
    floor_s: float = 0.0  # time kept for this step while earlier steps run


@dataclass
class Result:
    name: str
    status: str  # ok, failed, timeout, skipped, interrupted
    seconds: float
    limit_s: float
    command: str
    returncode: int | None = None
    figures: dict = field(default_factory=dict)
    error: str = ""
    note: str = ""


# ---------------------------------------------------------------- the steps

ENV_PROBE = r"""
import json, os, platform
info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
import torch
info.update(torch=torch.__version__, cuda_available=torch.cuda.is_available(), cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(device=p.name, capability=f"{p.major}.{p.minor}", memory_gib=round(p.total_memory / 2**30, 1), multiprocessors=p.multi_processor_count)
else:
    info["device"] = f"cpu ({torch.get_num_threads()} threads)"
for name in ("torchvision", "torchmetrics", "optuna", "matplotlib", "rich", "yaml", "pytest"):
    try:
        info[name] = __import__(name).__version__
    except Exception as exc:
        info[name] = f"missing ({type(exc).__name__}: {exc})"
print(json.dumps(info))
"""

CLASSIFIER_PROBE = (
    "import json, sys; from gas_nas.trial.classifier import load_classifier; "
    "m = load_classifier(device=sys.argv[1]); print(json.dumps({'test_accuracy': m.test_accuracy}))"
)


SUPERNET_PROBE = """
import dataclasses, json, sys, torch
from gas_nas.models.space import load_space
from gas_nas.models.supernet import supernet_space
from gas_nas.strategies.differentiable import run_supernet
from gas_nas.trial.data import load_mnist
device, iterations, batch = torch.device(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
space = load_space()
train = dataclasses.replace(space.train, iterations=iterations, batch_size=batch, log_every=1)
real, _ = load_mnist(None, train=True, device=device)
r = run_supernet(supernet_space(space), train, real, 0.1, 0)
print(json.dumps({"iterations": iterations, "batch_size": batch, "seconds": r.seconds, "ms_per_iteration": 1000 * r.seconds / iterations,
                  "argmax": r.derived[0].spec.to_dict(), "entropy": r.entropy,
                  "peak_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None}))
"""


def plan(args: argparse.Namespace, work: Path, out: Path) -> list[Step]:
    """The steps in order, with the paper budget on a GPU or tiny budgets in a dry run."""
    py, dry = sys.executable, args.dry_run
    device = "cpu" if dry else "cuda"
    limit = {name: limits[1 if dry else 0] for name, limits in LIMITS.items()}
    gas_nas = [py, "-m", "gas_nas.cli"]
    tiny = ["--iterations", str(DRY["iterations"]), "--batch-size", str(DRY["batch_size"])] if dry else []
    storage = f"sqlite:///{out / 'search.db'}"
    search_space = ["--space", str(_tiny_space(work))] if dry else []
    steps = [
        Step("environment", [py, "-c", ENV_PROBE], limit["environment"], _environment),
        Step("classifier", [py, "-c", CLASSIFIER_PROBE, device], limit["classifier"], _last_json),
        Step("cuda_tests", [py, "-m", "pytest", "-m", "cuda", "tests/test_cuda.py", "-q", "-p", "no:cacheprovider",
                            f"--junitxml={work / 'cuda_tests.xml'}"], limit["cuda_tests"], _cuda_tests),
        Step("cases", gas_nas + ["cases", "--json"], limit["cases"], _cases),
        Step("trial_speed", [py, "benchmarks/trial_speed.py", "--device", device, "--repeats", "1"]
             + (tiny if dry else ["--batch-size", str(PAPER_BATCH)]), limit["trial_speed"], _trial_speed),
        Step("search_speed", [py, "benchmarks/search_speed.py", "--device", device, "--skip", "a,c"]
             + (tiny + ["--trials", "2", "--cohorts", "1,2", "--quality-samples", str(DRY["n_samples"])] if dry else ["--trials", "6", "--cohorts", "1,6"]),
             limit["search_speed"], _search_speed),
        Step("supernet", [py, "-c", SUPERNET_PROBE, device, str(DRY["iterations"] if dry else SUPERNET_ITERATIONS), str(DRY["batch_size"] if dry else PAPER_BATCH)],
             limit["supernet"], _last_json),
        Step("search", gas_nas + ["search", "--trials", str(DRY["trials"] if dry else 100_000), "--storage", storage, "--study", STUDY,
                                  "--artifacts", str(work / "artifacts"), "--device", device, "--cohort", "auto"] + tiny + search_space,
             limit["search"], lambda stdout, w: _search(stdout, out / "search.db"), stop_ok=True, floor_s=30 if dry else SEARCH_FLOOR_S),
        Step("show", gas_nas + ["show", "--storage", storage, "--study", STUDY, "--json"], limit["show"], _show, floor_s=limit["show"]),
    ]
    if args.reproduce or "reproduce" in args.only:
        repro = work / "reproduction"
        flags = ["--tiny", "--device", "cpu"] if dry else ["--seeds", "3", "--trials", "50", "--device", "cuda"]
        steps.append(Step("reproduce", [py, "docs/reproduce.py", *flags, "--out", str(repro), "--storage", f"sqlite:///{work / 'reproduction.db'}",
                                        "--artifacts", str(work / "repro-artifacts")],
                          args.reproduce_budget, lambda stdout, w: _reproduction(repro, out / "gas-reproduction.tar.gz", dry)))
    wanted = set(args.only or STEPS) | {"environment"}
    return [s for s in steps if s.name in wanted]


def _tiny_space(work: Path) -> Path:
    """The default space with the dry run's few quality samples (the CLI has no flag for them),
    judged by the absolute guard: a relative one would train all six paper cases first."""
    import yaml

    doc = yaml.safe_load(DEFAULT_SPACE.read_text())
    doc["quality"]["n_samples"] = DRY["n_samples"]
    doc["quality"]["guard"] = "absolute"
    path = work / "dry-run-space.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# ---------------------------------------------------------------- figures from each step's output


def _last_json(stdout: str, work: Path):
    return json.loads(stdout.strip().splitlines()[-1])


def _environment(stdout: str, work: Path) -> dict:
    info = _last_json(stdout, work)
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            line = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
            info["nvidia_smi"] = line
            info["driver"] = line.split(",")[1].strip()
        except (OSError, IndexError, subprocess.SubprocessError) as exc:
            info["driver"] = f"nvidia-smi failed ({exc})"
    return info


def _cuda_tests(stdout: str, work: Path) -> dict:
    suite = ET.parse(work / "cuda_tests.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    tests = {}
    for case in suite.iter("testcase"):
        outcome, message = "passed", ""
        for tag, name in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            element = case.find(tag)
            if element is not None:
                outcome, message = name, (element.get("message") or "")[:300]
        tests[case.get("name")] = {"outcome": outcome, "seconds": round(float(case.get("time") or 0), 1), "message": message}
    counts = {o: sum(t["outcome"] == o for t in tests.values()) for o in ("passed", "failed", "error", "skipped")}
    figures = {**counts, "tests": tests}
    path = work / "cuda_figures.json"
    if path.is_file():
        figures["measured"] = json.loads(path.read_text())
    if tests and counts["skipped"] == len(tests):
        figures["skipped_reason"] = next(iter(tests.values()))["message"] or "all skipped"
    if not tests:
        raise StepFailed("pytest collected no cuda tests")
    return figures


def _cases(stdout: str, work: Path) -> dict:
    keys = ("name", "params", "param_mb", "paper_mb", "peak_mb")
    return {"cases": [{k: row.get(k) for k in keys} for row in json.loads(stdout)]}


def _match(pattern: str, text: str, cast=float):
    found = re.search(pattern, text, re.M)
    return cast(found.group(1)) if found else None


def _trial_speed(stdout: str, work: Path) -> dict:
    figures = {
        "iterations": _match(r"^iterations\s+(\d+)", stdout, int),
        "naive_ms_per_iter": _match(r"^\(a\) naive eager s.*\(([\d.]+) ms/iter\)", stdout),
        "gas_nas_ms_per_iter": _match(r"^\(b\) gas-nas train_gan s.*\(([\d.]+) ms/iter\)", stdout),
        "speedup": _match(r"^speedup \(naive / gas-nas\): ([\d.]+)x", stdout),
    }
    if figures["speedup"] is None:
        raise StepFailed("no speedup line in the output")
    return figures


def _search_speed(stdout: str, work: Path) -> dict:
    rows = re.findall(r"^\(b\) gas-nas cohort (\d+)\s+([\d.]+) trials/min\s+ratio vs cohort \d+: ([\d.]+)x", stdout, re.M)
    if not rows:
        raise StepFailed("no trials/min lines in the output")
    return {
        "budget": _match(r"^budget: (.*)$", stdout, str),
        "cohorts": {k: {"trials_per_min": float(rate), "vs_solo": float(ratio)} for k, rate, ratio in rows},
    }


def _search(stdout: str, db: Path) -> dict:
    """Trial counts read from the study's SQLite file (Optuna's tables), so a search stopped at
    its budget, which prints no front, still reports what it did."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        states = dict(con.execute("SELECT state, COUNT(*) FROM trials GROUP BY state").fetchall())
        cases = con.execute(
            "SELECT COUNT(*) FROM trial_user_attributes a JOIN trials t ON a.trial_id = t.trial_id WHERE a.key = 'case' AND t.state = 'COMPLETE'"
        ).fetchone()[0]
    finally:
        con.close()
    complete = states.get("COMPLETE", 0)
    figures = {"states": states, "complete": complete, "paper_cases_complete": cases, "cohort": _match(r"cohort (\d+)", stdout, int)}
    if not complete:
        raise StepFailed(f"no trial completed (states: {states or 'none'})")
    return figures


def _show(stdout: str, work: Path) -> dict:
    doc = json.loads(stdout)
    keys = ("trial", "case", *doc["metrics"], "fid", "classes", "feasible")
    return {"front": [{k: r.get(k) for k in keys} for r in doc["front"]], "cases": [{k: r.get(k) for k in keys} for r in doc["cases"]]}


def _reproduction(repro: Path, tarball: Path, dry: bool) -> dict:
    """Pack the page, its images and the exported architectures, laid out as in the repository
    (`tar -xzf` at the root puts them in place); a dry run's smoke page goes under smoke/."""
    page = repro / "gas-reproduction.md"
    if not page.is_file():
        raise StepFailed(f"{page.name} was not written")
    prefix = "smoke/" if dry else ""
    found = [] if dry else sorted((ROOT / "search_spaces" / "found").glob("reproduction-trial-*.yaml"))
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(page, f"{prefix}docs/{page.name}")
        tar.add(repro / "gas-reproduction", f"{prefix}docs/gas-reproduction")
        for path in found:
            tar.add(path, f"search_spaces/found/{path.name}")
    verdicts = re.findall(r"^- (\*\*Conclusion \d\*\*.*)$", page.read_text(), re.M)
    return {"tarball": tarball.name, "verdicts": verdicts, "found": [p.name for p in found]}


# ---------------------------------------------------------------- running a step


def run(command: list[str], limit_s: float, env: dict, work: Path) -> tuple[int | None, str, str, float, bool]:
    """(returncode, stdout, stderr, seconds, timed_out). The step runs in its own process group:
    at its limit the group gets SIGTERM, and SIGKILL `GRACE_S` later."""
    with open(work / "stdout", "w+b") as out, open(work / "stderr", "w+b") as err:
        start = time.monotonic()
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=ROOT, **NEW_GROUP)
        timed_out = False
        try:
            rc = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            rc = _stop(proc)
        except KeyboardInterrupt:
            _stop(proc)
            raise
        seconds = time.monotonic() - start
        out.seek(0), err.seek(0)
        return rc, out.read().decode(errors="replace"), err.read().decode(errors="replace"), seconds, timed_out


def _stop(proc: subprocess.Popen) -> int:
    for sig, wait in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_step(step: Step, limit_s: float, env: dict, work: Path, log) -> Result:
    result = Result(step.name, "ok", 0.0, round(limit_s), " ".join(step.command if step.name != "environment" else step.command[:2] + ["<probe>"]))
    rc, stdout, stderr, seconds, timed_out = run(step.command, limit_s, env, work)
    result.returncode, result.seconds = rc, round(seconds, 1)
    log(f"===== {step.name}: exit {rc}{' (time limit)' if timed_out else ''}, {seconds:.1f} s\n$ {result.command}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n")
    stopped = timed_out and step.stop_ok and rc in (0, 143, -signal.SIGTERM)  # gas-nas: a clean stop on SIGTERM
    if stopped:
        result.note = f"stopped at its {limit_s:.0f} s limit by SIGTERM, as planned"
    elif timed_out:
        result.status, result.error = "timeout", f"killed at its {limit_s:.0f} s limit\n{_tail(stderr or stdout)}"
        return result
    elif rc != 0 and not (step.name == "cuda_tests" and rc == 1):  # pytest: 1 = some tests failed, read below
        result.status, result.error = "failed", f"exit {rc}\n{_tail(stderr or stdout)}"
        return result
    try:
        result.figures = step.figures(stdout, work)
    except StepFailed as exc:
        result.status, result.error = "failed", f"{exc}\n{_tail(stderr or stdout)}"
    except Exception as exc:  # noqa: BLE001 - output we cannot read is this step's failure, not the run's
        result.status, result.error = "failed", f"cannot read its output: {type(exc).__name__}: {exc}\n{_tail(stderr or stdout)}"
    if result.status == "ok" and rc != 0 and not stopped:
        result.status, result.error = "failed", _tail(stdout, 30)
    if result.status == "ok" and "skipped_reason" in result.figures:
        result.status, result.note = "skipped", result.figures["skipped_reason"]
    return result


# ---------------------------------------------------------------- the report


def write_report(out: Path, meta: dict, results: list[Result]) -> None:
    doc = {**meta, "total_s": round(sum(r.seconds for r in results), 1), "steps": [dataclasses.asdict(r) for r in results]}
    (out / "gpu_check.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "gpu_check.md").write_text(markdown(doc))


def markdown(doc: dict) -> str:
    env = next((s["figures"] for s in doc["steps"] if s["name"] == "environment"), {})
    lines = ["# gas-nas GPU check", ""]
    if doc["dry_run"]:
        lines += ["> **DRY RUN on a CPU with tiny budgets**: checks the script only; no figure here says anything about gas-nas on a GPU.", ""]
    lines += [
        f"- **Device:** {env.get('device', '?')}; driver {env.get('driver', '-')}; CUDA {env.get('cuda', '-')}, cuDNN {env.get('cudnn', '-')}",
        f"- **Versions:** python {env.get('python', '?')}, torch {env.get('torch', '?')}, optuna {env.get('optuna', '?')}, torchmetrics {env.get('torchmetrics', '?')}",
        f"- **Date:** {doc['date']}; **total:** {doc['total_s']:.0f} s (budget {doc['budget_s']} s); **command:** `{doc['command']}`",
        "",
        "| step | status | seconds | limit s | figures / error |",
        "|---|---|---|---|---|",
    ]
    for s in doc["steps"]:
        what = s["error"].splitlines()[0] if s["error"] else s["note"] or _brief(s["figures"])
        lines.append(f"| {s['name']} | {s['status']} | {s['seconds']:.1f} | {s['limit_s']} | {what.replace('|', '/')[:200]} |")
    cases = next((s["figures"].get("cases") for s in doc["steps"] if s["name"] == "cases"), None)
    if cases:
        lines += ["", "## The six paper cases", "", "| case | params | param MB | paper MB (TF, GPU) | peak train MB (CUDA, batch 32) |", "|---|---|---|---|---|"]
        lines += [f"| {c['name']} | {c['params']:,} | {c['param_mb']:.3f} | {c['paper_mb']} | {c.get('peak_mb') or 'n/a (no CUDA)'} |" for c in cases]
    for s in doc["steps"]:
        if s["name"] == "environment" or not (s["figures"] or s["error"]):
            continue
        lines += ["", f"## {s['name']}: {s['status']}", "", f"`{s['command']}`", ""]
        if s["error"]:
            lines += ["```text", s["error"], "```", ""]
        if s["figures"]:
            lines += ["```json", json.dumps(s["figures"], indent=1), "```"]
    return "\n".join(lines) + "\n"


def _brief(figures: dict) -> str:
    """The scalar figures (and the length of lists) on one line."""
    if "torch" in figures:  # environment
        return f"{figures.get('device')}, torch {figures['torch']}, CUDA {figures.get('cuda')}"
    parts = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {len(v)}" if isinstance(v, list) else f"{k} {v}"
             for k, v in figures.items() if isinstance(v, (int, float, str, list))]
    return ", ".join(parts)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--out", required=True, metavar="DIR", help="where gpu_check.json, .md, .log and search.db go")
    p.add_argument("--dry-run", action="store_true", help="the same steps on a CPU with tiny budgets (checks this script)")
    p.add_argument("--budget", type=float, default=BUDGET_S, metavar="S", help=f"seconds for all steps but reproduce (default {BUDGET_S})")
    p.add_argument("--only", type=lambda s: [x for x in s.split(",") if x], default=[], metavar="STEPS", help="comma-separated steps to run (environment always runs)")
    p.add_argument("--reproduce", action="store_true", help="also run docs/reproduce.py at the paper budget (its own --reproduce-budget)")
    p.add_argument("--reproduce-budget", type=float, default=REPRODUCE_BUDGET_S, metavar="S", help=f"seconds for reproduce (default {REPRODUCE_BUDGET_S})")
    p.add_argument("--data-dir", metavar="DIR", help="MNIST (default: $GAS_NAS_DATA)")
    p.add_argument("--cache", metavar="DIR", help="gas-nas cache, for the default teacher (default: $GAS_NAS_CACHE, else a temporary folder)")
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    unknown = sorted(set(args.only) - set(STEPS))
    if unknown:
        p.error(f"--only: unknown step(s) {', '.join(unknown)}; steps: {', '.join(STEPS)}")
    if args.budget <= 0 or args.reproduce_budget <= 0:
        p.error("--budget and --reproduce-budget must be positive")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        p.error(f"--out {out} exists and is not a folder")
    if args.data_dir and not Path(args.data_dir).is_dir():
        p.error(f"--data-dir {args.data_dir} is not a folder")

    work = Path(tempfile.mkdtemp(prefix="gas-nas-gpu-check-"))
    try:
        return _check(args, out, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check(args: argparse.Namespace, out: Path, work: Path) -> int:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
        "GAS_NAS_CACHE": args.cache or os.environ.get("GAS_NAS_CACHE") or str(work / "cache"),
        FIGURES_ENV: str(work / "cuda_figures.json"),
    }
    if args.data_dir:
        env["GAS_NAS_DATA"] = args.data_dir
    steps = plan(args, work, out)
    deadline = time.monotonic() + args.budget
    logs: list[str] = []
    results = [run_step(steps[0], LIMITS["environment"][args.dry_run], env, work, logs.append)]
    if not args.dry_run and not results[0].figures.get("cuda_available"):
        why = results[0].error.splitlines()[0] if results[0].error else "torch.cuda.is_available() is False"
        print(f"gpu_check: no CUDA device ({why}); on a CPU use --dry-run", file=sys.stderr)
        return 2
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "search.db").unlink(missing_ok=True)  # a fresh study each run
    except OSError as exc:
        print(f"gpu_check: cannot write to --out {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    meta = {
        "dry_run": args.dry_run, "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "budget_s": args.budget, "command": " ".join(["python", "benchmarks/gpu_check.py", *args.argv]),
    }

    def save() -> None:
        write_report(out, meta, results)
        (out / "gpu_check.log").write_text("\n".join(logs))

    save()
    code = 0
    for i, step in enumerate(steps[1:], 1):
        if step.name == "reproduce":
            limit = step.limit_s
        else:
            left = deadline - time.monotonic() - sum(s.floor_s for s in steps[i + 1:] if s.name != "reproduce") - GRACE_S
            limit = min(step.limit_s or left, left)
        if limit < 5:
            results.append(Result(step.name, "skipped", 0.0, round(limit), " ".join(step.command), note="no time left in the budget"))
            save()
            continue
        print(f"gpu_check: {step.name} (limit {limit:.0f} s)", flush=True)
        try:
            results.append(run_step(step, limit, env, work, logs.append))
        except KeyboardInterrupt:
            results.append(Result(step.name, "interrupted", 0.0, round(limit), " ".join(step.command), error="interrupted (Ctrl-C)"))
            code = 130
        save()
        r = results[-1]
        print(f"gpu_check: {step.name}: {r.status} in {r.seconds:.1f} s" + (f": {r.error.splitlines()[0]}" if r.error else ""), flush=True)
        if code:
            break
    failed = [r.name for r in results if r.status in ("failed", "timeout")]
    print(f"gpu_check: wrote {out / 'gpu_check.md'} and {out / 'gpu_check.json'}" + (f"; not ok: {', '.join(failed)}" if failed else ""))
    return code or (1 if failed else 0)


if __name__ == "__main__":
    raise SystemExit(main())
