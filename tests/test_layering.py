"""The import rules of docs/architecture.md, checked on the source (ast), not by convention."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "cl_ssvdo": {"avalanche", "mlflow", "benchmarks", "strategies", "experiments"},
    "benchmarks": {"cl_ssvdo", "strategies", "experiments", "mlflow"},
    "strategies": {"mlflow", "experiments"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_import_rules(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"package {package} has no sources"
    offenders = {
        str(f.relative_to(ROOT)): sorted(imported_roots(f) & FORBIDDEN[package]) for f in files
    }
    offenders = {f: bad for f, bad in offenders.items() if bad}
    assert not offenders, f"{package} imports what it must not: {offenders}"


def test_rule_checker_sees_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import mlflow.tracking\nfrom avalanche.core import SupervisedPlugin\n")
    assert imported_roots(probe) == {"mlflow", "avalanche"}
