"""Checks shared by the per-architecture tests (``test_arch_*.py``).

Every adapter must pass the same four checks on a tiny random-weight checkpoint:

* **layout by perturbation**: with the vision tower made token-local (attention output
  projections zeroed, so each visual token sees only its own patch), inverting a 2x2 patch
  of the original image changes the token whose rectangle holds it, and only tokens whose
  rectangle lies within resampling reach of it; tokens in no view (e.g. LLaVA-1.6 newlines)
  never change;
* **entropy gradient = central finite differences** (float64 model, eps 1e-3 on the most
  sensitive coordinate of a token);
* **zoom-and-reground**: two steps of the loop, the second with the original and its crops
  in one prompt, then an answer with the crops as extra images; and the same with two user
  images in one prompt (one grid per image, crops cut from their own image, answers on the
  images then the crops), or a one-line refusal where the model takes fewer images;
* **answers from the maps' forward**: answers continued from a map's recorded forward (one
  prompt, rows of a left-padded batch, the loop's kept forwards one by one and in batches)
  equal ``generate`` one prompt at a time;
* **attention columns**: eager attention gives the last row's weights at each image's
  visual positions.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import noise_image
from PIL import Image

from egg_interp.errors import InputError
from egg_interp.loop import (
    KEEP_FORWARDS,
    answer_batch,
    answer_images,
    answer_with_crops,
    ground,
    zoom_and_reground,
    zoom_and_reground_batch,
)
from egg_interp.methods import attribute, get_method, make_target
from egg_interp.methods.base import visual_token_gradients
from egg_interp.models.answering import ForwardRecorder, continue_greedy
from egg_interp.settings import LoopSettings

QUESTION = "what colour is the square ?"
ATTENTION_OUTPUTS = ("out_proj", "proj", "o_proj", "projection_layer")


def make_vision_token_local(adapter, tower: str) -> None:
    """Zero the output projection of every attention block of ``model.model.<tower>`` (or of
    ``model.<tower>`` when the model has no inner ``model``, as Llama 4)."""
    vision = getattr(getattr(adapter.model, "model", adapter.model), tower)
    n = 0
    for name, module in vision.named_modules():
        if "attn" not in name.rsplit(".", 1)[-1] and "attention" not in name.rsplit(".", 1)[-1]:
            continue
        for out_name in ATTENTION_OUTPUTS:
            lin = getattr(module, out_name, None)
            if isinstance(lin, torch.nn.Linear):
                torch.nn.init.zeros_(lin.weight)
                if lin.bias is not None:
                    torch.nn.init.zeros_(lin.bias)
                n += 1
                break
    assert n > 0, f"no attention output projection found in {tower}"
    adapter.clear_cache()


def _features(adapter, image):
    inputs = adapter.build_inputs([image], QUESTION)
    adapter.clear_cache()
    return adapter.image_features(inputs)[0], inputs.layouts[0]


def _invert(image, x, y, size=2):
    arr = np.asarray(image).copy()
    arr[y : y + size, x : x + size] = 255 - arr[y : y + size, x : x + size]
    return Image.fromarray(arr)


def _covering(view, x0, y0, x1, y1):
    b = view.cell_boxes
    hit = (b[..., 0] < x1) & (b[..., 2] > x0) & (b[..., 1] < y1) & (b[..., 3] > y0)
    return set(view.token_index[hit].tolist())


def bicubic_reach(name, sx, sy):
    """Reach of a one-stage bicubic resize: support 2 input pixels times the downscale."""
    return 2.0 * max(sx, 1.0) + 1.0, 2.0 * max(sy, 1.0) + 1.0


def tiled_reach(size, longest=96):
    """Reach for Idefics3-style processors (Idefics3, SmolVLM) of a ``size`` image.

    Bilinear (support 1) through up to three resizes: longest side to ``longest`` px, to tile
    multiples, and for the global image down to one tile; each adds its cumulative scale.
    """
    s1 = max(max(size) / longest, 1.0)

    def reach(name, sx, sy):
        return s1 + 2 * max(sx, 1.0) + 1.0, s1 + 2 * max(sy, 1.0) + 1.0

    return reach


def check_layout_by_perturbation(adapter, size, cell_px, probes=2, seed=0, reach=bicubic_reach):
    """Perturb random cells of every view of a ``size`` noise image.

    Each probed cell is perturbed at three places: its centre and one pixel inside its
    top-left and bottom-right corners, so a layout off by a few pixels fails (a probe near
    an edge then lands in the neighbouring token).

    Parameters
    ----------
    cell_px : dict of str to float
        Side of one cell of each view in the processed (model-input) pixels; with the cell's
        side in original pixels it gives the resampling scale, hence the reach of a
        perturbation (bicubic support 2 input pixels, times the downscale factor).
    reach : callable
        ``reach(view_name, sx, sy) -> (rx, ry)`` in original pixels, from the view's scales
        (original pixels per processed pixel); default :func:`bicubic_reach`.
    """
    width, height = size
    image = noise_image(width, height, seed=seed + 1)
    before, layout = _features(adapter, image)
    assert before.shape[0] == layout.n_tokens
    in_views = set().union(*(set(v.token_index.ravel().tolist()) for v in layout.views))
    reaches = {}
    for v in layout.views:
        b = v.cell_boxes
        sx = float(np.median(b[..., 2] - b[..., 0])) / cell_px[v.name]
        sy = float(np.median(b[..., 3] - b[..., 1])) / cell_px[v.name]
        reaches[v.name] = reach(v.name, sx, sy)
    rng = np.random.default_rng(seed)
    probed = 0
    for view in layout.views:
        rows, cols = view.token_index.shape
        for _ in range(probes):
            r, c = int(rng.integers(rows)), int(rng.integers(cols))
            x0, y0, x1, y1 = view.cell_boxes[r, c]
            if x1 - x0 < 6 or y1 - y0 < 6:
                continue  # a padding cell: no original pixel to perturb
            points = [
                (int((x0 + x1) / 2) - 1, int((y0 + y1) / 2) - 1),
                (int(np.ceil(x0)) + 1, int(np.ceil(y0)) + 1),
                (int(np.floor(x1)) - 3, int(np.floor(y1)) - 3),
            ]
            for px, py in points:
                after, _ = _features(adapter, _invert(image, px, py))
                diff = (after - before).abs().amax(dim=-1)
                changed = set(torch.nonzero(diff > 1e-5).flatten().tolist())
                assert int(view.token_index[r, c]) in changed, (view.name, r, c, px, py)
                assert changed <= in_views, f"tokens in no view changed: {changed - in_views}"
                allowed = set()
                for v in layout.views:
                    rx, ry = reaches[v.name]
                    allowed |= _covering(v, px - rx, py - ry, px + 2 + rx, py + 2 + ry)
                assert changed <= allowed, (view.name, px, py, sorted(changed - allowed))
            probed += 1
    assert probed >= len(layout.views)
    return layout


def check_entropy_gradient(adapter, images, n_checks=4, eps=1e-3):
    """The entropy gradient at the visual tokens against central finite differences."""
    tgt = make_target("entropy")
    inputs = adapter.build_inputs(images, "what colour ?")
    feats, grads, _, _ = visual_token_gradients(adapter, inputs, tgt)

    def value(image, token, dim, delta):
        moved = [f.clone() for f in feats]
        moved[image][token, dim] += delta
        with torch.no_grad():
            logits = adapter.forward_features(inputs, moved).logits[0, -1]
        return float(tgt(logits))

    # float64 model, but RMSNorm computes its variance in float32: eps 1e-3 keeps the
    # rounding noise far below the signal (see test_egg_gradient.py)
    rng = np.random.default_rng(0)
    floor = 1e-3 * max(float(g.abs().max()) for g in grads)  # FD noise on tiny gradients
    for k in range(n_checks):
        image = k % len(images)
        token = (
            int(grads[image].norm(dim=-1).argmax())
            if k == 0
            else int(rng.integers(len(feats[image])))
        )
        dim = int(grads[image][token].abs().argmax())
        fd = (value(image, token, dim, eps) - value(image, token, dim, -eps)) / (2 * eps)
        assert abs(grads[image][token, dim].item() - fd) <= 2e-3 * abs(fd) + floor, (image, token)


def check_zoom_and_reground(adapter, image, question=QUESTION):
    """Two loop steps (the second with several images in one prompt), then an answer."""
    result = zoom_and_reground(adapter, image, question, settings=LoopSettings(stop="fixed:2"))
    assert len(result.steps) == 2 and len(result.maps) == 2
    second = result.maps[1]
    assert len(second.images) == 1 + len(result.steps[0].crop_boxes) >= 2
    for im in second.images:
        assert np.isfinite(im.primary.values).all() and im.primary.values.max() > 0
        assert im.heatmap().shape == (im.image_size[1], im.image_size[0])
    for r in result.steps[1].regions:
        x0, y0, x1, y1 = r.box
        assert 0 <= x0 < x1 <= image.width and 0 <= y0 < y1 <= image.height
    answer = answer_with_crops(adapter, image, question, result.crops, max_new_tokens=3)
    assert isinstance(answer, str)
    check_several_images(adapter, image, noise_image(90, 120, seed=9), question)
    return result


def check_several_images(adapter, first, second, question=QUESTION, n=3):
    """Two user images in one prompt: the map has one grid per image on its own pixels; the
    loop's crops lie in the image each says it comes from; the answers equal ``generate`` on
    the images then the crops. A model that takes fewer images per prompt than two images
    plus the crops refuses in one line."""
    images = [first, second]
    settings = LoopSettings(stop="fixed:2")
    limit = adapter.max_images_per_prompt
    if limit is not None and len(images) + settings.top_k > limit:
        with pytest.raises(InputError, match="per prompt") as info:
            ground(adapter, images, question, settings=settings, max_new_tokens=n)
        assert "\n" not in str(info.value)
        return None
    amap = attribute(adapter, images, question)
    assert [im.image_size for im in amap.images] == [first.size, second.size]
    assert [im.origin_box for im in amap.images] == [(0, 0, *first.size), (0, 0, *second.size)]
    result = ground(adapter, images, question, settings=settings, max_new_tokens=n)
    step0, step1 = result.steps
    assert step1.sources_in == step0.crop_sources and step1.crops_in == step0.crop_boxes
    assert len(result.maps[1].images) == 2 + len(step0.crop_boxes)
    for im, box in zip(result.maps[1].images[2:], step0.crop_boxes):
        assert im.origin_box == box
    for box, source in zip(result.crops, result.crop_sources):
        w, h = images[source].size
        assert 0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h
    grounded = answer_images(images, result.crops, result.crop_sources)
    assert result.answer == adapter.generate(adapter.build_inputs(grounded, question), n)
    assert result.base_answer == adapter.generate(adapter.build_inputs(images, question), n)
    return result


def check_attention_columns(adapter, images):
    """Eager attention: the last row at each image's visual positions, as a token vector."""
    inputs = adapter.build_inputs(images, QUESTION)
    positions = adapter.visual_positions(inputs)
    assert [len(p) for p in positions] == [lay.n_tokens for lay in inputs.layouts]
    ids = inputs.input_ids[0]
    assert all(bool((ids[p] == adapter.image_token_id).all()) for p in positions)
    with adapter.attention_implementation("eager"), torch.no_grad():
        out = adapter.forward_features(
            inputs, adapter.image_features(inputs), last_only=True, output_attentions=True
        )
    assert out.attentions, "eager attention returned no weights"
    last = out.attentions[-1][0, :, -1]  # (heads, seq)
    for p, lay in zip(positions, inputs.layouts):
        col = last[:, p].mean(0)
        assert col.shape == (lay.n_tokens,) and torch.isfinite(col).all() and col.sum() > 0
    return positions


