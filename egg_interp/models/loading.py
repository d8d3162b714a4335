"""Load any supported VLM from a Hugging Face id or a local directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from egg_interp.errors import InputError, UnsupportedModelError
from egg_interp.models.base import VLMAdapter
from egg_interp.models.deepseek_vl import DeepseekVLAdapter
from egg_interp.models.gemma3 import Gemma3Adapter
from egg_interp.models.gemma4 import Gemma4Adapter
from egg_interp.models.glm4v import Glm4vAdapter
from egg_interp.models.idefics2 import REFUSED as IDEFICS2_REFUSED
from egg_interp.models.idefics3 import Idefics3Adapter, SmolVLMAdapter
from egg_interp.models.internvl import InternVLAdapter
from egg_interp.models.lfm2_vl import Lfm2VlAdapter
from egg_interp.models.llama4 import Llama4Adapter
from egg_interp.models.llava import LlavaAdapter
from egg_interp.models.llava_next import LlavaNextAdapter
from egg_interp.models.llava_onevision import LlavaOnevisionAdapter
from egg_interp.models.mistral3 import Mistral3Adapter
from egg_interp.models.molmo2 import Molmo2Adapter
from egg_interp.models.ovis2 import Ovis2Adapter
from egg_interp.models.paligemma import PaliGemmaAdapter
from egg_interp.models.phi4_multimodal import Phi4MultimodalAdapter
from egg_interp.models.qwen2_5_vl import Qwen2_5_VLAdapter
from egg_interp.models.qwen2_vl import Qwen2VLAdapter
from egg_interp.models.qwen3_5 import Qwen3_5Adapter
from egg_interp.models.qwen3_5_moe import Qwen3_5MoeAdapter
from egg_interp.models.qwen3_vl import Qwen3VLAdapter
from egg_interp.models.qwen3_vl_moe import Qwen3VLMoeAdapter

ADAPTERS: dict[str, type[VLMAdapter]] = {
    t: cls
    for cls in (
        LlavaAdapter,
        LlavaNextAdapter,
        LlavaOnevisionAdapter,
        Mistral3Adapter,
        Llama4Adapter,
        Qwen2_5_VLAdapter,
        Qwen3VLAdapter,
        InternVLAdapter,
        Idefics3Adapter,
        SmolVLMAdapter,
        Qwen2VLAdapter,
        Glm4vAdapter,
        Qwen3VLMoeAdapter,
        Qwen3_5Adapter,
        Qwen3_5MoeAdapter,
        Gemma3Adapter,
        Gemma4Adapter,
        PaliGemmaAdapter,
        Molmo2Adapter,
        Lfm2VlAdapter,
        DeepseekVLAdapter,
        Ovis2Adapter,
        Phi4MultimodalAdapter,
    )
    for t in cls.model_types
}
"""``model_type`` -> adapter class."""

REFUSED: dict[str, str] = {**IDEFICS2_REFUSED}
"""``model_type`` -> why it is refused (architectures whose tokens have no place in the
image); :func:`adapter_class` raises with the reason, before any weight is loaded."""

ORGANISM = "organism"
"""Name that selects the embedded model organism (the default of every command)."""


def resolve_dtype(dtype: str | torch.dtype | None, device: str | torch.device) -> torch.dtype:
    """``None``/``"auto"`` -> float32 on CPU, bfloat16 on CUDA; otherwise parse the name."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in names:
        raise InputError(f"unknown dtype {dtype!r}; use one of {sorted(names)}")
    return names[dtype]


