"""Deletion and insertion: orders, batched masks and settings by hand, and against quantus.

quantus (a dev dependency) computes the same curves on a small torch classifier where both
apply: ``RegionPerturbation`` (patches = our cells, MoRF and LeRF), ``PixelFlipping``
(features removed k at a time) and ``ROAD`` (noisy linear imputation, accuracy per
percentage); quantus' area is ``np.trapz`` with dx = 1 over the perturbed points only.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from egg_interp.errors import InputError
from egg_interp.metrics.deletion import (
    FaithfulnessSettings,
    cell_order,
    curves_from_batch,
    deletion_insertion_curve,
    step_counts,
    step_masks,
)
from egg_interp.metrics.substrates import cell_labels, noisy_linear_imputation

RELEVANCE = np.array([[4.0, 2.0], [1.0, 3.0]])  # order (0,0) > (1,1) > (0,1) > (1,0)


def first_cell(masks: np.ndarray) -> np.ndarray:
    """A toy model whose answer probability is 1 while cell (0, 0) is kept."""
    return masks[:, 0, 0].astype(float)


def test_orders_counts_and_masks_by_hand():
    assert cell_order(RELEVANCE, "morf").tolist() == [0, 3, 1, 2]
    assert cell_order(RELEVANCE, "lerf").tolist() == [2, 1, 3, 0]
    random = cell_order(RELEVANCE, "random", seed=3)
    assert sorted(random.tolist()) == [0, 1, 2, 3]
    assert random.tolist() == cell_order(RELEVANCE * 7, "random", seed=3).tolist()  # map-free
    assert step_counts(4, 2).tolist() == [0, 2, 4] and step_counts(3, 16).tolist() == [0, 1, 2, 3]
    masks = step_masks(cell_order(RELEVANCE), (2, 2), np.array([0, 1, 2]), "deletion")
    assert masks.tolist() == [
        [[True, True], [True, True]],
        [[False, True], [True, True]],
        [[False, True], [True, False]],
    ]
    inserted = step_masks(cell_order(RELEVANCE), (2, 2), np.array([0, 1, 2]), "insertion")
    assert np.array_equal(inserted, ~masks)
    with pytest.raises(InputError):
        cell_order(RELEVANCE, "best")


def test_batched_curves_by_hand():
    calls: list[int] = []

    def score(masks):
        calls.append(len(masks))
        return first_cell(masks)

    curves = curves_from_batch(RELEVANCE, score, n_steps=4, seed=0)
    distinct = {
        m.tobytes()
        for c in ("deletion", "insertion")
        for o in ("morf", "lerf", "random")
        for m in step_masks(cell_order(RELEVANCE, o, 0), (2, 2), step_counts(4, 4), c)
    }
    assert calls == [len(distinct)]  # one call, each distinct mask once
    morf, lerf = curves["deletion", "morf"], curves["deletion", "lerf"]
    assert morf.scores.tolist() == [1, 0, 0, 0, 0] and morf.area == pytest.approx(0.125)
    assert lerf.scores.tolist() == [1, 1, 1, 1, 0] and lerf.area == pytest.approx(0.875)
    assert curves["insertion", "morf"].scores.tolist() == [0, 1, 1, 1, 1]
    # one substrate: insertion under MoRF is deletion under LeRF read backwards
    for c in ("morf", "lerf", "random"):
        other = {"morf": "lerf", "lerf": "morf", "random": None}[c]
        if other:
            np.testing.assert_array_equal(
                curves["insertion", c].scores, curves["deletion", other].scores[::-1]
            )
    # each curve equals the one-mask-at-a-time reference
    for (curve, order), batched in curves.items():
        single = deletion_insertion_curve(
            RELEVANCE, lambda k: float(k[0, 0]), curve, n_steps=4, order=order
        )
        np.testing.assert_array_equal(batched.scores, single.scores)
        assert batched.area == pytest.approx(single.area)


def test_morf_and_lerf_at_16_steps_need_32_masks():
    rng = np.random.default_rng(0)
    relevance = rng.random((8, 8))
    seen: list[int] = []
    curves_from_batch(
        relevance, lambda m: seen.append(len(m)) or np.zeros(len(m)), orders=["morf", "lerf"]
    )
    assert seen == [32]  # not 4 x 17: the full and empty masks and the mirror are shared
    curves_from_batch(relevance, lambda m: seen.append(len(m)) or np.zeros(len(m)))
    assert seen[-1] == 62  # the random order adds its own 2 x 15


def test_cell_labels_and_imputation_by_hand():
    boxes = np.array([[[0.0, 0.0, 1.5, 2.0], [1.5, 0.0, 3.0, 2.0]]])
    labels = cell_labels(boxes, (4, 3))
    assert labels.tolist() == [[0, 1, 1, -1], [0, 1, 1, -1], [-1, -1, -1, -1]]
    # a removed pixel between two kept ones: the mean of its neighbours (the weights of the
    # missing rows are dropped at the border)
    image = np.array([[[2.0], [0.0], [4.0]]])
    out = noisy_linear_imputation(image, np.array([[True, False, True]]), noise=0.0)
    assert out[0, :, 0].tolist() == [2.0, 3.0, 4.0]
    noisy = noisy_linear_imputation(image, np.array([[True, False, True]]), noise=0.5)
    assert noisy[0, 0, 0] == 2.0 and noisy[0, 1, 0] != 3.0  # noise on imputed pixels only


def test_imputation_equals_quantus():
    from quantus.functions.perturb_func import noisy_linear_imputation as quantus_imputation

    rng = np.random.default_rng(0)
    image = rng.random((3, 9, 7))  # quantus: (C, H, W)
    removed = rng.choice(63, 30, replace=False)
    keep = np.ones(63, dtype=bool)
    keep[removed] = False
    ours = noisy_linear_imputation(image.transpose(1, 2, 0), keep.reshape(9, 7), noise=0.0)
    theirs = quantus_imputation(image.copy(), removed, noise=0.0)
    np.testing.assert_allclose(ours.transpose(2, 0, 1), theirs, atol=1e-12)


def test_settings_are_checked_and_recordable():
    settings = FaithfulnessSettings(space="tokens", orders=["morf", "lerf"])
    assert settings.substrate == "mean" and settings.insertion_substrate == "mean"
    assert FaithfulnessSettings.from_dict(settings.to_dict()) == settings
    assert settings.score_names() == [
        "deletion_auc",
        "deletion_auc_lerf",
        "deletion_gap",
        "insertion_auc",
        "insertion_auc_lerf",
        "insertion_gap",
    ]
    rise = FaithfulnessSettings(substrate="mean", insertion_substrate="blur")
    assert (rise.substrate_of("deletion"), rise.substrate_of("insertion")) == ("mean", "blur")
    for bad in (
        {"space": "latent"},
        {"substrate": "drop"},  # a token baseline in pixel space
        {"orders": ("morf", "morf")},
        {"curves": ()},
        {"steps": 0},
        {"track": "odds"},
        {"blur_sigma": -1.0},
    ):
        with pytest.raises(InputError):
            FaithfulnessSettings(**bad)
    with pytest.raises(InputError):
        FaithfulnessSettings.from_dict({"stepz": 3})


# ----------------------------------------------------------------- quantus cross-checks
class TinyNet(torch.nn.Module):
    """A small convolutional classifier (3 classes) on ``(channels, 12, 12)`` inputs."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(channels, 4, 3, padding=1)
        self.head = torch.nn.Linear(4 * 12 * 12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).flatten(1))


