"""Append-only JSONL results: one line per (sample, kind, name, config hash).

A results file holds one JSON object per line. Every line carries the four fields of its
*key*: ``sample_id``, ``kind`` (``"map"`` or ``"answer"``), ``name`` (the method or pipeline)
and ``config_hash`` (:func:`config_hash` of everything that determines the line's content:
model, dtype, options, dataset, and the results code, :func:`egg_interp.code_key.code_key`). A run that finds a key already present skips
that work, so re-running after a crash or Ctrl-C loses nothing and duplicates nothing.

Writing (:class:`ResultsWriter`): each line is encoded completely, then written with one
``os.write`` on a file opened with ``O_APPEND`` and made durable with ``os.fsync`` before the
next line is computed. A crash can therefore leave at most one partial line, at the end of
the file; opening the file for writing again repairs it (a complete record that only lacks
its newline gets one, anything else is cut off). Reading (:func:`read_results`) skips an
unreadable trailing fragment, and warns about (and skips) unreadable lines elsewhere.

Strict JSON: NaN is written as ``null`` (a score that was skipped, e.g. no ground truth),
+-inf as the strings ``"inf"`` / ``"-inf"`` (e.g. the spatial entropy of a flat map).

Multi-process runs write one part per rank (:func:`rank_path`: ``out.rank{r}.jsonl``);
:func:`merge_results` combines parts into one file, de-duplicated by key and sorted.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from egg_interp.errors import InputError
from egg_interp.io import atomic_path, to_json

KEY_FIELDS = ("sample_id", "kind", "name", "config_hash")
"""The fields that identify a line; a results file holds each key at most once after a merge."""

Key = tuple[str, str, str, str]

HASH_NEUTRAL: dict[str, dict[str, tuple[Any, ...]]] = {
    "pipeline": {  # PipelineOptions.subset: the loop fields added after results existed
        "method_options": ({},),
        "target": (None,),
        "min_crop_side": (8.0,),
        "sigma": (None, 1.5),  # unset (the model's own) or the paper's, as before the option
    },
    "map": {  # a map job's config: the smoothing of its regions and spatial entropy
        "sigma": (1.5,),
        "faithfulness": (None,),  # deletion/insertion curves off (evaluate --faithfulness)
    },
}
"""The hash-compatibility rules, in one table: per config section, the fields left out of a
config (and so of its hash) while they hold a value that means the behaviour from before they
existed. A field added to a config later goes here with its old-behaviour value, so that the
configs (and lines) of unchanged settings stay as they were."""


# ---------------------------------------------------------------- encoding


def clean(obj: Any) -> Any:
    """Turn ``obj`` into strict-JSON values (recursively): :func:`egg_interp.io.to_json`.

    NaN -> None, +-inf -> ``"inf"``/``"-inf"`` (the package's one encoding, read back by
    :func:`egg_interp.io.read_number`), numpy scalars and arrays -> Python numbers and
    lists, tuples -> lists, Paths -> strings.

    >>> clean({"a": float("nan"), "b": (1, float("inf"))})
    {'a': None, 'b': [1, 'inf']}
    """
    return to_json(obj)


def encode_line(record: Mapping[str, Any]) -> bytes:
    """One record as a UTF-8 JSON line ending in ``\\n`` (strict JSON, see :func:`clean`)."""
    missing = [f for f in KEY_FIELDS if f not in record]
    if missing:
        raise ValueError(f"a results line needs the key fields {KEY_FIELDS}; missing {missing}")
    text = json.dumps(clean(record), allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    return (text + "\n").encode("utf-8")


def config_hash(config: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-able config (key order does not matter).

    >>> config_hash({"b": 1, "a": [1, 2]}) == config_hash({"a": [1, 2], "b": 1})
    True
    """
    text = json.dumps(clean(config), sort_keys=True, allow_nan=False, separators=(",", ":"))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def weights_fingerprint(model: Any, per_tensor: int = 64) -> str:
    """A short hash of a model's weight values, part of every config (``"weights"``), so that
    results of retrained weights never pass for results of the old ones under the same name.

    Hashes every parameter's name and shape and ``per_tensor`` evenly strided values (read in
    float32): cheap on a 7B model, and any retraining changes them. ``model`` is a
    ``torch.nn.Module`` (an adapter's ``.model``); the recipe is frozen, since changing it
    would change every config hash (a test pins it).
    """
    import torch

    h = hashlib.sha1()
    with torch.no_grad():
        for name, p in model.named_parameters():
            flat = p.detach().reshape(-1)
            step = max(1, flat.numel() // per_tensor)
            sample = flat[::step][:per_tensor].float().cpu().numpy()
            h.update(f"{name}{tuple(p.shape)}".encode())
            h.update(sample.tobytes())
    return h.hexdigest()[:16]


def without_neutral(section: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` less the fields that :data:`HASH_NEUTRAL` leaves out for ``section``.

    >>> without_neutral("map", {"top_k": 2, "sigma": 1.5})
    {'top_k': 2}
    >>> without_neutral("map", {"top_k": 2, "sigma": 0.75})
    {'top_k': 2, 'sigma': 0.75}
    """
    neutral = HASH_NEUTRAL[section]
    return {k: v for k, v in config.items() if not (k in neutral and v in neutral[k])}


def key_of(record: Mapping[str, Any]) -> Key:
    """The ``(sample_id, kind, name, config_hash)`` key of a line."""
    return tuple(str(record[f]) for f in KEY_FIELDS)  # type: ignore[return-value]


def is_error(record: Mapping[str, Any]) -> bool:
    """Whether the line records a failure (its work may be retried)."""
    return bool(record.get("error"))


# ---------------------------------------------------------------- reading


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or any(f not in record for f in KEY_FIELDS):
        return None
    return record


def read_results(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the records of a results file in file order (nothing when it does not exist).

    A trailing fragment without a newline is yielded only when it is a complete record (a
    crash between the text and its newline); otherwise it is skipped with a one-line
    :class:`RuntimeWarning` (the partial last line of an interrupted write, which the next
    :class:`ResultsWriter` cuts off). Unreadable lines elsewhere are skipped with one
    :class:`RuntimeWarning` naming the file and the line numbers.
    """
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb") as fh:
        data = fh.read()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    bad: list[int] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        record = _parse(raw)
        if record is None:
            bad.append(number)
            continue
        yield record
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
        what = "line" if len(bad) == 1 else f"{len(bad)} lines"
        warnings.warn(
            f"{path}:{bad[0]}: unreadable results {what} skipped (line {shown})",
            RuntimeWarning,
            stacklevel=2,
        )
    if tail.strip():
        record = _parse(tail)
        if record is not None:
            yield record
        else:
            warnings.warn(
                f"{path}:{len(lines) + 1}: half-written last line dropped (an interrupted "
                "write; the next run appending to the file cuts it off)",
                RuntimeWarning,
                stacklevel=2,
            )


def load_results(paths: str | Path | Iterable[str | Path]) -> list[dict[str, Any]]:
    """All records of one or more results files, de-duplicated by key (see :func:`dedupe`)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    return dedupe(r for p in paths for r in read_results(p))


def dedupe(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One record per key, in first-seen order: a success beats an error, else the first wins."""
    chosen: dict[Key, dict[str, Any]] = {}
    for r in records:
        k = key_of(r)
        if k not in chosen or (is_error(chosen[k]) and not is_error(r)):
            chosen[k] = dict(r)
    return list(chosen.values())


# ---------------------------------------------------------------- writing


def repair_tail(path: str | Path) -> str:
    """Make a results file end at a line boundary; return what was done.

    Returns ``"ok"`` (empty, missing or already ending in a newline), ``"newline"`` (the
    trailing text was a complete record: a newline was appended) or ``"truncated"`` (a
    partial line from an interrupted write was cut off).
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return "ok"
    with open(path, "r+b") as fh:
        data = fh.read()
        if data.endswith(b"\n"):
            return "ok"
        cut = data.rfind(b"\n") + 1
        if _parse(data[cut:]) is not None:
            fh.seek(0, os.SEEK_END)
            fh.write(b"\n")
            action = "newline"
        else:
            fh.truncate(cut)
            action = "truncated"
        fh.flush()
        os.fsync(fh.fileno())
    return action


class ResultsWriter:
    """Append whole lines to a results file, each durable before the next.

    Opening repairs a partial trailing line (:func:`repair_tail`). Use as a context manager
    or call :meth:`close`.

    Parameters
    ----------
    path : str or Path
        The file (created with its parent folders when missing).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.repaired = repair_tail(self.path)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.written = 0

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record as one line: a single ``os.write``, then ``os.fsync``."""
        if self._fd is None:
            raise ValueError(f"{self.path}: writer is closed")
        data = encode_line(record)
        n = os.write(self._fd, data)
        while n < len(data):  # a short write on a regular file is rare (e.g. disk full)
            n += os.write(self._fd, data[n:])
        os.fsync(self._fd)
        self.written += 1

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- parts and merging


def rank_path(out: str | Path, rank: int) -> Path:
    """The part written by ``rank``: ``results.jsonl`` -> ``results.rank{rank}.jsonl``.

    >>> rank_path("runs/results.jsonl", 1).as_posix()
    'runs/results.rank1.jsonl'
    """
    out = Path(out)
    return out.with_name(f"{out.stem}.rank{rank}{out.suffix or '.jsonl'}")


def part_paths(out: str | Path) -> list[Path]:
    """The rank parts of ``out`` that exist, sorted by rank."""
    out = Path(out)
    pattern = f"{out.stem}.rank*{out.suffix or '.jsonl'}"
    parts = [p for p in out.parent.glob(pattern) if p.stem.rsplit(".rank", 1)[-1].isdigit()]
    return sorted(parts, key=lambda p: int(p.stem.rsplit(".rank", 1)[-1]))


def sort_key(record: Mapping[str, Any]) -> tuple:
    """Order of merged files: dataset, split, sample position, then the key fields."""
    index = record.get("index")
    return (
        str(record.get("dataset", "")),
        str(record.get("split", "")),
        index if isinstance(index, int) else math.inf,
        *key_of(record),
    )


def merge_results(out: str | Path, parts: Iterable[str | Path] = ()) -> int:
    """Combine ``out`` (when it exists) and ``parts`` into ``out``; return the line count.

    Lines are de-duplicated by key (:func:`dedupe`: a success beats an error) and sorted by
    :func:`sort_key`, so the result does not depend on the number of ranks or their order.
    ``out`` is replaced atomically (temporary file, fsync, rename); the parts are left in
    place (a merge can be repeated at any time).

    Raises
    ------
    InputError
        If a given part does not exist.
    """
    out = Path(out)
    parts = [Path(p) for p in parts]
    missing = [str(p) for p in parts if not p.exists()]
    if missing:
        raise InputError(f"results file(s) not found: {', '.join(missing)}")
    sources = ([out] if out.exists() else []) + [p for p in parts if p.resolve() != out.resolve()]
    records = sorted(dedupe(r for p in sources for r in read_results(p)), key=sort_key)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            for r in records:
                fh.write(encode_line(r))
            fh.flush()
            os.fsync(fh.fileno())
    return len(records)