def _read_model_type(source: str) -> str:
    """``model_type`` from the checkpoint's ``config.json`` (local directory or hub id).

    The raw JSON is read (no remote code runs), so checkpoints that need
    ``trust_remote_code`` are recognised and refused with :class:`UnsupportedModelError`.
    """
    path = Path(source)
    if path.is_dir():
        cfg = path / "config.json"
        if not cfg.exists():
            raise InputError(f"{path} has no config.json: not a Hugging Face checkpoint")
        try:
            data = json.loads(cfg.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{cfg} is not valid JSON: {exc}") from exc
    else:
        # hub ids may contain dots (Qwen/Qwen2.5-VL-7B-Instruct), never a leading . or /
        if path.exists() or source.startswith((".", "/", "~")) or source.count("/") != 1:
            raise InputError(
                f"model {source!r} is neither a local checkpoint directory nor a Hugging Face id "
                "(owner/name)"
            )
        data = _hub_config(source)
    model_type = data.get("model_type")
    if not model_type:
        raise InputError(f"{source}/config.json has no model_type")
    if data.get("auto_map") and model_type not in ADAPTERS:
        raise UnsupportedModelError(
            f"{source} needs trust_remote_code (model_type {model_type!r}); egg_interp supports "
            f"only Hugging Face-native architectures: {', '.join(sorted(ADAPTERS))}. "
            f"{_native_hint(source, model_type)}"
        )
    return model_type


def _hub_config(source: str) -> dict[str, Any]:
    """The raw ``config.json`` of a hub id: from the local cache, else from the hub.

    An id that is neither cached nor reachable fails at once in one line
    (:class:`InputError`): offline (``HF_HUB_OFFLINE``) or when the hub's host does not answer
    within a few seconds, instead of huggingface_hub's five logged retries.
    """
    import logging

    from huggingface_hub import constants, try_to_load_from_cache

    cached = try_to_load_from_cache(source, "config.json")
    if isinstance(cached, str):
        return json.loads(Path(cached).read_text())
    where = f"model {source!r} is not in the local Hugging Face cache"
    if constants.HF_HUB_OFFLINE:
        raise InputError(f"{where} and HF_HUB_OFFLINE is set")
    if not _hub_reachable(constants.ENDPOINT):
        raise InputError(f"{where} and {constants.ENDPOINT} cannot be reached (offline?)")
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)  # no per-retry messages
    try:
        from transformers import PretrainedConfig

        data, _ = PretrainedConfig.get_config_dict(source)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot load the config of {source!r}: {first}") from exc
    finally:
        hub_log.setLevel(level)
    return data


def _hub_reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """Whether the hub's host accepts a TCP connection (assumed yes behind a proxy)."""
    import os
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _native_hint(source: str, model_type: str) -> str:
    """Which Hugging Face-native checkpoint to use instead of a remote-code one."""
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


def adapter_class(model_type: str) -> type[VLMAdapter]:
    """The adapter for ``model_type``, or :class:`UnsupportedModelError` naming the supported
    ones (or, for a refused architecture, why it is refused)."""
    if model_type in REFUSED:
        raise UnsupportedModelError(f"architecture {model_type!r}: {REFUSED[model_type]}")
    if model_type not in ADAPTERS:
        raise UnsupportedModelError(
            f"architecture {model_type!r} is not supported; supported: {', '.join(sorted(ADAPTERS))}"
        )
    return ADAPTERS[model_type]


def load_model(
    source: str | Path = ORGANISM,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    device_map: Any = None,
    prompt_suffix: str = "",
    attn_implementation: str | None = None,
    **kwargs: Any,
) -> VLMAdapter:
    """Load a VLM and wrap it in its architecture's adapter.

    Parameters
    ----------
    source : str or Path
        A Hugging Face id (``"llava-hf/llava-1.5-7b-hf"``), a local checkpoint directory, or
        ``"organism"`` for the embedded model organism (the default).
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``; default CUDA when available.
    dtype : str or torch.dtype, optional
        Default float32 on CPU, bfloat16 on CUDA.
    device_map : optional
        Passed to ``from_pretrained`` (e.g. ``"auto"`` to spread a large model); then
        ``device`` is ignored.
    prompt_suffix : str
        Appended to every question (see :class:`VLMAdapter`).

    Returns
    -------
    VLMAdapter
        In eval mode, with every parameter's ``requires_grad`` switched off: methods take
        gradients at the visual token embeddings or the pixels only.
    """
    import transformers

    source = str(source)
    if source == ORGANISM:
        from egg_interp.organism import organism_path

        source = str(organism_path())
    model_type = _read_model_type(source)
    cls = adapter_class(model_type)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch_dtype = resolve_dtype(dtype, device)
    load_kwargs: dict[str, Any] = {"dtype": torch_dtype, **kwargs}
    if device_map is not None:
        load_kwargs["device_map"] = device_map
    if attn_implementation is not None:
        load_kwargs["attn_implementation"] = attn_implementation
    try:
        model = getattr(transformers, cls.auto_class).from_pretrained(source, **load_kwargs)
    except OSError as exc:
        raise InputError(f"cannot load model {source!r}: {exc}") from exc
    processor = cls.load_processor(source, model_type)
    if device_map is None:
        model = model.to(device)
    model.eval()
    model.requires_grad_(False)
    return cls(model, processor, name=source, prompt_suffix=prompt_suffix)
