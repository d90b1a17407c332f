"""A job's input images, decoded once per run, downsized to what its provider needs.

An upload can be far larger than any provider draws: the local provider never paints above
1024 px, yet a 6320 x 6320 RGBA source holds 152 MB once decoded. Decoding it again for every
image of a job is what ran the workers out of memory, so a run prepares each input once, here,
and hands the provider small PNG bytes (real providers' SDKs take bytes too); a picture already
small and upright is handed on as it was uploaded.

Memory is bounded twice:

* per job, by JOB_MEMORY_CEILING_MB: `job_inputs_oversized` estimates a job's peak from the
  stored rows, so a job that could not fit is refused at submit and, should one reach a worker
  anyway (an older upload), fails with INPUT_TOO_LARGE before anything is decoded;
* per worker process, by WORKER_DECODE_BUDGET_MB: every full-size decode holds its estimated
  peak from `decode_budget()`, so sixteen threads cannot decode sixteen large pictures at once.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from uuid import UUID

from django.conf import settings
from django.core.files.storage import default_storage
from PIL import ExifTags, Image, UnidentifiedImageError

from generation.models import GenerationJob, InputAsset, JobReference
from generation.providers.base import PermanentProviderError, Provider, ReferenceImage
from generation.services.bounded import call_bounded
from generation.services.decoding import MB, decode_bytes, image_decode_bytes, jpeg_draft_scale
from generation.services.faults import storage_part
from generation.services.files import stored_name

# An asset row does not record its mode, so an estimate from the row takes the common, and
# largest, case (4 bytes a pixel). It overstates only greyscale and palette pictures. Nor does
# it record whether a JPEG keeps its coefficient buffer while it decodes (a progressive one
# does): the estimate from the row leaves that buffer out, and the worker's check from the
# file's own header (`input_image_prepare`) counts it before anything is decoded. A file an
# upload accepts decodes within UPLOAD_MAX_DECODED_MB, buffer included, so it passes that check
# in a one-input job under the default ceiling (UPLOAD_MAX_DECODED_MB + 96).
_STORED_MODE = "RGBA"
_STORED_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}
# Strips of about this many bytes are converted and reduced at a time: converting or
# premultiplying (RGBA) the whole decoded picture at once would hold a second full-size copy.
_STRIP_BYTES = 4 * MB
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
# What ImageOps.exif_transpose does, applied to the downsized picture rather than the full one.
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class InputsTooLarge(PermanentProviderError):
    """A job's input would take more memory than a job may use (JOB_MEMORY_CEILING_MB)."""

    code = "INPUT_TOO_LARGE"


@dataclass(frozen=True)
class JobInputs:
    """What every output of one run receives: the source and references as (small) image bytes."""

    source: bytes | None
    references: tuple[ReferenceImage, ...]
    mask: bytes | None = None


# -- the estimate --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Oversize:
    """An input that would take its job over the memory ceiling, and by how much."""

    width: int
    height: int
    needed_bytes: int
    ceiling_bytes: int
    largest_megapixels: int  # what would fit instead; 0 when nothing would

    def describe(self, subject: str) -> str:
        advice = (
            f" Please use a picture of at most about {self.largest_megapixels} megapixels."
            if self.largest_megapixels
            else ""
        )
        return (
            f"{subject} is {self.width} x {self.height} pixels and would need about "
            f"{_mb(self.needed_bytes)} MB of memory to prepare; a job may use at most "
            f"{_mb(self.ceiling_bytes)} MB.{advice}"
        )


def job_memory_estimate(*, assets: Sequence[InputAsset], provider: Provider) -> int:
    """A job's peak memory in bytes, from the stored rows of its input images.

    Inputs are prepared one after the other, so the peak is the largest one being prepared, on
    top of what stays for the whole run: the provider's working memory for one output and the
    prepared inputs themselves.
    """
    largest = max((_stored_input_peak(asset, provider) for asset in assets), default=0)
    return _run_bytes(len(assets), provider) + largest


