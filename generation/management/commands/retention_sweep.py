from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from generation.services.retention import retention_summary, retention_sweep


class Command(BaseCommand):
    help = (
        "Run one retention sweep now, as beat does every RETENTION_INTERVAL_SECONDS: old zips, orphan files,"
        " unused uploads, stale previews, old job events and finished webhook deliveries."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        sweep = retention_sweep()
        self.stdout.write(f"retention sweep #{sweep.id} removed {retention_summary(sweep)}")
        if sweep.error:
            raise CommandError(sweep.error)
