"""Grad-CAM (Selvaraju et al., 2017) on the visual tokens, through captum's ``LayerGradCam``."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from captum.attr import LayerGradCam
from torch import nn

from egg_interp.methods.captum_base import CaptumMethod, CaptumProblem
from egg_interp.models.base import PromptInputs


class TokenGrids(nn.Module):
    """The layer Grad-CAM reads: every view's tokens reshaped to ``(N, C, rows, cols)``.

    ``forward`` takes one ``(N, n_tokens, hidden)`` tensor per image and returns a tuple of
    grids, one per (image, view) in prompt order; :meth:`scatter` writes the grids back into
    the token sequences, so the gradient reaches the grids.
    """

    def __init__(self, inputs: PromptInputs) -> None:
        super().__init__()
        self.index = [[torch.as_tensor(v.token_index) for v in lay.views] for lay in inputs.layouts]

    def forward(self, *feats: torch.Tensor) -> tuple[torch.Tensor, ...]:
        grids = []
        for f, views in zip(feats, self.index):
            for idx in views:
                g = f[:, idx.to(f.device).flatten()]  # (N, rows * cols, C)
                grids.append(g.transpose(1, 2).reshape(f.shape[0], -1, *idx.shape))
        return tuple(grids)

    def scatter(self, feats: tuple[torch.Tensor, ...], grids: tuple[torch.Tensor, ...]) -> list:
        out, k = [], 0
        for f, views in zip(feats, self.index):
            f = f.clone()
            for idx in views:
                f[:, idx.to(f.device).flatten()] = grids[k].flatten(2).transpose(1, 2)
                k += 1
            out.append(f)
        return out


class GradCamMethod(CaptumMethod):
    """``ReLU(sum_c mean_ij(d target / d A_c) * A_c)`` over each token grid.

    The "last vision layer" is the one whose output the language model reads: the
    post-projector visual tokens (for LLaVA the last vision layer proper is not even used;
    features come from layer -2). Its tokens are reshaped to their grid ``(1, hidden, rows,
    cols)`` per view via the adapter's layout (:class:`TokenGrids`), and captum's
    ``LayerGradCam`` (``relu_attributions=True``) averages the gradient over each grid. Being a
    layer method it has no pixel variant: the activations and their gradients at that layer
    are the same whether the forward starts from pixels or from the cached features, so
    ``space`` is always ``"tokens"``. Cost: 1 forward + 1 backward, plus 1 forward for the
    metadata.
    """

    name: ClassVar[str] = "gradcam"
    pixel_space: ClassVar[bool] = False

    def captum_attribute(
        self, problem: CaptumProblem
    ) -> tuple[tuple[torch.Tensor, ...], dict[str, Any]]:
        layer = TokenGrids(problem.inputs)
        adapter, inputs = problem.adapter, problem.inputs

        def forward(*feats: torch.Tensor) -> torch.Tensor:
            flat = layer.scatter(feats, layer(*feats))
            return problem.forward(*flat)

        cams = LayerGradCam(forward, layer).attribute(problem.xs, relu_attributions=True)
        cams = cams if isinstance(cams, tuple) else (cams,)
        out, k = [], 0
        for lay in inputs.layouts:
            rel = torch.zeros(lay.n_tokens, device=adapter.device)
            for view in lay.views:
                idx = torch.as_tensor(view.token_index, device=rel.device).flatten()
                rel[idx] = cams[k][0, 0].flatten().float()
                k += 1
            out.append(rel[None, :, None])
        return tuple(out), {"layer": "visual tokens"}
