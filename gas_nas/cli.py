"""`gas-nas` command line: one small class per command, a table of them, and `main()`.

Commands only parse flags and format output; the work lives in space/train/search modules.
User errors (GasNasError) become one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
from pathlib import Path
from typing import get_args

from rich.console import Console
from rich.table import Table

from gas_nas import __version__
from gas_nas import run
from gas_nas.argtypes import MAX_SEED, MAX_TRIALS, cohort_size, device_name, int_in, lambda_list, number_list, study_name
from gas_nas.common.errors import GasNasError
from gas_nas.common.paths import check_output_dir
from gas_nas.models.spec import MAX_BATCH_SIZE, MAX_ITERATIONS, SamplerName
from gas_nas.strategies.registry import STRATEGIES

MAX_JOBS = 64


class Command:
    """Base: subclasses set `name`, use the class docstring as help, and implement `run`."""

    name = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        pass

    def run(self, args: argparse.Namespace, console: Console) -> int:
        raise NotImplementedError


def _add_space(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", metavar="PATH", help="search-space YAML (default: search_spaces/gas.yaml)")


class Cases(Command):
    """Show the six GAS discriminators rebuilt from the search space, with their sizes."""

    name = "cases"

    def add_arguments(self, parser):
        _add_space(parser)
        parser.add_argument("--json", action="store_true", help="print a JSON list in paper order")
        parser.add_argument("--write", metavar="DIR", help="write each case as an architecture YAML into DIR")

    def run(self, args, console):
        from gas_nas.models.space import load_space
        from gas_nas.models.spec import save_arch
        from gas_nas.study.cases import case_rows

        if args.write:
            check_output_dir(args.write, "--write")
        space = load_space(args.space)
        rows = case_rows(space)
        if args.write:
            for case, row in zip(space.cases, rows):
                path = Path(args.write) / f"{row['slug']}.yaml"
                save_arch(path, case.spec, space.train, {"case": case.name, "paper_mb": case.paper_mb, "note": case.note, "space": str(space.path)})
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        if not rows:
            console.print(f"{space.path} lists no paper cases (no `seeds`)", soft_wrap=True)
            return 0
        table = Table(title=f"GAS paper cases ({space.path.name})")
        sparse = any(row["density"] < 1 for row in rows)  # a density column only where some case is sparse
        for col in ("#", "case", "params") + (("density",) if sparse else ()) + ("trial MB (est.)", "param MB", "paper MB") + (("peak MB",) if "peak_mb" in rows[0] else ()):
            table.add_column(col, justify="left" if col == "case" else "right")
        for i, row in enumerate(rows, 1):
            cells = [str(i), row["name"], f"{row['params']:,}", *([f"{row['density']:g}"] if sparse else []), f"{row['estimate_mb']:,.0f}", f"{row['param_mb']:.3f}", _num(row["paper_mb"])]
            if "peak_mb" in row:
                cells.append(f"{row['peak_mb']:.1f}")
            table.add_row(*cells)
        console.print(table)
        if args.write:
            console.print(f"wrote {len(rows)} architecture files to {args.write}")
        return 0


def _num(value) -> str:
    return "-" if value is None else f"{value:g}"


def _add_training(parser: argparse.ArgumentParser) -> None:
    from gas_nas.models.recipes import RECIPES

    parser.add_argument("--recipe", choices=sorted(RECIPES), help="training recipe (default: from YAML; precedence: flags > arch file > space)")
    parser.add_argument("--iterations", type=int_in(1, MAX_ITERATIONS), metavar="N", help="training iterations per trial (default: from YAML)")
    parser.add_argument("--batch-size", type=int_in(1, MAX_BATCH_SIZE), metavar="N", help="batch size (default: from YAML)")
    parser.add_argument("--device", type=device_name, default="auto", metavar="auto|cpu|cuda|cuda:N", help="training device (default: auto: cuda if there is one)")
    parser.add_argument("--data-dir", metavar="DIR", help="MNIST IDX files (default: $GAS_NAS_DATA, else download)")
    parser.add_argument("--seed", type=int_in(0, MAX_SEED), help=f"random seed, 0..{MAX_SEED} (default: 0; train: the arch file's, search: a resumed study's)")
    parser.add_argument("--teacher", metavar="PATH", help="recipe dgl: the frozen teacher, a discriminator.pt of `gas-nas train` (default: from YAML, else paper case 1 trained once and cached)")


def _add_study(parser: argparse.ArgumentParser, artifacts: str = argparse.SUPPRESS) -> None:
    """--storage, --study and --artifacts (its help given by the commands that use it; others accept it silently)."""
    parser.add_argument("--storage", metavar="URL", help="Optuna storage URL (default: $GAS_NAS_STORAGE, else sqlite:///studies/gas.db)")
    parser.add_argument("--study", type=study_name, metavar="NAME", help="study name (default: the space's name)")
    parser.add_argument("--artifacts", metavar="DIR", default=None, help=artifacts)


class Train(Command):
    """Train one architecture YAML and write checkpoints, sample grid, loss curves and metrics."""

    name = "train"

    def add_arguments(self, parser):
        parser.add_argument("--arch", required=True, metavar="FILE", help="architecture YAML (from `cases --write` or `export`)")
        _add_space(parser)
        _add_training(parser)
        parser.add_argument("--out", metavar="DIR", default="runs/train", help="output directory (default: runs/train)")
        parser.add_argument("--json", action="store_true", help="print the metrics record as JSON")

    def run(self, args, console):
        from gas_nas.progress import TerminalEvents

        say = (lambda line: print(line, file=sys.stderr)) if args.json else None  # with --json, stdout is the JSON record
        done = run.train(args, TerminalEvents(console, quiet=args.json, say=say))
        outcome, paths = done.outcome, done.paths
        m = outcome.metrics
        if args.json:
            print(json.dumps(m.to_dict()))
        else:
            table = Table(title=f"{args.arch} ({m.status}{': ' + m.reason if m.reason else ''})")
            table.add_column("metric")
            table.add_column("value", justify="right")
            for key in ("d_params", "d_param_mb", "peak_mb", "imbalance", "duality_gap", "d_loss", "g_loss", "d_auc", "d_spread", "fid", "classes", "entropy", "seconds", "teacher_params", "teacher_sha256"):
                value = getattr(m, key)
                if key.startswith("teacher") and value is None:
                    continue
                table.add_row(key, "-" if value is None else f"{value:,.4g}" if isinstance(value, float) else f"{value:,}")
            reasons = done.reasons
            for i, reason in enumerate(reasons or ["pass"]):  # a row per reason: a long joined line would wrap right-aligned
                table.add_row("quality guard" if i == 0 else "", reason if not reasons else f"fail: {reason}")
            console.print(table)
            console.print(f"wrote {', '.join(p.name for p in paths.values())} to {args.out}")
        return 0 if m.status == "complete" else 1


class Search(Command):
    """Search discriminators with Optuna: size vs D/G imbalance, the six paper cases first."""

    name = "search"

    def add_arguments(self, parser):
        count = parser.add_mutually_exclusive_group()
        count.add_argument("--trials", type=int_in(1, MAX_TRIALS), metavar="N", help="trials to run in this process (default: 50; --strategy differentiable: the trials its supernets propose)")
        count.add_argument("--until", type=int_in(1, MAX_TRIALS), metavar="N", help="shared studies: stop when the study has N complete trials")
        parser.add_argument("--jobs", type=int_in(1, MAX_JOBS), default=1, metavar="K", help="worker processes on this machine, each running the trials asked for (needs --storage journal:PATH or PostgreSQL)")
        _add_space(parser)
        _add_study(parser, "folder for each trial's sample grid and loss curves, recorded in the study for the dashboard (default: studies/artifacts)")
        _add_training(parser)
        parser.add_argument("--sampler", choices=get_args(SamplerName), help="Optuna sampler; gp: Gaussian process, for few trials (default: from YAML, tpe)")
        parser.add_argument("--strategy", choices=list(STRATEGIES), help="; ".join(f"{s.name}: {s.summary}" for s in STRATEGIES.values()) + " (default: from YAML, optuna)")
        parser.add_argument("--lambdas", type=lambda_list, metavar="A,B,C", help="differentiable: one supernet per size weight (default: from YAML, 0.0001,0.001,0.01)")
        parser.add_argument("--cohort", type=cohort_size, metavar="K|auto", help="trials trained together in this process (default: from YAML, auto: 1 on a CPU, by free memory on CUDA)")
        parser.add_argument("--quiet", action="store_true", help="plain output: failures and the final front only")

    def run(self, args, console):
        from gas_nas.progress import TerminalEvents

        end = run.search(args, TerminalEvents(console, quiet=args.quiet))
        if end.stopped:
            print(f"gas-nas: {end.message}", file=sys.stderr)
            return end.code
        _print_front(console, end.study, quiet=args.quiet)
        if end.code:
            print(f"gas-nas: {end.message}", file=sys.stderr)
        return end.code


def _print_front(console: Console, study, quiet: bool = False, as_json: bool = False) -> None:
    from gas_nas.study.confirmation import confirmations, trusted_front
    from gas_nas.study.dashboard import no_feasible_text
    from gas_nas.study.search import case_trials, guard_line, proposal_trials, stored_guard, trial_row

    names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    found = confirmations(study)
    best = trusted_front(study, found)
    numbers = {t.number for t in best}
    proposals = proposal_trials(study)
    refuted = [t for t in study.get_trials(deepcopy=False) if t.number in found and not found[t.number].kept]
    rows = [trial_row(t, names, numbers) for t in best] + [trial_row(t, names, numbers) for t in case_trials(study) + proposals + refuted if t.number not in numbers]
    rows = list({r["trial"]: r for r in rows}.values())  # a refuted paper case is listed once
    for r in rows:
        r["confirmed"] = found[r["trial"]].to_dict(names) if r["trial"] in found else None
    if as_json:
        guard = stored_guard(study)
        print(json.dumps({"study": study.study_name, "metrics": names, "guard": guard.to_dict() if guard else None,
                          "front": [r for r in rows if r["on_front"]], "cases": [r for r in rows if r["case"]],
                          "proposals": [r for r in rows if r["origin"] and not r["case"]],
                          "refuted": [r for r in rows if r["confirmed"] and not r["confirmed"]["kept"]]}, indent=2))
        return
    table = Table(title=f"{study.study_name}: Pareto front of feasible trials (*), the paper cases" + (" and the supernets' proposals" if proposals else "")
                  + (", trials refuted by their seeds" if refuted else ""))
    density = [(r["spec"] or {}).get("density", 1.0) for r in rows]
    sparse = any(d < 1 for d in density)  # a density column only where some trial is sparse
    seeds = f"{names[1]} over seeds" if found and len(names) > 1 else None  # the confirmed mean ± sd beside the single-seed value
    for col in ["trial", "case", *names, *([seeds] if seeds else []), "fid", "classes", "D AUC", "params", *(["density"] if sparse else []), "feasible"]:
        table.add_column(col, justify="left" if col == "case" else "right")  # case: the paper case, or the supernet that proposed the trial
    for r, d in zip(rows, density):
        c = found.get(r["trial"])
        cells = [f"{r['trial']}{'*' if r['on_front'] else ''}", r["origin"]]
        cells += [f"{r[n]:.4g}" for n in names]
        cells += [f"{c.mean(1):.3g} ± {c.spread(1):.2g}" if c else "-"] if seeds else []
        fid = r["fid"]
        auc = r["d_auc"]
        cells += [f"{fid:.1f}" if isinstance(fid, float) else str(fid), str(r["classes"]), f"{auc:.2f}" if isinstance(auc, float) and math.isfinite(auc) else "-",
                  f"{r['d_params']:,}" if r["d_params"] else "-"]
        cells += [f"{d:g}"] if sparse else []
        feasible = "yes" if r["feasible"] else "no"
        cells.append(f"{feasible}; seeds {c.passes}/{len(c.seeds)}" + ("" if c.kept else " refuted") if c else feasible)
        table.add_row(*cells)
    if quiet and not console.is_terminal:
        for r in rows:
            print(" ".join(str(c) for c in [r["trial"], r["origin"] or "-", *(f"{r[n]:.4g}" for n in names), "front" if r["on_front"] else ""]))
    else:
        console.print(table)
        console.print(guard_line(study), soft_wrap=True, markup=False, highlight=False)
    if not best:
        line = no_feasible_text(study)
        if console.is_terminal:  # wrapped at words (a terminal would cut it anywhere, a space starting its next line)
            console.print(line, highlight=False, markup=False)
        else:
            print(line, flush=True)


class Show(Command):
    """Show a study's Pareto front and the six paper cases side by side."""

    name = "show"

    def add_arguments(self, parser):
        _add_study(parser)
        parser.add_argument("--json", action="store_true", help="print JSON")

    def run(self, args, console):
        from gas_nas.study.search import load_existing

        study = load_existing(run.storage_url(args), args.study)
        _print_front(console, study, as_json=args.json)
        return 0


