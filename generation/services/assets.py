"""Uploaded images: checked for type, size and memory, decoded once, counted against the team's
upload quotas, and stored once per team however often the same file is sent."""

from __future__ import annotations

import hashlib
import logging
import math
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Count, Sum
from PIL import Image, UnidentifiedImageError

from accounts.models import Team, User
from accounts.quotas import Quota, QuotaExceeded, quota_check, team_quota
from config.errors import ServerBusy
from generation.errors import ValidationFailed
from generation.models import InputAsset
from generation.services.decoding import MB, image_decode_bytes
from generation.services.files import stored_name
from generation.services.inputs import web_decode_budget
from generation.uploads import too_large_message

logger = logging.getLogger(__name__)

ALLOWED_FORMATS = {
    "PNG": ("image/png", ".png"),
    "JPEG": ("image/jpeg", ".jpg"),
    # Phones save photos as multi-picture JPEGs, which Pillow reports as MPO: still a JPEG file.
    "MPO": ("image/jpeg", ".jpg"),
    "WEBP": ("image/webp", ".webp"),
}
# The only parsers Pillow may try on an upload (an MPO file is opened by the JPEG one).
_OPENERS = ["PNG", "JPEG", "WEBP"]
DAMAGED = "The image is damaged and cannot be read."
# How long an upload waits for room in the web decode budget, and when to send it again.
DECODE_WAIT_SECONDS = 5.0
DECODE_RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class AssetUploadResult:
    asset: InputAsset
    created: bool  # False: the team already had this very file, and that asset is returned


@dataclass(frozen=True)
class _CheckedImage:
    mime: str
    extension: str
    width: int
    height: int


def asset_upload(*, team: Team, user: User | None, upload: UploadedFile) -> AssetUploadResult:
    """Check an uploaded image and store it for `team`, once.

    1. Size first, from the upload's length, before reading it.
    2. A file the team already has (same SHA-256) returns that asset: nothing is decoded or
       stored, and no quota is spent.
    3. Check and decode it (`_image_checked`): type, pixels and decoding memory from the header,
       then one full decode, so a damaged file is refused here and not in a worker. The decode
       holds its memory from the web process's budget (ServerBusy, 503, when none frees up).
    4. The team's upload quotas (count and bytes), before the file is written.
    5. Write the file. Storage may be a network service, so this happens outside any transaction.
    6. In a short transaction that locks the team's row (two uploads of a team take turns here),
       look for the same file and check the quotas again, then insert the row. A refusal, or a
       twin that won the race, deletes the file just written: over a quota nothing is stored.
    """
    if upload.size is None or upload.size > settings.UPLOAD_MAX_BYTES:
        raise ValidationFailed({"file": [too_large_message()]})
    content = upload.read()
    if not content:
        raise ValidationFailed({"file": ["The file is empty."]})
    digest = hashlib.sha256(content).hexdigest()
    existing = _same_file(team=team, sha256=digest)
    if existing is not None:
        # These very bytes were checked when they were first stored: no second decode.
        return AssetUploadResult(asset=existing, created=False)
    checked = _image_checked(content)
    _upload_quotas_check(team=team, adding_bytes=len(content))

    asset = InputAsset(
        id=uuid.uuid4(),
        team=team,
        uploaded_by=user,
        mime=checked.mime,
        width=checked.width,
        height=checked.height,
        bytes=len(content),
        sha256=digest,
    )
    asset.file.save(f"upload{checked.extension}", ContentFile(content), save=False)
    stored = stored_name(asset.file)
    try:
        with transaction.atomic():
            # NO KEY: rows that point at the team (jobs, ledger entries) can still be inserted meanwhile.
            locked_team = Team.objects.select_for_update(no_key=True).get(id=team.id)
            existing = _same_file(team=locked_team, sha256=digest)
            if existing is None:
                _upload_quotas_check(team=locked_team, adding_bytes=len(content))
                asset.save()
    except BaseException:
        _delete_stored(stored)
        raise
    if existing is not None:
        _delete_stored(stored)
        return AssetUploadResult(asset=existing, created=False)
    return AssetUploadResult(asset=asset, created=True)


