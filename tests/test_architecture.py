"""The walls between layers (.importlinter) hold: checked by import-linter's lint-imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    pytest.importorskip("importlinter", reason="import-linter is in the dev extras")
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
