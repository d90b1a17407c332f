"""Remixing an image of the collection: its settings, and the image itself, in a new studio tab
(`tab_remix`), or "more like this": variations of it submitted at once (`look_variations_submit`).

The look is attached as an uploaded image of the team (`look_asset`): a copy of its bytes made
through the upload path, so it is checked, stored and counted like any upload. A copy, not a
second row over the output's stored file: a job's inputs must outlive it (JobReference and the
source are PROTECT, a retry reads them again), while the output's file belongs to the look's job
and goes with it. The team's assets are found by their SHA-256, so remixing one look again (or
making its variations) reuses the first copy: it counts once against the upload quota.

Every job made in a remix tab links to the image it remixes (`StudioTab.remix_of`, carried to
`GenerationJob.remix_of` by `job_submit`): the job's page shows it as its parent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from accounts.models import Team, User
from accounts.quotas import Quota, quota_check
from config.api_errors import flatten_field_errors
from config.errors import ServiceError, ValidationFailed
from generation.errors import IdempotencyConflict
from generation.models import GeneratedOutput, GenerationJob, InputAsset, Look, RemixMode, StudioTab
from generation.providers.catalog import PROVIDERS, ModelSpec
from generation.services.assets import asset_upload
from generation.services.files import stored_name
from generation.services.job_body import JobCreateSerializer
from generation.services.studio import tab_create, tab_draft_check, tab_title
from generation.services.submit import Estimate, JobSpec, job_estimate, job_submit

# How much of the prompt a remix tab's title shows (the title holds at most 80 characters).
TITLE_PREFIXES = {RemixMode.REFERENCE: "Remix", RemixMode.SOURCE: "Edit", RemixMode.VARIATIONS: "Variations"}
# "More like this" makes a few at once (fewer when the model makes fewer per job).
VARIATIONS_COUNT = 4
# How strongly the look steers: a remix is a starting point the person changes (the form's own
# default); variations stay close to the look.
REMIX_REFERENCE_WEIGHT = 0.5
VARIATIONS_REFERENCE_WEIGHT = 0.8


class LookUnavailable(ServiceError):
    """The look's image cannot be attached to a new job (unreadable, too large, damaged)."""

    status_code = 409
    code = "LOOK_UNAVAILABLE"


@dataclass(frozen=True)
class RemixPlan:
    """What a remix of a look makes: the kind and model, whether the look is attached, how many."""

    mode: RemixMode
    kind: str
    model: ModelSpec | None  # None: the look's own model, unknown to the registry now
    attach: bool
    count: int
    note: str = ""  # what the person should know: the look not attached, or another model chosen


@dataclass(frozen=True)
class RemixResult:
    tab: StudioTab | None  # None only for earlier variations whose tab was closed since
    note: str = ""
    job: GenerationJob | None = None  # the variations' job
    attached: bool = False  # the look is in the tab's draft (as a reference or the source)


@dataclass(frozen=True)
class VariationsOffer:
    """What the "More like this" button makes and costs (credits None: no estimate possible)."""

    count: int
    noun: str  # "image" or "clip"
    credits: int | None

    @property
    def label(self) -> str:
        made = f"{self.count} {self.noun}{'' if self.count == 1 else 's'}"
        if self.credits is None:
            return f"More like this · {made}"
        return f"More like this · {made} · {self.credits} credit{'' if self.credits == 1 else 's'}"


def remix_title(mode: RemixMode, prompt: str) -> str:
    """A remix tab's title, such as "Remix: a watercolor fox in…"."""
    return tab_title(TITLE_PREFIXES[mode], prompt)


def remix_plan(*, look: Look, mode: RemixMode) -> RemixPlan:
    """What a remix of `look` in `mode` makes.

    1. A clip is remixed from its settings alone: no video model here starts from a picture.
    2. Otherwise the look is a reference (REFERENCE, VARIATIONS: an image job) or the source of
       an edit (SOURCE), made by the look's own model when it can take it so, else by the first
       model of the same provider that can (the note says which).
    3. When no model of the provider can, the look's settings come without the look, and the
       note says why; variations are then the same settings with new seeds.
    """
    job = look.job
    provider = PROVIDERS.get(job.provider)
    own = provider.model(job.model) if provider is not None else None
    if job.kind == GenerationJob.Kind.VIDEO or look.output.mime.startswith("video/"):
        note = (
            ""
            if mode is RemixMode.VARIATIONS
            else "A clip is remixed from its settings: no video model here starts from a picture."
        )
        return RemixPlan(mode=mode, kind=job.kind, model=own, attach=False, count=_count(mode, own), note=note)
    kind = GenerationJob.Kind.EDIT if mode is RemixMode.SOURCE else GenerationJob.Kind.IMAGE

    def takes_the_look(model: ModelSpec) -> bool:
        return kind in model.kinds and (mode is RemixMode.SOURCE or model.max_references >= 1)

    if own is not None and takes_the_look(own):
        return RemixPlan(mode=mode, kind=kind, model=own, attach=True, count=_count(mode, own))
    own_label = own.label if own is not None else job.model
    can_not = "does not edit images" if mode is RemixMode.SOURCE else "takes no reference images"
    other = next((model for model in provider.models if takes_the_look(model)), None) if provider else None
    if other is not None:
        note = f"{own_label} {can_not}: {other.label} makes this one."
        return RemixPlan(mode=mode, kind=kind, model=other, attach=True, count=_count(mode, other), note=note)
    nor = f"{own_label} {can_not}, nor does any other {provider.label if provider else job.provider} model"
    if mode is RemixMode.VARIATIONS:
        note = f"{nor}: these share the look's settings, with new seeds."
    else:
        note = f"{nor}: the tab has the look's settings without the look; choose another provider to attach it."
    return RemixPlan(
        mode=mode, kind=GenerationJob.Kind.IMAGE, model=own, attach=False, count=_count(mode, own), note=note
    )


