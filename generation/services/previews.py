"""Live previews: the latest partial image of the output a job is making (docs/architecture.md,
"Live previews").

A provider that shows an image forming (OpenAI's streamed partial images, the local provider
halfway through its latency) hands each partial image to the run's `PreviewKeeper`, through
`OutputRequest.on_preview`, from the thread of its call. A preview is only something to look at:
never billed, never an output, never in the collection; so nothing about it may slow, fail or
pause the job.

1. `offer` returns at once. It keeps the newest preview of the output (an older one not yet
   written is dropped) and wakes this process's preview writer, a thread of its own: a provider
   call never waits on storage (its timeout would then count the write), and the job's thread
   never waits on a preview at all.
2. The writer stores the file (bounded by STORAGE_TIMEOUT_SECONDS like every storage call), then
   names it on the job in a short transaction fenced by the run's lease and by the output still
   being in the making (`completed_outputs` as when the output began), deletes the preview it
   replaced and announces the new one on the job's channel (`event_bus.publish`). Any failure
   (storage, database, a lost lease, an output recorded meanwhile) is logged and the preview
   dropped, its file deleted.
3. The output's record clears the job's preview in its own transaction (`PREVIEW_CLEARED`); after
   the commit it closes the keeper and the writer deletes the file. A run that stops making the
   output for any other reason closes the keeper too: the writer clears the job's preview if it
   still names this run's file, then deletes the file. `job_finish` clears and deletes whatever
   preview a job still names.

Previews are stored as `previews/<team id>/<job id>/image-<n>-<random>.<ext>`, apart from the
team's lasting files: a run that dies leaves its last one behind, and retention removes a file
under `previews/` that no running job names once it is RETENTION_PREVIEW_GRACE_HOURS old.

Memory: a keeper holds at most one preview waiting, the writer one being written, and a preview
over PREVIEW_MAX_BYTES is dropped.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from generation.models import GenerationJob
from generation.services import event_bus
from generation.services.bounded import call_bounded
from generation.services.files import EXTENSIONS, output_filename, output_store, storage_delete_quietly

if TYPE_CHECKING:
    from generation.services.lifeline import HeldJob

logger = logging.getLogger(__name__)

PREVIEWS_PREFIX = "previews"
# An OpenAI partial image is the size of the image (a 1536 x 1024 PNG is 2-4 MB); the local
# provider's are a few kB. Anything larger is not worth the memory it holds while it waits.
PREVIEW_MAX_BYTES = 8 * 1024 * 1024
# What a job's row holds once it shows no preview.
PREVIEW_CLEARED = {"preview_file": "", "preview_index": None, "preview_at": None}


@dataclass(frozen=True)
class ShownPreview:
    """The preview a running job shows: of output `index` (0-based), stored as `name`, made `at`."""

    index: int
    name: str
    at: datetime

    @property
    def number(self) -> int:
        return self.index + 1  # people count images from 1

    @property
    def mime(self) -> str:
        extension = self.name.rsplit(".", 1)[-1]
        return next((mime for mime, known in EXTENSIONS.items() if known == extension), "image/png")

    @property
    def stamp(self) -> str:
        """When it was made, as its URL and its announcement carry it (`?at=`)."""
        return self.at.isoformat()


def job_preview(job: GenerationJob) -> ShownPreview | None:
    """The preview `job` shows: only while it runs. A queued or finished job shows none, whatever
    its row may still name (a run that died; retention clears such names)."""
    if (
        job.status != GenerationJob.Status.RUNNING
        or not job.preview_file
        or job.preview_index is None
        or job.preview_at is None
    ):
        return None
    return ShownPreview(index=job.preview_index, name=job.preview_file, at=job.preview_at)


def preview_name_for(*, team_id: int, job_id: UUID | str, index: int, mime: str) -> str:
    """A storage name for a preview of output `index` (0-based), new for every preview: a browser
    asking for the one before never gets half of the next, and a run deletes only its own."""
    stem, extension = output_filename(index, mime).rsplit(".", 1)
    return f"{PREVIEWS_PREFIX}/{team_id}/{job_id}/{stem}-{secrets.token_hex(4)}.{extension}"


class PreviewKeeper:
    """The previews of one output in one run of a job; a context manager that closes itself.

    `offer` and `close` are called from the provider's and the job's threads and return at once;
    the work (`_step`) is done on the preview writer's thread, one step at a time.
    """

    def __init__(self, *, job_id: UUID, team_id: int, index: int, token: str, completed: int) -> None:
        self.job_id = job_id
        self.team_id = team_id
        self.index = index
        self._token = token
        self._completed = completed
        self._lock = threading.Lock()
        self._waiting: tuple[bytes, str] | None = None
        self._offered = False
        self._closed = False
        self._recorded = False
        self._discarded = False
        self._shown = ""  # the file this keeper last named on the job; the writer's alone

    @classmethod
    def for_output(cls, *, job: GenerationJob, held: HeldJob, index: int) -> PreviewKeeper:
        """For output `index` of `job`, run under `held`'s lease; `job.completed_outputs` is the
        count before this output (the pipeline keeps it up to date as it records outputs)."""
        return cls(job_id=job.id, team_id=job.team_id, index=index, token=held.token, completed=job.completed_outputs)

    def __enter__(self) -> PreviewKeeper:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def offer(self, content: bytes, mime: str) -> None:
        """A new partial image (`OutputRequest.on_preview`): kept as the one to show next."""
        if len(content) > PREVIEW_MAX_BYTES:
            logger.info("job %s: a preview of %d bytes is over the limit; dropped", self.job_id, len(content))
            return
        with self._lock:
            if self._closed:
                return  # the output is recorded, or the run moved on: too late to show
            self._waiting = (content, mime)
            self._offered = True
        PreviewWriter.current().wake(self)

    def close(self, *, recorded: bool = False) -> None:
        """Show nothing more; the writer deletes what was shown. `recorded`: the output's record
        already cleared the job's preview, in the transaction just committed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._recorded = recorded
            self._waiting = None
            offered = self._offered
        if offered:  # else there is nothing to delete, and no reason to wake anyone
            PreviewWriter.current().wake(self)

    # -- on the writer's thread ----------------------------------------------------------------

    def _step(self) -> bool:
        """One piece of work: show the waiting preview, or, once closed, discard the shown one.
        Returns whether there may be more."""
        with self._lock:
            waiting, self._waiting = self._waiting, None
            discard = self._closed and not self._discarded
            self._discarded = self._discarded or discard
        if discard:
            self._discard()
            return False
        if waiting is not None:
            self._show(*waiting)
            return True
        return False

    def _show(self, content: bytes, mime: str) -> None:
        name = preview_name_for(team_id=self.team_id, job_id=self.job_id, index=self.index, mime=mime)
        try:
            call_bounded(
                lambda: output_store(name=name, content=content),
                timeout=settings.STORAGE_TIMEOUT_SECONDS,
                what="preview write",
            )
        except Exception as error:  # noqa: BLE001 - a preview never fails a job, whatever storage raises
            logger.warning("job %s: a preview of image %d could not be stored: %r", self.job_id, self.index + 1, error)
            storage_delete_quietly(name)  # a half-written file; one still being written is retention's
            return
        at = timezone.now()
        try:
            replaced = self._name_on_job(name, at)
        except Exception as error:  # noqa: BLE001 - a database blip costs this preview only
            logger.warning(
                "job %s: a preview of image %d could not be recorded: %r", self.job_id, self.index + 1, error
            )
            connection.close()  # a dropped connection: the next query opens a new one
            storage_delete_quietly(name)
            return
        if replaced is None:
            # The output was recorded, the run lost its lease or the job ended meanwhile.
            storage_delete_quietly(name)
            with self._lock:
                self._closed = True
                self._waiting = None
            return
        if replaced:
            storage_delete_quietly(replaced)  # this run's previous preview, or one a dead run left
        self._shown = name
        shown = ShownPreview(index=self.index, name=name, at=at)
        event_bus.publish(str(self.job_id), {"preview": {"index": shown.index, "at": shown.stamp}})

    def _name_on_job(self, name: str, at: datetime) -> str | None:
        """Name `name` as the job's preview, while this run holds the lease and the output is
        still in the making; returns the name it replaced ("" for none), None when refused."""
        with transaction.atomic():
            current = (
                GenerationJob.objects.select_for_update()
                .filter(
                    id=self.job_id,
                    lease_owner=self._token,
                    status=GenerationJob.Status.RUNNING,
                    completed_outputs=self._completed,
                )
                .values_list("preview_file", flat=True)
                .first()
            )
            if current is None:
                return None
            GenerationJob.objects.filter(id=self.job_id).update(
                preview_file=name, preview_index=self.index, preview_at=at
            )
        return current

    def _discard(self) -> None:
        name, self._shown = self._shown, ""
        if not name:
            return
        if not self._recorded:
            try:
                # Only while it still names this run's file: another run's preview is not ours.
                GenerationJob.objects.filter(id=self.job_id, preview_file=name).update(**PREVIEW_CLEARED)
            except Exception as error:  # noqa: BLE001 - the name goes with the job's end or retention
                logger.warning("job %s: its preview could not be cleared: %r", self.job_id, error)
                connection.close()
        storage_delete_quietly(name)


