"""A clip's poster: its first frame as a PNG, shown by the `<video>` element before it plays."""

from __future__ import annotations

import io

import av
from av.video.frame import VideoFrame

# A poster is a preview: a long side of this many pixels is plenty and keeps it small.
POSTER_MAX_SIDE = 1280


def clip_poster(content: bytes) -> bytes:
    """The first decodable frame of `content` (an MP4), downsized, as PNG bytes.

    A clip the provider sent that cannot be decoded is not a reason to lose it (it is paid
    for): the caller gets an empty poster and the page falls back to the clip itself.
    """
    try:
        with av.open(io.BytesIO(content), mode="r") as container:
            for frame in container.decode(video=0):
                assert isinstance(frame, VideoFrame)
                image = frame.to_image()
                image.thumbnail((POSTER_MAX_SIDE, POSTER_MAX_SIDE))
                buffer = io.BytesIO()
                image.save(buffer, format="PNG", optimize=False)
                return buffer.getvalue()
    except (av.FFmpegError, OSError, ValueError):
        pass
    return b""
