"""Every ``>>>`` example in the package runs, and gives what it shows."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import egg_interp


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(egg_interp.__path__, "egg_interp."):
        spec = importlib.util.find_spec(info.name)
        origin = getattr(spec, "origin", None) if spec else None
        if origin and origin.endswith(".py") and ">>>" in open(origin).read():
            names.append(info.name)
    return names


MODULES = _modules_with_examples()


def test_the_examples_are_found():
    """The walk finds the modules that hold examples (so the test below cannot pass empty)."""
    assert {"egg_interp.regions", "egg_interp.geometry", "egg_interp.entropy"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has '>>>' but doctest found no example"
    assert result.failed == 0, f"{result.failed} example(s) of {name} failed"