class Export(Command):
    """Export a trial's discriminator as architecture YAML that `gas-nas train --arch` rebuilds."""

    name = "export"

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--trial", type=int, metavar="N", help="trial number")
        which.add_argument("--pick", choices=["smallest", "balanced", "best-quality"], help="pick among feasible trials")
        _add_study(parser)
        parser.add_argument("-o", "--output", required=True, metavar="FILE", help="architecture YAML to write")
        parser.add_argument("--force", action="store_true", help="overwrite FILE if it exists")

    def run(self, args, console):
        done = run.export(args)
        if done.pick_line:
            console.print(done.pick_line, soft_wrap=True, markup=False)
        if done.warning:
            print(f"gas-nas: warning: {done.warning}", file=sys.stderr)
        console.print(f"wrote trial {done.trial} of {done.study_name!r} to {done.path}")
        return 0


class Confirm(Command):
    """Retrain the feasible front's trials (or --trials) with more seeds, so the front holds what
    most seeds give; show, export and the dashboard then use the seeds' mean and spread."""

    name = "confirm"

    def add_arguments(self, parser):
        _add_study(parser)
        parser.add_argument("--trials", type=number_list, metavar="N,M", help="trials to confirm (default: the feasible front)")
        parser.add_argument("--seeds", type=int_in(2, 20), default=3, metavar="N", help="seeds per trial in all, its own included (default: 3)")
        parser.add_argument("--device", type=device_name, default="auto", metavar="auto|cpu|cuda|cuda:N", help="training device (default: auto)")
        parser.add_argument("--data-dir", metavar="DIR", help="MNIST IDX files (default: $GAS_NAS_DATA, else download)")
        parser.add_argument("--cohort", type=cohort_size, metavar="K|auto", help="retrainings trained together (default: auto: 1 on a CPU)")
        parser.add_argument("--quiet", action="store_true", help="no line per retraining")

    def run(self, args, console):
        from gas_nas.progress import TerminalEvents

        end = run.confirm(args, TerminalEvents(console, quiet=args.quiet))
        if end.stopped:
            print(f"gas-nas: {end.message}", file=sys.stderr)
            return end.code
        names = end.study.metric_names or []
        for t in end.trials:
            c = end.found.get(t.number)
            if c is not None:
                console.print(f"trial {t.number}: {'kept' if c.kept else 'refuted'}; {c.describe(names)}", soft_wrap=True, markup=False)
        return 0


