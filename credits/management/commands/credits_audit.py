from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from credits.audit import credits_audit


class Command(BaseCommand):
    help = (
        "Check that every account's entries add up to its balances, every finished job is settled and"
        " no image of a retry chain was made or charged twice."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = credits_audit()
        self.stdout.write(
            f"checked {report.accounts_checked} accounts, {report.entries_checked} ledger entries, "
            f"{report.jobs_checked} finished jobs"
        )
        for problem in report.account_problems + report.job_problems:
            self.stderr.write(problem)
        if not report.clean:
            raise CommandError(
                f"{len(report.account_problems)} account(s) and {len(report.job_problems)} job(s) do not add up."
            )
        self.stdout.write(
            "ledger is consistent: balances match their entries; every finished job is settled;"
            " no image of a retry chain was made or charged twice"
        )
