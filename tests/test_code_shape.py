"""Two rules of the codebase, checked on its files: no function longer than 80 lines in the package
folders, and no file of the repository that points into a folder outside it (the project's
shared notes beside the checkout): a citation names a paper's section or a reference
implementation's file, never a path that only exists on one machine."""
import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "methods", "datasets", "analysis", "studies")
MAX_LINES = 80
# the folder beside the checkout; spelled in two parts so that this file does not mention it itself
OUTSIDE = "../" + "shared"


def long_functions(path: Path, limit: int = MAX_LINES) -> list[tuple[int, str, int]]:
    """(line, name, length in lines) of every function or method in the file longer than `limit`,
    nested ones included; a function's lines run from its `def` to its last statement."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > limit:
                out.append((node.lineno, node.name, n))
    return sorted(out)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_function_is_longer_than_80_lines(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules in {package}/"
    found = [f"{p.relative_to(ROOT)}:{line} {name} {n} lines" for p in files for line, name, n in long_functions(p)]
    assert not found, (f"functions longer than {MAX_LINES} lines in {package}/ (split them into helpers named "
                       "for what they do):\n" + "\n".join(found))


def test_the_length_check_counts_each_function_from_def_to_its_last_line(tmp_path):
    def body(indent: str) -> str:
        return "".join(f"{indent}x{i} = {i}\n" for i in range(MAX_LINES - 1))

    f = tmp_path / "m.py"
    f.write_text("class C:\n    async def too_long(self):\n" + body(" " * 8)
                 + "        def inner():\n            return 1\n        return inner\n\n\n"
                 + "def fits():\n" + body(" " * 4))
    assert long_functions(f) == [(2, "too_long", MAX_LINES + 3)]      # def, 79 lines, inner (2), return
    assert long_functions(f, limit=1) == [(2, "too_long", MAX_LINES + 3), (MAX_LINES + 2, "inner", 2),
                                          (MAX_LINES + 7, "fits", MAX_LINES)]


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"git ls-files does not run in {ROOT}: {e}")
    return [p for p in out.stdout.decode("utf-8").split("\0") if p]


def lines_mentioning(path: Path, text: str) -> list[tuple[int, str]]:
    """(line number, line) of each line of a text file that mentions `text`; none for binary files."""
    try:
        content = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return []
    return [(i, line.strip()) for i, line in enumerate(content.splitlines(), 1) if text in line]


def test_no_file_points_outside_the_repository():
    found = [f"{name}:{i}: {line[:120]}" for name in tracked_files()
             for i, line in lines_mentioning(ROOT / name, OUTSIDE)]
    assert not found, (f"files that mention {OUTSIDE} (a folder outside the repository; cite the paper's "
                       "section or the reference implementation's repository and file instead):\n"
                       + "\n".join(found))