class Dashboard(Command):
    """Open optuna-dashboard on a study's storage, with the trial artifacts (sample grids, loss
    curves) from the folder the study's search recorded, unless --artifacts names another."""

    name = "dashboard"

    def add_arguments(self, parser):
        _add_study(parser, "the trials' sample grids and loss curves (default: the folder the study's search recorded, else studies/artifacts)")
        parser.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1, local only)")
        parser.add_argument("--port", type=int_in(1, 65535), default=8080, help="port, 1..65535 (default: 8080)")

    def run(self, args, console):
        from optuna.artifacts import FileSystemArtifactStore

        from gas_nas.study.dashboard import serve
        from gas_nas.study.search import artifacts_problem, find_artifacts, load_existing

        storage = run.storage_url(args)
        study = load_existing(storage, args.study)
        loopback = _check_listen(args.host, args.port)
        artifacts, source = find_artifacts(study, storage, args.artifacts)  # read-only: never created
        store = FileSystemArtifactStore(str(artifacts)) if artifacts.is_dir() else None
        problem = artifacts_problem(study, artifacts, source)
        if problem:
            print(f"gas-nas: warning: {one_line(problem)}", file=sys.stderr)
        if not loopback:
            print(f"gas-nas: warning: --host {args.host} is not loopback: anyone who can reach port {args.port} can read and change study {study.study_name!r}", file=sys.stderr)
        console.print(f"optuna-dashboard for study {study.study_name!r}: http://{args.host}:{args.port}/dashboard/studies/{study._study_id}  (Ctrl-C to stop)")
        try:
            serve(study._storage, args.host, args.port, artifact_store=store)
        except OSError as exc:
            raise GasNasError(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}") from None
        return 0


