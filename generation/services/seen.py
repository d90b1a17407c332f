"""What a person has seen: a finished job shown to its starter leaves the return notice."""

from __future__ import annotations

from collections.abc import Iterable

from django.utils import timezone

from accounts.models import User
from generation.models import GenerationJob


def jobs_mark_seen(*, jobs: Iterable[GenerationJob], user: User) -> None:
    """The finished jobs of `jobs` that `user` started count as seen (one update at most)."""
    ids = [job.id for job in jobs if job.is_finished and job.seen_at is None and job.created_by_id == user.id]
    if ids:
        GenerationJob.objects.filter(id__in=ids, seen_at__isnull=True).update(seen_at=timezone.now())
