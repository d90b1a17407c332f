"""Retention: what Atelier stops keeping, and when (docs/architecture.md, "Retention").

A file is removed only when nothing names it. The names a row can hold are
`GeneratedOutput.file` and `.poster` (a look is an output of the collection, so its files are its
output's), `GenerationJob.archive` (the zip), `.pending_file` (a file being written, and the
poster of a pending clip) and `.preview_file`, and `InputAsset.file`. Every file lives under its
team's folder (`teams/<team>/...`, files.py and `input_upload_path`) and every row that names it
belongs to that team (a retry carries its images within the team; a remix copies the look's bytes
into an upload of the team), so a team's folder is judged against that team's rows alone. Live
previews live under `previews/` (previews.py); anything else in storage is not Atelier's to judge.

Every step can be repeated: a file found gone is not an error, a row is removed only by a
statement that checks again that nothing refers to it, and a reference is cleared only while it
still names the file. Two sweeps at once do not both work: the older one still running goes on,
the younger records that it stood down (`_sweep_begin`); and should two ever overlap, every step
is safe to repeat (only a file's count could then be taken twice).
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from generation.models import (
    FINISHED_STATUSES,
    GeneratedOutput,
    GenerationJob,
    InputAsset,
    JobEvent,
    JobReference,
    RetentionSweep,
    StudioTab,
)
from generation.services.faults import InfrastructureFault, storage_part
from generation.services.files import poster_name_for
from generation.services.previews import PREVIEWS_PREFIX
from generation.services.stored_files import StorageFiles, StoredFile, stored_files
from webhooks.models import WebhookDelivery

logger = logging.getLogger(__name__)

TEAMS_PREFIX = "teams"
# Rows and files are removed this many at a time: each batch is one short transaction or one
# storage request (S3 deletes up to 1,000 keys a request), and the sweep's time budget is looked at
# between batches.
BATCH = 200
# What the admin shows of the files a sweep removed.
EXAMPLES_KEPT = 20
# Every kind the admin counts, shown even when a sweep removed none of it.
KINDS = ("zips", "orphans", "uploads", "previews", "events", "deliveries", "delivery_attempts")
# How the admin and the command name each kind: (one, several).
KIND_WORDS = {
    "zips": ("zip", "zips"),
    "orphans": ("orphan file", "orphan files"),
    "uploads": ("upload", "uploads"),
    "previews": ("preview", "previews"),
    "events": ("job event", "job events"),
    "deliveries": ("webhook delivery", "webhook deliveries"),
    "delivery_attempts": ("delivery attempt", "delivery attempts"),
}
STOOD_DOWN = "Stood down: sweep #{id}, started {started:%Y-%m-%d %H:%M:%S} UTC, was still running."
OUT_OF_TIME = "Stopped after its time budget of {seconds:.0f} s; the next sweep goes on from there."
DIED = "Did not finish: its process stopped while it ran."


class _OutOfTime(Exception):
    """The sweep used its time budget; what it did so far stands."""


@dataclass
class _Sweep:
    """What one sweep has removed so far, and its time budget."""

    row: RetentionSweep
    now: datetime
    deadline: float
    files: StorageFiles
    removed: Counter = field(default_factory=Counter)
    bytes_removed: int = 0
    examples: list[str] = field(default_factory=list)

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise _OutOfTime

    def count(self, kind: str, number: int = 1, *, size: int = 0, names: Iterable[str] = ()) -> None:
        self.removed[kind] += number
        self.bytes_removed += size
        for name in names:
            if len(self.examples) < EXAMPLES_KEPT:
                self.examples.append(name)


def retention_sweep(*, now: datetime | None = None) -> RetentionSweep:
    """Remove what nothing needs any more; returns the sweep's row, which the admin shows.

    `now` is the moment ages are measured from (tests and operators may sweep as of a later day);
    the row itself records the real times.

    1. Begin: record the sweep, and stand down if an earlier sweep is still running
       (`_sweep_begin`).
    2. Webhook deliveries that are no longer pending (delivered or given up), with their attempts,
       and then job events that no delivery refers to any more, once older than
       RETENTION_EVENT_DAYS. A pending delivery is never removed, nor its event.
    3. Zips of jobs finished more than RETENTION_ZIP_DAYS ago: the job's `archive` is cleared
       (the next download builds it again from the images and stores it, archives.py, for a
       later sweep to clear); the files themselves go in step 6, so a download that read the job a
       moment before still finds its zip.
    4. Uploads older than RETENTION_UPLOAD_DAYS that no job uses (as its source, a reference, a
       sketch or a mask) and no studio tab's draft holds (the tab's pending inputs): the rows go,
       then their files.
    5. Each team's folder: a file no row of the team names is an orphan, removed once older than
       RETENTION_ORPHAN_GRACE_HOURS. Then the `previews/` folder: a preview goes once older than
       RETENTION_PREVIEW_GRACE_HOURS unless a running job shows it.
       Every candidate is checked against the rows again just before it goes.
    6. The zips cleared in step 3.
    7. Record what was removed, the bytes, a few names and any error. A storage fault stops the
       sweep (it is recorded, and the next sweep tries again); so does its time budget, one
       RETENTION_INTERVAL_SECONDS, so sweeps never pile up.
    """
    now = now or timezone.now()
    row = _sweep_begin()
    if row.finished_at is not None:
        return row
    sweep = _Sweep(
        row=row,
        now=now,
        deadline=time.monotonic() + settings.RETENTION_INTERVAL_SECONDS,
        files=stored_files(),
    )
    zips: list[str] = []
    error = ""
    try:
        _deliveries_and_events_remove(sweep)
        zips = _zips_detach(sweep)
        _uploads_remove(sweep)
        _team_folders_sweep(sweep, leave=set(zips))
        _previews_folder_sweep(sweep)
    except _OutOfTime:
        error = OUT_OF_TIME.format(seconds=settings.RETENTION_INTERVAL_SECONDS)
    except InfrastructureFault as fault:
        logger.warning("retention sweep %s stopped: %s", row.id, fault)
        error = str(fault)
    except Exception as failure:
        # A bug or the database: recorded if the database still answers, and raised for the log.
        try:
            _sweep_end(sweep, error=f"{type(failure).__name__}: {failure}")
        except Exception:  # noqa: BLE001 - the first error is the one to raise
            logger.exception("retention sweep %s could not record its failure", row.id)
        raise
    try:
        _zips_delete(sweep, zips)
    except InfrastructureFault as fault:
        # The zips are no job's any more: the orphan step of a later sweep removes them.
        logger.warning("retention sweep %s could not delete zips: %s", row.id, fault)
        error = error or str(fault)
    return _sweep_end(sweep, error=error)


def retention_summary(sweep: RetentionSweep) -> str:
    """What a sweep removed, in words: "2 zips, 1 orphan file (3.1 MB)", or "nothing"."""
    counts = [
        f"{number} {KIND_WORDS[kind][number != 1]}" for kind in KINDS if (number := int(sweep.removed.get(kind, 0)))
    ]
    if not counts:
        return "nothing"
    return f"{', '.join(counts)} ({filesizeformat(sweep.bytes_removed)})"


def _sweep_begin() -> RetentionSweep:
    """The sweep's row. The oldest sweep still running goes on and a younger one stands down: each
    first commits its row, then looks for an earlier unfinished one, so of two that start at once
    one works (both could only if one's row took its id before and committed after the other's
    whole look, an instant; the steps are safe to repeat). A sweep whose process died leaves its
    row unfinished: past twice the time budget it is marked as such, and no longer stops anyone."""
    started = timezone.now()
    stale = started - timedelta(seconds=2 * settings.RETENTION_INTERVAL_SECONDS + settings.STORAGE_TIMEOUT_SECONDS)
    RetentionSweep.objects.filter(finished_at__isnull=True, started_at__lt=stale).update(
        finished_at=started, error=DIED
    )
    row = RetentionSweep.objects.create(started_at=started)
    running = RetentionSweep.objects.filter(finished_at__isnull=True, id__lt=row.id).order_by("id").first()
    if running is not None:
        row.finished_at = timezone.now()
        row.error = STOOD_DOWN.format(id=running.id, started=running.started_at)
        row.removed = dict.fromkeys(KINDS, 0)
        row.save(update_fields=["finished_at", "error", "removed"])
    return row


def _sweep_end(sweep: _Sweep, *, error: str) -> RetentionSweep:
    row = sweep.row
    row.finished_at = timezone.now()
    row.removed = {kind: sweep.removed[kind] for kind in KINDS}
    row.bytes_removed = sweep.bytes_removed
    row.examples = sweep.examples
    row.error = error
    row.save(update_fields=["finished_at", "removed", "bytes_removed", "examples", "error"])
    logger.info("retention sweep %s removed %s (%s bytes) %s", row.id, row.removed, row.bytes_removed, error)
    return row


# --- 2. Webhook deliveries and job events -------------------------------------------------------


def _deliveries_and_events_remove(sweep: _Sweep) -> None:
    cutoff = sweep.now - timedelta(days=settings.RETENTION_EVENT_DAYS)
    finished = WebhookDelivery.objects.filter(created_at__lt=cutoff).exclude(status=WebhookDelivery.Status.PENDING)
    while ids := list(finished.order_by("id").values_list("id", flat=True)[:BATCH]):
        with transaction.atomic():
            # Locked, and filtered again, before they go: "send again" may have made one pending
            # meanwhile. (A delete alone would not do: Django reads the rows, then deletes them by
            # id, so a delivery made pending in between would still go.) A "send again" from now
            # on waits for the commit, then finds the delivery gone (404).
            going = list(finished.select_for_update().filter(id__in=ids).values_list("id", flat=True))
            _, by_model = WebhookDelivery.objects.filter(id__in=going).delete()
        sweep.count("deliveries", by_model.get(WebhookDelivery._meta.label, 0))
        sweep.count("delivery_attempts", by_model.get("webhooks.WebhookAttempt", 0))
        sweep.check_time()
    # An event goes only once no delivery refers to it, so deleting it cascades to none.
    unreferenced = JobEvent.objects.filter(created_at__lt=cutoff).filter(
        ~Exists(WebhookDelivery.objects.filter(event=OuterRef("pk")))
    )
    while ids := list(unreferenced.order_by("id").values_list("id", flat=True)[:BATCH]):
        _, by_model = unreferenced.filter(id__in=ids).delete()
        sweep.count("events", by_model.get(JobEvent._meta.label, 0))
        sweep.check_time()


# --- 3. and 6. Zips -------------------------------------------------------------------------------


def _zips_detach(sweep: _Sweep) -> list[str]:
    """Clear the `archive` of jobs finished before the cutoff; the names of the zips cleared. Each
    is cleared only while it still names that zip, so a repeated or concurrent sweep clears it once."""
    cutoff = sweep.now - timedelta(days=settings.RETENTION_ZIP_DAYS)
    # created_at first: the (status, created_at) index; a job finishes after it was created.
    stored = GenerationJob.objects.filter(
        status__in=FINISHED_STATUSES, created_at__lt=cutoff, finished_at__lt=cutoff
    ).exclude(archive="")
    detached: list[str] = []
    while batch := list(stored.order_by("created_at").values_list("id", "archive")[:BATCH]):
        cleared = [
            name for job_id, name in batch if GenerationJob.objects.filter(id=job_id, archive=name).update(archive="")
        ]
        detached += cleared
        if not cleared:
            break  # every one changed under us: nothing left that this sweep could clear
        sweep.check_time()
    return detached


def _zips_delete(sweep: _Sweep, names: list[str]) -> None:
    with storage_part():
        for start in range(0, len(names), BATCH):
            batch = names[start : start + BATCH]
            sizes = [file.size or 0 for name in batch if (file := sweep.files.measured(StoredFile(name)))]
            sweep.files.delete(batch)
            sweep.count("zips", len(batch), size=sum(sizes), names=batch)


# --- 4. Uploads ---------------------------------------------------------------------------------


def _uploads_remove(sweep: _Sweep) -> None:
    cutoff = sweep.now - timedelta(days=settings.RETENTION_UPLOAD_DAYS)
    unused = InputAsset.objects.filter(
        ~Exists(GenerationJob.objects.filter(source_asset=OuterRef("pk"))),
        ~Exists(JobReference.objects.filter(asset=OuterRef("pk"))),
        created_at__lt=cutoff,
    )
    after: uuid.UUID | None = None
    while batch := list(
        unused.filter(**({"pk__gt": after} if after else {})).order_by("pk").values_list("pk", "team_id")[:BATCH]
    ):
        after = batch[-1][0]
        gone = _uploads_delete(unused, batch)
        with storage_part():
            sweep.files.delete([name for name, _ in gone])
        sweep.count("uploads", len(gone), size=sum(size for _, size in gone), names=[name for name, _ in gone])
        sweep.check_time()


def _uploads_delete(unused: Any, batch: list[tuple[uuid.UUID, int]]) -> list[tuple[str, int]]:
    """Delete the rows of `batch` that nothing refers to; their (file name, bytes).

    1. Lock the rows, skipping any that a job being committed holds (its foreign key check locks
       the upload it names): that upload is in use, and the sweep never waits on a submission.
    2. Check again, in a statement of its own, which locked rows no job uses. The locking
       statement's own check saw the jobs of its snapshot, taken before it reached the rows: a
       job committed in between (its lock already released) would be missed. A statement run
       after the lock sees every job committed before it (READ COMMITTED), and no job can commit
       with a locked row any more: its foreign key check waits for this transaction, then finds
       the row gone, and the submission answers 400 naming the field (services/submit.py).
    3. Read the drafts, after the lock too (a draft holds asset ids in its JSON, which no foreign
       key guards), and delete what is neither used nor drafted.
    """
    with transaction.atomic():
        locked = list(
            InputAsset.objects.select_for_update(skip_locked=True)
            .filter(pk__in=[asset_id for asset_id, _ in batch])
            .values_list("pk", flat=True)
        )
        still_unused = list(unused.filter(pk__in=locked).values_list("pk", "team_id", "file", "bytes"))
        in_drafts = _draft_asset_ids(team_ids={team_id for _, team_id, _, _ in still_unused})
        going = [(asset_id, name, size) for asset_id, _, name, size in still_unused if str(asset_id) not in in_drafts]
        InputAsset.objects.filter(pk__in=[asset_id for asset_id, _, _ in going]).delete()
    return [(name, size) for _, name, size in going]


def _draft_asset_ids(*, team_ids: set[int]) -> set[str]:
    """Every id in the drafts of these teams' studio tabs, wherever the draft holds it (the source,
    the mask, a reference, the sketch: any UUID in it counts, so a new kind of input is covered too)."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str) and len(value) in (32, 36):
            with contextlib.suppress(ValueError):  # a prompt or another string, not an id
                found.add(str(uuid.UUID(value)))

    for draft in StudioTab.objects.filter(team_id__in=team_ids).values_list("draft", flat=True).iterator():
        walk(draft)
    return found


