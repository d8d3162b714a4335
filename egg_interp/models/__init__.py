"""Model loading and the registry of architecture adapters.

One adapter file per architecture; :data:`ADAPTERS` maps a checkpoint's ``model_type``
(from its ``config.json``) to the adapter class.
"""

from __future__ import annotations

from egg_interp.models.base import ImageLayout, PromptInputs, ViewLayout, VLMAdapter
from egg_interp.models.llava import LlavaAdapter
from egg_interp.models.loading import ADAPTERS, load_model, resolve_dtype

__all__ = [
    "ADAPTERS",
    "ImageLayout",
    "LlavaAdapter",
    "PromptInputs",
    "VLMAdapter",
    "ViewLayout",
    "load_model",
    "resolve_dtype",
]
