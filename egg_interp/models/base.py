"""The adapter interface: everything a method needs to know about one VLM architecture.

An adapter wraps a loaded Hugging Face model and its processor. It builds the prompt for a
question with one or more images (original first, then crops), knows where each image's
visual tokens sit in the sequence and which rectangle of the image each token covers, and
runs the language model on *precomputed* post-projector visual token embeddings, so that
methods can take gradients at those embeddings without touching the vision tower or
monkeypatching transformers. Methods only ever talk to this interface (never to
``adapter.model``).

Hooks of an architecture (what one adapter file in ``models/`` writes)
-----------------------------------------------------------------------
Shapes: ``N`` images in the prompt, ``T_i`` visual tokens of image ``i``, ``H`` the LM's
hidden size, ``V`` the vocabulary, ``B`` a batch of perturbed inputs.

Required:

* ``model_types`` (class data): the ``config.model_type`` values it serves (for
  :func:`egg_interp.models.load_model`).
* :meth:`~VLMAdapter.layouts` ``(images, batch) -> list[ImageLayout]``: one per image, in
  prompt order, each with ``n_tokens = T_i`` and its grid views (token index and cell boxes
  in processed-image pixels); ``batch`` is the processor's output.
* :meth:`~VLMAdapter.compute_image_features` ``(inputs) -> list of (T_i, H) tensors``: the
  vision tower and projector, one tensor per image (called without gradients; cached by
  :meth:`~VLMAdapter.image_features`).

Optional (the default is right for LLaVA-like models):

* ``auto_class`` (class data): the transformers auto class that loads the model (default
  ``"AutoModelForImageTextToText"``; Phi-4-multimodal: ``"AutoModelForCausalLM"``).
* ``image_token``, ``pixel_keys``, ``max_images_per_prompt`` (class data); :meth:`~VLMAdapter.fallback_prompt`
  ``(n_images, text) -> str`` when the processor has no chat template.
* :meth:`~VLMAdapter.load_processor` ``(source, model_type) -> processor`` (class method):
  how :func:`~egg_interp.models.load_model` builds the processor; override where the
  transformers processor cannot be built without torchvision.
* :meth:`~VLMAdapter.encoder_outputs` ``(list of (T_i, H)) -> object``: how the model takes
  precomputed features (``mm_encoder_outputs["image"]``); default a
  ``BaseModelOutputWithPooling`` with the tuple as ``pooler_output``.
* :meth:`~VLMAdapter.position_kwargs` ``(batch, kwargs) -> kwargs``: positions of a forward
  (default: counted from each row's first real token under left padding; Qwen resets its
  rotary deltas).
* Position state cached by the model between calls (Qwen's ``rope_deltas``):
  :meth:`~VLMAdapter.reset_positions` ``() -> None`` forgets it before an unrelated forward
  or generation; :meth:`~VLMAdapter.saved_positions` ``() -> object`` and
  :meth:`~VLMAdapter.restore_positions` ``(object) -> None`` keep a map forward's state for
  continuing its answer later. Defaults: nothing cached, nothing to do.
* :meth:`~VLMAdapter.extend_extra` ``(batch, n) -> batch``: lengthen per-token inputs other
  than ``input_ids``/``attention_mask`` by ``n`` appended text tokens.
* :meth:`~VLMAdapter.pixel_relevance_to_tokens` ``(inputs, pixel_map) -> list of (T_i,)``:
  pool a per-pixel map (``pixel_values``' shape without channels) to tokens; enables the
  pixel-space methods (:attr:`~VLMAdapter.supports_pixel_space`).
* :meth:`~VLMAdapter.perturbed_logits` ``(inputs, list of (B, T_i, H)) -> (B, V)`` and
  :meth:`~VLMAdapter.perturbed_pixel_logits` ``(inputs, (B, *pixel_values.shape)) -> (B, V)``:
  one batched forward instead of ``B`` where :attr:`~VLMAdapter.batch_by_repeating_prompt`
  is set (the prompt repeated along the batch; default: a loop).
* :attr:`~VLMAdapter.attention_layers` (list of int): the language model's layers that have
  attention weights (default: all); a hybrid model (linear attention, convolutions) lists
  only its attention layers, and the attention maps read only those.
* Video (:attr:`~VLMAdapter.supports_video` when implemented):
  :meth:`~VLMAdapter.video_layouts` ``(videos, batch) -> list[ImageLayout]``, one per temporal
  slice with its ``frames``, ``timestamps`` and ``video_index``;
  :meth:`~VLMAdapter.compute_video_features` ``(inputs) -> list of (T_v, H)``, one per video;
  :meth:`~VLMAdapter.video_frame_size` ``(n_frames, height, width, settings) -> (h, w)`` and
  ``video_packing`` (class data, ``"patches"`` or ``"frames"``), the video rule of the
  torchvision-free video processor (:mod:`egg_interp.models.video_inputs`), or
  :meth:`~VLMAdapter.pil_video_processor` ``() -> processor`` for a model whose video
  processor differs more; ``video_with_images`` (class data: may one prompt hold a video
  and still images); :meth:`~VLMAdapter.fallback_video_prompt` without a chat template.
  Features travel per slice like images'; the base joins them per video for
  ``mm_encoder_outputs["video"]`` (:meth:`~VLMAdapter.visual_encoder_outputs`).
* :attr:`~VLMAdapter.input_side` (int, ViCrop's crop unit), :meth:`~VLMAdapter.forward`,
  :meth:`~VLMAdapter.generate` when the model needs a reset before each call;
  :meth:`~VLMAdapter.generate_ids` ``(batch, max_new_tokens, cache=None) -> (rows, seq + new)``
  when the model's own ``generate`` cannot run (every answer path decodes through it).
* :meth:`~VLMAdapter.resolution_settings` ``() -> dict``: the settings that decide how an
  image becomes tokens, recorded with every result (default: read from the processor).

What methods call (shared, not overridden): :meth:`~VLMAdapter.build_inputs` /
:meth:`~VLMAdapter.build_batch` (prompts), :meth:`~VLMAdapter.image_features`,
:meth:`~VLMAdapter.forward_features` (LM on features: ``.logits`` of shape
``(rows, 1 or seq, V)``), :meth:`~VLMAdapter.pixel_logits` (from pixels, through the vision
tower), :meth:`~VLMAdapter.next_token_logits`, :meth:`~VLMAdapter.extend`,
:meth:`~VLMAdapter.to_map`, :meth:`~VLMAdapter.attention_implementation`.

Per-image token relevance travels as a flat vector in the order of that image's feature
rows; :meth:`VLMAdapter.to_map` scatters it into the image's token grids.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from transformers.modeling_outputs import BaseModelOutputWithPooling

from egg_interp.errors import InputError, UnsupportedModelError
from egg_interp.geometry import Box, regular_cell_boxes
from egg_interp.io import check_question
from egg_interp.maps import AttributionMap, GridView, ImageMap
from egg_interp.models.layout import (
    ImageLayout,
    PromptInputs,
    ViewLayout,
)
from egg_interp.regions import DEFAULT_SIGMA
from egg_interp.video import Video


class VLMAdapter:
    """Base class of all architecture adapters.

    Subclasses set :attr:`model_types` and implement :meth:`layouts` and
    :meth:`compute_image_features`; the optional hooks are listed in the module docstring.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A loaded image-text-to-text model, in eval mode.
    processor : transformers.ProcessorMixin
        Its processor.
    name : str
        Where the model came from (an id or a path), for logs.
    prompt_suffix : str
        Appended to every question (e.g. LLaVA's "Answer the question using a single word
        or phrase."). Empty by default.
    feature_cache_size : int
        How many images' vision features to keep (0 disables the cache). Entries are keyed
        by the image and the weights (:meth:`weights_state`), so changed weights are never
        served old features.
    """

    model_types: ClassVar[tuple[str, ...]] = ()
    auto_class: ClassVar[str] = "AutoModelForImageTextToText"
    """Name of the transformers auto class :func:`~egg_interp.models.load_model` loads with."""
    image_token: ClassVar[str] = "<image>"
    images_nested_per_prompt: ClassVar[bool] = False
    """Whether the processor takes the images as one list per prompt (SmolVLM; LLaVA-OneVision,
    whose processor reads a prompt's image count from it) rather than one flat list (the
    others); a single prompt is then a list of one list."""
    batch_by_repeating_prompt: ClassVar[bool] = False
    """Whether perturbed feature (or pixel) sets of one prompt run as one forward of the prompt
    repeated along the batch dimension (:func:`repeat_prompt`), rather than one forward per
    set: true where every per-token input repeats row by row and the placeholders are filled
    row-major (LLaVA and its kin, the Gemma families)."""
    max_images_per_prompt: ClassVar[int | None] = None
    """How many images one prompt may hold (``None``: no limit). The loop puts the original
    images and their crops in one prompt; an architecture that takes fewer says so here, and
    a prompt with more fails in one line (:class:`~egg_interp.errors.InputError`)."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        name: str = "",
        prompt_suffix: str = "",
        feature_cache_size: int = 8,
    ) -> None:
        self.model = model
        self.processor = processor
        self.name = name
        self.prompt_suffix = prompt_suffix
        self.feature_cache_size = feature_cache_size
        self._feature_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._weights_epoch = 0  # bumped by clear_cache: part of weights_state()
        self.map_memo: dict[tuple, Any] | None = None
        """Maps already computed in this :meth:`remember_maps` scope (``None`` outside one)."""

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def image_token_id(self) -> int:
        return int(self.model.config.image_token_id)

    @property
    def language_model(self) -> Any:
        return self.model.model.language_model

    @property
    def region_sigma(self) -> float:
        """Smoothing of this model's maps in grid cells (regions and spatial entropy).

        The checkpoint's ``egg_region_sigma`` config entry when it has one, else the paper's
        :data:`egg_interp.regions.DEFAULT_SIGMA` (1.5 cells, set on LLaVA-1.5's 24 x 24 grid).
        A checkpoint with a coarser grid may want less: on the organism's 8 x 8 grid, 1.5
        cells spread a region over about a fifth of the image side. (The organism keeps 1.5:
        at 0.75 its EGG crops were tighter but its detail accuracy with them lower; see the
        README's organism section.)
        """
        value = getattr(self.model.config, "egg_region_sigma", None)
        return DEFAULT_SIGMA if value is None else float(value)

    @classmethod
    def load_processor(cls, source: str, model_type: str) -> Any:
        """The processor of checkpoint ``source`` (a local directory or a hub id).

        Default: :func:`egg_interp.models.processors.load_processor` (``AutoProcessor``, else
        the processor without its video slot). Architectures whose image processor needs
        torchvision override it to build an equivalent without torchvision when it is missing.
        """
        from egg_interp.models.processors import load_processor

        return load_processor(source, model_type)

    # ------------------------------------------------------------------ prompts
    def prompt_text(self, n_images: int, question: str, n_videos: int = 0) -> str:
        """The chat-formatted prompt with ``n_videos`` video placeholders, then ``n_images``
        image placeholders, then the question."""
        text = question if not self.prompt_suffix else f"{question} {self.prompt_suffix}"
        content: list[dict[str, str]] = [{"type": "video"} for _ in range(n_videos)]
        content += [{"type": "image"} for _ in range(n_images)]
        content.append({"type": "text", "text": text})
        messages = [{"role": "user", "content": content}]
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(messages, add_generation_prompt=True)
        if n_videos:
            return self.fallback_video_prompt(n_videos, n_images, text)
        return self.fallback_prompt(n_images, text)

    def fallback_prompt(self, n_images: int, text: str) -> str:
        """Prompt used when the processor has no chat template."""
        return "USER: " + f"{self.image_token}\n" * n_images + f"{text}\nASSISTANT:"

    def fallback_video_prompt(self, n_videos: int, n_images: int, text: str) -> str:
        """Prompt with videos used when the processor has no chat template (default: refused)."""
        raise UnsupportedModelError(
            f"{type(self).__name__}: the processor has no chat template to place a video in"
        )

    def build_inputs(
        self,
        images: Sequence[Image.Image],
        question: str,
        origin_boxes: Sequence[Box] | None = None,
        *,
        warn_unknown: bool = True,
        videos: Sequence[Video] = (),
    ) -> PromptInputs:
        """Build the prompt for ``question`` about ``videos`` then ``images`` (original first,
        then crops).

        Parameters
        ----------
        images : sequence of PIL.Image.Image
            May be empty when there is a video.
        question : str
            Must not be empty.
        origin_boxes : sequence of Box, optional
            Where each image lies in the original image; defaults to each image's own
            full rectangle (right for the original; the loop passes the crop boxes).
        warn_unknown : bool, default True
            Warn (once per adapter) about words the tokenizer reads as its unknown token;
            ``False`` for a method's own fixed prompt (e.g. rel-att's generic prompt).
        videos : sequence of Video, optional
            Videos (:func:`egg_interp.video.read_video`) placed before the images, for
            adapters with :attr:`supports_video`; each becomes one layout per temporal slice
            (:meth:`video_layouts`).
        """
        return self._build(
            [(images, question)], origin_boxes, warn_unknown=warn_unknown, videos=videos
        )

    def build_batch(self, items: Sequence[tuple[Sequence[Image.Image], str]]) -> PromptInputs:
        """Several prompts in one left-padded batch (one row per ``(images, question)``).

        The images of all rows are flattened in row order, as the processor fills the
        placeholders; :meth:`PromptInputs.row_layouts` regroups the layouts per row. Left
        padding keeps every row's answer position last.
        """
        if not items:
            raise InputError("an empty batch")
        return self._build(items, None, batched=True)

    def _build(
        self,
        items: Sequence[tuple[Sequence[Image.Image], str]],
        origin_boxes: Sequence[Box] | None,
        batched: bool = False,
        warn_unknown: bool = True,
        videos: Sequence[Video] = (),
    ) -> PromptInputs:
        """The one place prompts are built: check, format, process, lay out."""
        if videos:
            self._check_videos(videos, max(len(images) for images, _ in items))
        texts, questions, flat, counts = [], [], [], []
        nested: list[list[Image.Image]] = []
        for images, question in items:
            questions.append(check_question(question))
            if warn_unknown:
                self._warn_unknown_words(questions[-1])
            if not images and not videos:
                raise InputError("at least one image is needed per prompt")
            limit = self.max_images_per_prompt
            if limit is not None and len(images) > limit:
                raise InputError(
                    f"{type(self).__name__} takes at most {limit} image(s) per prompt, got "
                    f"{len(images)} (originals and crops together)"
                )
            rgb = [im.convert("RGB") for im in images]
            for im in rgb:
                if min(im.size) < 1:
                    raise InputError(f"image of size {im.size} has no pixels")
            if videos:  # adapters that override prompt_text for images only keep working
                texts.append(self.prompt_text(len(rgb), questions[-1], n_videos=len(videos)))
            else:
                texts.append(self.prompt_text(len(rgb), questions[-1]))
            flat.extend(rgb)
            nested.append(rgb)
            counts.append(len(rgb))
        images = nested if self.images_nested_per_prompt else flat
        batch = self._process(images if flat else [], texts, batched, videos)
        batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        for key in ("pixel_values", "pixel_values_videos"):
            if key in batch and batch[key].is_floating_point():
                batch[key] = batch[key].to(self.dtype)
        layouts = self.layouts(flat, batch) if flat else []
        if origin_boxes is None:
            origin_boxes = [(0.0, 0.0, float(im.width), float(im.height)) for im in flat]
        for lay, box in zip(layouts, origin_boxes, strict=True):
            lay.origin_box = tuple(float(b) for b in box)  # type: ignore[assignment]
        if videos:
            layouts = self.video_layouts(videos, batch) + layouts
        if batched:
            inputs = PromptInputs(batch, flat, layouts, question="", images_per_row=counts)
        else:
            inputs = PromptInputs(batch, flat, layouts, questions[0], videos=list(videos))
        self._check_token_count(inputs)
        return inputs

    def _process(
        self, images: Any, texts: list[str], batched: bool, videos: Sequence[Video]
    ) -> Any:
        """The processor on the prompts (one, or a left-padded batch: left padding keeps every
        row's answer position last); its ``ValueError`` becomes one :class:`InputError` line."""
        tok = self.tokenizer
        side = tok.padding_side
        try:
            if batched:
                tok.padding_side = "left"
                return self.processor(images=images, text=texts, return_tensors="pt", padding=True)
            if videos:
                return self._process_with_videos(images, texts[0], videos)
            return self.processor(images=images, text=texts[0], return_tensors="pt")
        except ValueError as exc:  # e.g. an image too small for the processor's patch size
            raise InputError(
                f"{type(self).__name__}: the processor rejects the input: {exc}"
            ) from exc
        finally:
            tok.padding_side = side

    def _warn_unknown_words(self, question: str) -> None:
        """Warn once per adapter when the tokenizer reads words of a question as its unknown
        token (a word-level vocabulary such as the organism's): the model never sees them, so
        its answer is a guess. Any tokenizer with an unknown token; byte-level ones never warn.
        """
        tok = self.tokenizer
        unk = getattr(tok, "unk_token_id", None)
        if unk is None or getattr(self, "_warned_unknown_words", False):
            return
        if unk not in tok(question, add_special_tokens=False)["input_ids"]:
            return
        self._warned_unknown_words = True
        words = [
            w for w in question.split() if unk in tok(w, add_special_tokens=False)["input_ids"]
        ]
        warnings.warn(
            f"{len(words) or 'some'} word(s) of the question are unknown to the model's "
            f"tokenizer and read as {tok.unk_token}: {', '.join(words)} (question: "
            f"{question[:80]!r}); its answer cannot depend on them. Warned once per model.",
            UserWarning,
            stacklevel=4,
        )

    def _check_token_count(self, inputs: PromptInputs) -> None:
        n_placeholders = int(self._visual_token_mask(inputs.input_ids).sum())
        n_layout = sum(lay.n_tokens for lay in inputs.layouts)
        if n_placeholders != n_layout:
            raise RuntimeError(
                f"{type(self).__name__}: the prompt has {n_placeholders} image placeholder "
                f"tokens but the layout predicts {n_layout}; the processor settings do not "
                "match what the adapter expects"
            )

    # ------------------------------------------------------------------ videos
    @property
    def supports_video(self) -> bool:
        """Whether prompts may hold videos (the adapter implements :meth:`video_layouts`)."""
        return type(self).video_layouts is not VLMAdapter.video_layouts

    @property
    def video_token_id(self) -> int | None:
        """The video placeholder's id (``None`` when the model has none)."""
        value = getattr(self.model.config, "video_token_id", None)
        return None if value is None else int(value)

    def _visual_token_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Where the image and video placeholders are (same shape as ``input_ids``)."""
        mask = input_ids == self.image_token_id
        if self.video_token_id is not None:
            mask |= input_ids == self.video_token_id
        return mask

    video_with_images: ClassVar[bool] = True
    """Whether one prompt may hold a video and still images (the loop answers with the video
    and zoomed frames); an architecture whose model refuses both kinds of pixels in one forward
    says ``False`` and such a prompt fails in one line."""

    def _check_videos(self, videos: Sequence[Video], n_images: int = 0) -> None:
        who = self.name or type(self).__name__
        if not self.supports_video:
            raise UnsupportedModelError(f"{who} does not take video (images only)")
        if n_images and not self.video_with_images:
            raise UnsupportedModelError(
                f"{who} takes a video or images in one prompt, not both (its model refuses "
                "both kinds of pixels in one forward)"
            )
        for v in videos:
            if not isinstance(v, Video):
                raise InputError(
                    f"a video must be an egg_interp.video.Video, got {type(v).__name__}"
                )

    def _process_with_videos(
        self, images: Sequence[Any], text: str, videos: Sequence[Video]
    ) -> Any:
        """The processor on one prompt with videos: the frames already sampled
        (``do_sample_frames=False``) with their metadata (timestamps), through the processor's
        own video processor, or without torchvision :meth:`pil_video_processor` in its slot."""
        from transformers.video_utils import VideoMetadata

        from egg_interp.models.video_inputs import video_processor_slot

        with video_processor_slot(self.processor, self.pil_video_processor):
            return self.processor(
                images=list(images) or None,
                text=text,
                videos=[list(v.frames) for v in videos],
                video_metadata=[VideoMetadata(**v.metadata()) for v in videos],
                do_sample_frames=False,
                return_tensors="pt",
            )

    def pil_video_processor(self) -> Any:
        """The torchvision-free video processor of this model
        (:class:`~egg_interp.models.video_inputs.PilVideoProcessor`), built once: the image
        processor's steps and settings (or the checkpoint's video settings) with the model's
        video resize rule (:meth:`video_frame_size`)."""
        if getattr(self, "_pil_video_processor", None) is None:
            from egg_interp.models.video_inputs import PilVideoProcessor, video_settings

            image_processor = self.processor.image_processor
            checkpoint = getattr(self.model, "name_or_path", None) or None
            settings = video_settings(image_processor, checkpoint)
            self._pil_video_processor = PilVideoProcessor(
                image_processor, self.video_frame_size, settings, self.video_packing
            )
        return self._pil_video_processor

    video_packing: ClassVar[str] = "patches"
    """How the model takes video pixels (:class:`~egg_interp.models.video_inputs.PilVideoProcessor`):
    ``"patches"`` (Qwen-style flattened temporal patches with ``video_grid_thw``) or
    ``"frames"`` (``(videos, frames, channels, height, width)``)."""

    def video_frame_size(
        self, n_frames: int, height: int, width: int, settings: dict[str, Any]
    ) -> tuple[int, int]:
        """Size ``(height, width)`` the model's video processor resizes ``n_frames`` frames of
        ``height x width`` to, under ``settings`` (architecture specific)."""
        raise NotImplementedError(f"{type(self).__name__} has no video resize rule")

    def video_layouts(self, videos: Sequence[Video], batch: dict[str, Any]) -> list[ImageLayout]:
        """Token layouts of the prompt's videos: one :class:`ImageLayout` per temporal slice
        (a group of frames whose tokens form one grid), in sequence order, each with its
        ``frames``, ``timestamps`` and ``video_index`` (architecture specific)."""
        raise NotImplementedError(f"{type(self).__name__} does not take video")

    def compute_video_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        """Vision tower and projector on the prompt's videos: one ``(n_tokens, hidden)`` tensor
        per video, rows in the order of its slices' token indices (architecture specific)."""
        raise NotImplementedError(f"{type(self).__name__} does not take video")

    def _compute_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        """One feature tensor per layout: still images' and videos' slices, in layout order."""
        if not inputs.videos:
            return self.compute_image_features(inputs)
        stills = iter(self.compute_image_features(inputs) if inputs.images else [])
        slices = []
        for v, feats in enumerate(self.compute_video_features(inputs)):
            sizes = [lay.n_tokens for lay in inputs.layouts if lay.video_index == v]
            slices.append(iter(feats.split(sizes)))
        return [
            next(slices[lay.video_index]) if lay.is_video else next(stills)
            for lay in inputs.layouts
        ]

    def visual_encoder_outputs(
        self, inputs: PromptInputs, features: Sequence[torch.Tensor]
    ) -> dict[str, Any]:
        """The model's ``mm_encoder_outputs``: still images' features under ``"image"``, each
        video's slices joined under ``"video"`` (through :meth:`encoder_outputs`).

        ``features`` may hold several copies of the prompt's set, row after row (a prompt
        repeated along the batch for batched perturbations); each row's stills and videos then
        follow the previous row's, as the placeholders are filled."""
        if not inputs.videos:
            return {"image": self.encoder_outputs(features)}
        n = len(inputs.layouts)
        if len(features) % n:
            raise ValueError(f"{len(features)} feature tensors for {n} layouts")
        pairs = [(lay, f) for k, f in enumerate(features) for lay in [inputs.layouts[k % n]]]
        stills = [f for lay, f in pairs if not lay.is_video]
        videos = [
            torch.cat([f for lay, f in pairs[row : row + n] if lay.video_index == v])
            for row in range(0, len(pairs), n)
            for v in range(len(inputs.videos))
        ]
        out = {"video": self.encoder_outputs(videos)}
        if stills:
            out["image"] = self.encoder_outputs(stills)
        return out

    def extend(self, inputs: PromptInputs, token_ids: Sequence[int]) -> PromptInputs:
        """The same prompt with ``token_ids`` appended (answer tokens decoded so far)."""
        if not token_ids:
            return inputs
        ids = torch.tensor([list(token_ids)], device=self.device, dtype=inputs.input_ids.dtype)
        batch = dict(inputs.batch)
        batch["input_ids"] = torch.cat([inputs.input_ids, ids], dim=1)
        if "attention_mask" in batch:
            batch["attention_mask"] = torch.cat(
                [batch["attention_mask"], torch.ones_like(ids)], dim=1
            )
        batch = self.extend_extra(batch, len(token_ids))
        return replace(inputs, batch=batch, answer_ids=[*inputs.answer_ids, *token_ids])

    def extend_extra(self, batch: dict[str, Any], n: int) -> dict[str, Any]:
        """Extend architecture-specific per-token inputs by ``n`` text tokens (default: none)."""
        return batch

    # ------------------------------------------------------------------ architecture hooks
    def layouts(self, images: Sequence[Image.Image], batch: dict[str, Any]) -> list[ImageLayout]:
        """Token layout of each image (architecture specific)."""
        raise NotImplementedError

    def image_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        """Post-projector visual token embeddings, one ``(n_tokens, hidden)`` tensor per image.

        Computed without gradients (the vision tower is never differentiated through) and
        cached per image and weights (:meth:`weights_state`) when :attr:`feature_cache_size`
        > 0.
        """
        key = self._cache_key(inputs)
        if key is not None and key in self._feature_cache:
            self._feature_cache.move_to_end(key)
            return list(self._feature_cache[key])
        with torch.no_grad():
            feats = self._compute_features(inputs)
        feats = [f.detach() for f in feats]
        if key is not None:
            self._feature_cache[key] = tuple(feats)  # type: ignore[assignment]
            while len(self._feature_cache) > self.feature_cache_size:
                self._feature_cache.popitem(last=False)
        return feats

    def compute_image_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        """Run the vision tower and projector (architecture specific)."""
        raise NotImplementedError

    pixel_keys: ClassVar[tuple[str, ...]] = ("pixel_values", "pixel_values_videos")
    """Processor outputs that feed the vision tower (dropped when features are precomputed)."""

    def encoder_outputs(self, features: Sequence[torch.Tensor]) -> Any:
        """Pack per-image features as the model's ``mm_encoder_outputs["image"]``.

        Default: a tuple of ``(n_tokens, hidden)`` tensors, one per image.
        """
        return BaseModelOutputWithPooling(pooler_output=tuple(features))

    def position_kwargs(self, batch: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Positions for a forward on ``batch``: with left padding, count them from each row's
        first real token (as ``generate`` does); architectures with their own rotary
        positions override this."""
        mask = batch.get("attention_mask")
        if mask is not None and "position_ids" not in kwargs and not bool(mask.all()):
            kwargs = {**kwargs, "position_ids": (mask.long().cumsum(-1) - 1).clamp(min=0)}
        return kwargs

    def reset_positions(self) -> None:
        """Forget position state cached by an earlier forward or generation (default: none)."""

    def saved_positions(self) -> Any:
        """The position state the last forward left on the model, to restore before continuing
        that prompt's answer (:func:`egg_interp.models.answering.continue_greedy`); default
        ``None`` (the model caches none)."""
        return None

    def restore_positions(self, state: Any) -> None:
        """Put back a state from :meth:`saved_positions` (default: nothing to restore)."""

    def forward_features(
        self,
        inputs: PromptInputs,
        features: Sequence[torch.Tensor],
        last_only: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Run the language model with these visual token embeddings in place of the images.

        The features go in through ``mm_encoder_outputs`` (no pixels, no vision tower, no
        monkeypatching); ``input_ids`` stay, so the placeholders are filled in order.
        Returns the model output (``.logits`` of shape (batch, seq or 1, vocab)).
        """
        batch = {k: v for k, v in inputs.batch.items() if k not in self.pixel_keys}
        return self.model(
            **batch,
            mm_encoder_outputs=self.visual_encoder_outputs(inputs, features),
            logits_to_keep=1 if last_only else 0,
            **self.position_kwargs(batch, kwargs),
        )

    def _cache_key(self, inputs: PromptInputs) -> str | None:
        if self.feature_cache_size <= 0:
            return None
        h = hashlib.sha1()
        for im in inputs.images:
            h.update(f"{im.size}{im.mode}".encode())
            h.update(im.tobytes())
        for video in inputs.videos:
            h.update(video.key().encode())
        for key in ("pixel_values", "pixel_values_videos"):
            if (pv := inputs.batch.get(key)) is not None:
                h.update(str(tuple(pv.shape)).encode())
        h.update(str(self.dtype).encode())
        h.update(repr(self.weights_state()).encode())
        return h.hexdigest()

    def weights_state(self) -> tuple[int, ...]:
        """What changes whenever the model's weights do: every parameter's and buffer's storage
        address and version counter, in module order.

        Every in-place update bumps a tensor's version counter (an optimiser step,
        ``nn.init``, ``reset_parameters``, ``load_state_dict``, ``p.add_`` under ``no_grad``),
        and replacing a tensor or a module changes the addresses, so the feature cache and the
        map memo, both keyed on this, never serve features or maps of earlier weights. Not
        seen: writes through ``p.data`` (``p.data.normal_()``), which bypass the counter by
        design; call :meth:`clear_cache` after those. Cost: one pass over the tensors (about
        a millisecond for a 7B model), no hashing of their values.
        """
        state = [self._weights_epoch]
        for t in (*self.model.parameters(), *self.model.buffers()):
            state += (t.data_ptr(), t._version)
        return tuple(state)

    def clear_cache(self) -> None:
        """Forget cached vision features and any remembered maps: call it after changing
        weights in a way :meth:`weights_state` cannot see (writes through ``p.data``)."""
        self._feature_cache.clear()
        self._weights_epoch += 1

    def image_key(self, image: Image.Image) -> str:
        """A hash of an image's size, mode and pixels (what makes two images the same input)."""
        h = hashlib.sha1(f"{image.size}{image.mode}".encode())
        h.update(image.tobytes())
        return h.hexdigest()

    @contextmanager
    def remember_maps(self) -> Iterator[None]:
        """Within this scope, a batched one-image map that was already computed for the same
        method, options, target, image and question is reused instead of computed again.

        The runner opens one scope per chunk of samples: a chunk's ``egg`` map lines and the
        first step of its ``egg`` loop ask for the same maps (``[original]`` and the question),
        so the loop's step 0 costs nothing there. Scopes do not nest; the maps are forgotten
        when the scope ends.
        """
        self.map_memo = {}
        try:
            yield
        finally:
            self.map_memo = None

    # ------------------------------------------------------------------ running
    def forward(self, inputs: PromptInputs, **kwargs: Any) -> Any:
        """A plain forward pass from pixels (no gradients unless the caller enables them)."""
        return self.model(**inputs.batch, **kwargs)

    def next_token_logits(self, inputs: PromptInputs) -> torch.Tensor:
        """Logits of the next token after the prompt, shape (vocab,), float32, no gradients."""
        with torch.no_grad():
            out = self.forward_features(inputs, self.image_features(inputs), last_only=True)
        return out.logits[0, -1].float()

    def greedy_tokens(self, inputs: PromptInputs, n: int) -> list[int]:
        """Greedily decode ``n`` answer tokens (no gradients), reusing cached features."""
        ids: list[int] = []
        cur = inputs
        for _ in range(n):
            nxt = int(self.next_token_logits(cur).argmax())
            ids.append(nxt)
            cur = self.extend(inputs, ids)
        return ids

    def generate(self, inputs: PromptInputs, max_new_tokens: int = 20) -> str:
        """Greedy answer text for a built prompt."""
        out = self.generate_ids(inputs.batch, max_new_tokens)
        new = out[0, inputs.input_ids.shape[1] :]
        return self.tokenizer.decode(new, skip_special_tokens=True).strip()

    def generate_ids(
        self, batch: dict[str, Any], max_new_tokens: int, cache: Any = None
    ) -> torch.Tensor:
        """Greedy decoding of a processor batch: token ids ``(rows, seq + new)``, prompt first.

        Rows that end early are padded with the pad token, as ``generate`` does. ``cache``:
        the key/value cache of all of the batch's tokens but the last ones (a recorded
        forward, whose answer this continues); the batch then holds no pixels. Default
        ``model.generate``, without gradients; adapters of a model whose ``generate`` cannot
        run decode here themselves.
        """
        extra = {} if cache is None else {"cache": cache}
        with torch.no_grad():
            return self.model.generate(
                **batch,
                **extra,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )

    def answer(
        self,
        image: Image.Image,
        question: str,
        crops: Sequence[Image.Image] = (),
        max_new_tokens: int = 20,
    ) -> str:
        """Greedy answer from the image alone, or with crops as extra images after it."""
        return self.generate(self.build_inputs([image, *crops], question), max_new_tokens)

    # ------------------------------------------------------------------ maps
    def to_map(
        self,
        inputs: PromptInputs,
        token_relevance: Sequence[torch.Tensor | np.ndarray],
        method: str = "",
        target: str = "",
        meta: dict[str, Any] | None = None,
    ) -> AttributionMap:
        """Scatter per-image flat token relevance into the images' grids.

        Parameters
        ----------
        token_relevance : sequence of (n_tokens,) arrays
            One per image, in that image's feature-row order.
        """
        images = []
        for lay, rel in zip(inputs.layouts, token_relevance, strict=True):
            rel = _to_numpy(rel)
            if rel.shape != (lay.n_tokens,):
                raise ValueError(f"relevance of shape {rel.shape}, expected ({lay.n_tokens},)")
            views = [GridView(rel[v.token_index], v.cell_boxes, v.name) for v in lay.views]
            images.append(
                ImageMap(
                    views,
                    lay.image_size,
                    lay.origin_box,
                    lay.frames,
                    lay.timestamps,
                    lay.video_index,
                )
            )
        return AttributionMap(images, method=method, target=target, meta=dict(meta or {}))

    def visual_positions(self, inputs: PromptInputs) -> list[torch.Tensor]:
        """Sequence positions of each image's (video slice's) visual tokens, in feature-row
        order."""
        pos = self._visual_token_mask(inputs.input_ids[0]).nonzero().flatten()
        out, start = [], 0
        for lay in inputs.layouts:
            out.append(pos[start : start + lay.n_tokens])
            start += lay.n_tokens
        return out

    def pixel_relevance_to_tokens(
        self, inputs: PromptInputs, pixel_map: torch.Tensor
    ) -> list[torch.Tensor]:
        """Pool a per-pixel relevance over ``pixel_values`` to each image's tokens.

        ``pixel_map`` has ``pixel_values``' shape without the channel dimension.
        """
        raise NotImplementedError(f"{type(self).__name__} has no pixel-to-token pooling")

    # ------------------------------------------------------------------ what baselines need
    @property
    def num_lm_layers(self) -> int:
        """Number of decoder layers of the language model (read from the text config)."""
        return int(self.model.config.get_text_config().num_hidden_layers)

    @property
    def attention_layers(self) -> list[int]:
        """Indices (from 0) of the language model's decoder layers that compute attention
        weights, in order; default all of them.

        Hybrid models override it: their other layers mix tokens without attention weights
        (e.g. Qwen3.5's Gated DeltaNet linear attention), and an eager forward's
        ``attentions`` then holds one entry per listed layer, in this order.
        """
        return list(range(self.num_lm_layers))

    @property
    def input_side(self) -> int:
        """Side in pixels of the model's native square input (336 for LLaVA-1.5).

        ViCrop sizes its crops in multiples of it. The default reads the image processor: its
        ``crop_size`` when it centre-crops, else ``size["height"]``, else
        ``size["shortest_edge"]`` unless ``size`` also has a ``longest_edge`` (then the two are
        pixel budgets of a dynamic-resolution processor, not a side). Adapters of
        dynamic-resolution models override it; ``NotImplementedError`` when unknown.
        """
        ip = getattr(self.processor, "image_processor", None)

        def field(size: Any, key: str) -> Any:
            return size.get(key) if isinstance(size, dict) else getattr(size, key, None)

        size = getattr(ip, "size", None)
        if getattr(ip, "do_center_crop", False) and field(getattr(ip, "crop_size", None), "height"):
            return int(field(ip.crop_size, "height"))
        if field(size, "height"):
            return int(field(size, "height"))
        if field(size, "shortest_edge") and not field(size, "longest_edge"):
            return int(field(size, "shortest_edge"))
        raise NotImplementedError(
            f"{type(self).__name__} does not know its native input side (dynamic resolution?)"
        )

    @property
    def supports_attention_weights(self) -> bool:
        """Whether eager attention (which returns attention weights) can be switched on."""
        from transformers import PreTrainedModel

        if getattr(self.model.config, "_attn_implementation", None) == "eager":
            return True
        for module in self.model.modules():
            if isinstance(module, PreTrainedModel) and not module._can_set_attn_implementation():
                return False
        return True

    @property
    def supports_pixel_space(self) -> bool:
        """Whether :meth:`pixel_relevance_to_tokens` is implemented (pixel-space methods)."""
        return type(self).pixel_relevance_to_tokens is not VLMAdapter.pixel_relevance_to_tokens

    def perturbed_logits(
        self, inputs: PromptInputs, features: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """Next-token logits for a batch of feature sets of one prompt.

        Parameters
        ----------
        features : sequence of Tensor of shape (batch, n_tokens, hidden)
            One per image of the prompt; row ``b`` of every tensor forms the ``b``-th set
            (captum's perturbed or interpolated inputs).

        Returns
        -------
        Tensor of shape (batch, vocab)
            Differentiable (the caller decides about gradients). The default runs one forward
            per set, which is right for every architecture, or one batched forward where
            :attr:`batch_by_repeating_prompt`.
        """
        n = features[0].shape[0]
        if self.batch_by_repeating_prompt:  # one forward; placeholders filled row-major
            flat = [f[b] for b in range(n) for f in features]
            return self.forward_features(repeat_prompt(inputs, n), flat).logits[:, -1]
        rows = [
            self.forward_features(inputs, [f[b] for f in features], last_only=True).logits[0, -1]
            for b in range(n)
        ]
        return torch.stack(rows)

    def perturbed_pixel_logits(
        self, inputs: PromptInputs, pixel_values: torch.Tensor
    ) -> torch.Tensor:
        """Next-token logits for a batch of ``pixel_values`` of one prompt.

        ``pixel_values`` has shape ``(batch, *inputs.batch["pixel_values"].shape)``; returns
        ``(batch, vocab)``. One forward (vision tower included) per row, or one in all where
        :attr:`batch_by_repeating_prompt`.
        """
        if self.batch_by_repeating_prompt:
            batch = dict(repeat_prompt(inputs, pixel_values.shape[0]).batch)
            batch["pixel_values"] = pixel_values.flatten(0, 1)
            return self.model(**batch, logits_to_keep=1).logits[:, -1]
        return torch.stack([self.pixel_logits(inputs, pv) for pv in pixel_values])

    def pixel_logits(self, inputs: PromptInputs, pixel_values: torch.Tensor) -> torch.Tensor:
        """Next-token logits of the prompt with these ``pixel_values`` (vision tower included).

        ``pixel_values`` has the shape of ``inputs.batch["pixel_values"]``; returns ``(V,)``,
        differentiable (the pixel-space methods take gradients at the pixels).
        """
        batch = {**inputs.batch, "pixel_values": pixel_values}
        return self.forward(replace(inputs, batch=batch), logits_to_keep=1).logits[0, -1]

    def resolution_settings(self) -> dict[str, Any]:
        """The processor settings that decide how an image becomes visual tokens.

        Sizes, pixel budgets (Qwen's min/max pixels), crops, tiling and token counts: results
        on real checkpoints move with them, so every results config and saved map records
        them (:func:`egg_interp.models.record.model_record`). The default reads them
        generically from the processor (:func:`egg_interp.models.record.processor_resolution`);
        an adapter whose model resizes, tiles or budgets images by other settings overrides
        this and returns those too (JSON-able values).
        """
        from egg_interp.models.record import processor_resolution

        return processor_resolution(self.processor)

    # ------------------------------------------------------------------ hygiene
    @contextmanager
    def attention_implementation(self, impl: str) -> Iterator[None]:
        """Temporarily switch the attention implementation (e.g. to ``"eager"``).

        What was set is restored per sub-model: a composite model may mix implementations
        (PaliGemma 2: its Gemma 2 language model supports only eager attention, its vision
        tower and the wrapper sdpa), and restoring one name everywhere would fail.
        """
        before = _attention_settings(self.model.config)
        if _leaves(before) <= {impl}:
            yield
            return
        self.model.set_attn_implementation(impl)
        try:
            yield
        finally:
            if _leaves(before) - {None}:
                self.model.set_attn_implementation(before)


def _attention_settings(config: Any) -> Any:
    """A config's attention implementation, as ``set_attn_implementation`` takes it back: the
    name, or ``{"": name, sub_config: ...}`` when it has sub-configs."""
    name = getattr(config, "_attn_implementation", None)
    subs = {k: getattr(config, k, None) for k in getattr(config, "sub_configs", {})}
    subs = {k: _attention_settings(c) for k, c in subs.items() if c is not None}
    return {"": name, **subs} if subs else name


def _leaves(settings: Any) -> set:
    if isinstance(settings, dict):
        return set().union(*(_leaves(v) for v in settings.values()))
    return {settings}


def _to_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """float32 numpy on the CPU (numpy has no bf16)."""
    if torch.is_tensor(x):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


PER_TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")
"""Processor outputs with one entry per prompt token (the Gemma families mark visual tokens
with ``token_type_ids`` or ``mm_token_type_ids``)."""


def repeat_prompt(inputs: PromptInputs, n: int) -> PromptInputs:
    """The one-row prompt repeated ``n`` times along the batch dimension, per-token inputs
    included (attention blocks and prefixes depend on them), pixel inputs left out."""
    batch = {k: inputs.batch[k].repeat(n, 1) for k in PER_TOKEN_KEYS if k in inputs.batch}
    return replace(inputs, batch=batch)


__all__ = [
    "ImageLayout",
    "PromptInputs",
    "VLMAdapter",
    "ViewLayout",
    "PER_TOKEN_KEYS",
    "regular_cell_boxes",
    "repeat_prompt",
]
