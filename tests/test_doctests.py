"""Every ``>>>`` example in the project's packages runs here, one test per module.

Modules are found on disk, so a new module with examples is picked up without editing this
file. A module that fails to import is a failure, not a skip: its examples would otherwise
silently stop running.
"""

import ast
import doctest
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cl_ssvdo", "strategies", "benchmarks", "experiments", "tools")


def modules_with_examples(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """Dotted names of the modules under ``packages`` whose source holds a ``>>>`` prompt."""
    names = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            if ">>>" not in path.read_text(encoding="utf-8"):
                continue
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.append(".".join(parts))
    return names


MODULES = modules_with_examples()


def run_examples(module_name: str) -> doctest.TestResults:
    """Run the examples of one module (imported by name) and return the counts."""
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner()  # the flags of `pytest --doctest-modules` (none)
    for test in finder.find(module, module_name, globs=vars(module).copy()):
        runner.run(test)
    return runner.summarize(verbose=False)


@pytest.mark.parametrize("module_name", MODULES)
def test_examples_run(module_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_examples(module_name)
    report = capsys.readouterr().out
    assert result.attempted > 0, f"{module_name} shows '>>>' but no example was collected"
    assert result.failed == 0, f"{result.failed} example(s) failed in {module_name}:\n{report}"


def test_discovery_finds_the_packages_modules() -> None:
    assert "cl_ssvdo.budget" in MODULES
    assert "cl_ssvdo.ssvdo.layer" in MODULES
    assert all(name.split(".")[0] in PACKAGES for name in MODULES)


def test_discovery_picks_up_a_new_module(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text('"""\n>>> 1 + 1\n2\n"""\n')
    (package / "sub" / "new.py").write_text('def f():\n    """\n    >>> f()\n    """\n')
    (package / "sub" / "plain.py").write_text("x = 1\n")
    assert modules_with_examples(tmp_path, ("pkg",)) == ["pkg", "pkg.sub.new"]


def test_a_failing_example_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "doctest_probe_mod.py").write_text(
        'def f():\n    """\n    >>> 1 + 1\n    3\n    """\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run_examples("doctest_probe_mod")
    assert result == doctest.TestResults(failed=1, attempted=1)


# One docstring style: numpy sections as SpeechBrain spells them ("Arguments", "Returns",
# "Example", each underlined with dashes). ruff's pydocstyle (pyproject) checks the underlines;
# it accepts Google headers such as "Args:" as prose, so they are caught here.
GOOGLE_HEADER = re.compile(
    r"^[ \t]*(Args|Arguments|Parameters|Returns|Raises|Yields|Example|Examples|Note|Notes"
    r"|Attributes):[ \t]*$",
    re.MULTILINE,
)


def google_style_headers(path: Path) -> list[str]:
    """``"<line>: <header>"`` for each Google-style section header in the docstrings of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                doc = body[0].value
                if isinstance(doc.value, str):
                    for match in GOOGLE_HEADER.finditer(doc.value):
                        line = doc.lineno + doc.value.count("\n", 0, match.start())
                        found.append(f"{line}: {match.group(0).strip()}")
    return found


def test_one_docstring_style() -> None:
    offenders = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            headers = google_style_headers(path)
            if headers:
                offenders[str(path.relative_to(ROOT))] = headers
    assert not offenders, (
        f"Google-style docstring sections (use 'Arguments\\n---------'): {offenders}"
    )


def test_style_check_sees_a_google_header(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text('def f(a):\n    """Do f.\n\n    Args:\n        a: one.\n    """\n')
    assert google_style_headers(probe) == ["4: Args:"]


CITED_DOC = re.compile(r"\b(?:docs|design)/[A-Za-z0-9_./-]+\.md\b")


def test_cited_docs_exist() -> None:
    """A docstring or doc page that points a reader to ``docs/X.md`` points to a real file."""
    sources = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    sources += [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = {}
    for path in sources:
        cited = set(CITED_DOC.findall(path.read_text(encoding="utf-8")))
        absent = sorted(c for c in cited if not (ROOT / c).is_file())
        if absent:
            missing[str(path.relative_to(ROOT))] = absent
    assert not missing, f"citations of doc files that are not in the repository: {missing}"
