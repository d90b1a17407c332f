"""Where images and zips live in storage (local files or S3), and how they are written."""

from __future__ import annotations

import logging
import secrets
import tempfile
import zipfile
from collections.abc import Iterable
from datetime import datetime
from typing import IO

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models import F, Q
from django.db.models.fields.files import FieldFile
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.text import slugify

from config.cache_control import PRIVATE
from generation.models import GeneratedOutput, GenerationJob
from generation.services.bounded import call_bounded
from generation.services.faults import storage_part

logger = logging.getLogger(__name__)

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "video/mp4": "mp4"}
# Zips are written to a temporary file that moves to disk past this size, never built in memory.
SPOOL_BYTES = 8 * 1024 * 1024
# A zip entry's name starts with the prompt, cut at a word boundary near this many characters.
ENTRY_STEM_CHARS = 40
# The zip format cannot date a file before 1980 (and an entry without a date shows as 1980).
ZIP_EPOCH = datetime(1980, 1, 1)
# The version of what a stored zip holds, written into its storage name. Zips stored before
# version 2 (`images-<hex>.zip`) name their entries image-N and date a retry's carried-over
# images by the retry: a download builds those afresh rather than serve them (archives.py).
ARCHIVE_FORMAT = "v2"


def job_folder(job: GenerationJob) -> str:
    return f"teams/{job.team_id}/jobs/{job.id}"


def _output_stem(mime: str) -> str:
    return "clip" if mime.startswith("video/") else "image"


def output_filename(index: int, mime: str) -> str:
    """The name a person sees for output `index` (0-based): image-1.png, image-2.png... or clip-1.mp4."""
    return f"{_output_stem(mime)}-{index + 1}.{EXTENSIONS.get(mime, 'bin')}"


def output_label(index: int, mime: str) -> str:
    """How pages and the admin name output `index` (0-based): "Image 1", or "Clip 1"."""
    return f"{_output_stem(mime).capitalize()} {index + 1}"


def signed_file_headers(*, filename: str, as_attachment: bool) -> dict[str, str]:
    """The response headers an S3 signed URL is signed with (S3 takes them as parameters): kept by
    no cache, and offered under the name we give the file rather than its storage name."""
    return {
        "ResponseCacheControl": PRIVATE,
        "ResponseContentDisposition": content_disposition_header(as_attachment, filename) or "",
    }


def stored_name(file: FieldFile) -> str:
    """The storage name of a file field that must hold a file (an empty one is a bug)."""
    if not file.name:
        raise ValueError(f"{file.field} holds no file.")
    return file.name


def output_name_for(*, job: GenerationJob, index: int, mime: str) -> str:
    """A storage name for output `index` of `job`, new for every run.

    The random suffix keeps one run's file apart from another's (a run that lost its lease
    deletes its own file, never the one that got recorded); the name is recorded on the job
    before the write (`pending_file`), so a crash between write and record leaves no orphan.
    """
    stem, extension = output_filename(index, mime).rsplit(".", 1)
    return f"{job_folder(job)}/{stem}-{secrets.token_hex(4)}.{extension}"


def poster_name_for(name: str) -> str:
    """Where the poster frame of the clip stored as `name` goes: beside it, named after it, so
    that discarding a pending clip discards its poster too."""
    return f"{name.rsplit('.', 1)[0]}-poster.png"


def archive_name_for(job: GenerationJob) -> str:
    """A storage name for the job's zip, carrying the format it is written in (ARCHIVE_FORMAT)."""
    return f"{job_folder(job)}/zip-{ARCHIVE_FORMAT}-{secrets.token_hex(4)}.zip"


def archive_is_current(name: str) -> bool:
    """Whether the zip stored as `name` was written in today's format (ARCHIVE_FORMAT)."""
    return name.rsplit("/", 1)[-1].startswith(f"zip-{ARCHIVE_FORMAT}-")


def output_store(*, name: str, content: bytes) -> str:
    """Write one image under exactly `name` (a name from output_name_for) and return it."""
    return _save_exactly(name, ContentFile(content))


def _save_exactly(name: str, content: File) -> str:
    saved = default_storage.save(name, content)
    if saved != name:
        # The storage renamed the file (the name was taken): the record would point elsewhere.
        storage_delete_quietly(saved)
        raise OSError(f"storage stored {name} as {saved}")
    return saved


def prompt_slug(prompt: str, *, limit: int = ENTRY_STEM_CHARS) -> str:
    """The prompt as a file name's stem: "Golden roses, at dusk!" -> "golden-roses-at-dusk", cut
    at the last word boundary within `limit` characters (a single longer word is cut where it
    reaches the limit). A prompt with no letters or digits left is "atelier"."""
    slug = slugify(prompt)
    if len(slug) > limit:
        cut = slug[: limit + 1]  # one character more: a hyphen right after the limit is a boundary
        slug = cut[: cut.rfind("-")] if "-" in cut else slug[:limit]
    return slug.strip("-") or "atelier"


def archive_filename(prompt: str) -> str:
    """The name a job's zip is downloaded under: its prompt's slug, `golden-roses-at-dusk.zip`."""
    return f"{prompt_slug(prompt)}.zip"


