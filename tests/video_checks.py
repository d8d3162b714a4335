"""Checks shared by the per-architecture video tests (the architectures that take video).

* **layout by perturbation**: with the vision tower token-local, inverting a 2x2 patch of one
  frame changes the covering token of that frame's temporal slice, only tokens of that slice,
  and only within resampling reach (a Qwen-style token spans two frames: perturbing either
  frame of a pair moves the same token);
* **pixels**: the torchvision-free video processor gives a video of two identical frames
  exactly the pixels and grid the image processor gives the image (transformers' own patch
  order), and the vision tower the same features;
* **grid rules**: the grid of every size and frame count follows transformers' video rule
  (its own ``get_num_of_video_patches`` where the class can be built without torchvision);
* **features = pixels**: the language model on precomputed slice features gives the model's
  own logits from ``pixel_values_videos`` (so the scatter and the 3-D positions agree);
* entropy gradient = finite differences, greedy decoding = ``generate``, every method.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from arch_checks import CHEAP, PIXEL_VARIANTS, _covering, _hook_count, bicubic_reach
from conftest import noise_image

from egg_interp.methods import make_target
from egg_interp.methods.base import visual_token_gradients
from egg_interp.video import Video

QUESTION = "what colour is the square ?"


def noise_video(size, n_frames, fps=4.0, seed=0) -> Video:
    """``n_frames`` independent noise frames of ``size`` (every token sees structure)."""
    return Video.from_frames([noise_image(*size, seed=seed + k) for k in range(n_frames)], fps)


def _video_features(adapter, video, images=()):
    inputs = adapter.build_inputs(list(images), QUESTION, videos=[video])
    adapter.clear_cache()
    return adapter.image_features(inputs), inputs.layouts


def _with_frame(video, f, frame) -> Video:
    frames = list(video.frames)
    frames[f] = frame
    return Video(tuple(frames), video.indices, video.fps, video.total_frames)


def _invert(image, x, y, size=2):
    arr = np.asarray(image).copy()
    arr[y : y + size, x : x + size] = 255 - arr[y : y + size, x : x + size]
    from PIL import Image

    return Image.fromarray(arr)


def check_video_layout_by_perturbation(adapter, size, n_frames, cell_px, seed=0):
    """Perturb one patch of one frame: only the covering tokens of that frame's slice change.

    Every frame of the video is probed once (so both frames of a temporal pair, and a last
    frame repeated to fill its pair), at the centre of a random cell of its slice's grid.
    """
    video = noise_video(size, n_frames, seed=seed + 1)
    before, layouts = _video_features(adapter, video)
    assert [f for lay in layouts for f in lay.frames] == list(range(n_frames))
    for lay in layouts:
        assert lay.timestamps == tuple(video.timestamps[f] for f in lay.frames)
        assert lay.image_size == video.size and lay.is_video
    rng = np.random.default_rng(seed)
    for f in range(n_frames):
        s = next(i for i, lay in enumerate(layouts) if f in lay.frames)
        (view,) = layouts[s].views
        rows, cols = view.token_index.shape
        r, c = int(rng.integers(rows)), int(rng.integers(cols))
        x0, y0, x1, y1 = view.cell_boxes[r, c]
        px, py = int((x0 + x1) / 2) - 1, int((y0 + y1) / 2) - 1
        after, _ = _video_features(adapter, _with_frame(video, f, _invert(video.frames[f], px, py)))
        changed = {
            (i, t)
            for i, (a, b) in enumerate(zip(after, before, strict=True))
            for t in torch.nonzero((a - b).abs().amax(dim=-1) > 1e-5).flatten().tolist()
        }
        assert (s, int(view.token_index[r, c])) in changed, (f, r, c)
        assert {i for i, _ in changed} == {s}, f"frame {f}: tokens of other slices changed"
        sx = float(np.median(view.cell_boxes[..., 2] - view.cell_boxes[..., 0])) / cell_px
        sy = float(np.median(view.cell_boxes[..., 3] - view.cell_boxes[..., 1])) / cell_px
        rx, ry = bicubic_reach(view.name, sx, sy)
        allowed = _covering(view, px - rx, py - ry, px + 2 + rx, py + 2 + ry)
        assert {t for _, t in changed} <= allowed, (f, px, py)
    return layouts


def check_video_pixels_match_image(adapter, size):
    """Two identical frames = one still image: same grid, pixels and vision features.

    Runs the torchvision-free video processor directly (the one the CPU path uses), so it
    checks its resize, normalisation and patch order against transformers' image processor.
    """
    image = noise_image(*size, seed=5)
    video = Video.from_frames([image, image])
    still = adapter.build_inputs([image], QUESTION)
    vp = adapter.pil_video_processor()
    out = vp([list(video.frames)], video_metadata=[video.metadata()], return_tensors="pt")
    assert out["video_grid_thw"].tolist() == still.batch["image_grid_thw"].tolist()
    np.testing.assert_allclose(
        out["pixel_values_videos"].numpy(), still.batch["pixel_values"].float().numpy(), atol=1e-5
    )
    moving = adapter.build_inputs([], QUESTION, videos=[video])
    adapter.clear_cache()
    torch.testing.assert_close(
        torch.cat(adapter.image_features(moving)), torch.cat(adapter.image_features(still))
    )


def check_video_grid_rule(adapter, reference, sizes, frame_counts):
    """The video's token count for every size and frame count against ``reference(n, h, w)``,
    transformers' own count (the video processor's or processor's rule); Qwen-style grids
    also against the temporal patching (one slice of ``gh gw / 4`` tokens per 2 frames)."""
    for size in sizes:
        for n in frame_counts:
            video = noise_video(size, n, seed=n)
            inputs = adapter.build_inputs([], QUESTION, videos=[video])
            counts = [lay.n_tokens for lay in inputs.layouts]
            assert sum(counts) == reference(n, size[1], size[0]), (size, n)
            if "video_grid_thw" in inputs.batch:
                t, gh, gw = inputs.batch["video_grid_thw"][0].tolist()
                assert t == -(-n // adapter.temporal_patch_size)
                assert counts == [gh * gw // 4] * t


def check_video_features_match_pixels(adapter, video, images=()):
    """Logits from precomputed slice features equal the model's own from the pixels."""
    inputs = adapter.build_inputs(list(images), QUESTION, videos=[video])
    with torch.no_grad():
        ours = adapter.forward_features(inputs, adapter.image_features(inputs)).logits[0, -1]
        theirs = adapter.forward(inputs, logits_to_keep=1).logits[0, -1]
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def check_video_entropy_gradient(adapter, video, images=(), eps=1e-3, rtol=1e-2):
    """EGG's gradient at video (and image) tokens against central finite differences.

    One check per slice and image, at its most sensitive coordinate. Within 1 %: the tiny
    models' gradients are ~1e-4 (a near-uniform next-token distribution) and RMSNorm computes
    its variance in float32 even in a float64 model; a feature scattered to the wrong
    position or slice is off by far more."""
    tgt = make_target("entropy")
    inputs = adapter.build_inputs(list(images), "what colour ?", videos=[video])
    feats, grads, _, _ = visual_token_gradients(adapter, inputs, tgt)
    floor = 1e-3 * max(float(g.abs().max()) for g in grads)
    for part in range(len(feats)):
        token = int(grads[part].norm(dim=-1).argmax())
        dim = int(grads[part][token].abs().argmax())
        values = []
        for delta in (eps, -eps):
            moved = [f.clone() for f in feats]
            moved[part][token, dim] += delta
            with torch.no_grad():
                values.append(float(tgt(adapter.forward_features(inputs, moved).logits[0, -1])))
        fd = (values[0] - values[1]) / (2 * eps)
        assert abs(grads[part][token, dim].item() - fd) <= rtol * abs(fd) + floor, part