def _probs(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(torch.as_tensor(x, dtype=torch.float32)), -1).numpy()


def _problem(channels: int = 3):
    model = TinyNet(channels).eval()
    rng = np.random.default_rng(0)
    x = rng.random((1, channels, 12, 12)).astype(np.float32)
    y = _probs(model, x).argmax(-1)
    return model, x, y, rng


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_region_perturbation_equals_quantus(order):
    """quantus' RegionPerturbation (4 x 4 patches, baseline 0) records ``p(x) - p(x_k)``
    after each patch; our deletion curve over the 3 x 3 grid of patches holds ``p(x_k)``."""
    import quantus

    model, x, y, rng = _problem()
    a = rng.random((1, 1, 12, 12)).astype(np.float32)
    metric = quantus.RegionPerturbation(
        patch_size=4,
        order=order,
        regions_evaluation=9,
        perturb_baseline=0.0,
        normalise=False,
        disable_warnings=True,
    )
    theirs = np.asarray(metric(model, x, y, a_batch=a, device="cpu", softmax=True)[0])
    cells = a[0, 0].reshape(3, 4, 3, 4).sum(axis=(1, 3))  # quantus sums a patch's values

    def score(keep):
        pixels = np.kron(keep, np.ones((4, 4)))[None, None]
        return float(_probs(model, x * pixels)[0, y[0]])

    ours = deletion_insertion_curve(cells, score, "deletion", order=order)
    np.testing.assert_allclose(ours.scores[0] - ours.scores[1:], theirs, atol=1e-6)