def check_egg_map(adapter, image):
    """EGG's map: finite, one grid per view, the finest view is the primary."""
    m = attribute(adapter, image, QUESTION)
    im = m.images[0]
    assert im.primary.cell_area == min(v.cell_area for v in im.views)
    for v in im.views:
        assert np.isfinite(v.values).all() and v.values.max() > 0
    return m


def check_extend_matches_generate(adapter, images, n=3):
    """Greedy decoding by :meth:`extend` + precomputed features equals ``model.generate``.

    ``generate`` runs from the pixels with its own cache and position bookkeeping, so this
    checks the per-token extras of :meth:`extend` (e.g. Qwen's ``mm_token_type_ids``) and the
    positions of appended answer tokens.
    """
    inputs = adapter.build_inputs(images, QUESTION)
    with torch.no_grad():
        out = adapter.model.generate(
            **inputs.batch,
            max_new_tokens=n,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=adapter.tokenizer.pad_token_id,
        )
    ids = adapter.greedy_tokens(inputs, len(out.logits))  # generate may stop at EOS
    assert out.sequences[0, inputs.input_ids.shape[1] :].tolist() == ids
    for k in range(len(ids)):
        mine = adapter.next_token_logits(adapter.extend(inputs, ids[:k]))
        torch.testing.assert_close(mine, out.logits[k][0].float(), rtol=1e-4, atol=1e-4)


