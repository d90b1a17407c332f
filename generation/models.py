from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from generation.routes import job_route

ACTIVE_STATUSES = ("queued", "running")
FINISHED_STATUSES = ("succeeded", "failed", "canceled")

# What a job's row holds once no worker has it: every path that ends a run (finish, requeue,
# handover) clears the same fields.
LEASE_RELEASED = {"lease_owner": "", "lease_worker": "", "lease_expires_at": None, "ran_alone": False}


def input_upload_path(instance: InputAsset, filename: str) -> str:
    return f"teams/{instance.team_id}/inputs/{instance.id}{_extension(filename)}"


def _extension(filename: str) -> str:
    dot = filename.rfind(".")
    return filename[dot:].lower() if dot != -1 else ""


class RemixMode(models.TextChoices):
    """How a job (or the studio tab it was made in) comes from an image of the collection."""

    REFERENCE = "reference", "Remix"  # the look steers a new image as a reference
    SOURCE = "source", "Edit"  # the look is the source image of an edit
    VARIATIONS = "variations", "Variations"  # "More like this": the look as a reference, several at once


class StudioTab(models.Model):
    """A design tab of the studio; persists server-side so every device sees the same tabs."""

    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="studio_tabs")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="studio_tabs")
    title = models.CharField(max_length=80, default="Design")
    position = models.PositiveIntegerField(default=0)
    draft = models.JSONField(default=dict, blank=True)
    # A tab opened by remixing an image of the collection remembers it: every job made in the
    # tab is linked to that image (`GenerationJob.remix_of`). The output, not the look, so the
    # link outlives a look deleted from the collection.
    remix_of = models.ForeignKey(
        "GeneratedOutput", null=True, blank=True, on_delete=models.SET_NULL, related_name="remix_tabs"
    )
    remix_mode = models.CharField(max_length=10, choices=RemixMode.choices, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "id"]
        indexes = [
            # The studio lists one user's tabs in one team.
            models.Index(fields=["user", "team", "position"], name="generation_tab_user_team"),
        ]

    def __str__(self) -> str:
        return self.title

    def job_origin(self, inputs: list[InputAsset]) -> dict:
        """What a job made in this tab with `inputs` (its source and references) records of where
        it comes from (GenerationJob's fields): the remixed image, while the job still works from
        it. A job whose person took the image off the form (a new prompt from scratch) is no remix."""
        if self.remix_of is None or not any(asset.sha256 == self.remix_of.sha256 for asset in inputs):
            return {}
        return {"remix_of_id": self.remix_of_id, "remix_mode": self.remix_mode}