def _count(mode: RemixMode, model: ModelSpec | None) -> int:
    """One output for a remix; a few variations, no more than the model makes per job."""
    if mode is not RemixMode.VARIATIONS:
        return 1
    most = model.max_outputs if model is not None else settings.GENERATION_MAX_OUTPUTS
    return min(VARIATIONS_COUNT, most, settings.GENERATION_MAX_OUTPUTS)


def remix_draft(*, look: Look, plan: RemixPlan, asset_id: uuid.UUID | None) -> dict:
    """The new tab's draft (the API's job body): the look's prompt and settings as its model
    takes them, no seed (a new one is drawn at submit), `plan.count` outputs, and the look
    attached as the asset `asset_id` (when there is one)."""
    job = look.job
    model = plan.model
    params = {
        name: value
        for name, value in job.params.items()
        if value is not None and name != "seed" and _takes(model, name, value)
    }
    draft: dict = {
        "prompt": job.prompt,
        "kind": plan.kind,
        "provider": job.provider,
        "model": model.id if model is not None else job.model,
        "count": plan.count,
        "params": params,
    }
    if asset_id is not None and plan.mode is RemixMode.SOURCE:
        draft["inputs"] = {"source_asset_id": str(asset_id)}
    elif asset_id is not None:
        weight = VARIATIONS_REFERENCE_WEIGHT if plan.mode is RemixMode.VARIATIONS else REMIX_REFERENCE_WEIGHT
        draft["inputs"] = {"references": [{"asset_id": str(asset_id), "weight": weight}]}
    return draft


def _takes(model: ModelSpec | None, name: str, value: object) -> bool:
    """Whether `model` accepts the parameter as the look's job had it (another model of the
    provider may not: its options and aspect ratios are its own)."""
    if model is None or name in ("style", "quality"):
        return True
    if name == "aspect_ratio":
        return value in model.aspect_ratios
    if name == "duration_seconds":
        return value in model.durations
    return name in {option.value for option in model.options}


def look_asset(*, look: Look, user: User | None) -> InputAsset:
    """The look's image as an uploaded image of its team (see the module's docstring).

    1. An asset of the team with the same bytes (the output's SHA-256 and size) is that image:
       reused, without reading the file.
    2. Otherwise read the file (outside any transaction: storage may be a network service) and
       store it through `asset_upload`, with its checks and the team's upload quotas
       (QuotaExceeded when full). A file that cannot be read, or that an upload would refuse,
       raises LookUnavailable, saying why.
    """
    output: GeneratedOutput = look.output
    known = (
        InputAsset.objects.filter(team_id=look.team_id, sha256=output.sha256, bytes=output.bytes)
        .order_by("created_at")
        .first()
    )
    if known is not None:
        return known
    try:
        with default_storage.open(stored_name(output.file), "rb") as handle:
            content = handle.read()
    except (OSError, ValueError):
        raise LookUnavailable("This image could not be read just now; try the remix again in a moment.") from None
    # asset_upload names the stored file after the format it finds in the bytes, not this name.
    upload = SimpleUploadedFile(f"look-{look.id}", content, content_type=output.mime)
    try:
        return asset_upload(team=look.team, user=user, upload=upload).asset
    except ValidationFailed as error:
        reason = next(iter(error.details.values()), [error.message])[0]
        raise LookUnavailable(f"This image cannot be attached to a new job: {reason}") from None


