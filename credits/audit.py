"""The ledger audit: balances equal the sums of their entries; finished jobs are settled; no image
of a retry chain is made or charged twice."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from credits.models import CreditAccount, LedgerEntry


@dataclass
class AuditReport:
    accounts_checked: int = 0
    jobs_checked: int = 0
    entries_checked: int = 0
    account_problems: list[str] = field(default_factory=list)
    job_problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.account_problems and not self.job_problems


def credits_audit() -> AuditReport:
    """1. For every account: available = sum of available_delta, held = sum of held_delta.
    2. For every finished job: captured + released = held, and captures match its delivered
       images that it made itself (carried-over images are not charged again).
    3. For every retry chain (a job and its retries): each image index is made by at most one
       of its jobs and captured at most once, across all of them.
    A fixed number of queries, whatever the number of jobs.
    """
    from generation.models import FINISHED_STATUSES, GeneratedOutput, GenerationJob

    report = AuditReport(entries_checked=LedgerEntry.objects.count())
    sums = {
        row["account_id"]: row
        for row in LedgerEntry.objects.values("account_id").annotate(
            available=Sum("available_delta"), held=Sum("held_delta")
        )
    }
    for account in CreditAccount.objects.select_related("team").order_by("id"):
        report.accounts_checked += 1
        totals = sums.get(account.id, {"available": 0, "held": 0})
        if (totals["available"], totals["held"]) != (account.available, account.held):
            report.account_problems.append(
                f"account of team {account.team_id} ({account.team}): balances {account.available}/{account.held}"
                f" but entries add up to {totals['available']}/{totals['held']} (available/held)"
            )

    jobs = GenerationJob.objects.filter(status__in=FINISHED_STATUSES).annotate(
        held=Sum("ledger_entries__held_delta", filter=Q(ledger_entries__kind="hold"), default=0),
        captured=Sum("ledger_entries__held_delta", filter=Q(ledger_entries__kind="capture"), default=0),
        released=Sum("ledger_entries__held_delta", filter=Q(ledger_entries__kind="release"), default=0),
    )
    own_outputs = dict(
        GenerationJob.objects.filter(status__in=FINISHED_STATUSES)
        .annotate(n=Count("outputs", filter=Q(outputs__carried_from__isnull=True)))
        .values_list("id", "n")
    )
    for job in jobs.iterator():
        report.jobs_checked += 1
        held, captured, released = job.held, -job.captured, -job.released
        if captured + released != held:
            report.job_problems.append(
                f"job {job.id} ({job.status}): held {held} but captured {captured} + released {released}"
            )
        expected_captured = own_outputs.get(job.id, 0) * job.credits_per_output
        if captured != expected_captured:
            report.job_problems.append(
                f"job {job.id} ({job.status}): captured {captured} for {own_outputs.get(job.id, 0)} images"
                f" made at {job.credits_per_output} each ({expected_captured} expected)"
            )

    # A retry carries its predecessors' images over (carried_from set) and holds only for the
    # others; an index a chain made or charged twice is a race that started two retries.
    outputs = GeneratedOutput.objects.filter(carried_from__isnull=True)
    for chain, index, times in _twice_in_a_chain(outputs, "index"):
        report.job_problems.append(f"chain of job {chain}: image index {index} made {times} times by its jobs")
    captures = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CAPTURE, job__isnull=False)
    for chain, index, times in _twice_in_a_chain(captures, "output_index"):
        report.job_problems.append(f"chain of job {chain}: image index {index} captured {times} times")
    return report


def _twice_in_a_chain(rows: QuerySet, index_field: str) -> list[tuple[object, int, int]]:
    """(chain, index, times) for each image index that `rows` (outputs or captures, each with a
    `job`) hold more than once within one retry chain: the chain's first job or the job itself."""
    return list(
        rows.annotate(chain=Coalesce("job__chain_root_id", "job_id"))
        .values("chain", index_field)
        .annotate(times=Count("id"))
        .filter(times__gt=1)
        .order_by("chain", index_field)
        .values_list("chain", index_field, "times")
    )