class InputAsset(models.Model):
    """An uploaded reference or source image, checked for type, size and pixel count."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="input_assets")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="input_assets"
    )
    file = models.FileField(upload_to=input_upload_path, max_length=300)
    mime = models.CharField(max_length=40)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    bytes = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # An upload of a file the team already has returns the stored asset (one copy per team).
            models.Index(fields=["team", "sha256"], name="generation_asset_team_sha256"),
        ]

    def __str__(self) -> str:
        return f"asset {self.id}"


class GenerationJob(models.Model):
    class Kind(models.TextChoices):
        IMAGE = "image", "Image"
        EDIT = "edit", "Edit"
        VIDEO = "video", "Video"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="jobs")
    tab = models.ForeignKey(StudioTab, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.IMAGE)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    provider = models.CharField(max_length=20)
    model = models.CharField(max_length=60)
    prompt = models.TextField()
    optimized_prompt = models.TextField()
    params = models.JSONField(default=dict, blank=True)
    source_asset = models.ForeignKey(
        InputAsset, null=True, blank=True, on_delete=models.PROTECT, related_name="edited_by_jobs"
    )
    references = models.ManyToManyField(InputAsset, through="JobReference", related_name="referenced_by_jobs")

    total_outputs = models.PositiveSmallIntegerField()
    # The price of one delivered output when the job was accepted; captures use it, not today's price.
    credits_per_output = models.PositiveIntegerField(default=0)
    completed_outputs = models.PositiveSmallIntegerField(default=0)
    # Runs of the job: every claim by a worker, less those handed back on a graceful shutdown.
    attempts = models.PositiveSmallIntegerField(default=0)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)

    # The lease fences every write of the worker that runs the job (see generation/services/pipeline.py).
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # The worker process that holds the lease (a WorkerHeartbeat name), so the rescuer can tell a
    # dead worker from a live one whose job stopped making progress.
    lease_worker = models.CharField(max_length=200, blank=True)
    # completed_outputs when the current run claimed the job: did the run make progress?
    claim_completed = models.PositiveSmallIntegerField(default=0)
    # The current run was claimed with nothing else running on its worker (see docs/architecture.md,
    # "Who caused a fault").
    ran_alone = models.BooleanField(default=False)
    # Runs in a row that ended with their worker's death and no new image; a suspect (1 or more)
    # runs alone. Reset by every delivered image.
    suspect_crashes = models.PositiveSmallIntegerField(default=0)
    # ...of which the job was alone on its worker: JOB_POISON_CRASHES of these fail it as poison.
    crashes_alone = models.PositiveSmallIntegerField(default=0)
    # The number of the last worker death (the rescuer's count) this job was part of: a death
    # while alone counts against the job only if no other worker died since its previous one.
    last_death_seen = models.PositiveIntegerField(default=0)
    # Pauses for our own infrastructure (database, storage, a hung step) since the last image, and
    # when the first of them began: the outage budget runs from there. Reset by every image.
    pauses = models.PositiveSmallIntegerField(default=0)
    outage_since = models.DateTimeField(null=True, blank=True)
    # A queued job is not claimed before this (backoff after a pause).
    run_after = models.DateTimeField(null=True, blank=True)
    # A file being written for this job, recorded before the write so that a crash between the
    # write and its record leaves nothing behind: the next run (or the rescuer) deletes it.
    pending_file = models.CharField(max_length=300, blank=True)
    # The long-running provider operation (a Veo clip) of the output being made, recorded before
    # the worker waits on it so that a rescued run polls the same operation instead of paying for
    # a second one: {"index", "name", "started_at", "progress"}. Cleared when the output is recorded.
    provider_operation = models.JSONField(default=dict, blank=True)

    idempotency_key = models.CharField(max_length=200, blank=True)
    request_fingerprint = models.CharField(max_length=64, blank=True)
    subject_key = models.CharField(max_length=200, blank=True)
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries")
    # The first job of a retry chain (null on that first job itself): concurrent retries of any
    # job of one chain serialize on this row, and at most one job of a chain is active.
    chain_root = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="chain_members"
    )
    # The image of the collection this job remixes (as a reference, as the source of an edit, or
    # as "more like this"), and how; its job is the parent on the job's page. The output, not the
    # look: deleting a look from the collection keeps the output, and so the link.
    remix_of = models.ForeignKey(
        "GeneratedOutput", null=True, blank=True, on_delete=models.SET_NULL, related_name="remixes"
    )
    remix_mode = models.CharField(max_length=10, choices=RemixMode.choices, blank=True)

    archive = models.FileField(max_length=300, blank=True)
    # The latest partial image of the output being made, where the provider streams them (OpenAI's
    # `partial_images`, the local provider halfway through): short-lived, never billed, never in
    # the collection. Replaced by each newer preview, deleted when its output is recorded or the
    # job ends; retention removes any a dead run left behind.
    preview_file = models.CharField(max_length=300, blank=True)
    preview_index = models.PositiveSmallIntegerField(null=True, blank=True)
    preview_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    collected_at = models.DateTimeField(null=True, blank=True)
    seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(total_outputs__gte=1) & Q(total_outputs__lte=10),
                name="generation_job_total_in_range",
            ),
            models.CheckConstraint(
                condition=Q(completed_outputs__lte=F("total_outputs")),
                name="generation_job_completed_within_total",
            ),
            models.CheckConstraint(
                condition=Q(status__in=ACTIVE_STATUSES + FINISHED_STATUSES), name="generation_job_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status="running") | ~Q(lease_owner=""),
                name="generation_job_running_has_lease",
            ),
            models.CheckConstraint(
                condition=Q(status__in=FINISHED_STATUSES, finished_at__isnull=False)
                | Q(status__in=ACTIVE_STATUSES, finished_at__isnull=True),
                name="generation_job_finished_at_iff_finished",
            ),
            models.UniqueConstraint(
                fields=["team", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="generation_job_unique_idempotency_key",
            ),
            # One active job per team and subject (a character, a product variant...).
            models.UniqueConstraint(
                fields=["team", "subject_key"],
                condition=~Q(subject_key="") & Q(status__in=ACTIVE_STATUSES),
                name="generation_job_one_active_per_subject",
            ),
            # At most one active retry per chain, whatever races the request handling loses.
            models.UniqueConstraint(
                fields=["chain_root"],
                condition=Q(chain_root__isnull=False) & Q(status__in=ACTIVE_STATUSES),
                name="generation_job_one_active_retry_per_chain",
            ),
        ]
        indexes = [
            # The rescuer: running jobs whose lease expired; queued jobs nobody claimed.
            models.Index(fields=["status", "lease_expires_at"], name="generation_job_status_lease"),
            # The rescuer's look for queued jobs that lost their wake-up.
            models.Index(fields=["status", "created_at"], name="generation_job_status_created"),
            # The fair scheduler: a team's queued jobs in order, its running jobs counted against
            # its cap; the queue position (a team's queued jobs ahead of one).
            models.Index(fields=["status", "team", "created_at"], name="generation_job_status_team"),
            # The team's job list, newest first, optionally by status.
            models.Index(fields=["team", "-created_at"], name="generation_job_team_created"),
            # The activity notice: a user's finished jobs not yet seen.
            models.Index(fields=["created_by", "seen_at", "status"], name="generation_job_activity"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} job {self.id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def chain_root_or_self_id(self) -> uuid.UUID:
        return self.chain_root_id or self.id


class JobReference(models.Model):
    """A reference image (or the sketch) of a job and how strongly it should steer the result."""

    class Role(models.TextChoices):
        REFERENCE = "reference", "Reference"
        SKETCH = "sketch", "Sketch"
        # An edit's mask: transparent pixels mark where the source may change.
        MASK = "mask", "Mask"

    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="reference_links")
    asset = models.ForeignKey(InputAsset, on_delete=models.PROTECT, related_name="reference_links")
    weight = models.FloatField(default=0.5)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.REFERENCE)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(weight__gte=0) & Q(weight__lte=1), name="generation_reference_weight_range"
            ),
            models.UniqueConstraint(fields=["job", "asset"], name="generation_reference_unique_asset"),
        ]

    def __str__(self) -> str:
        return f"reference {self.asset_id} ({self.weight}) of {self.job_id}"


class GeneratedOutput(models.Model):
    """One delivered image or clip of a job: a durable step that is never made twice."""

    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="outputs")
    index = models.PositiveSmallIntegerField()  # 0-based; shown to people as index + 1
    file = models.FileField(max_length=300)
    # A clip's first frame (PNG), shown before it plays; empty for images.
    poster = models.FileField(max_length=300, blank=True)
    mime = models.CharField(max_length=40)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    bytes = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    # What the provider reported about this output (model version, revised prompt, usage, cost):
    # see generation/providers/base.py, ProviderOutput.report.
    provider_report = models.JSONField(default=dict, blank=True)
    # A retry job carries over the images its predecessor delivered instead of making them again.
    carried_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="carried_into"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "index"], name="generation_output_unique_index"),
        ]

    def __str__(self) -> str:
        return f"output {self.index + 1} of {self.job_id}"

    def get_absolute_url(self) -> str:
        """The file itself, counted from 1 like everywhere people see it (the team's own URL)."""
        return job_route("job-output", self.job_id, self.index + 1)

    @property
    def original(self) -> GeneratedOutput:
        return self.carried_from or self


class Look(models.Model):
    """A delivered image saved in the team's collection; one per image."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="looks")
    output = models.OneToOneField(GeneratedOutput, on_delete=models.CASCADE, related_name="look")
    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="looks")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The collection, newest first.
            models.Index(fields=["team", "-created_at"], name="generation_look_team_created"),
        ]

    def __str__(self) -> str:
        return f"look {self.id}"


class JobEvent(models.Model):
    """The outbox: one row per change of a job that someone may watch, written in the same
    transaction as the change (the claim that starts it, the record of an output, the finish).
    Webhook deliveries are fanned out from it in that transaction too, and the job's event
    stream (server-sent events) reads it, so nothing is announced that did not happen and
    nothing that happened goes unannounced. The id orders a job's events (`Last-Event-ID`)."""

    class Type(models.TextChoices):
        STARTED = "job.started", "Started"
        OUTPUT = "job.output", "Output delivered"
        SUCCEEDED = "job.succeeded", "Succeeded"
        FAILED = "job.failed", "Failed"
        CANCELED = "job.canceled", "Canceled"

    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="events")
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="job_events")
    type = models.CharField(max_length=20, choices=Type.choices)
    # The output a `job.output` announces (0-based, like GeneratedOutput.index).
    output_index = models.PositiveSmallIntegerField(null=True, blank=True)
    # What was true at the change: {"status", "progress": {"completed", "total"}, "error"}.
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            # Each fact is announced once: a job starts, ends and delivers each image once.
            models.UniqueConstraint(
                fields=["job", "type"], condition=Q(output_index__isnull=True), name="generation_event_once_per_job"
            ),
            models.UniqueConstraint(
                fields=["job", "output_index"],
                condition=Q(output_index__isnull=False),
                name="generation_event_once_per_output",
            ),
            models.CheckConstraint(
                condition=Q(type="job.output", output_index__isnull=False)
                | (~Q(type="job.output") & Q(output_index__isnull=True)),
                name="generation_event_output_has_index",
            ),
        ]
        indexes = [
            # A job's stream and its resume: the job's events after a given id.
            models.Index(fields=["job", "id"], name="generation_event_job_id"),
            # Retention: events older than their keeping time.
            models.Index(fields=["created_at"], name="generation_event_created"),
        ]

    def __str__(self) -> str:
        return f"{self.type} of {self.job_id} (#{self.id})"


