"""Where a job comes from and what came of it, for the job's page: the job it retries, or the
image it remixes (as a reference, as an edit's source, or as "more like this"); its own retries,
and the jobs that remix its images."""

from __future__ import annotations

from dataclasses import dataclass

from generation.models import GeneratedOutput, GenerationJob, RemixMode


@dataclass(frozen=True)
class Lineage:
    retry_of: GenerationJob | None
    retries: list[GenerationJob]
    remix_of: GeneratedOutput | None = None  # the image this job remixes (its job: `remix_of.job`)
    remix_mode: str = ""
    remixes: list[GenerationJob] | None = None  # the jobs that remix an image of this one

    def __bool__(self) -> bool:
        return bool(self.retry_of or self.retries or self.remix_of or self.remixes)

    @property
    def remix_label(self) -> str:
        """ "Remix of", "Edit of" or "Variations of": how this job uses the image it comes from."""
        return f"{RemixMode(self.remix_mode).label if self.remix_mode in RemixMode.values else 'Remix'} of"


def job_lineage(job: GenerationJob) -> Lineage:
    remix_of = None
    if job.remix_of_id:
        remix_of = (
            GeneratedOutput.objects.select_related("job").filter(id=job.remix_of_id, job__team_id=job.team_id).first()
        )
    remixes = GenerationJob.objects.filter(remix_of__job=job, team_id=job.team_id).select_related("remix_of")
    return Lineage(
        retry_of=job.retry_of if job.retry_of_id else None,
        retries=list(job.retries.order_by("created_at")),
        remix_of=remix_of,
        remix_mode=job.remix_mode,
        remixes=list(remixes.order_by("created_at")),
    )