# --- 5. Orphans and previews ------------------------------------------------------------------------


def _is_preview(name: str) -> bool:
    return name.startswith(f"{PREVIEWS_PREFIX}/")


@dataclass(frozen=True)
class _Named:
    """What rows name: every file (`all`) and the previews running jobs show (`shown_previews`)."""

    all: set[str]
    shown_previews: set[str]

    def keeps(self, name: str) -> bool:
        return name in (self.shown_previews if _is_preview(name) else self.all)


def _named_by_team(team_id: int, names: list[str]) -> _Named:
    """Which of `names` the rows of a team name (never every name it holds: a big team's would
    not fit). A team's folder holds no previews: they live under `previews/`."""

    def among(*fields: str) -> Q:
        condition = Q()
        for name_field in fields:
            condition |= Q(**{f"{name_field}__in": names})
        return condition

    named: set[str] = set()
    for file, poster in GeneratedOutput.objects.filter(among("file", "poster"), job__team_id=team_id).values_list(
        "file", "poster"
    ):
        named.update((file, poster))
    # A pending clip's poster is named after the clip: asked for, it is looked up by the clip's name.
    pending_clips = [f"{name.removesuffix('-poster.png')}.mp4" for name in names if name.endswith("-poster.png")]
    jobs = GenerationJob.objects.filter(team_id=team_id).filter(
        Q(archive__in=names) | Q(pending_file__in=[*names, *pending_clips])
    )
    for archive, pending in jobs.values_list("archive", "pending_file"):
        named.update((archive, pending))
        if pending.endswith(".mp4"):
            named.add(poster_name_for(pending))
    named.update(InputAsset.objects.filter(among("file"), team_id=team_id).values_list("file", flat=True))
    named.discard("")
    return _Named(all=named, shown_previews=set())


