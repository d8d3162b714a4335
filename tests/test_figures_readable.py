"""Figures a user need not decode: kept step drawn, colour bar, legend, wrapped text."""

from __future__ import annotations

import warnings
from dataclasses import replace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from conftest import noise_image  # noqa: E402
from PIL import Image  # noqa: E402

from egg_interp.figures.comparison import plot_comparison  # noqa: E402
from egg_interp.figures.drawing import draw_boxes  # noqa: E402
from egg_interp.figures.grounding import plot_grounding  # noqa: E402
from egg_interp.io import save_figure  # noqa: E402
from egg_interp.loop import ground  # noqa: E402
from egg_interp.settings import LoopSettings  # noqa: E402
from egg_interp.stopping import Decision  # noqa: E402

QUESTION = "what colour is the square ?"


@pytest.fixture(scope="module")
def result(tiny_llava_dir):
    from egg_interp.models import load_model

    adapter = load_model(tiny_llava_dir, device="cpu")
    image = noise_image(96, 64)
    settings = LoopSettings(stop="fixed:3", max_steps=3)
    res = ground(adapter, image, QUESTION, settings=settings, max_new_tokens=2)
    res.steps = [replace(res.steps[i % len(res.steps)], step=i) for i in range(7)]  # 7 steps
    return image, res


def _titles(fig) -> str:
    return " | ".join(ax.get_title() for ax in fig.axes) + " ".join(t.get_text() for t in fig.texts)


def test_grounding_draws_the_kept_step_with_colour_bar_and_legend(result):
    image, res = result
    res.decision = Decision(True, 5, "test: keep step 5")
    fig = plot_grounding(image, res, gt_boxes=[(10, 10, 40, 40)], max_steps_shown=4)
    titles = _titles(fig)
    assert "step 5 (kept)" in titles and "step 0" in titles and "step 6" in titles
    assert "crops of steps 0, " in titles and "kept: step 5" in titles  # says which are shown
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert any("relevance" in label for label in labels)  # colour bar
    legend = fig.axes[0].get_legend()
    assert legend is not None
    assert {t.get_text() for t in legend.get_texts()} == {
        "evidence (ground truth)",
        "region (#rank)",
    }
    plt.close(fig)


def test_grounded_answer_is_labelled_by_the_loops_method(result):
    image, res = result
    titles = _titles(plot_grounding(image, res))
    assert f"egg: {res.answer!r}" in titles and f"base: {res.base_answer!r}" in titles
    titles = _titles(plot_grounding(image, replace(res, method="saliency")))
    assert f"saliency: {res.answer!r}" in titles and "egg:" not in titles
    plt.close("all")


def test_long_question_and_answers_wrap_without_layout_warnings(result, tmp_path):
    image, res = result
    res.question = "what colour is the square " * 200  # 5,200 characters
    res.answer = res.base_answer = "a very long answer " * 30
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot_grounding(image, res)
        path = save_figure(fig, tmp_path / "g.png")
    width, height = Image.open(path).size
    assert height < 800 and width < 2200, (width, height)


def test_region_labels_stay_inside_when_a_box_touches_the_top():
    fig, ax = plt.subplots()
    ax.imshow(noise_image(100, 100))
    ax.set_title("a title")
    draw_boxes(ax, [(10, 0, 50, 40), (10, 60, 50, 90)], labels=["#1", "#2"])
    top, lower = ax.texts
    assert top.get_va() == "top" and top.get_position()[1] >= 0  # inside the box
    assert lower.get_va() == "bottom" and lower.get_position()[1] == 60
    plt.close(fig)


def test_comparison_has_colour_bar_and_legend(result):
    image, res = result
    fig = plot_comparison(image, {"egg": res.maps[0]}, [(5, 5, 30, 30)], {"egg": (0, 0, 20, 20)})
    assert fig.axes[0].get_legend() is not None
    assert any("relevance" in ax.get_ylabel() for ax in fig.axes)
    plt.close(fig)


def test_vicrop_figure_shows_question_and_base_answer(tiny_llava):
    from egg_interp.vicrop import vicrop_answer

    image = noise_image(96, 64)
    res = vicrop_answer(tiny_llava, image, QUESTION, max_new_tokens=2, base_answer=True)
    fig, ax = res.plot(image)
    title = ax.get_title()
    assert QUESTION in title and f"base: {res.base_answer!r}" in title and "ViCrop" in title
    assert ax.get_legend() is not None
    plt.close(fig)
