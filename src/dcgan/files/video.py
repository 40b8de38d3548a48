"""MP4 files of animations (dcgan-sample walks), when the optional imageio-ffmpeg package is
installed (`pip install "dcgan[video]"`; it brings its own ffmpeg binary)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from dcgan.errors import DCGANError
from dcgan.files.atomic import atomic_path

VIDEO_EXTRA = 'pip install "dcgan[video]"'


def video_available() -> bool:
    return importlib.util.find_spec("imageio_ffmpeg") is not None


def write_mp4(frames: list[Image.Image], path: Path, fps: float) -> None:
    """The frames as an H.264 MP4 (yuv420p, so every player shows it), written atomically.
    Frames are padded with black to even sizes, which yuv420p needs."""
    if not video_available():
        raise DCGANError(f"writing {path.name} needs imageio-ffmpeg: {VIDEO_EXTRA}")
    import imageio_ffmpeg

    width, height = frames[0].size
    even = (width + width % 2, height + height % 2)
    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(str(tmp), even, fps=fps, macro_block_size=2,
                                             ffmpeg_log_level="error",
                                             output_params=["-f", "mp4"])
        writer.send(None)  # start ffmpeg
        for frame in frames:
            canvas = Image.new("RGB", even)
            canvas.paste(frame.convert("RGB"))
            writer.send(np.ascontiguousarray(np.asarray(canvas)))
        writer.close()
