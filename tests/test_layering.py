"""The import rules of docs/architecture.md, checked on the source (ast), not by convention."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# (package, what its modules must not import, exceptions): every name is a dotted prefix and
# relative imports count, so ``cl_ssvdo.asr`` importing ``..ssvdo`` is caught like an absolute one.
RULES = [
    (
        "cl_ssvdo",
        {"avalanche", "mlflow", "benchmarks", "strategies", "experiments", "tools"},
        set(),
    ),
    ("cl_ssvdo.data", {"cl_ssvdo", "speechbrain", "peft"}, {"cl_ssvdo.data"}),
    ("cl_ssvdo.ssvdo", {"cl_ssvdo", "speechbrain"}, {"cl_ssvdo.ssvdo"}),
    ("cl_ssvdo.asr", {"cl_ssvdo"}, {"cl_ssvdo.asr", "cl_ssvdo.data", "cl_ssvdo.progress"}),
    ("cl_ssvdo.progress", {"cl_ssvdo", "torch", "speechbrain", "peft"}, {"cl_ssvdo.progress"}),
    (
        "benchmarks",
        {"cl_ssvdo", "strategies", "experiments", "mlflow", "tools", "speechbrain", "peft"},
        {"cl_ssvdo.data", "cl_ssvdo.progress"},
    ),
    ("strategies", {"mlflow", "experiments", "tools"}, set()),
    ("experiments", {"tools"}, set()),
]


def _under(name: str, prefixes: set[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def rule_offences(
    files: dict[str, Path], package: str, forbidden: set[str], allowed: set[str]
) -> dict[str, list[str]]:
    """Module -> the names it imports against the rule, for the modules under ``package``."""
    offences = {}
    for module, path in files.items():
        if _under(module, {package}):
            bad = {n for n in _imported_names(module, path) if _under(n, forbidden)}
            bad = sorted(n for n in bad if not _under(n, allowed))
            if bad:
                offences[module] = bad
    return offences


@pytest.mark.parametrize("package, forbidden, allowed", RULES, ids=[r[0] for r in RULES])
def test_package_respects_import_rules(package: str, forbidden: set, allowed: set) -> None:
    files = module_files()
    assert any(_under(m, {package}) for m in files), f"package {package} has no sources"
    offences = rule_offences(files, package, forbidden, allowed)
    assert not offences, f"{package} imports what it must not: {offences}"


def test_rule_checker_sees_imports(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "asr").mkdir(parents=True)
    (tmp_path / "pkg" / "asr" / "model.py").write_text(
        "import mlflow.tracking\nfrom ..ssvdo import layer\nfrom ..data.text import norm\n"
        "def f():\n    from avalanche.core import SupervisedPlugin\n"
    )
    files = module_files(tmp_path, ("pkg",))
    offences = rule_offences(files, "pkg.asr", {"pkg", "mlflow", "avalanche"}, {"pkg.data"})
    assert offences == {
        "pkg.asr.model": ["avalanche.core.SupervisedPlugin", "mlflow.tracking", "pkg.ssvdo.layer"]
    }


# ---------------------------------------------------------------- import loops
# A loop between two modules works only while one side imports the other lazily (inside a
# function); it still ties them into one unit. Function-level imports count here, imports under
# ``if TYPE_CHECKING:`` do not (they never run).
PROJECT_PACKAGES = ("cl_ssvdo", "strategies", "benchmarks", "experiments", "tools")


def module_files(
    root: Path = ROOT, packages: tuple[str, ...] = PROJECT_PACKAGES
) -> dict[str, Path]:
    """Dotted module name -> source file, for every ``.py`` under ``packages``."""
    files = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def _imported_names(module: str, path: Path) -> list[str]:
    """Absolute dotted names ``module`` imports (``from a import b`` gives ``a.b``)."""
    names: list[str] = []
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    stack: list[ast.AST] = [ast.parse(path.read_text(), filename=str(path))]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            names.extend(f"{base}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return names


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (each name resolved to its longest module)."""
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets = set()
        for name in _imported_names(module, path):
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def test_no_import_loops() -> None:
    graph = import_graph(module_files())
    cycles = import_cycles(graph)
    detail = [
        {m: sorted(graph[m] & set(group)) for m in group}  # who imports whom inside the loop
        for group in cycles
    ]
    assert not cycles, f"import loops (module -> the modules of its loop it imports): {detail}"


def test_loop_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from pkg.c import g\n")
    (pkg / "c.py").write_text("from .a import x\n")
    (pkg / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n"
    )
    graph = import_graph(module_files(tmp_path, ("pkg",)))
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.d"] == set()
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