def check_batched_maps_equal_single(adapter):
    """EGG on a left-padded batch of prompts equals the maps computed one by one."""
    from egg_interp.methods import get_method

    items = [
        ([noise_image(96, 96, 1)], "what colour is the square ?"),
        ([noise_image(90, 60, 2), noise_image(30, 30, 3)], "is there a red circle ?"),
        ([noise_image(50, 80, 4)], "what ?"),  # shorter prompt: left padding
    ]
    method = get_method("egg")
    batched = method.attribute_batch(adapter, items)
    single = [method.attribute(adapter, ims, q) for ims, q in items]
    for b, s in zip(batched, single):
        assert b.meta["objective"] == pytest.approx(s.meta["objective"], rel=1e-4)
        for bi, si in zip(b.images, s.images):
            for bv, sv in zip(bi.views, si.views):
                np.testing.assert_allclose(bv.values, sv.values, rtol=2e-3, atol=1e-6)


CHEAP = {
    "integrated_gradients": {"n_steps": 2, "internal_batch_size": 2},
    "gradient_shap": {"n_samples": 2, "samples_per_batch": 2},
    "smoothgrad": {"nt_samples": 2},
    "occlusion": {"patch": 4},
}
PIXEL_VARIANTS = ("saliency", "integrated_gradients", "occlusion")
"""Pixel-space variants run per architecture: one gradient (``pixel_relevance_to_tokens``), one
batched (``perturbed_pixel_logits``), one re-processing the image; input x gradient and
SmoothGrad reuse the first two paths and are run on LLaVA-1.5 by test_methods_registry.py."""


