"""Video frames for the models that take video: decoded with PyAV, sampled evenly, timed.

:func:`read_video` decodes ``n`` evenly spaced frames of a video file with PyAV (``av``, the
decoder transformers' own video utilities use) and returns a :class:`Video`: the frames as
RGB PIL images, their indices in the source, the source's frame rate and each frame's time in
seconds. :func:`write_video` encodes frames into a file (synthetic clips for tests and
examples). Nothing here imports torch or model code; the adapters turn a :class:`Video` into
model inputs (:mod:`egg_interp.models.video_inputs`).

Conventions: frame indices count decoded frames from 0; a frame's time is its index divided by
the source's average frame rate (what transformers' processors compute from
``VideoMetadata.frames_indices`` and ``fps`` when they write timestamps into a prompt); frame
sizes are ``(width, height)`` as PIL gives them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from egg_interp.errors import InputError


@dataclass(frozen=True)
class Video:
    """Frames sampled from a video, in time order.

    Attributes
    ----------
    frames : tuple of PIL.Image.Image
        RGB frames, all of one size.
    indices : tuple of int
        Index of each frame among the source's decoded frames (0-based, increasing).
    fps : float
        The source's average frame rate, frames per second.
    total_frames : int
        How many frames the source has.
    source : str
        Where the frames came from (a path), for messages and records.
    """

    frames: tuple[Image.Image, ...]
    indices: tuple[int, ...]
    fps: float
    total_frames: int
    source: str = ""

    def __post_init__(self) -> None:
        if not self.frames:
            raise InputError("a video needs at least one frame")
        if len(self.indices) != len(self.frames):
            raise InputError(f"{len(self.frames)} frames but {len(self.indices)} frame indices")
        if len({im.size for im in self.frames}) != 1:
            raise InputError(
                f"frames of different sizes: {sorted({im.size for im in self.frames})}"
            )
        if not self.fps > 0:
            raise InputError(f"a video's frame rate must be positive, got {self.fps}")
        object.__setattr__(self, "frames", tuple(im.convert("RGB") for im in self.frames))
        object.__setattr__(self, "indices", tuple(int(i) for i in self.indices))

    @classmethod
    def from_frames(
        cls, frames: Sequence[Image.Image], fps: float = 1.0, source: str = ""
    ) -> Video:
        """A video made of these frames, one every ``1 / fps`` seconds from 0 (none skipped)."""
        frames = tuple(frames)
        return cls(frames, tuple(range(len(frames))), float(fps), len(frames), source)

    def __repr__(self) -> str:
        w, h = self.size
        where = f" from {self.source!r}" if self.source else ""
        return (
            f"Video({len(self.frames)} frames of {w}x{h} at {self.fps:g} fps, "
            f"{self.timestamps[0]:.2f}-{self.timestamps[-1]:.2f} s{where})"
        )

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of every frame."""
        return self.frames[0].size

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    @property
    def timestamps(self) -> tuple[float, ...]:
        """Time of each frame in seconds (its index over the frame rate)."""
        return tuple(i / self.fps for i in self.indices)

    @property
    def duration(self) -> float:
        """Length of the source in seconds (its frame count over the frame rate)."""
        return self.total_frames / self.fps

    def metadata(self) -> dict[str, Any]:
        """The fields of transformers' ``VideoMetadata`` for these frames (processors compute
        a prompt's timestamps and Qwen2.5-VL its temporal positions from them)."""
        width, height = self.size
        return {
            "total_num_frames": self.total_frames,
            "fps": self.fps,
            "width": width,
            "height": height,
            "duration": self.duration,
            "video_backend": "pyav",
            "frames_indices": list(self.indices),
        }

    def key(self) -> str:
        """A hash of the frames' pixels and indices and the frame rate (what makes two videos
        the same input)."""
        h = hashlib.sha1(f"{self.fps}{self.indices}".encode())
        for im in self.frames:
            h.update(f"{im.size}".encode())
            h.update(im.tobytes())
        return h.hexdigest()


def sample_indices(total: int, n: int) -> np.ndarray:
    """``n`` evenly spaced frame indices of a ``total``-frame video: ``i * total // n``.

    The first frame is always taken; the rule is transformers' default
    (``video_utils.default_sample_indices_fn``), so a processor given the whole video and
    ``num_frames=n`` samples the same frames.

    >>> sample_indices(10, 4).tolist()
    [0, 2, 5, 7]
    """
    if n < 1:
        raise InputError(f"the number of frames must be at least 1, got {n}")
    if n > total:
        raise InputError(f"the video has {total} frame(s); {n} were asked")
    return np.arange(n, dtype=np.int64) * total // n


