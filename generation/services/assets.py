"""Uploaded images: checked for type, size and pixel count before anything is stored."""

from __future__ import annotations

import hashlib
import math
import uuid
import warnings

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from PIL import Image, UnidentifiedImageError

from accounts.models import Team, User
from generation.errors import ValidationFailed
from generation.models import InputAsset
from generation.services.inputs import MB, decode_bytes
from generation.uploads import too_large_message

ALLOWED_FORMATS = {
    "PNG": ("image/png", ".png"),
    "JPEG": ("image/jpeg", ".jpg"),
    # Phones save photos as multi-picture JPEGs, which Pillow reports as MPO: still a JPEG file.
    "MPO": ("image/jpeg", ".jpg"),
    "WEBP": ("image/webp", ".webp"),
}


def asset_upload(*, team: Team, user: User | None, upload: UploadedFile) -> InputAsset:
    """1. Size first, from the upload's length, before reading it.
    2. The format from the bytes (never the name or the client's content type): PNG, JPEG, WebP.
    3. The pixel count and the memory a decode takes (by the mode), from the header, before
       decoding: a decompression bomb, or a small PNG hiding a huge bitmap, is refused cheaply.
    4. A full decode (verify) so a truncated or corrupt file is refused.
    """
    if upload.size is None or upload.size > settings.UPLOAD_MAX_BYTES:
        raise ValidationFailed({"file": [too_large_message()]})
    content = upload.read()
    if not content:
        raise ValidationFailed({"file": ["The file is empty."]})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(ContentFile(content)) as image:
                image_format = image.format or ""
                width, height = image.size
                if image_format not in ALLOWED_FORMATS:
                    raise ValidationFailed({"file": ["Only PNG, JPEG and WebP images are accepted."]})
                pixels, limit = width * height, settings.UPLOAD_MAX_PIXELS
                if pixels > limit:
                    raise ValidationFailed({"file": [f"The image has {pixels} pixels; at most {limit} are accepted."]})
                decoded = decode_bytes(size=image.size, mode=image.mode, image_format=image_format)
                if decoded > settings.UPLOAD_MAX_DECODED_MB * MB:
                    raise ValidationFailed({"file": [_too_much_memory(image.size, image.mode, decoded)]})
                image.verify()
    except ValidationFailed:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValidationFailed({"file": ["The file is not a PNG, JPEG or WebP image."]}) from None
    except (OSError, SyntaxError, ValueError):
        raise ValidationFailed({"file": ["The image is damaged and cannot be read."]}) from None
    mime, extension = ALLOWED_FORMATS[image_format]
    asset = InputAsset(
        id=uuid.uuid4(),
        team=team,
        uploaded_by=user,
        mime=mime,
        width=width,
        height=height,
        bytes=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
    )
    asset.file.save(f"upload{extension}", ContentFile(content), save=False)
    asset.save()
    return asset


def _too_much_memory(size: tuple[int, int], mode: str, decoded: int) -> str:
    return (
        f"The image is {size[0]} x {size[1]} pixels ({mode}); decoding it takes {math.ceil(decoded / MB)} MB "
        f"of memory and at most {settings.UPLOAD_MAX_DECODED_MB} MB are accepted. Please upload a smaller picture."
    )