def job_inputs_oversized(*, assets: Sequence[InputAsset], provider: Provider) -> dict[UUID, Oversize]:
    """The inputs (by asset id) that would take their job over JOB_MEMORY_CEILING_MB.

    The estimate is the largest input plus a share every job has, so a job is over the ceiling
    exactly when one of its inputs is: each can be named on its own.
    """
    ceiling = settings.JOB_MEMORY_CEILING_MB * MB
    run_bytes = _run_bytes(len(assets), provider)
    oversized = {}
    for asset in assets:
        needed = run_bytes + _stored_input_peak(asset, provider)
        if needed > ceiling:
            oversized[asset.id] = _oversize(
                size=(asset.width, asset.height),
                needed=needed,
                room=ceiling - run_bytes - asset.bytes - _downsizing_bytes(provider.input_max_side),
                pixel_bytes=decode_bytes(size=(1, 1), mode=_STORED_MODE, image_format=_stored_format(asset)),
            )
    return oversized


def _stored_input_peak(asset: InputAsset, provider: Provider) -> int:
    size, image_format = (asset.width, asset.height), _stored_format(asset)
    if image_format == "JPEG":  # decoded at the reduced scale its decoder is asked for
        scale = jpeg_draft_scale(size, _fitted(size, provider.input_max_side))
        size = (math.ceil(size[0] / scale), math.ceil(size[1] / scale))
    decoded = decode_bytes(size=size, mode=_STORED_MODE, image_format=image_format)
    return _input_peak_bytes(file_bytes=asset.bytes, decoded=decoded, max_side=provider.input_max_side)


def _stored_format(asset: InputAsset) -> str:
    return _STORED_FORMATS.get(asset.mime, "PNG")


def _run_bytes(input_count: int, provider: Provider) -> int:
    """What a run holds besides the input being prepared: the provider at work on one output
    and every prepared input (at most max_side squared pixels, as a PNG no larger than raw)."""
    return provider.working_memory_mb * MB + input_count * provider.input_max_side**2 * 4


def _input_peak_bytes(*, file_bytes: int, decoded: int, max_side: int) -> int:
    """The peak of preparing one input: its file, its decoding (`decoded`: a JPEG's at the
    reduced scale its decoder is asked for) and the downsizing work around it."""
    return file_bytes + decoded + _downsizing_bytes(max_side)


def _downsizing_bytes(max_side: int) -> int:
    # The reduced copy (under twice the target a side), the strip being reduced with its
    # converted and premultiplied copies, the final picture and its PNG; measured well under.
    return 8 * max_side * max_side * 4


