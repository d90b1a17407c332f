"""Where images and zips live in storage (local files or S3), and how they are written."""

from __future__ import annotations

import logging
import secrets
import tempfile
import zipfile
from collections.abc import Iterable

from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models.fields.files import FieldFile

from generation.models import GeneratedOutput, GenerationJob

logger = logging.getLogger(__name__)

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "video/mp4": "mp4"}
# Zips are written to a temporary file that moves to disk past this size, never built in memory.
SPOOL_BYTES = 8 * 1024 * 1024


def job_folder(job: GenerationJob) -> str:
    return f"teams/{job.team_id}/jobs/{job.id}"


def output_filename(index: int, mime: str) -> str:
    """The name a person sees for output `index` (0-based): image-1.png, image-2.png..."""
    return f"image-{index + 1}.{EXTENSIONS.get(mime, 'bin')}"


def stored_name(file: FieldFile) -> str:
    """The storage name of a file field that must hold a file (an empty one is a bug)."""
    if not file.name:
        raise ValueError(f"{file.field} holds no file.")
    return file.name


def output_store(*, job: GenerationJob, index: int, content: bytes, mime: str) -> str:
    """Write one image and return its storage name.

    The random suffix keeps a crashed attempt's orphan apart from the image that gets recorded.
    """
    stem, extension = output_filename(index, mime).rsplit(".", 1)
    name = f"{job_folder(job)}/{stem}-{secrets.token_hex(4)}.{extension}"
    return default_storage.save(name, ContentFile(content))


def archive_write(*, job: GenerationJob, outputs: Iterable[GeneratedOutput], fileobj) -> None:  # type: ignore[no-untyped-def]
    with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_STORED) as archive:
        for output in outputs:
            # Images are already compressed; storing them keeps zipping cheap.
            with (
                default_storage.open(stored_name(output.file), "rb") as source,
                archive.open(output_filename(output.index, output.mime), "w") as target,
            ):
                for chunk in iter(lambda: source.read(1024 * 1024), b""):
                    target.write(chunk)


def archive_store(*, job: GenerationJob, outputs: list[GeneratedOutput]) -> str:
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        archive_write(job=job, outputs=outputs, fileobj=spool)
        spool.seek(0)
        name = f"{job_folder(job)}/images-{secrets.token_hex(4)}.zip"
        return default_storage.save(name, File(spool, name="images.zip"))


def storage_delete_quietly(name: str) -> None:
    if not name:
        return
    try:
        default_storage.delete(name)
    except Exception:  # noqa: BLE001 - an orphan file is harmless; a crash here is not
        logger.warning("could not delete %s; it is left as an orphan", name, exc_info=True)
