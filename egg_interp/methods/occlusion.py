"""Occlusion over square patches of the token grid, through captum's ``FeatureAblation``."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from captum.attr import FeatureAblation
from PIL import Image, ImageDraw

from egg_interp.errors import InputError
from egg_interp.methods.base import (
    Needs,
    first_position,
    logits_summary,
    prompt_logits,
    read_positions,
)
from egg_interp.methods.captum_base import CaptumMethod, build_problem
from egg_interp.methods.targets import Target
from egg_interp.models.base import PromptInputs, VLMAdapter


def patch_ids(inputs: PromptInputs, patch: int) -> list[np.ndarray]:
    """Feature id of every token: square ``patch x patch`` blocks of each view's grid.

    Ids are consecutive over the images (image 0 first) and unique across them; tokens in no
    view (e.g. row separators) form one extra feature per image.

    Returns
    -------
    list of ndarray of shape (n_tokens,), int64
    """
    out, start = [], 0
    for lay in inputs.layouts:
        ids = np.full(lay.n_tokens, -1, dtype=np.int64)
        for view in lay.views:
            rows, cols = view.token_index.shape
            r, c = np.meshgrid(np.arange(rows) // patch, np.arange(cols) // patch, indexing="ij")
            local = r * -(-cols // patch) + c
            _, dense = np.unique(local, return_inverse=True)
            ids[view.token_index.ravel()] = start + dense.ravel()
            start += int(dense.max()) + 1
        if (ids < 0).any():
            ids[ids < 0] = start
            start += 1
        out.append(ids)
    return out


def occlude_image(image: Image.Image, boxes: np.ndarray, fill: tuple[int, int, int]) -> Image.Image:
    """``image`` with the pixel rectangles ``boxes`` (n, 4; x0, y0, x1, y1) painted ``fill``."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        if x1 > x0 and y1 > y0:
            draw.rectangle((round(x0), round(y0), round(x1) - 1, round(y1) - 1), fill=fill)
    return out


class OcclusionMethod(CaptumMethod):
    """Change of the target when one patch of visual tokens is replaced by a baseline.

    ``FeatureAblation`` with a feature mask grouping the tokens into ``patch x patch`` blocks
    of each token grid (captum's ``Occlusion`` slides boxes over tensor axes, which for a
    ``(n_tokens, hidden)`` sequence are not 2-D patches of the grid). The value of a token is
    ``target(input) - target(input with its patch ablated)``, the same for every token of the
    patch.

    Spaces: ``"tokens"`` (default) replaces the patch's token embeddings by the baseline
    (``"mean"``: the image's mean visual embedding; ``"zeros"``) and reruns only the language
    model on cached features. ``"pixels"`` paints the patch's pixel rectangles in the original
    image (``"mean"``: the image's mean colour; ``"zeros"``: black) and reruns the processor and
    the whole model, as captum's ``ImageMaskInput`` does, so the vision tower sees the
    occlusion; captum's ``LLMAttribution`` is not used because it explains the log-probability
    of a target string, not the shared targets.

    Parameters
    ----------
    patch : int, default 2
        Patch side in grid cells.
    perturbations_per_eval : int, default 16
        Patches evaluated per forward (one batch; memory).
    reduce : {"abs", "signed"}, default "abs"
        ``"abs"``: the size of the change (non-negative; a target can move either way);
        ``"signed"``: the change itself.
    **options
        ``target``, ``answer_step``, ``space``, ``baseline``.

    Cost: one forward per patch plus one for the unperturbed input, and 1 for the metadata.
    """

    name: ClassVar[str] = "occlusion"
    needs: ClassVar[Needs] = Needs(forwards=1, scales_with="patches", extra_forwards=2)
    default_reduce: ClassVar[str] = "abs"

    def __init__(
        self,
        target: str | Target | None = None,
        answer_step: int = 1,
        patch: int = 2,
        perturbations_per_eval: int = 16,
        reduce: str = "abs",
        **options: Any,
    ) -> None:
        if reduce not in ("abs", "signed"):
            raise InputError(f"occlusion: reduce must be 'abs' or 'signed', not {reduce!r}")
        if patch < 1:
            raise InputError(f"occlusion: patch must be >= 1 cell, not {patch!r}")
        super().__init__(target, answer_step, reduce="sum", **options)
        self.reduce, self.patch, self.perturbations_per_eval = reduce, patch, perturbations_per_eval

    def relevance(
        self, adapter: VLMAdapter, inputs: PromptInputs, target: Target
    ) -> tuple[list[torch.Tensor], dict[str, Any]]:
        ids = patch_ids(inputs, self.patch)
        if self.space == "tokens":
            problem = build_problem(adapter, inputs, target, "tokens", self.baseline)
            masks = tuple(torch.as_tensor(i, device=adapter.device)[None, :, None] for i in ids)
            attr = FeatureAblation(problem.forward).attribute(
                problem.xs,
                baselines=problem.baselines,
                feature_mask=masks,
                perturbations_per_eval=self.perturbations_per_eval,
            )
            rel = [a[0, :, 0].float() for a in attr]
        else:
            per_feature = self._pixel_ablation(adapter, inputs, target, ids)
            rel = [per_feature[torch.as_tensor(i)] for i in ids]
        if self.reduce == "abs":
            rel = [r.abs() for r in rel]
        logits = prompt_logits(adapter, inputs, target)
        n_patches = int(max(i.max() for i in ids)) + 1
        meta = {"objective": float(target(logits)), "patches": n_patches, "space": self.space}
        return rel, {**meta, **logits_summary(adapter, first_position(logits, target))}

    def _pixel_ablation(
        self, adapter: VLMAdapter, inputs: PromptInputs, target: Target, ids: list[np.ndarray]
    ) -> torch.Tensor:
        """Attribution per feature id, ablating in the original images' pixels."""
        n = int(max(i.max() for i in ids)) + 1
        fills = [
            (0, 0, 0)
            if self.baseline == "zeros"
            else tuple(int(v) for v in np.asarray(im.convert("RGB")).mean((0, 1)).round())
            for im in inputs.images
        ]
        boxes = []  # per image: the cell box of every token (rows in feature order)
        for lay in inputs.layouts:
            b = np.zeros((lay.n_tokens, 4))
            for view in lay.views:
                b[view.token_index.ravel()] = view.cell_boxes.reshape(-1, 4)
            boxes.append(b)
        origins = [lay.origin_box for lay in inputs.layouts]

        def forward(present: torch.Tensor) -> torch.Tensor:
            rows = []
            for keep in present.bool().cpu().numpy():
                images = [
                    occlude_image(im, b[~keep[i]], fill)
                    for im, b, i, fill in zip(inputs.images, boxes, ids, fills)
                ]
                built = adapter.build_inputs(images, inputs.question, origin_boxes=origins)
                built = adapter.extend(built, inputs.answer_ids)
                out = adapter.forward(built, logits_to_keep=target.positions)
                rows.append(read_positions(out.logits, target)[0])
            return target(torch.stack(rows))

        ones = torch.ones(1, n, device=adapter.device)
        attr = FeatureAblation(forward).attribute(
            ones, baselines=0.0, perturbations_per_eval=self.perturbations_per_eval
        )
        return attr[0].float().cpu()
