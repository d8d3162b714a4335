"""Reading inputs with clear errors, writing outputs atomically, and numbers in JSON.

JSON has no NaN or infinity: the package writes NaN as ``null`` and +-inf as ``"inf"`` /
``"-inf"`` everywhere (results lines, ``steps.json``, summaries), through one encoder
(:func:`to_json`, :func:`json_number`), and reads every number back through one decoder
(:func:`read_number`), which also reads the spellings of older files.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from egg_interp.errors import InputError


def load_image(path: str | Path) -> Image.Image:
    """Open an image file as RGB, with an :class:`InputError` naming the file on failure."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"image not found: {path}")
    if path.is_dir():
        raise InputError(f"expected an image file, got a directory: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except UnidentifiedImageError as exc:
        raise InputError(f"not an image file (or an unsupported format): {path}") from exc
    except OSError as exc:
        raise InputError(f"cannot read image {path}: {exc}") from exc


def check_question(question: str) -> str:
    """Strip a question and refuse an empty one."""
    if not isinstance(question, str) or not question.strip():
        raise InputError("the question is empty")
    return question.strip()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only on success.

    The temporary file is created with mode ``0o666`` less the process umask, as ``open()``
    creates files, so outputs get the user's normal permissions (``tempfile.mkstemp`` would
    make them private, mode 0600, unreadable to colleagues sharing a results folder).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp_path = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:  # pragma: no cover - a 32-bit name collision
            continue
    os.close(fd)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | Path, obj: Any) -> Path:
    """Write strict JSON atomically (temporary file, then rename), indented.

    Values are converted by :func:`to_json`: NaN is written as ``null`` and +-inf as the
    strings ``"inf"`` / ``"-inf"`` (e.g. the spatial entropy of a map without focus in
    ``steps.json``), as in results files; :func:`read_number` reads them back.
    """
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(to_json(obj), indent=2, allow_nan=False))
    return Path(path)


# ---------------------------------------------------------------- numbers in JSON

NON_FINITE = {"inf": math.inf, "-inf": -math.inf}
"""How the package writes +-inf in JSON (NaN is ``null``): :func:`json_number`."""

_LEGACY_NON_FINITE = {
    "Infinity": math.inf,
    "-Infinity": -math.inf,
    "nan": math.nan,
    "NaN": math.nan,
}
"""Other spellings found in older files (Python's ``json`` with ``allow_nan``, ``str(nan)``)."""


def json_number(x: float) -> float | str | None:
    """The one JSON encoding of a float: itself when finite, NaN -> ``None``, +-inf ->
    ``"inf"`` / ``"-inf"`` (JSON has neither; ``null`` keeps "no value", the strings keep the
    sign and that the value is infinite, e.g. a spatial entropy without focus).

    >>> json_number(0.5), json_number(float("nan")), json_number(float("-inf"))
    (0.5, None, '-inf')
    """
    if math.isnan(x):
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def read_number(value: Any) -> float:
    """The one decoder of a number read from JSON (a results line, ``steps.json``, ...).

    Numbers as floats, a boolean as 1.0 / 0.0 (a hit or a miss); ``"inf"`` / ``"-inf"`` (and
    the older ``"Infinity"``, ``"nan"``, ``"NaN"``) as the floats they name; ``None``, a
    missing value or any other string as NaN (skipped by every aggregate).

    >>> [read_number(v) for v in (1, 0.5, True, None, "inf", "-Infinity", "nan", "x")]
    [1.0, 0.5, 1.0, nan, inf, -inf, nan, nan]
    """
    if isinstance(value, (bool, int, float)):
        return float(value)
    if isinstance(value, str):
        return NON_FINITE.get(value, _LEGACY_NON_FINITE.get(value, math.nan))
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return float(value)
    return math.nan


def to_json(obj: Any) -> Any:
    """``obj`` as strict-JSON values, recursively: the one encoder of the package.

    Floats by :func:`json_number` (NaN -> None, +-inf -> ``"inf"``/``"-inf"``); numpy
    scalars and arrays (and 0-d tensors: anything with ``tolist``) as Python numbers and
    lists; tuples as lists; mapping keys as strings; Paths as strings; objects with
    ``to_dict`` as their dict. Anything else raises ``TypeError``.

    >>> to_json({"a": float("nan"), "b": (1, float("inf"))})
    {'a': None, 'b': [1, 'inf']}
    """
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return json_number(obj)
    if isinstance(obj, Mapping):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy scalars and arrays, 0-d tensors
        return to_json(obj.tolist())
    if hasattr(obj, "to_dict"):
        return to_json(obj.to_dict())
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def save_image(image: Image.Image, path: str | Path) -> Path:
    """Save a PIL image atomically, in the format its suffix names (PNG by default)."""
    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), "PNG")
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt)
    return path


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