class RetentionSweep(models.Model):
    """One pass of the retention sweep (generation/services/retention.py): what it removed, for
    the operators' admin."""

    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Files and rows removed, by kind: {"zips": 2, "orphans": 1, "uploads": 0, "previews": 0, ...}.
    removed = models.JSONField(default=dict, blank=True)
    bytes_removed = models.PositiveBigIntegerField(default=0)
    # The names of the first files removed, so an operator can see what went.
    examples = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"retention sweep of {self.started_at:%Y-%m-%d %H:%M}"


class TeamTurn(models.Model):
    """When the fair scheduler last started a job of a team: the team served least recently goes
    first (generation/services/scheduler.py). A row appears with a team's first claimed job."""

    team = models.OneToOneField("accounts.Team", primary_key=True, on_delete=models.CASCADE, related_name="turn")
    last_served_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"turn of team {self.team_id}"


class ProviderRateState(models.Model):
    """The shared state of one provider rate limit (generation/services/limiter.py) when there is
    no Redis: one row per limited key (`openai/` for the provider, `openai/gpt-image-2` for a
    model), updated under a row lock. Times are Unix seconds of the workers' clocks."""

    key = models.CharField(max_length=200, primary_key=True)
    # The earliest moment of the next call (GCRA's theoretical arrival time).
    next_call_at = models.FloatField(default=0.0)
    # The slowdown after a 429 (the interval's multiplier) as it was at `slowed_at`; it halves
    # every PROVIDER_LIMIT_RECOVERY_SECONDS from then on.
    slowdown = models.FloatField(default=1.0)
    slowed_at = models.FloatField(default=0.0)
    # 429s before this come from calls sent before the last slowdown: they do not slow again.
    calm_until = models.FloatField(default=0.0)

    def __str__(self) -> str:
        return f"rate of {self.key}"


