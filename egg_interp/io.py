"""Reading inputs with clear errors, and writing outputs atomically."""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Iterator
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
    """Write strict JSON atomically (temporary file, then rename).

    JSON has no infinity or NaN: every non-finite number (e.g. the spatial entropy ``inf`` of
    a map without focus in ``steps.json``) is written as ``null``, so a field is always a
    number or ``null``.
    """
    with atomic_path(path) as tmp:
        text = json.dumps(_finite_or_null(obj), indent=2, default=_jsonable, allow_nan=False)
        tmp.write_text(text)
    return Path(path)


def _finite_or_null(obj: Any) -> Any:
    """``obj`` with every non-finite float (inf, NaN; numpy ones too) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(v) for v in obj]
    if type(obj).__module__ == "numpy" or hasattr(obj, "to_dict") or isinstance(obj, Path):
        return _finite_or_null(_jsonable(obj))
    return obj


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def _jsonable(obj: Any) -> Any:
    """Turn numpy scalars/arrays (and other simple objects) into JSON values."""
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
