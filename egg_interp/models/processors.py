"""Processors without a video processor, for machines without torchvision.

Qwen2.5-VL, Qwen3-VL and InternVL processors take a ``video_processor`` argument, and
transformers' video processors need torchvision: without it, ``AutoProcessor`` cannot load
these checkpoints and the processor classes refuse ``video_processor=None`` in their
argument check. egg_interp only needs images, so :func:`image_only_processor_class` derives
a subclass (same name, so a saved checkpoint still names the real class) whose only
sub-processors are the image processor and the tokenizer. Nothing in transformers is
patched; with torchvision installed :func:`load_processor` uses ``AutoProcessor`` as is.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from egg_interp.errors import InputError


@cache
def image_only_processor_class(cls: type) -> type:
    """A subclass of processor class ``cls`` without its ``video_processor`` sub-processor.

    ``ProcessorMixin`` stores, checks, saves and loads the sub-processors that
    ``get_attributes()`` lists; the subclass lists those of ``cls`` minus
    ``video_processor``, and is called like ``cls`` with ``video_processor`` left out (it
    defaults to ``None``, which ``cls`` passes on and ``ProcessorMixin`` then ignores; where
    ``cls`` requires it, as SmolVLM's does, pass ``video_processor=None``, which
    ``from_pretrained`` does here).

    Parameters
    ----------
    cls : type
        A ``transformers.ProcessorMixin`` subclass, e.g. ``Qwen2_5_VLProcessor``.

    Returns
    -------
    type
        ``from_pretrained`` loads only the image processor and the tokenizer (plus ``cls``'s
        other settings, e.g. InternVL's ``image_seq_length``); ``save_pretrained`` writes
        ``cls.__name__``, so the checkpoint still names the real class.
    """

    def get_attributes(klass: type) -> list[str]:
        return [a for a in cls.get_attributes() if a != "video_processor"]

    def from_args_and_dict(klass: type, args: Any, processor_dict: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("video_processor", None)  # SmolVLM's argument has no default
        return super(subclass, klass).from_args_and_dict(args, processor_dict, **kwargs)

    subclass = type(
        cls.__name__,
        (cls,),
        {
            "get_attributes": classmethod(get_attributes),
            "from_args_and_dict": classmethod(from_args_and_dict),
            "__module__": cls.__module__,
        },
    )
    return subclass


def _declared_processor_class(source: str, model_type: str) -> type | None:
    """The processor class a checkpoint names (``processor_config.json``), else the default."""
    import json

    import transformers

    name = None
    cfg = Path(source) / "processor_config.json"
    if cfg.is_file():
        name = json.loads(cfg.read_text()).get("processor_class")
    if name is None:
        from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

        name = PROCESSOR_MAPPING_NAMES.get(model_type)
    return getattr(transformers, name, None) if isinstance(name, str) else None


def load_processor(
    source: str, model_type: str, without_torchvision: Callable[[str], Any] | None = None
) -> Any:
    """``AutoProcessor.from_pretrained(source)``, or its image-only variant without torchvision.

    ``without_torchvision(source)``, when given, is tried first when ``AutoProcessor`` fails
    (an adapter's :meth:`~egg_interp.models.base.VLMAdapter.processor_without_torchvision`);
    ``None`` from it means "no such processor". Raises :class:`InputError` when none loads.
    """
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(source)
    except (OSError, ImportError, AttributeError, TypeError, ValueError) as exc:
        substitute = without_torchvision(source) if without_torchvision is not None else None
        if substitute is not None:
            return substitute
        cls = _declared_processor_class(source, model_type)
        if cls is None or "video_processor" not in cls.get_attributes():
            raise InputError(f"cannot load the processor of {source!r}: {exc}") from exc
        try:
            return image_only_processor_class(cls).from_pretrained(source)
        except (OSError, ValueError, TypeError) as exc2:
            raise InputError(
                f"cannot load the processor of {source!r}: {exc}; without its video processor: "
                f"{exc2}"
            ) from exc2
