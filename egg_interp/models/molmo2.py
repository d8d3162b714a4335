"""Adapter for ``molmo2`` checkpoints (Molmo 2: overlapping crops pooled through an index table).

Layout. Per image the image processor makes two views, both squashed (aspect not kept):

* the **low-resolution view**: the whole image resized to S x S (``size``, 378 for Molmo 2),
  the vision tower's crop 0;
* the **high-resolution canvas**: ``compute_crop_geometry`` picks a tiling ``th x tw`` of at
  most ``max_crops`` windows, the image is resized to ``th * w + m`` by ``tw * w + m`` pixels
  (``w = S - m`` the window, ``m`` the two overlap margins, 4 + 4 patches of 14 px for
  Molmo 2) and cut into S x S crops at stride ``w``: neighbouring crops **overlap** by ``m``.

The vision tower sees each crop's ``(S / patch)^2`` patches; its 2x2 attention pooling reads,
for every visual token, the patches listed in its row of ``image_token_pooling`` (an
explicit index table, ``-1`` for padding). The low-resolution view's tokens come first
(``ceil(S / patch / 2)^2``, 14 x 14 for Molmo 2), then the canvas's, row-major. Each canvas
patch is read from exactly one crop (the inner margins of overlapping crops are dropped from
the table), so the high-resolution tokens **tile the canvas although the crops overlap**. In
the prompt each image is ``<low_res_im_start>`` + rows of ``<im_patch>`` x cols + ``<im_col>``
+ ``<im_end>``, then ``<im_start>`` + the canvas rows likewise + ``<im_end>``.

Views: ``"low_res"`` and ``"high_res"``, one grid each. Each token's rectangle is read from
the pooling table the processor returned (:func:`pooled_token_boxes`): the union of its
patches, placed at their crop's origin (the crop origins come from transformers'
``compute_crop_geometry`` and are checked against the crop count), then scaled from the view
(S x S, or the canvas) to the original image. This is exact, not a tolerance: tokens whose
pooling window is padded cover one patch in that direction (S / patch is odd for Molmo 2,
so the last row and column of the low-resolution grid are half as tall or wide).

Both resizes are bilinear **without antialiasing** (as transformers' processor does): when
a view is more than about 2x smaller than the image, some original pixels are sampled by no
processed pixel (1-pixel holes), so their content reaches no token although they lie inside
token rectangles. ``<im_col>`` and the start/end markers carry no image feature.

Hook: ``get_image_features(...).pooler_output``, one ``(T_i, H)`` tensor per image. The model
**adds** these features to the embedding of each ``<im_patch>`` placeholder instead of
replacing it: the gradient at the features equals the gradient at those input embeddings, and
a method that swaps features for a baseline (e.g. zeros) leaves the placeholder's own
embedding, so "no image content" is the bare ``<im_patch>`` embedding. The token count check
counts ``<im_patch>`` (the config's ``image_token_id``), one feature row each.

Positions are 1-D. **All image tokens of a prompt share one bidirectional attention block**
(every ``mm_token_type_ids == 1`` token: patches and markers of every image). So each image's
hidden states depend on every other image of the prompt, later ones included. For the
zoom-and-reground loop this means: a later step's map of the original (original + crops in
one prompt) differs from the original-alone map not only because the answer position sees the
crops, but because the original's own tokens attend to the crops' tokens; the stopping rule
compares the original's maps across steps with both effects in them, and an image's relevance
includes paths through the other images' tokens, which a per-token map cannot separate. A
cached prefix cannot be extended with more images (the original's keys would be stale); the
toolkit only continues the recorded forward of the identical prompt, which stays exact.
``mm_token_type_ids`` is passed on every forward (it builds the block) and extended with
zeros (text) for appended answer tokens.

Pixel-space methods are refused: ``pixel_values`` holds flattened patches of overlapping
crops, not an image-shaped tensor.

Without torchvision: transformers' ``Molmo2ImageProcessor`` is a torchvision-backend class.
:class:`Molmo2ImageProcessor` here is that class with only torchvision's two primitives
replaced by torch's own (``torch.nn.functional.interpolate`` for the bilinear resize, the
``(x - mean) / std`` for normalisation: what torchvision's functional ``resize`` and
``normalize`` compute on float tensors); crop geometry, unfolding, the pooling table and the
patch layout are transformers' own code. ``Molmo2Processor`` (placeholder expansion, BOS,
``mm_token_type_ids``) is transformers' class, built without its video processor
(:func:`processor_class_without_video`). With torchvision installed, ``load_model`` uses
``AutoProcessor`` as is.

Video: every frame goes through the low-resolution path only (squashed to S x S, bilinear
without antialiasing; one crop per frame) and its patches are pooled 3 x 3 (the video
processor's ``pooling_size``; 9 x 9 tokens of 27 x 27 patches for Molmo 2) through
``video_token_pooling``; the prompt holds, per frame, its time (``12.5``) and
``<frame_start>`` + rows of ``<im_patch>`` + ``<frame_end>``. Each frame is one layout
(``"frame"`` view, every token sees one frame), its rectangles read from the table
(:func:`pooled_token_boxes`, padded windows at the last row and column). Without torchvision
:class:`Molmo2VideoFrames` is transformers' ``Molmo2VideoProcessor`` with torch's resize and
normalisation, its own ``_preprocess`` called on the sampled frames. The model takes
``pixel_values`` or ``pixel_values_videos``, never both, and one video per prompt: a prompt
with a video and images is refused in one line (:attr:`Molmo2Adapter.video_with_images`).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from transformers import Molmo2Processor, ProcessorMixin
from transformers.utils import is_torchvision_available

from egg_interp.models.base import ImageLayout, PromptInputs, ViewLayout, VLMAdapter
from egg_interp.models.processors import image_only_processor_class
from egg_interp.video import Video

# the real module (``transformers.models.molmo2.image_processing_molmo2`` through the package
# attribute is a placeholder without torchvision; its pure functions need none)
_tf_molmo2 = importlib.import_module("transformers.models.molmo2.image_processing_molmo2")
compute_crop_geometry = _tf_molmo2.compute_crop_geometry
_tf_molmo2_video = importlib.import_module("transformers.models.molmo2.video_processing_molmo2")


class Molmo2ImageProcessor(_tf_molmo2.Molmo2ImageProcessor):
    """transformers' ``Molmo2ImageProcessor`` with torch's resize and normalisation.

    Same name, settings and outputs (``pixel_values``, ``image_token_pooling``,
    ``image_grids``, ``image_num_crops``); only the two torchvision calls are replaced by what
    they compute on float tensors. Saved checkpoints name ``Molmo2ImageProcessor``, which
    transformers loads as its own class when torchvision is installed.
    """

    def resize(
        self, image: torch.Tensor, size: Any, resample: Any = None, antialias: bool = True, **_: Any
    ) -> torch.Tensor:
        """Bilinear resize of ``(N, C, H, W)`` float images to ``(size.height, size.width)``."""
        if resample not in (None, 2):  # PILImageResampling.BILINEAR
            raise ValueError(
                f"Molmo2ImageProcessor without torchvision resizes bilinearly only, not {resample}"
            )
        return torch.nn.functional.interpolate(
            image,
            size=(int(size.height), int(size.width)),
            mode="bilinear",
            align_corners=False,
            antialias=antialias,
        )

    def normalize(
        self, image: torch.Tensor, mean: Any, std: Any, inplace: bool = False, **_: Any
    ) -> torch.Tensor:
        """``(image - mean) / std`` per channel (axis -3)."""
        mean = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
        std = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
        return image.sub_(mean).div_(std) if inplace else (image - mean) / std


class Molmo2VideoFrames(_tf_molmo2_video.Molmo2VideoProcessor):
    """transformers' ``Molmo2VideoProcessor`` with :class:`Molmo2ImageProcessor`'s torch resize
    and normalisation, called on already sampled frames: its own ``_preprocess`` (low-resolution
    view per frame, patches, pooling table with frame offsets, ``video_grids``)."""

    resize = Molmo2ImageProcessor.resize
    normalize = Molmo2ImageProcessor.normalize

    def __call__(
        self, videos: Any, video_metadata: Any = None, return_tensors: str | None = None, **_: Any
    ) -> Any:
        from transformers.video_utils import VideoMetadata

        frames = [
            torch.as_tensor(np.stack([np.asarray(f.convert("RGB")) for f in video])).permute(
                0, 3, 1, 2
            )
            for video in videos
        ]
        out = self._preprocess(
            frames,
            size=self.size,
            resample=self.resample,
            do_rescale=self.do_rescale,
            rescale_factor=self.rescale_factor,
            do_normalize=self.do_normalize,
            image_mean=self.image_mean,
            image_std=self.image_std,
            patch_size=self.patch_size,
            pooling_size=self.pooling_size,
            return_tensors=return_tensors,
        )
        metas = list(video_metadata) if video_metadata is not None else [None] * len(videos)
        out["video_metadata"] = [
            m if isinstance(m, VideoMetadata) else VideoMetadata(len(v))
            for m, v in zip(metas, videos, strict=True)
        ]
        return out


class _PositionalWithoutVideo(ProcessorMixin):
    """Sits between ``Molmo2Processor`` and ``ProcessorMixin``: ``Molmo2Processor.__init__``
    passes ``(image_processor, video_processor, tokenizer)`` positionally; the video slot
    (``None``) is dropped here."""

    def __init__(self, image_processor: Any, video_processor: Any, tokenizer: Any, **kwargs: Any):
        ProcessorMixin.__init__(self, image_processor, tokenizer, **kwargs)


def _init_without_video(
    self: Any, image_processor: Any = None, tokenizer: Any = None, **kwargs: Any
) -> None:
    Molmo2Processor.__init__(self, image_processor, None, tokenizer, **kwargs)


def processor_class_without_video() -> type:
    """``Molmo2Processor`` with only its image processor and tokenizer (same name, same text
    expansion and settings): :func:`~egg_interp.models.processors.image_only_processor_class`
    (which saves and loads the two sub-processors), called as ``(image_processor, tokenizer,
    ...)``, and ``Molmo2Processor.__init__`` run with the video slot empty."""
    base = image_only_processor_class(Molmo2Processor)
    return type(
        "Molmo2Processor",
        (base, _PositionalWithoutVideo),
        {"__module__": Molmo2Processor.__module__, "__init__": _init_without_video},
    )


def load_processor_without_torchvision(source: str) -> Any:
    """The checkpoint's ``Molmo2Processor`` built with :class:`Molmo2ImageProcessor` and no
    video processor, from its own saved settings (``processor_config.json``, tokenizer,
    chat template)."""
    from transformers import AutoTokenizer

    cls = processor_class_without_video()
    processor_dict, kwargs = cls.get_processor_dict(source)
    args = [Molmo2ImageProcessor.from_pretrained(source), AutoTokenizer.from_pretrained(source)]
    return cls.from_args_and_dict(args, processor_dict, **kwargs)


def pooled_token_boxes(
    table: np.ndarray, side: int, patch: int, origins: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The pixel rectangle each pooled token reads, from its row of the pooling table.

    Parameters
    ----------
    table : ndarray of shape (n_tokens, k), int
        Indices into one image's patches (crop-major: crop ``c`` holds patches
        ``c * side^2`` to ``(c + 1) * side^2 - 1``, row-major within the crop); ``-1`` pads.
    side : int
        Patches per crop side.
    patch : int
        Patch side in processed pixels.
    origins : ndarray of shape (n_crops, 2)
        ``(x, y)`` of each crop's top-left corner in its frame's pixels.

    Returns
    -------
    boxes : ndarray of shape (n_tokens, 4), float64
        ``(x0, y0, x1, y1)``: the union of the token's patches, in frame pixels.
    crops : ndarray of shape (n_tokens, 2), int
        The first and last crop the token reads (rows of ``origins``).

    Examples
    --------
    >>> t = np.array([[0, 1, 3, 4], [2, -1, 5, -1], [9, 10, -1, -1]])
    >>> boxes, crops = pooled_token_boxes(t, side=3, patch=10, origins=np.array([[0, 0], [20, 0]]))
    >>> boxes.tolist()
    [[0.0, 0.0, 20.0, 20.0], [20.0, 0.0, 30.0, 20.0], [20.0, 0.0, 40.0, 10.0]]
    >>> crops.tolist()
    [[0, 0], [0, 0], [1, 1]]
    """
    table = np.asarray(table)
    valid = table >= 0
    if not valid.any(axis=1).all():
        raise ValueError("a token of the pooling table reads no patch")
    crop = np.where(valid, table // (side * side), 0)
    within = table % (side * side)
    x = np.asarray(origins)[crop, 0] + (within % side) * patch
    y = np.asarray(origins)[crop, 1] + (within // side) * patch
    boxes = np.stack(
        [
            np.where(valid, x, np.inf).min(1),
            np.where(valid, y, np.inf).min(1),
            np.where(valid, x, -np.inf).max(1) + patch,
            np.where(valid, y, -np.inf).max(1) + patch,
        ],
        axis=-1,
    ).astype(np.float64)
    crops = np.stack(
        [np.where(valid, crop, np.iinfo(np.int64).max).min(1), np.where(valid, crop, -1).max(1)],
        axis=-1,
    )
    return boxes, crops


def _side(size: Any) -> int:
    height = size["height"] if isinstance(size, dict) else size.height
    width = size["width"] if isinstance(size, dict) else size.width
    if height != width:
        raise ValueError(f"Molmo 2 crops are square, got {height} x {width}")
    return int(height)


class Molmo2Adapter(VLMAdapter):
    """Molmo 2: a low-resolution view and a canvas of overlapping crops, pooled by a table."""

    model_types = ("molmo2",)
    image_token = "<|image|>"
    pixel_keys: ClassVar[tuple[str, ...]] = (
        "pixel_values",
        "image_token_pooling",
        "image_grids",
        "image_num_crops",
        "pixel_values_videos",
        "video_token_pooling",
        "video_grids",
    )

    video_with_images: ClassVar[bool] = False
    """``Molmo2Model`` refuses ``pixel_values`` next to ``pixel_values_videos``."""

    def pil_video_processor(self) -> Molmo2VideoFrames:
        """:class:`Molmo2VideoFrames` with the image processor's crop side, patch, rescaling and
        normalisation, and the checkpoint's video settings (else transformers' defaults:
        3 x 3 pooling, bilinear). ``Molmo2VideoProcessor`` itself leaves ``do_rescale`` and
        ``do_normalize`` unset (no rescaling, no normalisation) unless its config sets them;
        the image processor's are taken instead, as a video frame is the image's low-resolution
        view."""
        if getattr(self, "_pil_video_processor", None) is None:
            from egg_interp.models.video_inputs import saved_video_config

            ip = self.processor.image_processor
            names = ("patch_size", "image_mean", "image_std", "do_rescale", "rescale_factor")
            settings = {k: getattr(ip, k) for k in (*names, "do_normalize")}
            settings["size"] = {"height": _side(ip.size), "width": _side(ip.size)}
            saved = saved_video_config(getattr(self.model, "name_or_path", None) or None)
            names = (*names, "size", "pooling_size", "do_normalize", "resample")
            settings.update({k: saved[k] for k in names if saved.get(k) is not None})
            self._pil_video_processor = Molmo2VideoFrames(**settings)
        return self._pil_video_processor

    def video_layouts(self, videos: Sequence[Video], batch: dict[str, Any]) -> list[ImageLayout]:
        """One layout per frame: its pooled grid over the squashed frame, each token's box the
        union of the patches its row of ``video_token_pooling`` reads."""
        vp = self.pil_video_processor()
        crop, patch = _side(vp.size), int(vp.patch_size)
        side = crop // patch
        pooling = batch["video_token_pooling"].cpu().numpy().astype(np.int64)
        out, token0, patch0 = [], 0, 0
        for v, (video, grid) in enumerate(zip(videos, batch["video_grids"].tolist(), strict=True)):
            frames, rows, cols = grid
            if frames != video.n_frames:
                raise RuntimeError(f"Molmo2Adapter: {frames} frames encoded of {video.n_frames}")
            width, height = video.size
            scale = np.array([width / crop, height / crop, width / crop, height / crop])
            for f, t in enumerate(video.timestamps):
                table = pooling[token0 : token0 + rows * cols]
                table = np.where(table >= 0, table - patch0, -1)
                boxes, _ = pooled_token_boxes(table, side, patch, np.zeros((1, 2)))
                view = ViewLayout(
                    "frame",
                    np.arange(rows * cols).reshape(rows, cols),
                    (boxes * scale).reshape(rows, cols, 4),
                )
                box = (0.0, 0.0, float(width), float(height))
                out.append(ImageLayout(video.size, rows * cols, [view], box, (f,), (t,), v))
                token0, patch0 = token0 + rows * cols, patch0 + side * side
        return out

    def compute_video_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        b = inputs.batch
        out = self.model.model.get_video_features(
            pixel_values_videos=b["pixel_values_videos"],
            video_token_pooling=b["video_token_pooling"],
            video_grids=b["video_grids"],
            return_dict=True,
        )
        return list(out.pooler_output)

    @classmethod
    def load_processor(cls, source: str, model_type: str) -> Any:
        """``AutoProcessor`` with torchvision; without it, transformers' ``Molmo2Processor``
        built with :class:`Molmo2ImageProcessor` and no video processor."""
        if is_torchvision_available():
            return super().load_processor(source, model_type)
        return load_processor_without_torchvision(source)

    def fallback_prompt(self, n_images: int, text: str) -> str:
        images = self.image_token * n_images
        return f"<|im_start|>user\n{images}{text}<|im_end|>\n<|im_start|>assistant\n"

    def fallback_video_prompt(self, n_videos: int, n_images: int, text: str) -> str:
        """ChatML with ``<|video|>`` (the processor's video token) before the question."""
        return self.fallback_prompt(0, self.processor.video_token * n_videos + text)

    def image_layout(
        self, image: Image.Image, table: np.ndarray, grid: Sequence[int], n_crops: int
    ) -> ImageLayout:
        """Views of one image from its rows of the pooling table (indices local to the image).

        ``grid`` is ``(low_rows, low_cols, high_rows, high_cols)`` (``image_grids``) and
        ``n_crops`` the image's crop count, the low-resolution view included.
        """
        ip = self.processor.image_processor
        width, height = image.size
        crop, patch = _side(ip.size), int(ip.patch_size)
        side = crop // patch
        tiling_h, tiling_w, canvas_h, canvas_w = compute_crop_geometry(
            height, width, ip.max_crops, ip.overlap_margins, crop, patch
        )
        if n_crops != tiling_h * tiling_w + 1:
            raise RuntimeError(
                f"Molmo2Adapter: the processor made {n_crops} crops of a {width}x{height} image, "
                f"the crop geometry predicts {tiling_h * tiling_w + 1}"
            )
        window = (side - sum(ip.overlap_margins)) * patch
        origins = [(0, 0)] + [
            (j * window, i * window) for i in range(tiling_h) for j in range(tiling_w)
        ]
        boxes, crops = pooled_token_boxes(table, side, patch, np.array(origins))
        low_rows, low_cols, high_rows, high_cols = (int(g) for g in grid)
        n_low = low_rows * low_cols
        if (crops[:n_low] != 0).any() or (crops[n_low:] == 0).any():
            raise RuntimeError("Molmo2Adapter: a token pools patches of both views")
        views = []
        for name, rows, cols, start, (fw, fh) in (
            ("low_res", low_rows, low_cols, 0, (crop, crop)),
            ("high_res", high_rows, high_cols, n_low, (canvas_w, canvas_h)),
        ):
            scale = np.array([width / fw, height / fh, width / fw, height / fh])
            cells = boxes[start : start + rows * cols] * scale
            index = start + np.arange(rows * cols).reshape(rows, cols)
            views.append(ViewLayout(name, index, cells.reshape(rows, cols, 4)))
        return ImageLayout((width, height), len(table), views)

    def layouts(self, images: Sequence[Image.Image], batch: dict[str, Any]) -> list[ImageLayout]:
        pooling = batch["image_token_pooling"].cpu().numpy().astype(np.int64)
        grids = batch["image_grids"].tolist()
        n_crops = batch["image_num_crops"].tolist()
        side = _side(self.processor.image_processor.size) // int(
            self.processor.image_processor.patch_size
        )
        if len(grids) != len(images):
            raise RuntimeError(
                f"Molmo2Adapter: the processor returned {len(grids)} image grids for "
                f"{len(images)} images"
            )
        out, token0, patch0 = [], 0, 0
        for im, grid, crops in zip(images, grids, n_crops, strict=True):
            n = grid[0] * grid[1] + grid[2] * grid[3]
            rows = pooling[token0 : token0 + n]
            table = np.where(rows >= 0, rows - patch0, -1)
            out.append(self.image_layout(im, table, grid, crops))
            token0, patch0 = token0 + n, patch0 + crops * side * side
        return out

    def compute_image_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        out = self.model.model.get_image_features(
            pixel_values=inputs.batch["pixel_values"],
            image_token_pooling=inputs.batch["image_token_pooling"],
            image_grids=inputs.batch["image_grids"],
            return_dict=True,
        )
        return list(out.pooler_output)

    def extend_extra(self, batch: dict[str, Any], n: int) -> dict[str, Any]:
        """Appended answer tokens are text (``mm_token_type_ids`` 0): outside the image block."""
        types = batch.get("mm_token_type_ids")
        if types is not None:
            pad = torch.zeros((types.shape[0], n), dtype=types.dtype, device=types.device)
            batch["mm_token_type_ids"] = torch.cat([types, pad], dim=1)
        return batch