class WorkerHeartbeat(models.Model):
    """A process that takes part in running jobs: a worker (one row per process), or the rescuer.

    Workers beat every second from their lifeline thread; the rescuer tells a dead worker (no beat
    for a lease period) from a live one whose job stopped making progress. The rescuer's own row
    says since when the database has been reachable without a gap (`up_since`), so that a
    database outage is not mistaken for the death of every worker.
    """

    name = models.CharField(max_length=200, unique=True)
    started_at = models.DateTimeField(default=timezone.now)
    beat_at = models.DateTimeField(default=timezone.now)
    up_since = models.DateTimeField(default=timezone.now)
    running_jobs = models.PositiveSmallIntegerField(default=0)
    # The queue a worker takes jobs from ("jobs" or "suspects") and how many it runs at once:
    # the rescuer wakes workers with free slots when claimable jobs wait (rescue.py).
    pool = models.CharField(max_length=20, blank=True)
    slots = models.PositiveSmallIntegerField(default=0)
    stopping = models.BooleanField(default=False)
    # The rescuer's row only: how many worker deaths it has seen (numbers each death).
    deaths_seen = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [
            # The rescuer's look-up of stale workers, and the admin's list of live ones.
            models.Index(fields=["beat_at"], name="generation_worker_beat"),
        ]

    def __str__(self) -> str:
        return self.name