def _previews_shown(names: list[str]) -> _Named:
    """Which of `names` (under `previews/`) running jobs show."""
    shown = set(
        GenerationJob.objects.filter(status=GenerationJob.Status.RUNNING, preview_file__in=names).values_list(
            "preview_file", flat=True
        )
    )
    return _Named(all=shown, shown_previews=shown)


def _team_folders_sweep(sweep: _Sweep, *, leave: set[str]) -> None:
    with storage_part():
        teams = [folder for folder in sweep.files.folders(TEAMS_PREFIX) if folder.isdigit()]
    # In random order: when the time budget runs out, the next sweep starts elsewhere.
    random.shuffle(teams)
    for team in teams:
        _folder_sweep(sweep, prefix=f"{TEAMS_PREFIX}/{team}", named_now=partial(_named_by_team, int(team)), leave=leave)


def _previews_folder_sweep(sweep: _Sweep) -> None:
    _folder_sweep(sweep, prefix=PREVIEWS_PREFIX, named_now=_previews_shown, leave=set())


def _folder_sweep(sweep: _Sweep, *, prefix: str, named_now: Callable[[list[str]], _Named], leave: set[str]) -> None:
    """Remove the files under `prefix` that no row names and that are past their grace.

    The listing is judged BATCH files at a time: `named_now` reads only the rows that name one of
    the batch's files, so what the sweep holds stays the same however many files a team has
    (reading every name a team's rows hold first grew with the team). The files a batch leaves
    are gathered and read against the rows once more just before they go (`_unnamed_delete`),
    so a file recorded since stays.
    """
    listed: list[StoredFile] = []
    candidates: list[StoredFile] = []
    with storage_part():
        for file in sweep.files.files(prefix):
            sweep.check_time()
            if file.name in leave:
                continue
            listed.append(file)
            if len(listed) >= BATCH:
                candidates += _unnamed_past_grace(sweep, listed, named_now)
                listed = []
            if len(candidates) >= BATCH:
                _unnamed_delete(sweep, candidates, named_now)
                candidates = []
        candidates += _unnamed_past_grace(sweep, listed, named_now)
        _unnamed_delete(sweep, candidates, named_now)