def check_video_greedy_matches_generate(adapter, video, n=3):
    """Greedy decoding on precomputed features (``extend``) equals ``model.generate`` from
    the video's pixels: the appended answer tokens get the model's positions."""
    inputs = adapter.build_inputs([], QUESTION, videos=[video])
    adapter.reset_positions()
    with torch.no_grad():
        out = adapter.model.generate(
            **inputs.batch,
            max_new_tokens=n,
            do_sample=False,
            pad_token_id=adapter.tokenizer.pad_token_id,
        )
    ids = adapter.greedy_tokens(inputs, out.shape[1] - inputs.input_ids.shape[1])
    assert out[0, inputs.input_ids.shape[1] :].tolist() == ids


def check_video_every_method(adapter, video, refused=None, images=None):
    """Every registered method maps a video prompt (finite, one grid per slice and image);
    pixel-space variants are refused in one line; no hook is left behind. ``images`` follow
    the video (default one 40 x 40 image)."""
    from egg_interp.errors import UnsupportedModelError
    from egg_interp.methods import METHODS, attribute, get_method

    refused = dict(refused or {})
    images = [noise_image(40, 40, 9)] if images is None else list(images)
    inputs = adapter.build_inputs(images, QUESTION, videos=[video])
    shapes = [[v.token_index.shape for v in lay.views] for lay in inputs.layouts]
    # transformers adds its output-capturing hooks at the first eager forward that returns
    # attentions, for good: warm it up, then count
    attribute(adapter, images, QUESTION, "raw_attention", videos=video)
    hooks = _hook_count(adapter.model)
    for name in sorted(METHODS):
        options = CHEAP.get(name, {})
        if getattr(get_method(name, **options), "space", "tokens") == "pixels":
            refused.setdefault(name, "pixels")  # pure-grad: pixel space only
        if name in refused:
            with pytest.raises(UnsupportedModelError, match=refused[name]):
                attribute(adapter, images, QUESTION, name, videos=video, **options)
            continue
        amap = attribute(adapter, images, QUESTION, name, videos=video, **options)
        assert [[v.shape for v in im.views] for im in amap.images] == shapes, name
        assert [im.frames for im in amap.images] == [lay.frames for lay in inputs.layouts]
        for im in amap.images:
            assert all(np.isfinite(v.values).all() for v in im.views), name
        assert _hook_count(adapter.model) == hooks, name
    for name in PIXEL_VARIANTS:
        with pytest.raises(UnsupportedModelError) as info:
            attribute(adapter, images, QUESTION, name, videos=video, space="pixels")
        assert "\n" not in str(info.value)