def _fitted(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    width, height = size
    longest = max(width, height)
    if longest <= max_side:
        return size
    return max(1, round(width * max_side / longest)), max(1, round(height * max_side / longest))


def _oversize(*, size: tuple[int, int], needed: int, room: int, pixel_bytes: int) -> Oversize:
    """`room`: the bytes left for decoding pixels once everything else is counted."""
    return Oversize(
        width=size[0],
        height=size[1],
        needed_bytes=needed,
        ceiling_bytes=settings.JOB_MEMORY_CEILING_MB * MB,
        largest_megapixels=max(0, room) // pixel_bytes // 1_000_000,
    )


def _mb(amount: int) -> int:
    return math.ceil(amount / MB)


# -- the worker's decode budget -------------------------------------------------------------------


class MemoryBudget:
    """Bytes one process may spend at once on some work; each caller waits for its share."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._in_use = 0
        self._waiting = 0
        self._condition = threading.Condition()

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def waiting(self) -> int:
        """Callers waiting for their share now."""
        return self._waiting

    def acquire(self, amount: int, *, timeout: float | None = None) -> int | None:
        """Take `amount` bytes once they are free; returns what to release (None on timeout).

        A request over the whole budget is clamped to it: it then waits to run alone instead of
        never. The job ceiling is meant to stay under the budget, so this is a safety net.
        """
        amount = min(max(0, amount), self.capacity)
        with self._condition:
            self._waiting += 1
            try:
                if not self._condition.wait_for(lambda: self._in_use + amount <= self.capacity, timeout=timeout):
                    return None
            finally:
                self._waiting -= 1
            self._in_use += amount
        return amount

    def release(self, amount: int) -> None:
        with self._condition:
            self._in_use -= amount
            self._condition.notify_all()

    @contextmanager
    def reserved(self, amount: int) -> Iterator[None]:
        taken = self.acquire(amount)
        assert taken is not None  # no timeout: acquire waits until it succeeds
        try:
            yield
        finally:
            self.release(taken)


_budgets: dict[str, MemoryBudget] = {}
_budgets_lock = threading.Lock()


def _process_budget(setting: str) -> MemoryBudget:
    """This process's budget named by `setting` (in MB).

    A changed setting (tests) gets a new budget; a holder releases into the one it took from.
    """
    capacity = getattr(settings, setting) * MB
    with _budgets_lock:
        budget = _budgets.get(setting)
        if budget is None or budget.capacity != capacity:
            budget = _budgets[setting] = MemoryBudget(capacity)
        return budget


def decode_budget() -> MemoryBudget:
    """A worker's budget for full-size decodes (WORKER_DECODE_BUDGET_MB)."""
    return _process_budget("WORKER_DECODE_BUDGET_MB")


def web_decode_budget() -> MemoryBudget:
    """A web process's budget for decoding uploads (WEB_DECODE_BUDGET_MB): its threads share it."""
    return _process_budget("WEB_DECODE_BUDGET_MB")


# -- preparing ------------------------------------------------------------------------------------


def job_inputs_prepare(*, job: GenerationJob, provider: Provider) -> JobInputs:
    """Every input image of `job`, decoded once and downsized for `provider`.

    1. Estimate the job's peak from the stored rows and raise InputsTooLarge, naming the image,
       before any file is read.
    2. Read each file once. A picture already within the provider's `input_max_side` and
       upright is passed on as it is (the local provider's pictures stay byte-identical).
    3. Otherwise decode it within this process's decode budget, a JPEG at a reduced scale,
       reduce it in strips, resize it to `input_max_side`, apply its EXIF orientation and
       encode it once as PNG.
    """
    links = list(job.reference_links.select_related("asset").order_by("id"))
    mask = next((link for link in links if link.role == JobReference.Role.MASK), None)
    steering = [link for link in links if link is not mask]
    named: list[tuple[str, InputAsset]] = []
    if job.source_asset is not None:
        named.append(("The source image", job.source_asset))
    if mask is not None:
        named.append(("The mask", mask.asset))
    position = 0
    for link in steering:
        if link.role == JobReference.Role.SKETCH:
            named.append(("The sketch", link.asset))
        else:
            position += 1
            named.append((f"Reference image {position}", link.asset))
    oversized = job_inputs_oversized(assets=[asset for _, asset in named], provider=provider)
    for subject, asset in named:
        if asset.id in oversized:
            raise InputsTooLarge(oversized[asset.id].describe(subject))

    # What one input may take while it is prepared, should its file disagree with its row.
    limit = settings.JOB_MEMORY_CEILING_MB * MB - _run_bytes(len(named), provider)
    prepared = [
        input_image_prepare(content=_read(asset), subject=subject, max_side=provider.input_max_side, limit=limit)
        for subject, asset in named
    ]
    source = prepared.pop(0) if job.source_asset is not None else None
    # The mask is downsized exactly like the source, so the two keep the same size.
    mask_content = prepared.pop(0) if mask is not None else None
    references = tuple(
        ReferenceImage(content=content, weight=link.weight) for content, link in zip(prepared, steering, strict=True)
    )
    return JobInputs(source=source, references=references, mask=mask_content)


def input_image_prepare(*, content: bytes, subject: str, max_side: int, limit: int | None = None) -> bytes:
    """One picture as bytes a provider can take, at most `max_side` pixels a side, upright.

    `subject` names the picture in errors ("The source image"). The estimate from the file's
    own header must stay within `limit` bytes (default: the job ceiling), in case the file
    disagrees with its row. (Pillow's WebP decoder allocates its canvas when the file is opened,
    before that check and outside the decode budget; the upload limit keeps that canvas small.)
    """
    try:
        with Image.open(io.BytesIO(content)) as image:
            if max(image.size) <= max_side and _orientation(image) == 1:
                return content
            decoded = image_decode_bytes(image, content, draft_to=_fitted(image.size, max_side))
            needed = _input_peak_bytes(file_bytes=len(content), decoded=decoded, max_side=max_side)
            allowed = settings.JOB_MEMORY_CEILING_MB * MB if limit is None else limit
            if needed > allowed:
                room = allowed - len(content) - _downsizing_bytes(max_side)
                # What each of its pixels costs, coefficients and reduced scale included.
                pixel_bytes = max(1, math.ceil(decoded / (image.width * image.height)))
                oversize = _oversize(size=image.size, needed=needed, room=room, pixel_bytes=pixel_bytes)
                raise InputsTooLarge(oversize.describe(subject))
            with decode_budget().reserved(needed):
                return _downsized_png(image, max_side)
    except Image.DecompressionBombError:
        raise InputsTooLarge(f"{subject} has far too many pixels to be used.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PermanentProviderError(
            f"{subject} could not be read; please upload it again as a PNG, JPEG or WebP picture.",
            code="INVALID_INPUT_IMAGE",
        ) from exc


def _read(asset: InputAsset) -> bytes:
    """The asset's bytes. Any storage failure, a missing file included, is an outage (the job
    pauses): assets are protected from deletion while a job uses them, so a file that is not
    there is a volume or bucket that is not reachable right now."""
    name = stored_name(asset.file)

    def read() -> bytes:
        with default_storage.open(name, "rb") as handle:
            return handle.read()  # type: ignore[no-any-return]

    with storage_part():
        return call_bounded(read, timeout=settings.STORAGE_TIMEOUT_SECONDS, what="input read")


def _orientation(image: Image.Image) -> int:
    value = image.getexif().get(ExifTags.Base.Orientation, 1)
    return value if isinstance(value, int) else 1


def _downsized_png(image: Image.Image, max_side: int) -> bytes:
    target = _fitted(image.size, max_side)
    image.draft("RGB", target)  # JPEG only: decode at 1/2, 1/4 or 1/8 of the size
    image.load()
    orientation = _orientation(image)  # a PNG's EXIF may follow its pixels: read after the load
    mode = "RGBA" if image.mode in _ALPHA_MODES or "transparency" in image.info else "RGB"
    factor = min(image.width // target[0], image.height // target[1])
    small = _reduced(image, factor, mode)
    if small.size != target:
        small = small.resize(target, Image.Resampling.LANCZOS)
    if orientation in _ORIENTATION_TRANSPOSE:
        small = small.transpose(_ORIENTATION_TRANSPOSE[orientation])
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return buffer.getvalue()


def _reduced(image: Image.Image, factor: int, mode: str) -> Image.Image:
    """`image` in `mode`, reduced `factor` times by averaging, a strip at a time."""
    if factor < 2:
        return image if image.mode == mode else image.convert(mode)
    width, height = image.size
    rows = factor * max(1, _STRIP_BYTES // (width * 4 * factor))
    reduced = Image.new(mode, (math.ceil(width / factor), math.ceil(height / factor)))
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(height, top + rows)))  # keeps palette and transparency
        if strip.mode != mode:
            strip = strip.convert(mode)
        reduced.paste(strip.reduce(factor), (0, top // factor))
    return reduced
