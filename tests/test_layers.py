"""The direction of imports inside gas_nas: no circles, and every import pointing down the layers
docs/guide-layout.md names (the CLI and the terminal on top, then the library layer, the
strategies, the study, a trial, models and specs), so the training core imports nothing of the
study, the search or the UI, the way nanoGPT's model imports nothing from its training loop.
Every import counts: function level and type-only ones too (a circle closed by a type-only
import is still a circle)."""

from __future__ import annotations

import ast
from pathlib import Path

import gas_nas

PACKAGE = Path(gas_nas.__file__).parent


def module_id(path: Path) -> str:
    """A module as the layout page names it: its path under gas_nas/ without `.py` ("study/search", "models/blocks/__init__")."""
    return path.relative_to(PACKAGE).with_suffix("").as_posix()


def imports() -> dict[str, set[str]]:
    """module -> the gas_nas modules it imports anywhere in its source."""
    modules = {module_id(p) for p in PACKAGE.rglob("*.py")}

    def resolve(dotted: list[str]) -> str | None:
        path = "/".join(dotted)
        return path if path in modules else f"{path}/__init__" if f"{path}/__init__" in modules else None

    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "gas_nas":
                parts = node.module.split(".")[1:]
                found |= {resolve(parts + [a.name]) or resolve(parts) for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {resolve(a.name.split(".")[1:]) for a in node.names if a.name.startswith("gas_nas.")}
        graph[module_id(path)] = found - {module_id(path), None, "__init__"}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the modules along it, or None."""
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep in graph and dep not in state and (found := visit(dep, path + [dep])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_the_package_has_no_import_circle():
    graph = imports()
    assert {"cli", "trial/train", "study/search", "trial/guard", "models/blocks/conv"} <= set(graph)  # the scan sees the package
    assert "models/blocks/__init__" in graph["models/networks"]  # and resolves a package's own imports
    assert cycle(graph) is None, " -> ".join(cycle(graph))
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # and would name one


def test_every_strategy_the_space_accepts_is_registered():
    """A space's `search.strategy` is validated against the names the registry runs, no fewer, no more."""
    from typing import get_args, get_type_hints

    from gas_nas.models.spec import SearchConfig
    from gas_nas.strategies.registry import STRATEGIES

    assert set(get_args(get_type_hints(SearchConfig)["strategy"])) == set(STRATEGIES)


def test_scripts_use_the_library_not_the_cli_module():
    """docs/*.py and benchmarks/*.py call gas-nas as a library (or run `gas-nas` as a user
    would); none imports gas_nas.cli, which only parses flags and prints."""
    root = PACKAGE.parent
    scripts = sorted((root / "docs").glob("*.py")) + sorted((root / "benchmarks").glob("*.py"))
    assert scripts
    offenders = [str(p.relative_to(root)) for p in scripts
                 if any(isinstance(n, ast.ImportFrom) and n.module == "gas_nas.cli" or isinstance(n, ast.Import) and any(a.name == "gas_nas.cli" for a in n.names)
                        for n in ast.walk(ast.parse(p.read_text())))]
    assert not offenders, offenders


def test_scripts_open_searches_through_the_library_layer():
    """docs scripts and benchmarks open and run searches with gas_nas.run (storage, device, data,
    settings, study, resources in one place), never by calling the search module's pieces;
    benchmarks/bookkeeping.py alone drives the trial loop itself, with training faked, because
    the loop's own cost is what it measures."""
    root = PACKAGE.parent
    pieces = {"open_study", "run_search"}
    offenders = []
    for path in sorted((root / "docs").glob("*.py")) + sorted((root / "benchmarks").glob("*.py")):
        names = {a.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom) and n.module == "gas_nas.study.search" for a in n.names}
        if names & pieces and path.name != "bookkeeping.py":
            offenders.append(f"{path.relative_to(root)}: {sorted(names & pieces)}")
    assert not offenders, offenders


def layers_from_the_layout_page() -> list[list[str]]:
    """The package's layers, top first, as docs/guide-layout.md lists them (### per layer)."""
    text = (PACKAGE.parent / "docs" / "guide-layout.md").read_text()
    section = text[text.index("## The package"):text.index("### Files shipped")]
    layers: list[list[str]] = []
    for line in section.splitlines():
        if line.startswith("### "):
            layers.append([])
        elif line.startswith("- `gas_nas/") and line.split("`")[1].endswith(".py") and layers:
            layers[-1].append(line.split("`")[1].removeprefix("gas_nas/").removesuffix(".py"))
    return [layer for layer in layers if layer]


def test_every_import_points_down_the_layers_the_layout_page_names():
    layers = layers_from_the_layout_page()
    level = {m: i for i, layer in enumerate(layers) for m in layer}
    graph = imports()
    assert sorted(level) == sorted(graph), "docs/guide-layout.md lists each module of gas_nas once, under its layer"
    assert len(layers) >= 5 and level["cli"] == 0 and level["run"] < level["study/search"] < level["trial/train"] < level["models/networks"]
    upward = sorted(f"{m} ({level[m]}) imports {d} ({level[d]})" for m, deps in graph.items() for d in deps if level[d] < level[m])
    assert not upward, upward


def test_each_layer_below_the_library_has_a_folder_of_its_own():
    """The folders show the layers: a layer's modules share one folder, and no two layers share
    one (the CLI and the library layer are the package's top level)."""
    folders = [{m.split("/")[0] if "/" in m else "" for m in layer} for layer in layers_from_the_layout_page()]
    assert all(len(f) == 1 for f in folders), folders
    below = [f.pop() for f in folders[2:]]
    assert "" not in below and len(set(below)) == len(below), below


def test_a_script_runs_a_search_through_the_library_layer_and_hears_its_events(tmp_path, mnist_dir, classifier_cache, mnist_classifier, monkeypatch):
    """What the CLI does, from Python: gas_nas.run.search with a request and an Events object;
    the study gets its paper cases first and the events hear the run's lines and every trial."""
    import optuna

    from conftest import write_tiny_space
    from gas_nas import run
    from gas_nas.common.events import Events, NullBar

    monkeypatch.setenv("GAS_NAS_CACHE", str(classifier_cache))
    heard: dict[str, list] = {"lines": [], "trials": []}

    class Trials(NullBar):
        def __call__(self, study, trial) -> None:
            heard["trials"].append(trial.number)

    class Heard(Events):
        def say(self, line: str) -> None:
            heard["lines"].append(line)

        def trials(self, total, until, prior) -> NullBar:
            heard["total"] = total
            return Trials()

    storage = f"sqlite:///{tmp_path}/s.db"
    space = write_tiny_space(tmp_path / "tiny.yaml")
    end = run.search(run.SearchRequest(space=str(space), storage=storage, study="s", artifacts=str(tmp_path / "art"), device="cpu",
                                       data_dir=str(mnist_dir), trials=2, cohort=1), Heard())
    assert (end.code, end.stopped) == (0, False)
    study = optuna.load_study(study_name="s", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert [t.number for t in complete] == [0, 1] and all(t.user_attrs.get("case") for t in study.trials[:6])  # the paper cases, queued first
    assert heard["trials"] == [0, 1] and heard["total"] == 2
    assert any(line.startswith("training: recipe gas") for line in heard["lines"]) and any("new study" in line for line in heard["lines"])
