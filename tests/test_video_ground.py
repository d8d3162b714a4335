"""``egg-interp ground --video``: the acceptance command on a tiny Qwen2-VL, its files and
figures, its one-line errors, and the explorer's video view."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import WORDS, noise_image
from PIL import Image

from egg_interp.cli import main
from egg_interp.maps import AttributionMap
from egg_interp.models.offline.qwen import build_tiny_qwen2_vl
from egg_interp.video import Video, write_video

QUESTION = "what colour is the square ?"


@pytest.fixture(scope="module")
def qwen2_vl_dir(tmp_path_factory):
    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny_qwen2_vl_video"), WORDS, seed=0)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """16 noise frames of 96x72 at 8 fps, H.264 in an .mp4 (written here with PyAV)."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (72, 96, 3), dtype=np.uint8) for _ in range(16)]
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames, fps=8)


def test_ground_video_writes_per_frame_maps_curve_strip_crops_and_page(
    qwen2_vl_dir, clip, tmp_path, capsys
):
    out = tmp_path / "out"
    args = ["ground", "--model", str(qwen2_vl_dir), "--video", str(clip), "--frames", "8"]
    assert main([*args, "--question", QUESTION, "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "frames 0, 1" in printed and "frames 6, 7" in printed and "kept crops:" in printed

    amap = AttributionMap.load(out / "map.npz")
    assert [im.frames for im in amap.images] == [(0, 1), (2, 3), (4, 5), (6, 7)]
    assert [im.timestamps for im in amap.images][1] == pytest.approx((0.5, 0.75))  # 2, 6 of 16
    record = json.loads((out / "video.json").read_text())
    assert record["video"]["sampled_indices"] == [0, 2, 4, 6, 8, 10, 12, 14]
    assert [f["slice"] for f in record["frames"]] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert sum(s["share"] for s in record["slices"]) == pytest.approx(1.0)
    assert record["question"] == QUESTION and isinstance(record["answer"], str)
    assert set(record["crop_frames"]) <= {0, 2, 4, 6}  # a pair's crop: its first frame
    assert (
        len(record["crop_frames"]) == len(record["crops"]) == len(list((out / "crops").iterdir()))
    )
    assert record["loop"]["steps"][0]["crops_in"] == []

    for k in range(8):  # each frame with its map
        with Image.open(out / "frames" / f"frame_{k:02d}.png") as im:
            assert im.size == (96, 72)
    for name in ("relevance_over_time.png", "frame_strip.png"):
        with Image.open(out / name) as im:
            assert min(im.size) > 100
    page = (out / "video.html").read_text()
    assert page.count('"slice_frames"') == 8 and "http" not in page.split("<script>")[1]


def test_video_loop_zooms_into_frames_and_answers_with_the_video_and_crops(qwen2_vl_dir):
    """Two steps: step 1 maps [video, step 0's crops]; each crop is cut from its slice's first
    frame; the answers equal ``generate`` from the pixels of the same prompts."""
    from egg_interp.loop.video import ground_video
    from egg_interp.models import load_model
    from egg_interp.settings import LoopSettings

    adapter = load_model(qwen2_vl_dir, device="cpu")
    video = Video.from_frames([noise_image(96, 72, k) for k in range(6)], fps=4)
    settings = LoopSettings(stop="fixed:2")
    result = ground_video(adapter, video, QUESTION, settings=settings, max_new_tokens=4)
    loop = result.loop
    assert len(loop.steps) == 2 and loop.decision.keep == 1
    first, second = loop.maps
    assert [im.frames for im in first.images] == [(0, 1), (2, 3), (4, 5)]
    crops0, sources0 = loop.steps[0].crop_boxes, loop.steps[0].crop_sources
    assert len(second.images) == 3 + len(crops0) and [im.frames for im in second.images[3:]] == [
        ()
    ] * len(crops0)
    assert [im.origin_box for im in second.images[3:]] == crops0
    assert result.crop_frames == [2 * s for s in loop.crop_sources]
    base = adapter.generate(adapter.build_inputs([], QUESTION, videos=[video]), 4)
    crops = [
        video.frames[f].crop(tuple(int(v) for v in b))
        for f, b in zip(result.crop_frames, loop.crops)
    ]
    grounded = adapter.generate(
        adapter.build_inputs(crops, QUESTION, origin_boxes=loop.crops, videos=[video]), 4
    )
    assert (result.base_answer, result.answer) == (base, grounded)
    assert sources0 is not None and all(0 <= s < 3 for s in sources0)


def test_video_loop_ranks_regions_across_slices_by_hand():
    """A hand-made map: slice 1 holds the peak, so the first region and crop come from it and
    the crop is cut from its first frame (2); the next prompt's images are that crop."""
    from egg_interp.geometry import regular_cell_boxes
    from egg_interp.loop.video import VideoLoopState
    from egg_interp.maps import GridView, ImageMap
    from egg_interp.stopping import make_rule

    frames = [noise_image(80, 80, k) for k in range(5)]
    video = Video.from_frames(frames, fps=2)
    state = VideoLoopState(video, [(0, 1), (2, 3), (4,)], QUESTION, make_rule("fixed:3"))
    grids = [np.full((4, 4), 0.1) for _ in range(3)]
    grids[1][0, 3] = 5.0  # top right of frames 2-3
    grids[2][2, 0] = 2.0
    amap = AttributionMap(
        [
            ImageMap(
                [GridView(g, regular_cell_boxes(4, 4, 0, 0, 20, 20))],
                (80, 80),
                (0, 0, 80, 80),
                f,
                (0.0,) * len(f),
                0,
            )
            for g, f in zip(grids, state.slices)
        ],
        "egg",
        "entropy",
    )
    state.advance(
        amap, top_k=2, region_kwargs={"sigma": 0.0, "min_side": 0.0}, keep_maps=False, start=0.0
    )
    step = state.steps[0]
    assert step.crop_sources == [1, 2] and state.crop_frames(step.crop_sources) == [2, 4]
    x0, y0, x1, y1 = step.crop_boxes[0]
    assert x0 >= 40 and y1 <= 40  # the top-right quarter
    (first, second) = state.images()
    assert np.array_equal(
        np.asarray(first), np.asarray(frames[2].crop((int(x0), int(y0), int(x1), int(y1))))
    )
    assert state.view_names()[:3] == ["frames 0-1", "frames 2-3", "frame 4"]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--image", "{image}", "--video", "{clip}"], "one of --image and --video"),
        ([], "one of --image and --video"),
        (["--video", "{clip}", "--frames", "17"], "has 16 frame"),
        (["--video", "{missing}"], "video not found"),
        (["--video", "{clip}", "--pipeline", "vicrop"], "takes an image"),
    ],
)
def test_ground_video_input_errors_are_one_line(
    qwen2_vl_dir, clip, tmp_path, capsys, extra, message
):
    image = tmp_path / "a.png"
    noise_image(32, 32).save(image)
    paths = {"image": image, "clip": clip, "missing": tmp_path / "none.mp4"}
    extra = [a.format(**paths) for a in extra]
    rc = main(["ground", "--model", str(qwen2_vl_dir), *extra, "--question", QUESTION])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert rc == 2 and len(errors) == 1 and message in errors[0]