def _hook_count(model) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def check_every_method(adapter, images, pixel_space, refused=None):
    """Every registered method gives a finite map on every view; pixel-space variants run
    when ``pixel_space`` and are refused with :class:`UnsupportedModelError` otherwise.

    ``refused`` maps the names of methods the architecture refuses (in token space too) to a
    pattern their one-line :class:`UnsupportedModelError` must match (default: none refused).
    """
    from egg_interp.errors import UnsupportedModelError
    from egg_interp.methods import METHODS, get_method

    refused = dict(refused or {})
    runs = [(name, {}) for name in sorted(METHODS)]
    runs += [(name, {"space": "pixels"}) for name in PIXEL_VARIANTS]
    inputs = adapter.build_inputs(images, QUESTION)
    shapes = [[v.token_index.shape for v in lay.views] for lay in inputs.layouts]
    hooks = None
    for name, options in runs:
        method = get_method(name, **CHEAP.get(name, {}), **options)
        if getattr(method, "space", method.needs.space) == "pixels" and not pixel_space:
            with pytest.raises(UnsupportedModelError):
                method.attribute(adapter, images, QUESTION)
            continue
        if name in refused:
            with pytest.raises(UnsupportedModelError, match=refused[name]) as info:
                method.attribute(adapter, images, QUESTION)
            assert "\n" not in str(info.value), name  # one line
            continue
        amap = method.attribute(adapter, images, QUESTION)
        assert [[v.shape for v in im.views] for im in amap.images] == shapes, name
        for im in amap.images:
            for v in im.views:
                assert np.isfinite(v.values).all(), (name, options, v.name)
        hooks = _hook_count(adapter.model) if hooks is None else hooks
        assert _hook_count(adapter.model) == hooks, name
        assert not any(p.requires_grad for p in adapter.model.parameters())