def output_download_name(*, prompt: str, index: int, mime: str) -> str:
    """The name output `index` (0-based) has wherever a person saves it (the job's zip, a single
    download, the lightbox): the prompt's slug and the number people see,
    `golden-roses-at-dusk-1.png`, or `...-1.mp4` for a clip."""
    return f"{prompt_slug(prompt)}-{index + 1}.{EXTENSIONS.get(mime, 'bin')}"


def poster_download_name(*, prompt: str, index: int) -> str:
    """The name of the poster frame of clip `index` (0-based): `a-lighthouse-at-dusk-1-poster.png`."""
    return f"{prompt_slug(prompt)}-{index + 1}-poster.png"


def preview_download_name(*, prompt: str, index: int, mime: str) -> str:
    """The name of the live preview of output `index` (0-based): `golden-roses-at-dusk-1-preview.jpg`."""
    return f"{prompt_slug(prompt)}-{index + 1}-preview.{EXTENSIONS.get(mime, 'bin')}"


def _zip_date_time(moment: datetime | None) -> tuple[int, int, int, int, int, int]:
    """A zip entry's date: the output's own creation time, in the server's time zone (the
    format has no zone; unzip tools read it as local time)."""
    if moment is None:
        moment = timezone.now()
    local = timezone.localtime(moment).replace(tzinfo=None) if timezone.is_aware(moment) else moment
    local = max(local, ZIP_EPOCH)
    return (local.year, local.month, local.day, local.hour, local.minute, local.second)


def archive_write(*, job: GenerationJob, outputs: Iterable[GeneratedOutput], fileobj) -> None:  # type: ignore[no-untyped-def]
    """Write the zip of `outputs` to `fileobj`: each entry named after the job's prompt and
    dated when its image was made.

    The dates are read in one query, whatever `outputs` carry: an image a retry carried over is a
    row made with the retry (retry.py), so its date is the one of the output it was carried from
    (`GeneratedOutput.original`); and outputs read from the job's row (`job_outputs_of`) carry
    no date at all.
    """
    outputs = list(outputs)
    created = dict(
        GeneratedOutput.objects.filter(job_id=job.id).values_list(
            "index", Coalesce(F("carried_from__created_at"), F("created_at"))
        )
    )
    with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_STORED) as archive:
        for output in outputs:
            entry = zipfile.ZipInfo(
                output_download_name(prompt=job.prompt, index=output.index, mime=output.mime),
                date_time=_zip_date_time(created.get(output.index)),
            )
            entry.compress_type = zipfile.ZIP_STORED  # images are already compressed; storing is cheap
            entry.external_attr = 0o644 << 16  # a plain readable file once unzipped
            with (
                default_storage.open(stored_name(output.file), "rb") as source,
                archive.open(entry, "w") as target,
            ):
                for chunk in iter(lambda: source.read(1024 * 1024), b""):
                    target.write(chunk)


def archive_build(*, job: GenerationJob, outputs: Iterable[GeneratedOutput]) -> IO[bytes]:
    """The zip of `outputs` in a temporary file, rewound, which moves to disk past SPOOL_BYTES (a
    zip is never built in memory). The caller closes it."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - the caller closes it
    try:
        archive_write(job=job, outputs=outputs, fileobj=spool)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool  # type: ignore[return-value]


def archive_save(*, name: str, built: IO[bytes]) -> str:
    """Write the zip `built` (from archive_build) under exactly `name` and return it."""
    return _save_exactly(name, File(built, name="images.zip"))


def archive_store(*, job: GenerationJob, outputs: list[GeneratedOutput], name: str) -> str:
    with archive_build(job=job, outputs=outputs) as built:
        return archive_save(name=name, built=built)


def pending_file_discard(*, job: GenerationJob, fence: Q) -> None:
    """Delete the file an earlier run of `job` recorded as pending but never recorded as an
    output or zip (it crashed in between), then clear the mark. A storage failure here is a
    storage outage (InfrastructureFault): the job cannot go on without storage anyway."""
    name = job.pending_file
    if not name:
        return
    referenced = GeneratedOutput.objects.filter(job=job, file=name).exists() or job.archive.name == name
    if not referenced:
        with storage_part():
            storage_delete(name)
            if name.endswith(".mp4"):
                storage_delete(poster_name_for(name))
    GenerationJob.objects.filter(fence, id=job.id, pending_file=name).update(pending_file="")
    job.pending_file = ""


def storage_delete(name: str) -> None:
    """Delete a stored file, bounded by STORAGE_TIMEOUT_SECONDS like every storage call."""
    call_bounded(lambda: default_storage.delete(name), timeout=settings.STORAGE_TIMEOUT_SECONDS, what="storage delete")


def storage_delete_quietly(name: str) -> None:
    if not name:
        return
    try:
        storage_delete(name)
    except Exception:  # noqa: BLE001 - an orphan file is harmless; a crash here is not
        logger.warning("could not delete %s; it is left as an orphan", name, exc_info=True)
