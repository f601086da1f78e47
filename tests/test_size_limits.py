"""Size guards on the production code: no function over 60 lines (its `def` line to its last line, nested functions
and methods counted on their own as well as inside their parent) and no module over 400 lines. A failure lists the
offenders."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

FOLDERS = ("pipeline", "stages", "models", "storage", "synthetic")
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400


def long_functions(file: Path, root: Path = REPO, limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """{"path:qualified.name": lines} of the functions in `file` longer than `limit` lines (path from `root`)."""
    found = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = getattr(child, "name", None)
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = child.end_lineno - child.lineno + 1
                if lines > limit:
                    found[f"{file.relative_to(root).as_posix()}:{prefix}{name}"] = lines
            visit(child, f"{prefix}{name}." if name else prefix)

    visit(ast.parse(file.read_text(), str(file)), "")
    return found


def _files(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def test_the_guard_measures_functions_from_def_to_last_line(tmp_path):
    body = [f"x{i} = {i}" for i in range(59)]
    lines = ["class A:", "    @staticmethod", "    def fits():", *("        " + b for b in body), "",  # 60 lines
             "def too_long():", *("    " + b for b in body), "    y = 1", "",
             "    async def inner():", "        pass"]  # 64 lines, inner 2
    file = tmp_path / "probe.py"
    file.write_text("\n".join(lines) + "\n")
    assert long_functions(file, tmp_path) == {"probe.py:too_long": 64}
    assert long_functions(file, tmp_path, limit=59) == {"probe.py:A.fits": 60, "probe.py:too_long": 64}
    assert long_functions(file, tmp_path, limit=1) == {"probe.py:A.fits": 60, "probe.py:too_long": 64,
                                                       "probe.py:too_long.inner": 2}


@pytest.mark.parametrize("folder", FOLDERS)
def test_no_function_over_the_limit(folder):
    offenders = {k: v for file in _files(folder) for k, v in long_functions(file).items()}
    assert offenders == {}


def test_no_module_over_the_limit():
    offenders = {str(file.relative_to(REPO)): n for folder in FOLDERS for file in _files(folder)
                 if (n := len(file.read_text().splitlines())) > MAX_MODULE_LINES}
    assert offenders == {}
