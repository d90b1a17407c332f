"""The ledger audit: balances equal the sums of their entries; finished jobs are settled."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count, Q, Sum

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
    """
    from generation.models import FINISHED_STATUSES, GenerationJob

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
    return report
