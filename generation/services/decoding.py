"""What decoding a picture costs in memory, read from its header before anything is decoded.

Pillow keeps most modes at 4 bytes a pixel (RGB is stored as RGBX, LA as LXXA; see Pillow's
`src/libImaging/Storage.c`); only "1", "L" and "P" take 1 byte and the 16-bit greyscale modes
2. Two decoders hold more than the picture itself (measured with /proc's VmHWM on Pillow 13):

* libjpeg keeps a JPEG's whole coefficient buffer (2 bytes for each of 64 coefficients of every
  8 x 8 block of every component) when its scans cannot be decoded one after the other: a
  progressive JPEG, or one whose first scan does not hold every component. That is 6 bytes a
  pixel for a 4:4:4 colour JPEG, 3 for 4:2:0, 8 for CMYK, on top of the pixels, and decoding
  at a reduced scale (`Image.draft`) does not make it smaller.
* Pillow's WebP decoder holds the picture about four times while it decodes (the decoder's
  canvas and its previous frame, the pixels handed to Python, the image itself): 4.1 times
  measured for a lossy picture, 4.3 for a lossless one; counted as 4.5.

No Django here: the measuring tests run it in a bare process.
"""

from __future__ import annotations

import math

from PIL import Image, JpegImagePlugin

MB = 1024 * 1024

# Bytes a pixel of the modes Pillow stores in fewer than 4 (every other mode takes 4).
_SMALL_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
# The WebP decoder's copies of the picture, as a fraction (9 / 2 = 4.5).
_WEBP_COPIES = (9, 2)
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_JPEG_START_OF_SCAN = 0xDA
# Markers with no length after them: TEM, RST0-7, SOI, EOI.
_JPEG_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xDA)})


def bytes_per_pixel(mode: str) -> int:
    """The bytes Pillow holds for one pixel of a picture decoded in `mode`."""
    return _SMALL_MODE_BYTES.get(mode, 4)


def decode_bytes(*, size: tuple[int, int], mode: str, image_format: str) -> int:
    """The pixels of a picture of `size` in `mode` (4.5 times that for WebP): the memory its
    decode takes, leaving out a JPEG's coefficient buffer (see `image_decode_bytes`)."""
    pixels = size[0] * size[1] * bytes_per_pixel(mode)
    if image_format == "WEBP":
        return pixels * _WEBP_COPIES[0] // _WEBP_COPIES[1]
    return pixels


def image_decode_bytes(image: Image.Image, content: bytes, *, draft_to: tuple[int, int] | None = None) -> int:
    """The memory decoding `image` takes: its pixels, and a JPEG's coefficient buffer when
    its scans need one. `image` is opened from `content` and not loaded yet.

    `draft_to`: a JPEG is decoded at the reduced scale `image.draft(mode, draft_to)` picks (its
    pixels shrink; its coefficient buffer does not). Other formats decode at full size.
    """
    size = image.size
    image_format = image.format or ""
    if draft_to is not None and image_format in _JPEG_FORMATS:
        scale = jpeg_draft_scale(size, draft_to)
        size = (math.ceil(size[0] / scale), math.ceil(size[1] / scale))
    needed = decode_bytes(size=size, mode=image.mode, image_format=image_format)
    if isinstance(image, JpegImagePlugin.JpegImageFile) and jpeg_keeps_coefficients(image, content):
        needed += jpeg_coefficient_bytes(image)
    return needed


def jpeg_draft_scale(size: tuple[int, int], target: tuple[int, int]) -> int:
    """The 1/n scale Pillow's JPEG decoder uses for `draft(mode, target)` (JpegImagePlugin.draft)."""
    ratio = min(size[0] // max(1, target[0]), size[1] // max(1, target[1]))
    return next((n for n in (8, 4, 2) if ratio >= n), 1)


def jpeg_keeps_coefficients(image: JpegImagePlugin.JpegImageFile, content: bytes) -> bool:
    """Whether libjpeg holds the whole coefficient buffer to decode this JPEG (jdinput.c: a
    progressive picture, or a first scan with fewer components than the picture). A file whose
    first scan cannot be found is counted as one that does: its decode fails anyway."""
    if image.info.get("progressive") or image.info.get("progression"):
        return True
    components = _jpeg_first_scan_components(content)
    return components is None or components < image.layers


def jpeg_coefficient_bytes(image: JpegImagePlugin.JpegImageFile) -> int:
    """The size of the coefficient buffer: every component's 8 x 8 blocks, in whole MCUs
    (as jdcoefct.c allocates them), 64 coefficients of 2 bytes each."""
    layers = image.layer[: image.layers]  # (id, horizontal, vertical sampling, table) per component
    if not layers:
        return 0
    # libjpeg refuses sampling factors outside 1-4; clamped here so a crafted header cannot divide by 0.
    sampling = [(min(4, max(1, across)), min(4, max(1, down))) for _, across, down, _ in layers]
    widest = max(across for across, _ in sampling)
    tallest = max(down for _, down in sampling)
    mcus_across = math.ceil(image.size[0] / (8 * widest))
    mcus_down = math.ceil(image.size[1] / (8 * tallest))
    blocks = sum(mcus_across * across * mcus_down * down for across, down in sampling)
    return blocks * 64 * 2


def _jpeg_first_scan_components(content: bytes) -> int | None:
    """How many components the first scan (SOS) of the JPEG in `content` holds, walking its
    segments from the start; None when there is none. Bytes between segments are skipped, as
    libjpeg does; an embedded thumbnail is inside an APP segment, skipped whole."""
    position, end = 2, len(content)  # after SOI
    while position + 4 < end:
        if content[position] != 0xFF:
            position = content.find(b"\xff", position)
            if position == -1:
                return None
            continue
        marker = content[position + 1]
        if marker in (0xFF, 0x00):  # a fill byte, or junk
            position += 1
        elif marker in _JPEG_STANDALONE_MARKERS:
            position += 2
        elif marker == _JPEG_START_OF_SCAN:
            return content[position + 4]  # after the marker and the segment's length
        else:
            position += 2 + int.from_bytes(content[position + 2 : position + 4], "big")
    return None