def test_pixel_flipping_equals_quantus_and_its_area():
    """PixelFlipping removes ``features_in_step`` features per step in decreasing order; its
    area is ``np.trapz(curve, dx=1)`` over the perturbed points, ours the trapezoid over the
    fraction in [0, 1] with the unperturbed point first."""
    import quantus

    model, x, y, rng = _problem()
    a = rng.random((1, 3, 12, 12)).astype(np.float32)
    k = 9  # 432 features, 48 steps (quantus wants k to divide 12 x 12)
    metric = quantus.PixelFlipping(
        features_in_step=k,
        perturb_baseline=0.0,
        normalise=False,
        disable_warnings=True,
        return_auc_per_sample=False,
    )
    theirs = np.asarray(metric(model, x, y, a_batch=a, device="cpu", softmax=True)[0])
    grid = a[0].reshape(36, 12)  # any 2-D view of the flat features keeps their order

    def score(keep):
        return float(_probs(model, x * keep.reshape(1, 3, 12, 12))[0, y[0]])

    ours = deletion_insertion_curve(grid, score, "deletion", n_steps=48)
    np.testing.assert_allclose(ours.scores[1:], theirs, atol=1e-6)
    quantus_auc = np.trapezoid(theirs, dx=1)
    steps = len(ours.scores) - 1
    assert ours.area * steps == pytest.approx(
        quantus_auc + (ours.scores[0] + ours.scores[1]) / 2, rel=1e-6
    )


def test_road_equals_quantus():
    """ROAD (noise 0) on a grayscale classifier: whether the prediction survives removing the
    top p % of pixels, imputed; ours through the same imputation and cell order."""
    import quantus

    model, x, y, rng = _problem(channels=1)
    a = rng.random((1, 1, 12, 12)).astype(np.float32)
    percentages = [25, 50, 75, 100]  # 36, 72, 108, 144 of 144 pixels: our 4 steps
    metric = quantus.ROAD(
        percentages=percentages, noise=0.0, normalise=False, disable_warnings=True
    )
    theirs = metric(model, x, y, a_batch=a, device="cpu")
    theirs = [theirs[p] for p in percentages]

    def survives(keep):
        imputed = noisy_linear_imputation(x[0].transpose(1, 2, 0), keep, noise=0.0)
        return float(_probs(model, imputed.transpose(2, 0, 1)[None]).argmax() == y[0])

    ours = deletion_insertion_curve(a[0, 0], survives, "deletion", n_steps=4)
    np.testing.assert_array_equal(ours.scores[1:], theirs)


def test_substrate_examples_run():
    import doctest

    from egg_interp.metrics import substrates

    result = doctest.testmod(substrates)
    assert result.attempted > 0 and result.failed == 0
