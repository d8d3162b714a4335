"""The walls between layers (.importlinter) hold: checked by import-linter's lint-imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    import importlinter  # noqa: F401  (dev extras: the contracts must be checked, never skipped)

    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "importlinter.cli"]
    out = subprocess.run(
        [*cmd, "--config", str(ROOT / ".importlinter"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "broken" in out.stdout and " 0 broken" in out.stdout


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` (module -> modules it imports), or [] when it has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycle_between_any_two_modules():
    """Module by module, over the whole package and with TYPE_CHECKING imports counted: no
    module imports (directly or through others) a module that imports it."""
    import grimp  # comes with import-linter (dev extras): the check must run, never skip

    graph = grimp.build_graph("egg_interp", cache_dir=None)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert len(edges) > 50  # the whole package was read
    assert _cycle(edges) == []


def _imported_modules(path: Path) -> set[str]:
    """Every module a script imports (``from a import b`` gives ``a`` and ``a.b``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("script", sorted((ROOT / "analyses").glob("*.py")), ids=lambda p: p.name)
def test_analyses_call_the_library_not_the_cli(script):
    """Scripts in analyses/ are outside the package, so import-linter cannot see them."""
    cli = {
        m
        for m in _imported_modules(script)
        if m == "egg_interp.cli" or m.startswith("egg_interp.cli.")
    }
    assert not cli, f"{script.name} imports {sorted(cli)}: call the library instead"


def test_every_adapter_module_is_walled_off_from_the_methods():
    """Each architecture's adapter module is in the methods-no-families contract, so a method
    that imported one would break the suite (a new adapter file must be added there)."""
    import configparser

    from egg_interp.models.loading import ADAPTERS

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / ".importlinter")
    forbidden = set(cfg["importlinter:contract:methods-no-families"]["forbidden_modules"].split())
    modules = {cls.__module__ for cls in ADAPTERS.values()}
    assert modules <= forbidden, sorted(modules - forbidden)