def tab_remix(*, look: Look, user: User, team: Team, mode: RemixMode = RemixMode.REFERENCE) -> RemixResult:
    """A new studio tab with the look's settings and the look attached (`remix_plan`), one
    output and no seed, that remembers the look (its jobs link to it).

    1. Plan the remix and its draft.
    2. Check the person's tab quota and the draft's size first (tab_create checks both again
       under its lock): a refusal copies no file.
    3. Attach the look (`look_asset`).
    4. Open the tab, titled after the prompt, remembering the look, in one transaction.
    """
    plan = remix_plan(look=look, mode=mode)
    _tab_room_check(user=user, team=team)
    tab_draft_check(team=team, draft=remix_draft(look=look, plan=plan, asset_id=_AN_ASSET_ID if plan.attach else None))
    asset = look_asset(look=look, user=user) if plan.attach else None
    draft = remix_draft(look=look, plan=plan, asset_id=asset.id if asset is not None else None)
    tab = _remix_tab_open(look=look, user=user, team=team, plan=plan, draft=draft)
    return RemixResult(tab=tab, note=plan.note, attached=asset is not None)


def look_variations_submit(*, look: Look, user: User, team: Team, idempotency_key: str = "") -> RemixResult:
    """A job of variations of `look` ("More like this"), submitted at once in a new studio tab.

    1. A key already used returns its job (a double click starts one job).
    2. Plan: the look as a reference, a new seed, VARIATIONS_COUNT outputs (fewer when the model
       makes fewer); a model that takes no reference makes the look's settings with new seeds.
    3. Check the tab quota first, then attach the look (before any transaction).
    4. In one transaction, open the tab and submit the job through `job_submit` (credits held,
       the team's quotas): a refusal (InsufficientCredits, QuotaExceeded, ValidationFailed)
       rolls the tab back too, so nothing is charged and no tab is left.
    """
    if idempotency_key:
        earlier = _job_of_key(team=team, idempotency_key=idempotency_key)
        if earlier is not None:
            return RemixResult(tab=earlier.tab, job=earlier)
    plan = remix_plan(look=look, mode=RemixMode.VARIATIONS)
    _tab_room_check(user=user, team=team)
    asset = look_asset(look=look, user=user) if plan.attach else None
    draft = remix_draft(look=look, plan=plan, asset_id=asset.id if asset is not None else None)
    try:
        with transaction.atomic():
            tab = _remix_tab_open(look=look, user=user, team=team, plan=plan, draft=draft)
            spec = _spec_of(draft, tab_id=tab.id)
            job = job_submit(team=team, user=user, spec=spec, idempotency_key=idempotency_key).job
    except IdempotencyConflict:
        # The same press twice at once: the other request made the job (its tab stays, this one's
        # was rolled back).
        earlier = _job_of_key(team=team, idempotency_key=idempotency_key)
        if earlier is None:
            raise
        return RemixResult(tab=earlier.tab, job=earlier)
    return RemixResult(tab=tab, job=job, note=plan.note)


def _job_of_key(*, team: Team, idempotency_key: str) -> GenerationJob | None:
    return GenerationJob.objects.select_related("tab").filter(team=team, idempotency_key=idempotency_key).first()


def variations_offer(*, look: Look) -> VariationsOffer:
    """What "More like this" would make of `look` and cost now (reads only)."""
    plan = remix_plan(look=look, mode=RemixMode.VARIATIONS)
    noun = "clip" if plan.kind == GenerationJob.Kind.VIDEO else "image"
    draft = remix_draft(look=look, plan=plan, asset_id=None)  # the price does not depend on the inputs
    try:
        estimate: Estimate | None = job_estimate(spec=_spec_of(draft, tab_id=None))
    except ServiceError:  # a provider switched off since, a setting no longer offered
        estimate = None
    return VariationsOffer(count=plan.count, noun=noun, credits=estimate.credits if estimate is not None else None)


def _spec_of(draft: dict, *, tab_id: int | None) -> JobSpec:
    """The draft validated as the API and the studio validate a job's body."""
    serializer = JobCreateSerializer(data={**draft, "tab": tab_id})
    if not serializer.is_valid():
        raise ValidationFailed(flatten_field_errors(serializer.errors))
    return serializer.to_spec()


def _tab_room_check(*, user: User, team: Team) -> None:
    # A first look, so that a full quota copies no file; tab_create checks again under its lock.
    quota_check(team, Quota.STUDIO_TABS, used=StudioTab.objects.filter(user=user, team=team).count())


# Any asset id: every one is as long, so a draft holding it is sized before the look is copied.
_AN_ASSET_ID = uuid.UUID(int=0)


def _remix_tab_open(*, look: Look, user: User, team: Team, plan: RemixPlan, draft: dict) -> StudioTab:
    with transaction.atomic():
        tab = tab_create(user=user, team=team, title=remix_title(plan.mode, look.job.prompt), draft=draft)
        tab.remix_of = look.output
        tab.remix_mode = plan.mode
        tab.save(update_fields=["remix_of", "remix_mode", "updated_at"])
    return tab