def read_video(path: str | Path, n_frames: int) -> Video:
    """Decode ``n_frames`` evenly spaced frames of a video file (:func:`sample_indices`).

    Parameters
    ----------
    path : str or Path
        Any container and codec the installed PyAV (FFmpeg) decodes.
    n_frames : int
        How many frames to take, at least 1 and at most the video's frame count.

    Returns
    -------
    Video

    Raises
    ------
    InputError
        One line each: no such file, not a video (or no video stream), fewer frames than
        asked, an unreadable stream.
    """
    import av

    path = Path(path)
    if n_frames < 1:
        raise InputError(f"the number of frames must be at least 1, got {n_frames}")
    if not path.exists():
        raise InputError(f"video not found: {path}")
    if path.is_dir():
        raise InputError(f"expected a video file, got a directory: {path}")
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise InputError(f"not a video file PyAV can decode: {path} ({exc})") from exc
    with container:
        if not container.streams.video:
            raise InputError(f"no video stream in {path}")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate or float(rate) <= 0:
            raise InputError(f"{path}: the video stream has no frame rate")
        try:
            total = stream.frames or _count_frames(container, stream)
            if total < n_frames:
                raise InputError(f"{path} has {total} frame(s); {n_frames} were asked")
            wanted = sample_indices(total, n_frames)
            frames, decoded = _decode_at(container, stream, wanted)
            if len(frames) < n_frames:  # the container's frame count was too high
                if decoded < n_frames:
                    raise InputError(f"{path} has {decoded} frame(s); {n_frames} were asked")
                total, wanted = decoded, sample_indices(decoded, n_frames)
                frames, _ = _decode_at(container, stream, wanted)
        except av.FFmpegError as exc:
            raise InputError(f"cannot decode {path}: {exc}") from exc
    return Video(tuple(frames), tuple(int(i) for i in wanted), float(rate), int(total), str(path))


def _count_frames(container: Any, stream: Any) -> int:
    """Frames of a stream whose container does not say (one demux pass, no decoding)."""
    n = sum(1 for packet in container.demux(stream) if packet.size)
    container.seek(0)
    return n


def _decode_at(container: Any, stream: Any, wanted: np.ndarray) -> tuple[list[Image.Image], int]:
    """The frames at ``wanted`` indices (decode order) and how many frames were decoded."""
    container.seek(0)
    keep, last = set(wanted.tolist()), int(wanted[-1])
    frames, count = [], 0
    for i, frame in enumerate(container.decode(stream)):
        count = i + 1
        if i in keep:
            frames.append(frame.to_image().convert("RGB"))
        if i >= last:
            break
    return frames, count


def write_video(
    path: str | Path, frames: Sequence[Image.Image | np.ndarray], fps: float = 8.0
) -> Path:
    """Encode frames into a video file with PyAV (synthetic clips for tests and examples).

    ``.mp4`` is written with H.264 (``yuv420p``: lossy, even sides needed), ``.mkv``
    losslessly (FFV1 in ``bgr0``: decoding gives the frames back exactly).

    Parameters
    ----------
    frames : sequence of PIL.Image.Image or uint8 ndarray of shape (height, width, 3)
        All of one size.
    fps : float
        Frames per second (a rational close to it is stored).

    Returns
    -------
    Path
    """
    from fractions import Fraction

    import av

    path = Path(path)
    arrays = [np.asarray(f.convert("RGB") if isinstance(f, Image.Image) else f) for f in frames]
    if not arrays:
        raise InputError("no frames to write")
    height, width = arrays[0].shape[:2]
    if any(a.shape != (height, width, 3) or a.dtype != np.uint8 for a in arrays):
        raise InputError("frames must all be uint8 RGB of one size")
    lossless = path.suffix.lower() == ".mkv"
    if not lossless and (width % 2 or height % 2):
        raise InputError(f"{path.suffix} (yuv420p) needs even sides, got {width}x{height}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        rate = Fraction(fps).limit_denominator(1000)
        stream = container.add_stream("ffv1" if lossless else "libx264", rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "bgr0" if lossless else "yuv420p"
        for array in arrays:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


__all__ = ["Video", "read_video", "sample_indices", "write_video"]
