"""Accepting a generation: validate against the team's data, store the job, dispatch after commit."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from uuid import UUID

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Team, User
from accounts.quotas import Quota, quota_check
from credits.services import credits_account_lock, credits_hold
from generation.errors import IdempotencyConflict, ValidationFailed
from generation.models import ACTIVE_STATUSES, GenerationJob, InputAsset, JobReference, StudioTab
from generation.prompts import build_optimized_prompt
from generation.providers.catalog import PROVIDERS, VIDEO, ModelSpec, provider_configured
from generation.providers.registry import get_provider
from generation.services.dispatch import job_dispatch_on_commit
from generation.services.inputs import job_inputs_oversized


@dataclass(frozen=True)
class ReferenceSpec:
    asset_id: UUID
    weight: float = 0.5
    role: str = JobReference.Role.REFERENCE


@dataclass(frozen=True)
class JobSpec:
    """A would-be job, as validated by the API serializer or the studio form."""

    prompt: str
    kind: str = GenerationJob.Kind.IMAGE
    provider: str = "local"
    model: str = ""
    count: int = 1
    params: dict = field(default_factory=dict)
    source_asset_id: UUID | None = None
    references: tuple[ReferenceSpec, ...] = ()  # references, the sketch and an edit's mask, by role
    subject_key: str = ""
    tab_id: int | None = None

    def fingerprint(self) -> str:
        """A digest of the request body, to tell a replay from a different request with the same key."""
        canonical = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()


class SubmitOutcome(StrEnum):
    CREATED = "created"  # a new job was stored and held for
    REPLAYED = "replayed"  # the Idempotency-Key's job, for the same body again: answered as the first time
    ACTIVE_SUBJECT = "active_subject"  # the subject_key's active job, instead of a second one


@dataclass(frozen=True)
class SubmitResult:
    job: GenerationJob
    outcome: SubmitOutcome

    @property
    def created(self) -> bool:
        return self.outcome is SubmitOutcome.CREATED

    @property
    def replayed(self) -> bool:
        return self.outcome is SubmitOutcome.REPLAYED


@dataclass(frozen=True)
class Estimate:
    provider: str
    model: str
    optimized_prompt: str
    outputs: int
    credits_per_output: int
    params: dict  # the request's parameters with the model's defaults filled in

    @property
    def credits(self) -> int:
        return self.credits_per_output * self.outputs


def job_estimate(*, spec: JobSpec) -> Estimate:
    """What a job would be and cost, without creating anything: the model registry
    (generation/providers/catalog.py) decides whether the provider is offered here and whether
    its model can do what is asked; every refusal names the field."""
    model = _model_for(spec)
    errors = model.param_errors(
        kind=spec.kind,
        params=spec.params,
        count=spec.count,
        references=sum(ref.role == JobReference.Role.REFERENCE for ref in spec.references),
        has_mask=any(ref.role == JobReference.Role.MASK for ref in spec.references),
    )
    if errors:
        raise ValidationFailed(errors)
    params = dict(spec.params)
    params.setdefault("aspect_ratio", model.aspect_ratios[0])
    if spec.kind == VIDEO:
        params.setdefault("duration_seconds", model.default_duration)
    quality = params.get("quality", "standard")
    optimized = build_optimized_prompt(prompt=spec.prompt, kind=spec.kind, style=params.get("style"), quality=quality)
    return Estimate(
        provider=model.provider,
        model=model.id,
        optimized_prompt=optimized,
        outputs=spec.count,
        credits_per_output=model.credits_per_output(
            kind=spec.kind, quality=quality, duration_seconds=params.get("duration_seconds")
        ),
        params=params,
    )


def _model_for(spec: JobSpec) -> ModelSpec:
    provider = PROVIDERS[spec.provider]
    if not provider_configured(spec.provider):
        raise ValidationFailed(
            {"provider": [f"The {spec.provider} provider is not enabled here; set {provider.enabled_by} to enable it."]}
        )
    if not spec.model:
        model = provider.default_model_for(spec.kind)
        if model is None:
            raise ValidationFailed({"kind": [f"The {spec.provider} provider cannot make {spec.kind} jobs."]})
        return model
    chosen = provider.model(spec.model)
    if chosen is None:
        names = ", ".join(model.id for model in provider.models)
        raise ValidationFailed({"model": [f"Unknown model for {spec.provider}; choose one of: {names}."]})
    return chosen


def job_submit(*, team: Team, user: User | None, spec: JobSpec, idempotency_key: str = "") -> SubmitResult:
    """Store a job and publish it once the row is committed.

    1. A known `idempotency_key` returns its job (same body) or raises IdempotencyConflict.
    2. A `subject_key` with an active job returns that job instead of starting another.
    3. Inputs are resolved within the team (another team's asset is "not found").
    4. In one transaction: the team's active jobs are counted against its quota (QuotaExceeded,
       409), the job row is stored and price x outputs is held from the team's credits
       (InsufficientCredits when they are short); either refusal stores nothing.
    5. After the commit the task is published (a lost publish is the rescuer's).
    A race on either key loses to the unique constraints and resolves like steps 1-2; an upload
    deleted between step 3 and the commit (retention) is refused like one never uploaded.
    """
    fingerprint = spec.fingerprint()
    existing = _existing_job(team=team, spec=spec, idempotency_key=idempotency_key, fingerprint=fingerprint)
    if existing is not None:
        return existing

    estimate = job_estimate(spec=spec)
    source, references = _resolve_inputs(team=team, spec=spec)
    tab = _resolve_tab(team=team, user=user, tab_id=spec.tab_id)
    params = dict(estimate.params)
    params.setdefault("seed", secrets.randbelow(2**31))
    try:
        with transaction.atomic():
            jobs_active_quota_check(team=team)
            job = GenerationJob.objects.create(
                team=team,
                created_by=user,
                tab=tab,
                # A job made in a remix tab links to the image it remixes (its lineage).
                **(tab.job_origin([*([source] if source else []), *(asset for asset, _ in references)]) if tab else {}),
                kind=spec.kind,
                provider=estimate.provider,
                model=estimate.model,
                prompt=spec.prompt,
                optimized_prompt=estimate.optimized_prompt,
                params=params,
                source_asset=source,
                total_outputs=spec.count,
                credits_per_output=estimate.credits_per_output,
                idempotency_key=idempotency_key,
                request_fingerprint=fingerprint,
                subject_key=spec.subject_key,
                dispatched_at=timezone.now(),
            )
            JobReference.objects.bulk_create(
                JobReference(job=job, asset=asset, weight=ref.weight, role=ref.role) for asset, ref in references
            )
            credits_hold(team_id=team.id, job_id=job.id, amount=estimate.credits, actor=user)
            job_dispatch_on_commit(job.id)
    except IntegrityError:
        existing = _existing_job(team=team, spec=spec, idempotency_key=idempotency_key, fingerprint=fingerprint)
        if existing is not None:
            return existing
        # An upload read above was deleted before the job's foreign keys were checked (at the
        # commit): retention removed an unused old one meanwhile. Resolved again, it is "not
        # found" on its field, as if it had gone a moment earlier; anything else is a bug.
        _resolve_inputs(team=team, spec=spec)
        raise
    return SubmitResult(job=job, outcome=SubmitOutcome.CREATED)


def jobs_active_quota_check(*, team: Team) -> None:
    """Refuse one more job when the team's queued and running jobs fill its quota (QuotaExceeded).

    Call it inside the transaction that stores the job, before the job is stored. It first locks
    the team's credit account row, which every submit and retry of the team locks here (and
    every credit movement in credits_hold and the rest), so the count sees every job committed
    before this one and two requests cannot both take the last place.
    """
    credits_account_lock(team_id=team.id)
    active = GenerationJob.objects.filter(team=team, status__in=ACTIVE_STATUSES).count()
    quota_check(team, Quota.ACTIVE_JOBS, used=active)


def _existing_job(*, team: Team, spec: JobSpec, idempotency_key: str, fingerprint: str) -> SubmitResult | None:
    """The job an earlier request already made for this one: the Idempotency-Key's (the same body
    only, else IdempotencyConflict), else the subject_key's active job."""
    if idempotency_key:
        job = GenerationJob.objects.filter(team=team, idempotency_key=idempotency_key).first()
        if job is not None:
            if job.request_fingerprint != fingerprint:
                raise IdempotencyConflict(
                    "This Idempotency-Key was already used with a different request body.",
                    details={"job_id": str(job.id)},
                )
            return SubmitResult(job=job, outcome=SubmitOutcome.REPLAYED)
    if spec.subject_key:
        active = GenerationJob.objects.filter(team=team, subject_key=spec.subject_key, status__in=ACTIVE_STATUSES)
        job = active.first()
        if job is not None:
            return SubmitResult(job=job, outcome=SubmitOutcome.ACTIVE_SUBJECT)
    return None


