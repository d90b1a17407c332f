"""Credit movements. Each one locks the team's account row, is idempotent by its key, and
appends one ledger entry with the balances after it, in the caller's transaction.

Two-phase charging: a job holds price x outputs when it is accepted, captures one output's price
for each image it delivers, and releases what is left when it ends, however it ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from django.db import transaction
from django.db.models import Q, Sum

from accounts.models import Team, User
from config.errors import ServiceError
from credits.models import CreditAccount, LedgerEntry

SYSTEM_PIPELINE = "system:pipeline"
TOP_UP_PATH = "/credits/"


class InsufficientCredits(ServiceError):
    status_code = 402
    code = "INSUFFICIENT_CREDITS"

    def __init__(self, *, required: int, available: int) -> None:
        super().__init__(
            f"This needs {required} credits but the team has {available} available.",
            details={"required": required, "available": available, "top_up_url": TOP_UP_PATH},
        )


class InvalidCreditAmount(ServiceError):
    status_code = 400
    code = "VALIDATION_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(f"amount: {message}", details={"amount": [message]})


@dataclass(frozen=True)
class JobCredits:
    held: int
    captured: int
    released: int

    @property
    def outstanding(self) -> int:
        return self.held - self.captured - self.released


def _actor_label(actor: User | None, fallback: str) -> str:
    return f"user:{actor.email}" if actor is not None else fallback


def credits_account_lock(*, team_id: int) -> CreditAccount:
    """Lock the team's account row (creating the account on first use) until the caller's
    transaction ends. Every credit movement of the team waits here for the one before it; a
    submit takes it before it counts the team's active jobs, so that count cannot race either."""
    account = CreditAccount.objects.select_for_update().filter(team_id=team_id).first()
    if account is None:  # the team's first movement: one query more, once
        CreditAccount.objects.get_or_create(team_id=team_id)
        account = CreditAccount.objects.select_for_update().get(team_id=team_id)
    return account


@transaction.atomic
def _append(
    *,
    team_id: int,
    kind: str,
    available_delta: int,
    held_delta: int,
    idempotency_key: str,
    job_id: UUID | str | None = None,
    output_index: int | None = None,
    actor: User | None = None,
    actor_label: str = SYSTEM_PIPELINE,
    memo: str = "",
) -> tuple[LedgerEntry, bool]:
    """1. Lock the account row (creating the account on first use).
    2. An entry with this key already exists: return it, change nothing.
    3. Refuse a change that would take `available` below zero (InsufficientCredits).
    4. Update the balances and append the entry. Returns (entry, created).
    """
    account = credits_account_lock(team_id=team_id)
    existing = LedgerEntry.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing, False
    if account.available + available_delta < 0:
        raise InsufficientCredits(required=-available_delta, available=account.available)
    if account.held + held_delta < 0:
        raise AssertionError(f"{kind} {idempotency_key} would take held below zero")
    account.available += available_delta
    account.held += held_delta
    account.save(update_fields=["available", "held", "updated_at"])
    entry = LedgerEntry.objects.create(
        account=account,
        kind=kind,
        available_delta=available_delta,
        held_delta=held_delta,
        job_id=job_id,
        output_index=output_index,
        idempotency_key=idempotency_key,
        available_after=account.available,
        held_after=account.held,
        actor=actor,
        actor_label=_actor_label(actor, actor_label),
        memo=memo,
    )
    return entry, True


def credits_grant(*, team: Team, amount: int, idempotency_key: str, actor: User | None, memo: str) -> LedgerEntry:
    if amount <= 0:
        raise InvalidCreditAmount("A grant must be a positive number of credits.")
    return _change_available(LedgerEntry.Kind.GRANT, team, amount, idempotency_key, actor, memo)


def credits_adjust(*, team: Team, amount: int, idempotency_key: str, actor: User | None, memo: str) -> LedgerEntry:
    """An operator's correction of `available`, up or down (never below zero)."""
    if amount == 0:
        raise InvalidCreditAmount("An adjustment must not be zero.")
    return _change_available(LedgerEntry.Kind.ADJUST, team, amount, idempotency_key, actor, memo)


def _change_available(
    kind: str, team: Team, amount: int, idempotency_key: str, actor: User | None, memo: str
) -> LedgerEntry:
    """A change to `available` alone, made by a person or a command rather than a job."""
    entry, _ = _append(
        team_id=team.id,
        kind=kind,
        available_delta=amount,
        held_delta=0,
        idempotency_key=idempotency_key,
        actor=actor,
        actor_label=f"system:{kind}",
        memo=memo,
    )
    return entry


def credits_hold(*, team_id: int, job_id: UUID | str, amount: int, actor: User | None = None) -> LedgerEntry | None:
    """Reserve `amount` for an accepted job; raises InsufficientCredits when `available` is short."""
    if amount <= 0:
        return None
    entry, _ = _append(
        team_id=team_id,
        kind=LedgerEntry.Kind.HOLD,
        available_delta=-amount,
        held_delta=amount,
        idempotency_key=f"job:{job_id}:hold",
        job_id=job_id,
        actor=actor,
    )
    return entry


def credits_capture(*, team_id: int, job_id: UUID | str, output_index: int, amount: int) -> tuple[LedgerEntry, bool]:
    """Charge one delivered image from the job's hold; once per (job, image), whoever asks again."""
    return _append(
        team_id=team_id,
        kind=LedgerEntry.Kind.CAPTURE,
        available_delta=0,
        held_delta=-amount,
        idempotency_key=f"job:{job_id}:capture:{output_index}",
        job_id=job_id,
        output_index=output_index,
    )


def credits_release(*, team_id: int, job_id: UUID | str) -> LedgerEntry | None:
    """Give back what a finished job held but did not capture."""
    with transaction.atomic():
        CreditAccount.objects.select_for_update().filter(team_id=team_id).first()  # totals read under the lock
        outstanding = job_credits(job_id).outstanding
        if outstanding <= 0:
            return None
        entry, _ = _append(
            team_id=team_id,
            kind=LedgerEntry.Kind.RELEASE,
            available_delta=outstanding,
            held_delta=-outstanding,
            idempotency_key=f"job:{job_id}:release",
            job_id=job_id,
        )
    return entry


def job_credits(job_id: UUID | str) -> JobCredits:
    totals = LedgerEntry.objects.filter(job__id=job_id).aggregate(
        held=Sum("held_delta", filter=Q(kind=LedgerEntry.Kind.HOLD), default=0),
        captured=Sum("held_delta", filter=Q(kind=LedgerEntry.Kind.CAPTURE), default=0),
        released=Sum("held_delta", filter=Q(kind=LedgerEntry.Kind.RELEASE), default=0),
    )
    return JobCredits(held=totals["held"], captured=-totals["captured"], released=-totals["released"])


def job_credits_from_entries(entries: list[LedgerEntry]) -> JobCredits:
    """The same totals from prefetched entries (the job list shows them without a query per job)."""
    sums: dict[str, int] = {LedgerEntry.Kind.HOLD: 0, LedgerEntry.Kind.CAPTURE: 0, LedgerEntry.Kind.RELEASE: 0}
    for entry in entries:
        if entry.kind in sums:
            sums[entry.kind] += entry.held_delta
    return JobCredits(
        held=sums[LedgerEntry.Kind.HOLD],
        captured=-sums[LedgerEntry.Kind.CAPTURE],
        released=-sums[LedgerEntry.Kind.RELEASE],
    )
