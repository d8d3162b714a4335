"""Video decoding (PyAV) and the map type's video entries, without a model.

Clips are synthetic, written in the test with PyAV: an ``.mkv`` (FFV1, lossless) whose frames
come back bit for bit, and an ``.mp4`` (H.264, lossy) decoded within compression error.
"""

from __future__ import annotations

import wave

import numpy as np
import pytest
from PIL import Image

from egg_interp.errors import InputError
from egg_interp.geometry import regular_cell_boxes
from egg_interp.maps import AttributionMap, GridView, ImageMap
from egg_interp.video import Video, read_video, sample_indices, write_video


def _frames(n, size=(64, 48), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8) for _ in range(n)]


def test_sample_indices_are_transformers_default_rule():
    from transformers.video_utils import VideoMetadata, default_sample_indices_fn

    for total, n in [(10, 4), (10, 10), (7, 3), (300, 8), (9, 1)]:
        theirs = default_sample_indices_fn(VideoMetadata(total_num_frames=total), num_frames=n)
        assert sample_indices(total, n).tolist() == theirs.tolist()


def test_lossless_clip_gives_the_sampled_frames_back_exactly(tmp_path):
    frames = _frames(10)
    path = write_video(tmp_path / "clip.mkv", frames, fps=5)
    video = read_video(path, 4)
    assert video.indices == (0, 2, 5, 7) and video.total_frames == 10 and video.fps == 5
    assert video.timestamps == pytest.approx((0.0, 0.4, 1.0, 1.4))
    assert video.size == (64, 48) and video.duration == pytest.approx(2.0)
    for frame, i in zip(video.frames, video.indices, strict=True):
        np.testing.assert_array_equal(np.asarray(frame), frames[i])


def test_mp4_clip_decodes_its_frames_in_order(tmp_path):
    """H.264 is lossy: each decoded frame is closest to its own source frame."""
    frames = [np.full((48, 64, 3), 25 * k, dtype=np.uint8) for k in range(8)]
    video = read_video(write_video(tmp_path / "clip.mp4", frames, fps=8), 8)
    means = [float(np.asarray(f).mean()) for f in video.frames]
    assert means == pytest.approx([25 * k for k in range(8)], abs=3)
    assert video.metadata()["frames_indices"] == list(range(8))


@pytest.mark.parametrize(
    "make,n,message",
    [
        (lambda d: d / "missing.mp4", 2, "video not found"),
        (lambda d: d, 2, "got a directory"),
        (lambda d: _text(d / "notes.mp4"), 2, "not a video file"),
        (lambda d: _audio(d / "sound.wav"), 1, "no video stream"),
        (lambda d: write_video(d / "c.mkv", _frames(3), 3), 4, "has 3 frame.* 4 were asked"),
        (lambda d: write_video(d / "c.mkv", _frames(3), 3), 0, "at least 1"),
    ],
)
def test_bad_videos_fail_in_one_line(tmp_path, make, n, message):
    with pytest.raises(InputError, match=message) as info:
        read_video(make(tmp_path), n)
    assert "\n" not in str(info.value)


def _text(path):
    path.write_text("not a video")
    return path


def _audio(path):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(b"\0\0" * 800)
    return path


def test_video_checks_its_frames():
    with pytest.raises(InputError, match="different sizes"):
        Video.from_frames([Image.new("RGB", (4, 4)), Image.new("RGB", (4, 6))])
    with pytest.raises(InputError, match="at least one frame"):
        Video.from_frames([])
    video = Video.from_frames([Image.new("L", (4, 4))] * 3, fps=2)
    assert video.frames[0].mode == "RGB" and video.timestamps == (0.0, 0.5, 1.0)
    assert "3 frames of 4x4 at 2 fps" in repr(video)


def _slice(values, frames, fps=2.0):
    rows, cols = values.shape
    view = GridView(values, regular_cell_boxes(rows, cols, 0, 0, 10, 10))
    times = tuple(f / fps for f in frames)
    return ImageMap([view], (10 * cols, 10 * rows), (0, 0, 10 * cols, 10 * rows), frames, times, 0)


def _video_map():
    slices = [
        _slice(np.array([[1.0, 0.0], [0.0, 1.0]]), (0, 1)),
        _slice(np.array([[3.0, 1.0], [0.0, 0.0]]), (2, 3)),
        _slice(np.array([[0.0, 0.0], [0.0, 4.0]]), (4,)),
    ]
    crop = ImageMap([GridView(np.ones((1, 1)), np.array([[[0, 0, 5, 5]]]))], (5, 5), (0, 0, 5, 5))
    return AttributionMap([*slices, crop], "egg", "entropy")


def test_frame_maps_give_each_frame_its_slice():
    amap = _video_map()
    frames = amap.frame_maps()
    assert [(f, t) for f, t, _ in frames] == [(0, 0.0), (1, 0.5), (2, 1.0), (3, 1.5), (4, 2.0)]
    assert frames[0][2] is frames[1][2] is amap.images[0]  # one token spans both frames
    assert amap.video_slices() == [0, 1, 2] and amap.video_slices(1) == []


def test_relevance_over_time_by_hand():
    curve = _video_map().relevance_over_time()
    assert [c.total for c in curve] == [2.0, 4.0, 4.0]
    assert [c.peak for c in curve] == [1.0, 3.0, 4.0]
    assert [c.share for c in curve] == pytest.approx([0.2, 0.4, 0.4])
    assert [c.time for c in curve] == pytest.approx([0.25, 1.25, 2.0])
    assert curve[1].to_dict()["frames"] == [2, 3]


def test_signed_maps_have_no_share():
    amap = AttributionMap([_slice(np.array([[1.0, -3.0]]), (0,)), _slice(np.ones((1, 2)), (1,))])
    assert all(np.isnan(c.share) for c in amap.relevance_over_time())


def test_video_map_saves_and_loads_its_frames(tmp_path):
    amap = _video_map()
    back = AttributionMap.load(amap.save(tmp_path / "m.npz"))
    assert [im.frames for im in back.images] == [(0, 1), (2, 3), (4,), ()]
    assert [im.video_index for im in back.images] == [0, 0, 0, -1]
    assert back.images[1].timestamps == (1.0, 1.5)
    assert "frames 0, 1" in repr(back)