def test_image_only_model_refuses_a_video_in_one_line(tiny_llava_dir, clip, capsys):
    rc = main(
        [
            "ground",
            "--model",
            str(tiny_llava_dir),
            "--video",
            str(clip),
            "--frames",
            "2",
            "--question",
            QUESTION,
            "--device",
            "cpu",
        ]
    )
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert rc == 2 and len(errors) == 1 and "does not take video" in errors[0]


def test_frame_strip_draws_every_frame_on_one_scale():
    from egg_interp.figures.video import frame_overlay, plot_frame_strip, shared_scale
    from egg_interp.geometry import regular_cell_boxes
    from egg_interp.maps import GridView, ImageMap

    frames = [noise_image(40, 20, k) for k in range(3)]
    video = Video.from_frames(frames, fps=2)
    slices = [
        ImageMap(
            [GridView(np.full((1, 2), v), regular_cell_boxes(1, 2, 0, 0, 20, 20))],
            (40, 20),
            (0, 0, 40, 20),
            fr,
            tuple(video.timestamps[f] for f in fr),
            0,
        )
        for v, fr in ((1.0, (0, 1)), (3.0, (2,)))
    ]
    amap = AttributionMap(slices, "egg", "entropy")
    fig = plot_frame_strip(
        video.frames, amap, "q -> a", highlight=[2], regions=[(2, (0, 0, 10, 10))]
    )
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 3 and {ax.images[-1].get_clim() for ax in panels} == {(0.0, 3.0)}
    assert panels[2].get_title().startswith("* 1.00 s")
    heat = np.full((20, 40), np.nan)
    heat[:, :20] = 3.0
    blended = np.asarray(frame_overlay(frames[0], heat, shared_scale([heat])))
    assert (blended[:, 20:] == np.asarray(frames[0])[:, 20:]).all()  # no token: the frame
    assert not (blended[:, :20] == np.asarray(frames[0])[:, :20]).all()