def _check_listen(host: str, port: int) -> bool:
    """The address resolves and the port is free (bound and released at once); True for loopback."""
    import ipaddress
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise GasNasError(f"--host {host!r}: cannot resolve it ({getattr(exc, 'strerror', None) or exc}); use an address such as 127.0.0.1") from None
    family, kind, proto, _, address = infos[0]
    try:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:
        raise GasNasError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port or --host") from None
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


PIPE_WIDTH = 200  # rich lays out for 80 columns when stdout is no terminal and cuts table headers
COMMANDS: list[type[Command]] = [Cases, Train, Search, Show, Export, Confirm, Dashboard]


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (argparse would print the whole usage first), exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gas-nas", description="Neural architecture search for small GAN discriminators.")
    parser.add_argument("--version", action="version", version=f"gas-nas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cls in COMMANDS:
        cmd = cls()
        doc = (cls.__doc__ or "").strip()
        p = sub.add_parser(cmd.name, help=doc.splitlines()[0], description=doc)
        cmd.add_arguments(p)
        p.set_defaults(_command=cmd)
    return parser


class Terminated(Exception):
    """SIGTERM outside a running search (a search turns it into a clean stop of its cohort)."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else 2
    console = Console(highlight=False, width=None if sys.stdout.isatty() else PIPE_WIDTH)
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if threading.current_thread() is threading.main_thread() else None
    try:
        return args._command.run(args, console)
    except GasNasError as exc:
        print(f"gas-nas: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gas-nas: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("gas-nas: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except MemoryError:
        print("gas-nas: error: out of memory; use a smaller --batch-size or architecture", file=sys.stderr)
        return 2
    except OSError as exc:  # a disk that fills, a directory removed under us
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"gas-nas: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        if not _out_of_memory(exc):
            raise
        print(f"gas-nas: error: out of memory ({one_line(str(exc))[:160]}); use a smaller --batch-size or architecture", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _out_of_memory(exc: RuntimeError) -> bool:
    """torch reports allocation failures as RuntimeError (CUDA's is a subclass)."""
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text


def one_line(text: str) -> str:
    """Messages go to terminals: control characters shown escaped, never a second line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in " ".join(text.split()))


if __name__ == "__main__":
    sys.exit(main())
