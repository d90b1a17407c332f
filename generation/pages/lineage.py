"""Where a job comes from and what came of it: the job it retries (or remixes) and its own
retries (and remixes), for the job's page."""

from __future__ import annotations

from dataclasses import dataclass

from generation.models import GenerationJob


@dataclass(frozen=True)
class Lineage:
    retry_of: GenerationJob | None
    retries: list[GenerationJob]

    def __bool__(self) -> bool:
        return bool(self.retry_of or self.retries)


def job_lineage(job: GenerationJob) -> Lineage:
    return Lineage(
        retry_of=job.retry_of if job.retry_of_id else None,
        retries=list(job.retries.order_by("created_at")),
    )
