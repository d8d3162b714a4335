"""No function of the package is longer than a newcomer reads in one go (~60 lines of code).

Counted: the body's lines that hold code (docstring, comments and blank lines left out).
Kept longer on purpose: the offline builders of tiny checkpoints, whose bodies are one
configuration literal each (splitting them would scatter one model's settings over several
functions).
"""

from __future__ import annotations

import ast
from pathlib import Path

import egg_interp

LIMIT = 60
PACKAGE = Path(egg_interp.__file__).parent
EXEMPT_FOLDERS = ("models/offline/",)


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef, source: list[str]) -> int:
    body = node.body
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant):
        body = body[1:]
    lines = {
        n
        for stmt in body
        for n in range(stmt.lineno, stmt.end_lineno + 1)
        if source[n - 1].strip() and not source[n - 1].strip().startswith("#")
    }
    return len(lines)


def long_functions(root: Path = PACKAGE, limit: int = LIMIT) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(EXEMPT_FOLDERS):
            continue
        source = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(source))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _code_lines(node, source)
                if n > limit:
                    found.append(f"{relative}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_the_counter_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT + 1))
    (tmp_path / "m.py").write_text(f'def f():\n    """Doc."""\n    # a comment\n\n{body}\n')
    assert long_functions(tmp_path) == [f"m.py:1 f ({LIMIT + 1} lines)"]


def test_no_function_is_over_the_limit():
    assert long_functions() == []
