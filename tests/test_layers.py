"""The layer rules of docs/architecture.md, checked on every import statement (ast) of the project:

    datasets   imports nothing of methods, studies, analysis
    methods    imports nothing of studies, analysis
    analysis   imports nothing of methods, studies
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "datasets": {"methods", "studies", "analysis"},
    "methods": {"studies", "analysis"},
    "analysis": {"methods", "studies"},
}


def imported_layers(path: Path) -> list[tuple[int, str]]:
    """(line, layer) of every `udalab.<layer>` import in the file, wherever it stands (also in functions)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "udalab" and len(parts) > 1:
                out.append((node.lineno, parts[1]))
    return out


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_only_downwards(layer):
    files = sorted((ROOT / layer).rglob("*.py"))
    assert files, f"no modules in {layer}/"
    broken = [f"{p.relative_to(ROOT)}:{line} imports udalab.{other}" for p in files
              for line, other in imported_layers(p) if other in FORBIDDEN[layer]]
    assert not broken, "layer rule broken (DESIGN.md):\n" + "\n".join(broken)


def test_the_checker_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from udalab.analysis import store\n\nimport udalab.studies.study as s\n")
    f.write_text(f.read_text() + "from udalab import methods\n")
    assert sorted(imported_layers(f)) == [(2, "analysis"), (2, "analysis"), (4, "studies"), (5, "methods")]


PACKAGES = ("core", "methods", "datasets", "analysis", "studies")


def _project_files() -> list[Path]:
    return [p for folder in (*PACKAGES, "benchmarks", "docs") for p in sorted((ROOT / folder).rglob("*.py"))]


def test_no_private_name_is_imported_from_another_module():
    """What another module needs is public in the module that owns it (no `from udalab.x import _y`)."""
    broken = []
    for p in _project_files():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"), str(p))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("udalab"):
                broken += [f"{p.relative_to(ROOT)}:{node.lineno} imports {node.module}.{a.name}" for a in node.names
                           if a.name.startswith("_") and not a.name.startswith("__")]
    assert not broken, "\n".join(broken)


def _module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(("udalab", *parts[:-1], *(() if parts[-1] == "__init__" else parts[-1:])))


def test_the_study_modules_import_each_other_in_no_circle():
    """studies/: the declaration, the runners and the commands import downwards only (imports inside
    functions count: none hides a circle)."""
    import graphlib

    files = {_module_of(p): p for p in sorted((ROOT / "studies").rglob("*.py"))}
    graph = {}
    for module, p in files.items():
        graph[module] = set()
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"), str(p))):
            if isinstance(node, ast.ImportFrom) and (node.module or "") in files:
                graph[module] |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files else node.module
                                  for a in node.names}
            elif isinstance(node, ast.Import):
                graph[module] |= {a.name for a in node.names if a.name in files}
        graph[module].discard(module)
    graphlib.TopologicalSorter(graph).prepare()      # raises CycleError naming the circle


def test_one_process_pool_runs_the_sweeps():
    """The study runner's local pool is the only process pool outside datasets/ (parallel file checks)."""
    pools = {str(p.relative_to(ROOT)) for p in _project_files() if not p.is_relative_to(ROOT / "datasets")
             and any(name in p.read_text(encoding="utf-8") for name in ("ProcessPoolExecutor", "multiprocessing"))}
    assert pools == {"studies/run/local.py"}
