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
