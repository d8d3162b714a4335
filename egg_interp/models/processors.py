"""Processors without a video processor, for machines without torchvision.

Qwen2.5-VL, Qwen3-VL, InternVL and Gemma 4 processors take a ``video_processor`` argument
(Gemma 4 also an audio ``feature_extractor``), and transformers' video processors need
torchvision: without it, ``AutoProcessor`` cannot load these checkpoints and the processor
classes refuse ``video_processor=None`` in their argument check. egg_interp only needs
images, so :func:`image_only_processor_class` derives a subclass (same name, so a saved
checkpoint still names the real class) whose only sub-processors are the image processor and
the tokenizer. Nothing in transformers is patched; with torchvision installed
:func:`load_processor` uses ``AutoProcessor`` as is.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from transformers import ProcessorMixin

from egg_interp.errors import InputError

NON_IMAGE_SLOTS = ("video_processor", "feature_extractor")
"""Sub-processors an image-only processor leaves out (``feature_extractor`` only where the
processor also has an ``image_processor``: it is then the audio one, as in Gemma 4)."""


class _SkipsAbsentSlots(ProcessorMixin):
    """Sits between a processor class and ``ProcessorMixin`` in an image-only subclass: drops
    the ``None`` sub-processors that the processor's own ``__init__`` passes on by keyword
    (Gemma 4 passes all four), which ``ProcessorMixin`` would reject as unexpected."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kept = type(self).get_attributes()
        for name in NON_IMAGE_SLOTS:
            if name in kwargs and kwargs[name] is None and name not in kept:
                del kwargs[name]
        super().__init__(*args, **kwargs)


@cache
def image_only_processor_class(cls: type) -> type:
    """A subclass of processor class ``cls`` without its video (and audio) sub-processors.

    ``ProcessorMixin`` stores, checks, saves and loads the sub-processors that
    ``get_attributes()`` lists; the subclass lists those of ``cls`` minus
    ``video_processor`` (and minus an audio ``feature_extractor`` next to an
    ``image_processor``). Build it like ``cls``, passing the left-out sub-processors as
    ``None`` where ``cls`` requires them (SmolVLM's ``video_processor``, Gemma 4's
    ``feature_extractor`` and ``video_processor``); ``from_pretrained`` does that itself.

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
    attributes = cls.get_attributes()
    dropped = {"video_processor"}
    if "image_processor" in attributes:
        dropped.add("feature_extractor")

    def get_attributes(klass: type) -> list[str]:
        return [a for a in attributes if a not in dropped]

    def from_args_and_dict(klass: type, args: Any, processor_dict: Any, **kwargs: Any) -> Any:
        # sub-processors by name (``cls``'s positional order may interleave the dropped ones)
        kwargs.update(zip(get_attributes(klass), args))
        for name in dropped & set(attributes):
            kwargs.setdefault(name, None)
        return super(subclass, klass).from_args_and_dict([], processor_dict, **kwargs)

    subclass = type(
        cls.__name__,
        (cls, _SkipsAbsentSlots),
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


def load_processor(source: str, model_type: str) -> Any:
    """``AutoProcessor.from_pretrained(source)``, or its image-only variant without torchvision.

    Raises :class:`InputError` when neither loads. (Adapters whose processor needs torchvision
    even without its video slot override
    :meth:`~egg_interp.models.base.VLMAdapter.load_processor` instead.)
    """
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(source)
    except (OSError, ImportError, AttributeError, TypeError, ValueError) as exc:
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