class PreviewWriter:
    """The thread of a process that writes its jobs' previews: it runs while some keeper has
    work, one step of one keeper at a time in turn (so one job's stream of partial images cannot
    hold up another's), and closes its database connection when it stops."""

    _instance: PreviewWriter | None = None
    _instance_pid: int | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._due: deque[PreviewKeeper] = deque()
        self._thread: threading.Thread | None = None

    @classmethod
    def current(cls) -> PreviewWriter:
        """This process's writer (a forked child gets its own)."""
        with cls._instance_lock:
            if cls._instance is None or cls._instance_pid != os.getpid():
                cls._instance = cls()
                cls._instance_pid = os.getpid()
            return cls._instance

    @property
    def idle(self) -> bool:
        """No work waiting and no thread at work (the tests wait for it)."""
        with self._lock:
            return not self._due and self._thread is None

    def wake(self, keeper: PreviewKeeper) -> None:
        with self._lock:
            if keeper not in self._due:
                self._due.append(keeper)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="atelier-previews", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    if not self._due:
                        self._thread = None
                        return
                    keeper = self._due.popleft()
                try:
                    more = keeper._step()
                except Exception:  # noqa: BLE001 - the writer outlives any one preview
                    logger.exception("job %s: a preview step failed", keeper.job_id)
                    more = False
                if more:
                    with self._lock:
                        if keeper not in self._due:
                            self._due.append(keeper)
        finally:
            connection.close()