def _unnamed_past_grace(
    sweep: _Sweep, listed: list[StoredFile], named_now: Callable[[list[str]], _Named]
) -> list[StoredFile]:
    """The files of `listed` that no row keeps and that were last written before their grace."""
    if not listed:
        return []
    orphan_cutoff = sweep.now - timedelta(hours=settings.RETENTION_ORPHAN_GRACE_HOURS)
    preview_cutoff = sweep.now - timedelta(hours=settings.RETENTION_PREVIEW_GRACE_HOURS)
    named = named_now([file.name for file in listed])
    past: list[StoredFile] = []
    for listed_file in listed:
        if named.keeps(listed_file.name):
            continue
        file = sweep.files.measured(listed_file)
        cutoff = preview_cutoff if _is_preview(listed_file.name) else orphan_cutoff
        if file is not None and file.modified is not None and file.modified < cutoff:
            past.append(file)
    return past


def _unnamed_delete(sweep: _Sweep, candidates: list[StoredFile], named_now: Callable[[list[str]], _Named]) -> None:
    if not candidates:
        return
    names = [file.name for file in candidates]
    previews = [name for name in names if _is_preview(name)]
    if previews:
        # A preview that a job no longer running still names goes too: clear the name first, so
        # no job points at a file that is gone (a running job keeps it, and its name, below).
        GenerationJob.objects.filter(preview_file__in=previews).exclude(status=GenerationJob.Status.RUNNING).update(
            preview_file="", preview_index=None, preview_at=None
        )
    now_named = named_now(names)
    going = [file for file in candidates if not now_named.keeps(file.name)]
    sweep.files.delete([file.name for file in going])
    for kind in ("previews", "orphans"):
        of_kind = [file for file in going if (kind == "previews") == _is_preview(file.name)]
        sweep.count(kind, len(of_kind), size=sum(file.size or 0 for file in of_kind), names=[f.name for f in of_kind])
    sweep.check_time()
