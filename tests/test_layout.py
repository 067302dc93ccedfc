"""The tree shows the architecture: two halves that meet only in the dataset format and the preset."""
import ast
import subprocess
import sys
from pathlib import Path

import kohaku_prep

PACKAGE = Path(kohaku_prep.__file__).resolve().parent
DATASET, TRAIN = "kohaku_prep.dataset", "kohaku_prep.train"
ENTRY_POINTS = {"kohaku_prep.cli", "kohaku_prep.__main__"}  # the CLI drives both halves


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """Every kohaku_prep module `path` imports, at any depth (function-level imports count)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports pkg.mod when that is a module, else a name of pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules}
    return found - {name}


def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {name: _imports(path, name, modules) for name, path in paths.items()}


def _in(half: str, module: str) -> bool:
    return module == half or module.startswith(half + ".")


def test_the_package_has_two_halves_and_shared_modules():
    graph = import_graph()
    dataset = {m for m in graph if _in(DATASET, m)}
    train = {m for m in graph if _in(TRAIN, m)}
    assert {"kohaku_prep.dataset.metadata", "kohaku_prep.dataset.build"} <= dataset
    assert {"kohaku_prep.train.run", "kohaku_prep.train.chain"} <= train
    assert {"kohaku_prep.dataset_format", "kohaku_prep.preset", "kohaku_prep.cli"} <= set(graph)
    # the graph sees each import form: `from pkg import mod`, `from pkg.mod import name`, inside functions
    assert {"kohaku_prep.dataset.captions", "kohaku_prep.dataset_format"} <= graph["kohaku_prep.dataset.build"]
    assert {"kohaku_prep.dataset_format", "kohaku_prep.train.plan"} <= graph["kohaku_prep.train.run"]
    assert {"kohaku_prep.dataset.build", "kohaku_prep.train.chain"} <= graph["kohaku_prep.cli"]


def test_the_training_half_imports_nothing_of_the_dataset_pipeline():
    graph = import_graph()
    crossing = {m: sorted(d for d in deps if _in(DATASET, d)) for m, deps in graph.items() if _in(TRAIN, m)}
    assert {m: d for m, d in crossing.items() if d} == {}


def test_the_dataset_pipeline_imports_nothing_of_the_training_half():
    graph = import_graph()
    crossing = {m: sorted(d for d in deps if _in(TRAIN, d)) for m, deps in graph.items() if _in(DATASET, m)}
    assert {m: d for m, d in crossing.items() if d} == {}


def test_shared_modules_import_neither_half():
    graph = import_graph()
    shared = [m for m in graph if not _in(DATASET, m) and not _in(TRAIN, m) and m not in ENTRY_POINTS]
    crossing = {m: sorted(d for d in graph[m] if _in(DATASET, d) or _in(TRAIN, d)) for m in shared}
    assert {m: d for m, d in crossing.items() if d} == {}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle once, found by depth-first search (function-level imports included)."""
    state: dict[str, str] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_no_import_cycles():
    assert _cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def _loaded_after_importing(modules: list[str]) -> list[str]:
    """The kohaku_prep and torch modules a fresh interpreter holds after importing `modules`."""
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print('\\n'.join(m for m in sys.modules if m.startswith(('kohaku_prep.', 'torch'))))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()


def test_importing_the_training_half_loads_no_pipeline_module():
    train = sorted(m for m in import_graph() if _in(TRAIN, m))
    loaded = _loaded_after_importing(train)
    assert set(train) <= set(loaded)
    assert [m for m in loaded if _in(DATASET, m)] == []


def test_importing_the_dataset_half_loads_no_training_module_and_no_torch():
    dataset = sorted(m for m in import_graph() if _in(DATASET, m))
    loaded = _loaded_after_importing(dataset)
    assert set(dataset) <= set(loaded)
    assert [m for m in loaded if _in(TRAIN, m) or m.split(".")[0] == "torch"] == []
