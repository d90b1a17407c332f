from __future__ import annotations

import io
import struct
import uuid
import zlib

import factory
from django.core.files.base import ContentFile
from PIL import Image

from accounts.models import User
from accounts.services import user_create
from generation.models import GenerationJob, InputAsset


class UserFactory(factory.Factory):
    """A user with their personal team (made by the same service sign-up uses)."""

    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"person{n}@example.com")
    password = "correct-horse-battery"

    @classmethod
    def _create(cls, model_class: type, email: str, password: str) -> User:
        return user_create(email=email, password=password)


def png_bytes(width: int = 64, height: int = 48, colour: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def big_png_bytes(width: int, height: int, *, alpha: bool = True) -> bytes:
    """A real PNG of any size (bands of two colours), written row by row: a 6320 x 6320 RGBA
    picture without holding its 152 MB of pixels, as a small file hiding a huge bitmap."""
    channels = 4 if alpha else 3
    rows = [b"\x00" + bytes(colour[:channels]) * width for colour in ((40, 120, 200, 255), (230, 90, 40, 160))]
    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(rows[(y // 64) % 2]) for y in range(height)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 6 if alpha else 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


class InputAssetFactory(factory.django.DjangoModelFactory):
    """An uploaded image's row made directly, as an older upload (before today's limits) left it.

    Give `content` to store a real file (its size and type then come from it); without it, the
    row names a file that does not exist, so nothing can have read it.
    """

    class Meta:
        model = InputAsset

    mime = "image/png"
    width = 64
    height = 48
    bytes = 1024
    sha256 = "0" * 64
    content = None

    @classmethod
    def _create(cls, model_class: type, content: bytes | None = None, **fields: object) -> InputAsset:
        asset = InputAsset(**fields)
        if content is None:
            asset.file.name = f"teams/{asset.team_id}/inputs/{uuid.uuid4()}-never-stored.png"
        else:
            with Image.open(io.BytesIO(content)) as image:
                asset.width, asset.height = image.size
                image_format = image.format or "PNG"
            asset.mime = Image.MIME[image_format]
            asset.bytes = len(content)
            asset.file.save(f"upload.{image_format.lower()}", ContentFile(content), save=False)
        asset.save()
        return asset


class GenerationJobFactory(factory.django.DjangoModelFactory):
    """A queued job row made directly, as if accepted earlier (no credits are held for it)."""

    class Meta:
        model = GenerationJob

    kind = GenerationJob.Kind.IMAGE
    provider = "local"
    model = "atelier-sketch-1"
    prompt = "teal marble nails"
    optimized_prompt = factory.SelfAttribute("prompt")
    params = factory.LazyFunction(lambda: {"seed": 7, "quality": "draft"})
    total_outputs = 1
    credits_per_output = 1