def qwen2_token_count(adapter):
    """Qwen2-VL's and Qwen2.5-VL's video token count, as ``Qwen2VLVideoProcessor`` computes
    it (``get_num_of_video_patches``: the image ``smart_resize`` of one frame, times
    ``ceil(n / temporal_patch_size)``; that class cannot be built without torchvision, its
    per-frame count is the image processor's own ``get_number_of_image_patches``), over the
    2 x 2 merge."""
    ip = adapter.processor.image_processor
    tp = adapter.temporal_patch_size
    return lambda n, h, w: -(-n // tp) * ip.get_number_of_image_patches(h, w, {}) // 4


def video_processor_token_count(adapter, cls):
    """The token count of transformers' own video processor class ``cls`` (Qwen3-VL's and
    GLM-4V's build without torchvision; only their pixel steps need it), with the settings the
    torchvision-free processor uses: its patches over the 2 x 2 merge."""
    s = adapter.pil_video_processor().settings
    names = ("size", "patch_size", "temporal_patch_size", "merge_size")
    vp = cls(**{k: s[k] for k in names})
    return lambda n, h, w: vp.get_num_of_video_patches(n, h, w, {}) // 4


def processor_token_count(adapter):
    """The processor's own count (``_get_num_multimodal_tokens``, the rule vLLM reads)."""
    processor = adapter.processor

    def count(n, h, w):
        return processor._get_num_multimodal_tokens(video_sizes=[[n, h, w]])["num_video_tokens"][0]

    return count


def check_video_loop_answers(adapter, video, question=QUESTION):
    """The zoom loop on a video (two steps): step 1 maps the video and step 0's crops, cut
    from their slices' first frames; both answers, continued from the maps' recorded
    forwards, equal ``generate`` from the pixels of the same prompts."""
    from egg_interp.geometry import crop_image
    from egg_interp.loop.video import ground_video
    from egg_interp.settings import LoopSettings

    settings = LoopSettings(stop="fixed:2")
    result = ground_video(adapter, video, question, settings=settings, max_new_tokens=3)
    loop = result.loop
    n_slices = len(result.map.images)
    assert len(loop.steps) == 2 and len(loop.maps[1].images) == n_slices + len(
        loop.steps[0].crop_boxes
    )
    frames = [lay.frames for lay in loop.maps[0].images]
    assert result.crop_frames == [frames[s][0] for s in loop.crop_sources]
    crops = [crop_image(video.frames[f], b) for f, b in zip(result.crop_frames, loop.crops)]
    for answer, images in ((result.base_answer, []), (result.answer, crops)):
        inputs = adapter.build_inputs(
            images, question, origin_boxes=loop.crops[: len(images)], videos=[video]
        )
        assert answer == adapter.generate(inputs, 3)
