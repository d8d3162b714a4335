"""Token-to-rectangle mapping of the LLaVA adapter, checked by perturbing image patches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_token_local, noise_image

from egg_interp.models import load_model


@pytest.fixture(scope="module")
def llava(tiny_llava_dir):
    """The tiny LLaVA, loaded once for the module's tests that leave it as it is."""
    return load_model(tiny_llava_dir, device="cpu")


@pytest.fixture(scope="module")
def local_llava(tiny_llava_dir):
    """A separate load with a token-local vision tower, centre-cropping processor."""
    adapter = load_model(tiny_llava_dir, device="cpu")
    make_token_local(adapter)
    return adapter


@pytest.fixture(scope="module")
def local_llava_pad(tiny_llava_pad_dir):
    """Token-local too, with a processor that pads to a square."""
    adapter = load_model(tiny_llava_pad_dir, device="cpu")
    make_token_local(adapter)
    return adapter


def _features(adapter, image):
    inputs = adapter.build_inputs([image], "what colour is the square ?")
    adapter.clear_cache()
    return adapter.image_features(inputs)[0], inputs.layouts[0]


def _changed_tokens(adapter, image, x, y, size=2):
    before, layout = _features(adapter, image)
    arr = np.asarray(image).copy()
    arr[y : y + size, x : x + size] = 255 - arr[y : y + size, x : x + size]
    from PIL import Image

    after, _ = _features(adapter, Image.fromarray(arr))
    diff = (after - before).abs().amax(dim=-1)
    return set(torch.nonzero(diff > 1e-5).flatten().tolist()), layout


def _tokens_covering(layout, x0, y0, x1, y1):
    view = layout.views[0]
    b = view.cell_boxes
    hit = (b[..., 0] < x1) & (b[..., 2] > x0) & (b[..., 1] < y1) & (b[..., 3] > y0)
    return set(view.token_index[hit].tolist())


@pytest.mark.parametrize(
    "size,pad",
    [
        ((64, 64), False),
        ((128, 128), False),
        ((200, 100), False),
        ((90, 180), False),
        ((200, 100), True),
        ((90, 180), True),
    ],
)
def test_perturbed_patch_changes_exactly_the_covering_tokens(request, size, pad):
    adapter = request.getfixturevalue("local_llava_pad" if pad else "local_llava")
    width, height = size
    image = noise_image(width, height, seed=1)
    _, layout = _features(adapter, image)
    view = layout.views[0]
    rng = np.random.default_rng(0)
    rows, cols = view.token_index.shape
    for _ in range(4):
        r, c = int(rng.integers(rows)), int(rng.integers(cols))
        x0, y0, x1, y1 = view.cell_boxes[r, c]
        if x1 - x0 < 4 or y1 - y0 < 4:
            continue  # a padding cell: no original pixel to perturb
        cx, cy = int((x0 + x1) / 2) - 1, int((y0 + y1) / 2) - 1
        changed, _ = _changed_tokens(adapter, image, cx, cy)
        assert view.token_index[r, c] in changed
        # resampling may spread a perturbation by a pixel or two: every changed token's
        # rectangle must lie within that reach of the patch
        scale = max(width, height) / 64
        reach = 2.5 * scale
        allowed = _tokens_covering(layout, cx - reach, cy - reach, cx + 2 + reach, cy + 2 + reach)
        assert changed <= allowed, (changed, allowed)


def test_cropped_border_is_seen_by_no_token(local_llava):
    """A wide image is centre-cropped: a patch in its left border changes no token."""
    image = noise_image(200, 100, seed=2)
    changed, layout = _changed_tokens(local_llava, image, 5, 50)
    assert changed == set()
    assert _tokens_covering(layout, 5, 50, 7, 52) == set()
    # and the grid covers exactly the central square
    boxes = layout.views[0].cell_boxes
    assert boxes[..., 0].min() == pytest.approx(50, abs=2)
    assert boxes[..., 2].max() == pytest.approx(150, abs=2)


def test_heatmap_marks_uncovered_border_as_nan(llava):
    from egg_interp.methods import attribute

    m = attribute(llava, noise_image(200, 100), "what colour is the square ?")
    heat = m.heatmap()
    assert heat.shape == (100, 200)
    assert np.isnan(heat[:, :40]).all() and np.isnan(heat[:, 160:]).all()
    assert np.isfinite(heat[:, 60:140]).all()


def test_answers_from_the_maps_forward_equal_generate(llava):
    from arch_checks import check_answers_from_the_maps_forward

    check_answers_from_the_maps_forward(llava, noise_image(120, 90, 7))


def test_bad_prompt_input_is_an_input_error(llava):
    from PIL import Image

    from egg_interp.errors import InputError

    image = noise_image(60, 40)
    for call in (
        lambda: llava.build_inputs([], "what colour?"),
        lambda: llava.build_inputs([image], "   "),
        lambda: llava.build_inputs([Image.new("RGB", (0, 5))], "what colour?"),
        lambda: llava.build_batch([]),
        lambda: llava.build_batch([([], "what colour?")]),
    ):
        with pytest.raises(InputError):
            call()


def test_one_prompt_builds_the_same_alone_or_as_a_batch(llava):
    image = noise_image(60, 40)
    alone = llava.build_inputs([image], "what colour?")
    batch = llava.build_batch([([image], "what colour?")])
    assert torch.equal(alone.input_ids, batch.input_ids)
    assert torch.equal(alone.batch["pixel_values"], batch.batch["pixel_values"])
    assert [lay.n_tokens for lay in alone.layouts] == [lay.n_tokens for lay in batch.layouts]
