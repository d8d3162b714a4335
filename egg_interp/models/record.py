"""What a loaded model runs with: the settings behind every number it produces.

:func:`model_record` gathers what changes results on real checkpoints beyond the weights
(which :func:`egg_interp.results.weights_fingerprint` covers): the dtype, the attention
implementation in use, the processor's resolution settings, the checkpoint's revision when
known, and the torch, transformers and egg_interp versions. The runner puts them in every
results line's config (so they are hashed: a run under other settings never resumes into
these lines) and in every map it saves; the report lists them.

:func:`processor_resolution` reads the resolution settings generically, by name, from a
processor and its image processor, so that a new architecture's are recorded without code;
an adapter may add its own through :meth:`egg_interp.models.VLMAdapter.resolution_settings`.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path
from typing import Any

RESOLUTION_NAMES = re.compile(
    r"size|pixel|patch|crop|split|pinpoint|tile|resample|resize|pad|scan|merge|grid|dynamic|"
    r"overlap|aspect|anyres|canvas|pool|resolution|seq_len|image_tokens|soft_tokens|max_|min_"
)
"""Processor settings recorded as resolution settings: those whose name matches (sizes, pixel
budgets, patch and merge sizes, crops and their overlap, tiling, dynamic HD crops,
pan-and-scan, padding, pooling, token counts and budgets)."""

SKIPPED = re.compile(r"(^_|_ids?$|_type$|_class$|^image_mean$|^image_std$)")
"""Names never recorded: private ones, token ids, class names, normalisation statistics."""

VERSIONED = ("torch", "transformers", "egg_interp")
"""Packages whose versions every record holds."""


def _plain(value: Any) -> Any:
    """``value`` as JSON-able numbers, strings, lists and dicts, or ``None`` when it is not."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "value") and isinstance(value.value, (int, str)):  # enums (resample)
        return value.value
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return None if any(i is None for i in items) else items
    if isinstance(value, dict):
        items = {str(k): _plain(v) for k, v in value.items()}
        return None if any(i is None for i in items.values()) else items
    return None


def _settings(values: dict[str, Any], scalars_only: bool = False) -> dict[str, Any]:
    """The entries of ``values`` named like resolution settings, JSON-able, sorted by name."""
    out = {}
    for name in sorted(values):
        if SKIPPED.search(name) or not RESOLUTION_NAMES.search(name):
            continue
        value = _plain(values[name])
        if value is None or (scalars_only and isinstance(value, str)):
            continue
        out[name] = value
    return out


def processor_resolution(processor: Any) -> dict[str, Any]:
    """The resolution settings of a processor, read by name (see :data:`RESOLUTION_NAMES`).

    Returns
    -------
    dict
        ``{"image_processor": {...}, "processor": {...}}``: the image processor's settings
        (from its ``to_dict()``: ``size``, ``crop_size``, Qwen's pixel budget as ``size``'s
        ``shortest_edge``/``longest_edge``, ``patch_size``, ``merge_size``, LLaVA-NeXT's
        ``image_grid_pinpoints``, InternVL's ``min_patches``/``max_patches``, Idefics3's
        ``max_image_size``, ``do_image_splitting``, ``resample``, ...) and the processor's own
        numeric ones (tokens per image such as ``image_seq_length``, ``patch_size``); a part
        the processor lacks is an empty dict.

    >>> class Images:
    ...     def to_dict(self):
    ...         return {"size": {"shortest_edge": 336}, "image_mean": [0.5], "do_resize": True}
    >>> class Processor:
    ...     def __init__(self):
    ...         self.image_processor, self.image_seq_length = Images(), 576
    ...         self.image_token, self.image_token_id = "<image>", 32000
    >>> processor_resolution(Processor())
    {'image_processor': {'do_resize': True, 'size': {'shortest_edge': 336}}, 'processor': {'image_seq_length': 576}}
    """
    image_processor = getattr(processor, "image_processor", None)
    images = {}
    if image_processor is not None:
        to_dict = getattr(image_processor, "to_dict", None)
        images = to_dict() if callable(to_dict) else dict(vars(image_processor))
    own = dict(vars(processor)) if hasattr(processor, "__dict__") else {}
    return {
        "image_processor": _settings(images),
        "processor": _settings(own, scalars_only=True),
    }


def attention_implementation(config: Any) -> str | dict[str, str] | None:
    """The attention implementation a model's config says is in use.

    One name when the model and its sub-models (``text_config``, ``vision_config``, ...)
    agree, else ``{"model": ..., "<sub_config>": ...}``. Attention-weight methods switch to
    ``eager`` for their own forwards (:meth:`egg_interp.models.VLMAdapter.attention_implementation`).
    """
    found = {"model": getattr(config, "_attn_implementation", None)}
    for name in sorted(getattr(config, "sub_configs", {}) or {}):
        sub = getattr(config, name, None)
        if sub is not None:
            found[name] = getattr(sub, "_attn_implementation", None)
    names = {v for v in found.values() if v is not None}
    if not names:
        return None
    if len(names) == 1:
        return names.pop()
    return {k: v for k, v in found.items() if v is not None}


def library_versions() -> dict[str, str]:
    """The versions of :data:`VERSIONED`: torch's and transformers' installed distributions
    (``""`` when one is missing), egg_interp's running code (``egg_interp.__version__``)."""
    from egg_interp import __version__

    out = {}
    for name in VERSIONED[:-1]:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = ""
    return {**out, "egg_interp": __version__}


def model_record(adapter: Any) -> dict[str, Any]:
    """The settings behind an adapter's results.

    Returns
    -------
    dict
        ``dtype`` (``"float32"``, ...), ``attn_implementation`` (:func:`attention_implementation`),
        ``resolution`` (:meth:`VLMAdapter.resolution_settings`), ``revision`` (the hub
        snapshot's commit when the checkpoint came from, or lies in, a Hugging Face cache;
        else ``None``: :func:`checkpoint_revision`) and ``versions``
        (:func:`library_versions`).
    """
    source = adapter.name or getattr(adapter.model, "name_or_path", "") or ""
    return {
        "dtype": str(adapter.dtype).replace("torch.", ""),
        "attn_implementation": attention_implementation(adapter.model.config),
        "resolution": adapter.resolution_settings(),
        "revision": checkpoint_revision(str(source)) if source else None,
        "versions": library_versions(),
    }


def checkpoint_revision(source: str) -> str | None:
    """The commit of the Hugging Face snapshot a checkpoint comes from, when known.

    A hub id: the snapshot of its cached ``config.json`` (what ``from_pretrained`` loaded
    without a ``revision``); a local directory inside a Hugging Face cache
    (``.../snapshots/<commit>``): that commit; anything else: ``None``. Nothing is downloaded.

    >>> checkpoint_revision("/no/such/dir") is None
    True
    """
    path = Path(source)
    if path.is_dir():
        return _snapshot_commit(path.absolute())
    if source.startswith((".", "/", "~")) or source.count("/") != 1:
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(source, "config.json")
    return _snapshot_commit(Path(cached).parent) if isinstance(cached, str) else None


def _snapshot_commit(path: Path) -> str | None:
    """``<commit>`` of a path ``.../snapshots/<commit>[/...]`` (not resolved: the files of a
    snapshot are links into ``blobs/``), else ``None``."""
    parts = path.parts
    for name, commit in zip(parts, parts[1:]):
        if name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", commit):
            return commit
    return None
