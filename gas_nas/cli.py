"""`gas-nas` command line: one small class per command, a table of them, and `main()`.

Commands only parse flags and format output; the work lives in space/train/search modules.
User errors (GasNasError) become one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from gas_nas.errors import GasNasError


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
        from gas_nas.cases import case_rows
        from gas_nas.space import load_space
        from gas_nas.spec import save_arch

        space = load_space(args.space)
        rows = case_rows(space)
        if args.write:
            for case, row in zip(space.cases, rows):
                path = Path(args.write) / f"{row['slug']}.yaml"
                save_arch(path, case.spec, space.train, {"case": case.name, "paper_mb": case.paper_mb, "note": case.note, "space": str(space.path)})
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        table = Table(title=f"GAS paper cases ({space.path.name})")
        for col in ("#", "case", "params", "param MB", "paper MB") + (("peak MB",) if "peak_mb" in rows[0] else ()):
            table.add_column(col, justify="left" if col == "case" else "right")
        for i, row in enumerate(rows, 1):
            cells = [str(i), row["name"], f"{row['params']:,}", f"{row['param_mb']:.3f}", _num(row["paper_mb"])]
            if "peak_mb" in row:
                cells.append(f"{row['peak_mb']:.1f}")
            table.add_row(*cells)
        console.print(table)
        if args.write:
            console.print(f"wrote {len(rows)} architecture files to {args.write}")
        return 0


def _num(value) -> str:
    return "-" if value is None else f"{value:g}"


COMMANDS: list[type[Command]] = [Cases]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gas-nas", description="Neural architecture search for small GAN discriminators.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cls in COMMANDS:
        cmd = cls()
        doc = (cls.__doc__ or "").strip()
        p = sub.add_parser(cmd.name, help=doc.splitlines()[0], description=doc)
        cmd.add_arguments(p)
        p.set_defaults(_command=cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(highlight=False)
    try:
        return args._command.run(args, console)
    except GasNasError as exc:
        print(f"gas-nas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gas-nas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
