"""Accepting a generation: validate against the team's data, store the job, dispatch after commit."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, field
from uuid import UUID

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Team, User
from credits.pricing import UnknownPrice, price_per_output
from credits.services import credits_hold
from generation.errors import IdempotencyConflict, ValidationFailed
from generation.models import ACTIVE_STATUSES, GenerationJob, InputAsset, JobReference, StudioTab
from generation.prompts import build_optimized_prompt
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
    references: tuple[ReferenceSpec, ...] = ()
    subject_key: str = ""
    tab_id: int | None = None

    def fingerprint(self) -> str:
        """A digest of the request body, to tell a replay from a different request with the same key."""
        canonical = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class SubmitResult:
    job: GenerationJob
    created: bool  # False: an earlier job was returned (idempotent replay or active subject)


@dataclass(frozen=True)
class Estimate:
    provider: str
    model: str
    optimized_prompt: str
    outputs: int
    credits_per_output: int

    @property
    def credits(self) -> int:
        return self.credits_per_output * self.outputs


def job_estimate(*, spec: JobSpec) -> Estimate:
    """What a job would be and cost, without creating anything."""
    provider = get_provider(spec.provider)
    if spec.kind not in provider.kinds:
        raise ValidationFailed({"kind": [f"The {spec.provider} provider cannot make {spec.kind} jobs."]})
    model = spec.model or provider.models[0]
    if model not in provider.models:
        raise ValidationFailed(
            {"model": [f"Unknown model for {spec.provider}; choose one of: {', '.join(provider.models)}."]}
        )
    optimized = build_optimized_prompt(
        prompt=spec.prompt, kind=spec.kind, style=spec.params.get("style"), quality=spec.params.get("quality")
    )
    try:
        price = price_per_output(
            provider=spec.provider, model=model, kind=spec.kind, quality=spec.params.get("quality", "standard")
        )
    except UnknownPrice:
        raise ValidationFailed({"provider": [f"The {spec.provider} provider has no price yet."]}) from None
    return Estimate(
        provider=spec.provider, model=model, optimized_prompt=optimized, outputs=spec.count, credits_per_output=price
    )


def job_submit(*, team: Team, user: User | None, spec: JobSpec, idempotency_key: str = "") -> SubmitResult:
    """Store a job and publish it once the row is committed.

    1. A known `idempotency_key` returns its job (same body) or raises IdempotencyConflict.
    2. A `subject_key` with an active job returns that job instead of starting another.
    3. Inputs are resolved within the team (another team's asset is "not found").
    4. In one transaction the job row is stored and price x outputs is held from the team's
       credits (InsufficientCredits, and nothing is stored, when they are short).
    5. After the commit the task is published (a lost publish is the rescuer's).
    A race on either key loses to the unique constraints and resolves like steps 1-2.
    """
    fingerprint = spec.fingerprint()
    existing = _existing_job(team=team, spec=spec, idempotency_key=idempotency_key, fingerprint=fingerprint)
    if existing is not None:
        return SubmitResult(job=existing, created=False)

    estimate = job_estimate(spec=spec)
    source, references = _resolve_inputs(team=team, spec=spec)
    tab = _resolve_tab(team=team, user=user, tab_id=spec.tab_id)
    params = dict(spec.params)
    params.setdefault("seed", secrets.randbelow(2**31))
    try:
        with transaction.atomic():
            job = GenerationJob.objects.create(
                team=team,
                created_by=user,
                tab=tab,
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
        if existing is None:
            raise
        return SubmitResult(job=existing, created=False)
    return SubmitResult(job=job, created=True)


def _existing_job(*, team: Team, spec: JobSpec, idempotency_key: str, fingerprint: str) -> GenerationJob | None:
    if idempotency_key:
        job = GenerationJob.objects.filter(team=team, idempotency_key=idempotency_key).first()
        if job is not None:
            if job.request_fingerprint != fingerprint:
                raise IdempotencyConflict(
                    "This Idempotency-Key was already used with a different request body.",
                    details={"job_id": str(job.id)},
                )
            return job
    if spec.subject_key:
        return GenerationJob.objects.filter(team=team, subject_key=spec.subject_key, status__in=ACTIVE_STATUSES).first()
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
        is_sketch = ref.role == JobReference.Role.SKETCH
        path = "inputs.sketch.asset_id" if is_sketch else f"inputs.references.{position}.asset_id"
        if ref.asset_id in used:
            errors[path] = ["This image is already used by this job; each image can steer it once."]
            continue
        used.add(ref.asset_id)
        if asset is None:
            errors[path] = ["No uploaded image with this id."]
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
    tab = StudioTab.objects.filter(id=tab_id, team=team, user=user).first()
    if tab is None:
        raise ValidationFailed({"tab": ["No studio tab with this id."]})
    return tab
