"""The code part of every results key: which results code wrote a line.

Every results line's config holds ``"code": code_key()``, so its config hash (the key that
resume, merges and the test caches use) changes with the code that computes results:

- :data:`RESULTS_VERSION` is bumped by hand when a change can alter any results line (a map,
  a score, an answer, the line layout); :data:`RECORDED_SOURCE` is the fingerprint of the
  results-affecting source (:func:`source_fingerprint`) at the last record.
- ``tests/test_code_key.py`` fails while the source's fingerprint differs from the recorded
  one, telling the developer to decide: ``python -m egg_interp.code_key --bump`` when results
  may change, ``--record`` when they cannot (a refactor shown equal by
  ``analyses/check_equivalence.py``). A change therefore cannot ship without a decision.
- Until then (a modified working tree), :func:`code_key` appends the fingerprint itself, so
  lines computed by unrecorded code are never reused by other code, and the reverse.

The fingerprint covers every module of the package except those listed in
:data:`NOT_RESULTS` (commands, reports, figures, the explorer: they read lines, never write
them), plus the package's data files (the organism's tokenizer, processor and chat
template; its weights are fingerprinted on their own, :func:`egg_interp.results.weights_fingerprint`).
Docstrings, comments, blank lines and trailing spaces do not count.
"""

from __future__ import annotations

import ast
import hashlib
import io
import re
import sys
import tokenize
from functools import cache
from pathlib import Path

RESULTS_VERSION = 4
"""Bumped by hand whenever a change can alter a results line (``--bump``)."""

RECORDED_SOURCE = "156173498c944c3d"
""":func:`source_fingerprint` when :data:`RESULTS_VERSION` was last recorded (``--record``)."""

PACKAGE_DIR = Path(__file__).resolve().parent

NOT_RESULTS = (
    "__init__.py",
    "bench.py",
    "checkpoints.py",
    "cli/",
    "code_key.py",
    "compare.py",
    "demo.py",
    "distributed.py",
    "explorer/",
    "figures/",
    "map_source.py",
    "models/offline/",
    "organism/measures.py",
    "py.typed",
    "report.py",
    "summaries.py",
    "titles.py",
)
"""Package paths (relative, ``/``-separated; a trailing ``/`` is a folder) that cannot change
a results line: they read lines or load models, never compute what a line holds."""

SKIPPED_SUFFIXES = (".pyc", ".safetensors")
"""Files never read: bytecode, and weights (fingerprinted on their own)."""


def _excluded(relative: str) -> bool:
    return "__pycache__" in relative or any(
        relative.startswith(p) if p.endswith("/") else relative == p for p in NOT_RESULTS
    )


def results_files(root: Path = PACKAGE_DIR) -> list[Path]:
    """The files the fingerprint covers, sorted by their path relative to ``root``."""
    files = [
        f
        for f in root.rglob("*")
        if f.is_file()
        and not f.name.endswith(SKIPPED_SUFFIXES)
        and not _excluded(f.relative_to(root).as_posix())
    ]
    return sorted(files, key=lambda f: f.relative_to(root).as_posix())


def normalised_source(source: str) -> str:
    """Python source without docstrings, other bare strings, comments, blank lines and
    trailing spaces: what :func:`source_fingerprint` hashes.

    Positions come from :mod:`ast` and :mod:`tokenize`, and the text kept is the source's own,
    so the result does not depend on the Python version reading it.

    >>> normalised_source("def f(x):\\n    'Doc.'\\n\\n    return x  # why\\n")
    'def f(x):\\n    return x'
    """
    lines = source.splitlines()
    cuts: list[tuple[int, int, int, int]] = []  # (line, col, end line, end col), 1-based lines
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            cuts.append(
                (
                    node.lineno,
                    _char_col(lines[node.lineno - 1], node.col_offset),
                    node.end_lineno or node.lineno,
                    _char_col(lines[(node.end_lineno or node.lineno) - 1], node.end_col_offset),
                )
            )
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            cuts.append((*tok.start, *tok.end))
    for line, col, end_line, end_col in sorted(cuts, reverse=True):
        head, tail = lines[line - 1][:col], lines[end_line - 1][end_col:]
        lines[line - 1 : end_line] = [head + tail]
    return "\n".join(kept for kept in (text.rstrip() for text in lines) if kept)


def _char_col(line: str, byte_col: int | None) -> int:
    """A column in characters from :mod:`ast`'s column in UTF-8 bytes."""
    return len(line.encode("utf-8")[: byte_col or 0].decode("utf-8", errors="ignore"))


def source_fingerprint(root: Path = PACKAGE_DIR) -> str:
    """A hash of the results-affecting files under ``root`` (see the module docstring).

    Python files count by :func:`normalised_source`, data files by their bytes, each with
    its relative path.
    """
    h = hashlib.sha256()
    for f in results_files(root):
        relative = f.relative_to(root).as_posix()
        if f.suffix == ".py":
            data = normalised_source(f.read_text(encoding="utf-8")).encode("utf-8")
        else:
            data = f.read_bytes()
        h.update(f"{relative}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()[:16]


@cache
def code_key() -> str:
    """The ``code`` entry of every results config.

    ``"results v{RESULTS_VERSION}"`` when the source is the recorded one; with
    ``+{fingerprint}`` appended when it is not (unrecorded changes: their lines are kept apart).
    Computed once per process.
    """
    fingerprint = source_fingerprint()
    key = f"results v{RESULTS_VERSION}"
    return key if fingerprint == RECORDED_SOURCE else f"{key}+{fingerprint}"


def rewrite(version: int, fingerprint: str, path: Path = Path(__file__)) -> None:
    """Write ``version`` and ``fingerprint`` into the two constants of ``path`` (this file)."""
    text = path.read_text()
    text = re.sub(r"^RESULTS_VERSION = \d+$", f"RESULTS_VERSION = {version}", text, flags=re.M)
    text = re.sub(
        r'^RECORDED_SOURCE = "[^"]*"$', f'RECORDED_SOURCE = "{fingerprint}"', text, flags=re.M
    )
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    """``python -m egg_interp.code_key [--record | --bump]``: show, record or bump the key."""
    argv = sys.argv[1:] if argv is None else argv
    fingerprint = source_fingerprint()
    if argv == ["--record"]:
        rewrite(RESULTS_VERSION, fingerprint)
        print(f"recorded {fingerprint} for results v{RESULTS_VERSION} (lines keep their keys)")
    elif argv == ["--bump"]:
        rewrite(RESULTS_VERSION + 1, fingerprint)
        print(f"results v{RESULTS_VERSION + 1} recorded at {fingerprint} (every key changes)")
    elif not argv:
        state = "recorded" if fingerprint == RECORDED_SOURCE else f"not recorded ({fingerprint})"
        print(f"results v{RESULTS_VERSION}; source {state}")
    else:
        print("usage: python -m egg_interp.code_key [--record | --bump]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
