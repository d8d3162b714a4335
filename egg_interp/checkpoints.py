"""Find and check a checkpoint before anything heavy is imported.

:func:`check_model_source` reads a checkpoint's ``config.json`` (a local directory, the
organism, or a Hugging Face id: from the local cache, else from the hub) and refuses, in one
line, what cannot load: a directory that is no checkpoint, an unsupported or remote-code
architecture, a hub id that is neither cached nor reachable. It imports neither torch nor
transformers, so the command line answers such a mistake in well under a second;
:func:`egg_interp.models.load_model` runs the same check before it loads the weights.

:data:`MODEL_TYPES` mirrors the keys of :data:`egg_interp.models.ADAPTERS` for that purpose
(a test keeps them equal). :func:`quiet_loading` asks every model load inside it to keep
transformers' "Loading weights" progress bar off stderr (the command line's one-line promise).
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from egg_interp.errors import InputError, UnsupportedModelError

ORGANISM = "organism"
"""Name that selects the embedded model organism (the default of every command)."""

MODEL_TYPES: tuple[str, ...] = (
    "deepseek_vl",
    "gemma3",
    "gemma4",
    "glm4v",
    "idefics2",
    "idefics3",
    "internvl",
    "lfm2_vl",
    "llama4",
    "llava",
    "llava_next",
    "llava_onevision",
    "mistral3",
    "molmo2",
    "ovis2",
    "paligemma",
    "phi4_multimodal",
    "qwen2_5_vl",
    "qwen2_vl",
    "qwen3_5",
    "qwen3_5_moe",
    "qwen3_vl",
    "qwen3_vl_moe",
    "smolvlm",
)
"""The ``model_type`` values :func:`egg_interp.models.load_model` takes on: the keys of
:data:`egg_interp.models.ADAPTERS` and of ``loading.REFUSED`` (refused there with their
reason, e.g. ``idefics2``), listed here so that they can be checked without importing torch
(a test keeps them equal; a new adapter adds its ``model_types`` here too)."""

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
"""Behind one of these proxies the hub's host is assumed reachable (no direct probe)."""


def check_model_source(source: str | Path, supported: Collection[str] = MODEL_TYPES) -> str:
    """The ``model_type`` of a checkpoint, read from its ``config.json``; or a one-line error.

    Parameters
    ----------
    source : str or Path
        ``"organism"``, a local checkpoint directory, or a Hugging Face id (``owner/name``).
    supported : collection of str
        The model types that load (default :data:`MODEL_TYPES`).

    Returns
    -------
    str
        The checkpoint's ``model_type``.

    Raises
    ------
    InputError
        No such directory or id, no or unreadable ``config.json``, no ``model_type``, or a hub
        id that is neither in the local cache nor reachable (offline, or the host does not
        answer within a few seconds).
    UnsupportedModelError
        A ``model_type`` outside ``supported`` (with a hint for remote-code checkpoints).
    """
    source = str(source)
    if source == ORGANISM:
        from egg_interp.organism import organism_path

        source = str(organism_path())
    data = _local_config(Path(source)) if Path(source).is_dir() else _hub_config(source)
    model_type = data.get("model_type")
    if not model_type:
        raise InputError(f"{source}/config.json has no model_type")
    if model_type in supported:
        return str(model_type)
    if data.get("auto_map"):
        raise UnsupportedModelError(
            f"{source} needs trust_remote_code (model_type {model_type!r}); egg_interp supports "
            f"only Hugging Face-native architectures: {', '.join(sorted(supported))}. "
            f"{native_hint(source, model_type)}"
        )
    raise UnsupportedModelError(
        f"architecture {model_type!r} is not supported; supported: {', '.join(sorted(supported))}"
    )


def _local_config(path: Path) -> dict[str, Any]:
    """The raw ``config.json`` of a local directory (no remote code runs)."""
    cfg = path / "config.json"
    if not cfg.is_file():
        raise InputError(f"{path} has no config.json: not a Hugging Face checkpoint")
    try:
        data = json.loads(cfg.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{cfg} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{cfg} is not a JSON object")
    return data


def _hub_config(source: str) -> dict[str, Any]:
    """The raw ``config.json`` of a hub id: from the local cache, else from the hub.

    An id that is neither cached nor reachable fails at once in one line: offline
    (``HF_HUB_OFFLINE``) or when the hub's host does not answer within a few seconds, instead
    of huggingface_hub's logged retries.
    """
    # hub ids may contain dots (Qwen/Qwen2.5-VL-7B-Instruct), never a leading . or /
    if Path(source).exists() or source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise InputError(
            f"model {source!r} is neither a local checkpoint directory nor a Hugging Face id "
            "(owner/name)"
        )
    import logging

    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError

    cached = try_to_load_from_cache(source, "config.json")
    if isinstance(cached, str):
        return _local_config(Path(cached).parent)
    where = f"model {source!r} is not in the local Hugging Face cache"
    if constants.HF_HUB_OFFLINE:
        raise InputError(f"{where} and HF_HUB_OFFLINE is set")
    if not hub_reachable(constants.ENDPOINT):
        raise InputError(f"{where} and {constants.ENDPOINT} cannot be reached (offline?)")
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)  # no per-retry messages
    try:
        path = hf_hub_download(source, "config.json")
    except (OSError, ValueError, EntryNotFoundError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot load the config of {source!r}: {first}") from exc
    finally:
        hub_log.setLevel(level)
    return _local_config(Path(path).parent)


def hub_reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """Whether the hub's host accepts a TCP connection (assumed yes behind a proxy)."""
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(v) for v in PROXY_VARIABLES):
        return True
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def native_hint(source: str, model_type: str) -> str:
    """Which Hugging Face-native checkpoint to use instead of a remote-code one.

    >>> native_hint("OpenGVLab/InternVL3_5-8B", "internvl_chat")
    'Use the HF-native checkpoint OpenGVLab/InternVL3_5-8B-HF instead.'
    """
    name = source.rsplit("/", 1)[-1]
    is_hub_id = not Path(source).is_dir()
    if "internvl" in model_type.lower() or "internvl" in name.lower():
        if is_hub_id and "internvl" in name.lower():
            # OpenGVLab's naming: InternVL3_5-8B -> InternVL3_5-8B-HF, InternVL3-8B -> -hf
            return (
                f"Use the HF-native checkpoint {source}{'-HF' if '3_5' in name else '-hf'} instead."
            )
        return (
            "For InternVL use the HF-native '-hf' checkpoints (e.g. OpenGVLab/InternVL3_5-8B-HF, "
            "OpenGVLab/InternVL3-8B-hf)."
        )
    return "Use a checkpoint converted to a transformers-native architecture."


_QUIET: ContextVar[bool] = ContextVar("egg_interp_quiet_loading", default=False)


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Inside this block, model loads keep transformers' weight-loading progress bar off.

    The command line runs every command inside it; library callers keep transformers'
    default. Hub downloads keep their own progress bars.
    """
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)


def loading_is_quiet() -> bool:
    """Whether the caller runs inside :func:`quiet_loading`."""
    return _QUIET.get()