def _resolve_inputs(*, team: Team, spec: JobSpec) -> tuple[InputAsset | None, list[tuple[InputAsset, ReferenceSpec]]]:
    wanted = {ref.asset_id for ref in spec.references}
    if spec.source_asset_id:
        wanted.add(spec.source_asset_id)
    assets = {asset.id: asset for asset in InputAsset.objects.filter(team=team, id__in=wanted)}
    errors: dict[str, list[str]] = {}
    fields: list[tuple[str, InputAsset]] = []  # every resolved image and the field that named it
    source = None
    if spec.source_asset_id:
        source = assets.get(spec.source_asset_id)
        if source is None:
            errors["inputs.source_asset_id"] = ["No uploaded image with this id."]
        else:
            fields.append(("inputs.source_asset_id", source))
    elif spec.kind == GenerationJob.Kind.EDIT:
        errors["inputs.source_asset_id"] = ["An edit needs a source image."]
    references = []
    used: set[UUID] = set()
    for position, ref in enumerate(spec.references):
        asset = assets.get(ref.asset_id)
        paths: dict[str, str] = {
            JobReference.Role.SKETCH: "inputs.sketch.asset_id",
            JobReference.Role.MASK: "inputs.mask_asset_id",
        }
        path = paths.get(ref.role, f"inputs.references.{position}.asset_id")
        if ref.asset_id in used:
            errors[path] = ["This image is already used by this job; each image can steer it once."]
            continue
        used.add(ref.asset_id)
        if asset is None:
            errors[path] = ["No uploaded image with this id."]
        elif ref.role == JobReference.Role.MASK and spec.kind != GenerationJob.Kind.EDIT:
            errors[path] = ["A mask belongs to an edit: choose the edit kind and a source image."]
        elif ref.role == JobReference.Role.MASK and asset.mime != "image/png":
            errors[path] = ["A mask must be a PNG whose transparent pixels mark the area to change."]
        else:
            references.append((asset, ref))
            fields.append((path, asset))
    # An image the worker could not afford to decode (an upload from before today's limits).
    oversized = job_inputs_oversized(assets=[asset for _, asset in fields], provider=get_provider(spec.provider))
    for path, asset in fields:
        if asset.id in oversized:
            errors[path] = [oversized[asset.id].describe("This image")]
    if errors:
        raise ValidationFailed(errors)
    return source, references


def _resolve_tab(*, team: Team, user: User | None, tab_id: int | None) -> StudioTab | None:
    if tab_id is None:
        return None
    tab = StudioTab.objects.select_related("remix_of").filter(id=tab_id, team=team, user=user).first()
    if tab is None:
        raise ValidationFailed({"tab": ["No studio tab with this id."]})
    return tab