def _image_checked(content: bytes) -> _CheckedImage:
    """1. The format from the bytes (never the name or the client's content type): PNG, JPEG, WebP.
    2. The pixel count and the memory decoding takes (pixels by mode, a JPEG's coefficient
       buffer, WebP's copies), from the header: a decompression bomb, or a small PNG hiding a
       huge bitmap, is refused before it is decoded.
    3. A full decode, within that cap: a truncated file or a corrupt stream is refused
       (ImageFile.LOAD_TRUNCATED_IMAGES stays off, so Pillow raises on a truncated file).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(ContentFile(content), formats=_OPENERS) as image:
                image_format = image.format or ""
                width, height = image.size
                if image_format not in ALLOWED_FORMATS:
                    raise ValidationFailed({"file": ["Only PNG, JPEG and WebP images are accepted."]})
                pixels, limit = width * height, settings.UPLOAD_MAX_PIXELS
                if pixels > limit:
                    raise ValidationFailed({"file": [f"The image has {pixels} pixels; at most {limit} are accepted."]})
                decoded = image_decode_bytes(image, content)
                if decoded > settings.UPLOAD_MAX_DECODED_MB * MB:
                    raise ValidationFailed({"file": [_too_much_memory(image.size, image.mode, decoded)]})
                with _decode_room(decoded):
                    image.load()
    except ValidationFailed:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValidationFailed({"file": ["The file is not a PNG, JPEG or WebP image."]}) from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise ValidationFailed({"file": [DAMAGED]}) from None
    mime, extension = ALLOWED_FORMATS[image_format]
    return _CheckedImage(mime=mime, extension=extension, width=width, height=height)


@contextmanager
def _decode_room(decoded: int) -> Iterator[None]:
    """Hold `decoded` bytes of this web process's decode budget while an upload is decoded.
    A web thread waits at most DECODE_WAIT_SECONDS for room (a person is waiting on the page),
    then the upload is refused with 503 SERVER_BUSY: nothing is stored."""
    budget = web_decode_budget()
    taken = budget.acquire(decoded, timeout=DECODE_WAIT_SECONDS)
    if taken is None:
        raise ServerBusy(
            "The server is busy checking other uploads; please send this image again in a few seconds.",
            retry_after=DECODE_RETRY_AFTER_SECONDS,
        )
    try:
        yield
    finally:
        budget.release(taken)


def _same_file(*, team: Team, sha256: str) -> InputAsset | None:
    # Served by the (team, sha256) index.
    return InputAsset.objects.filter(team=team, sha256=sha256).order_by("created_at").first()


def _upload_quotas_check(*, team: Team, adding_bytes: int) -> None:
    """QuotaExceeded when one more image of `adding_bytes` passes the team's count or bytes quota."""
    held = InputAsset.objects.filter(team=team).aggregate(count=Count("id"), stored=Sum("bytes"))
    quota_check(team, Quota.UPLOADS, used=held["count"])
    stored = held["stored"] or 0
    limit_mb = team_quota(team, Quota.UPLOAD_MB)
    if stored + adding_bytes > limit_mb * MB:
        used_mb = math.ceil(stored / MB)
        raise QuotaExceeded(
            Quota.UPLOAD_MB,
            limit=limit_mb,
            used=used_mb,
            message=(
                f"Your team's quota of {limit_mb} MB of uploaded images is reached: {used_mb} MB are used "
                f"and this image takes {_megabytes(adding_bytes)} MB."
            ),
        )


def _delete_stored(name: str) -> None:
    try:
        default_storage.delete(name)
    except Exception:  # the refusal stands; an orphaned file costs storage, not correctness
        logger.warning("Could not delete the refused upload %s", name, exc_info=True)


def _too_much_memory(size: tuple[int, int], mode: str, decoded: int) -> str:
    return (
        f"The image is {size[0]} x {size[1]} pixels ({mode}); decoding it takes {math.ceil(decoded / MB)} MB "
        f"of memory and at most {settings.UPLOAD_MAX_DECODED_MB} MB are accepted. Please upload a smaller picture."
    )


def _megabytes(amount: int) -> str:
    return f"{amount / MB:.1f}".removesuffix(".0")
