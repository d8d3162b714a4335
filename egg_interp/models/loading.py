"""Load any supported VLM from a Hugging Face id or a local directory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from egg_interp.checkpoints import ORGANISM, check_model_source, loading_is_quiet
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


@contextmanager
def _weight_loading_bars() -> Iterator[None]:
    """Around ``from_pretrained``: transformers' own progress bars ("Loading weights") are
    disabled inside :func:`egg_interp.checkpoints.quiet_loading`, left alone otherwise.

    Through transformers' public ``set_tqdm_hook`` (restored on exit); huggingface_hub's
    download bars are another class and stay.
    """
    if not loading_is_quiet():
        yield
        return
    from transformers.utils import logging as hf_logging

    def disabled(factory: Any, args: tuple, kwargs: dict) -> Any:
        return factory(*args, **{**kwargs, "disable": True})

    previous = hf_logging.set_tqdm_hook(disabled)
    try:
        yield
    finally:
        hf_logging.set_tqdm_hook(previous)


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
    model_type = check_model_source(source, supported=[*ADAPTERS, *REFUSED])
    cls = adapter_class(model_type)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch_dtype = resolve_dtype(dtype, device)
    load_kwargs: dict[str, Any] = {"dtype": torch_dtype, **kwargs}
    if device_map is not None:
        load_kwargs["device_map"] = device_map
    if attn_implementation is not None:
        load_kwargs["attn_implementation"] = attn_implementation
    try:
        with _weight_loading_bars():  # off inside checkpoints.quiet_loading (the CLI)
            model = getattr(transformers, cls.auto_class).from_pretrained(source, **load_kwargs)
    except OSError as exc:
        raise InputError(f"cannot load model {source!r}: {exc}") from exc
    processor = cls.load_processor(source, model_type)
    if device_map is None:
        model = model.to(device)
    model.eval()
    model.requires_grad_(False)
    return cls(model, processor, name=source, prompt_suffix=prompt_suffix)