def check_answers_from_the_maps_forward(adapter, image, question=QUESTION, n=4):
    """Answers continued from the maps' own forwards equal fresh ``generate`` answers.

    A recorded EGG map's forward continued by hand equals ``generate``; so do rows of a
    left-padded batch's forward, continued in another order after an unrelated forward; in
    :func:`ground` the base answer continues the first map's forward and the final answer the
    forward of the step whose prompt holds the kept crops (when the rule kept the step before
    the last); the loop in batches continues its kept forwards the same way.
    """
    _check_one_recorded_forward(adapter, image, question, n)
    _check_batch_rows_continued(adapter, image, question, n)
    for stop in ("fixed:2", "ent"):
        settings = LoopSettings(stop=stop, max_steps=3)
        result = ground(adapter, image, question, settings=settings, max_new_tokens=n)
        assert result.forwards, "ground kept no map forward"
        assert result.base_answer == adapter.answer(image, question, max_new_tokens=n)
        fresh = answer_with_crops(adapter, image, question, result.crops, max_new_tokens=n)
        assert result.answer == fresh, stop
        old = ground(
            adapter, image, question, settings=settings, max_new_tokens=n, reuse_forward=False
        )
        assert not old.forwards
        assert (old.base_answer, old.answer, old.crops) == (
            result.base_answer,
            result.answer,
            result.crops,
        )
    _check_loop_batch_answers(adapter, image, question, n)


def _check_one_recorded_forward(adapter, image, question, n):
    images = [image, image.crop((0, 0, image.width // 2, image.height // 2))]
    inputs = adapter.build_inputs(images, question)
    recorder = ForwardRecorder()
    get_method("egg").attribute(adapter, images, question, inputs=inputs, record=recorder)
    assert len(recorder.forwards) == 1 and recorder.forwards[0].rows == 1
    assert torch.equal(recorder.forwards[0].tokens["input_ids"], inputs.input_ids)
    adapter.forward(adapter.build_inputs([image], "what ?"))  # another prompt in between
    assert continue_greedy(adapter, recorder.forwards[0], n) == [adapter.generate(inputs, n)]
    with pytest.raises(ValueError, match="already continued"):
        continue_greedy(adapter, recorder.forwards[0], n)


def _check_batch_rows_continued(adapter, image, question, n):
    items = [
        ([image], question),
        ([noise_image(90, 60, 2), noise_image(30, 30, 3)], "is there a red circle ?"),
        ([noise_image(50, 80, 4)], "what ?"),  # shorter prompt: left padding
    ]
    recorder = ForwardRecorder()
    get_method("egg").attribute_batch(adapter, items, record=recorder)
    assert len(recorder.forwards) == 1 and recorder.forwards[0].rows == len(items)
    adapter.forward(adapter.build_inputs([image], "what ?"))  # another prompt in between
    texts = continue_greedy(adapter, recorder.forwards[0].select([2, 0]), n)
    expected = [adapter.generate(adapter.build_inputs(*items[i]), n) for i in (2, 0)]
    assert texts == expected


def _check_loop_batch_answers(adapter, image, question, n):
    images = [image, noise_image(100, 80, seed=8)]
    questions = [question, "is there a red circle ?"]
    results = zoom_and_reground_batch(
        adapter, images, questions, settings=LoopSettings(max_steps=2), keep_forwards=KEEP_FORWARDS
    )
    recorded = [r.forwards for r in results]
    assert all(recorded), "the batched loop kept no map forward"
    base = answer_batch(adapter, [(im, (), q) for im, q in zip(images, questions)], n, recorded)
    final = answer_batch(
        adapter, [(im, r.crops, q) for im, r, q in zip(images, results, questions)], n, recorded
    )
    for im, q, r, b, f in zip(images, questions, results, base, final):
        assert b == adapter.answer(im, q, max_new_tokens=n)
        assert f == answer_with_crops(adapter, im, q, r.crops, max_new_tokens=n)
