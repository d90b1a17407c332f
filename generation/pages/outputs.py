"""Delivered outputs as every page shows them (the studio, a job's page, the collection), with
what the lightbox (gallery.js) needs to show one at full size and act on its look."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from django.db.models import Q
from django.urls import reverse

from generation.models import GeneratedOutput, GenerationJob, Look
from generation.routes import job_route
from generation.services.files import output_label


@dataclass(frozen=True)
class OutputView:
    """One delivered output as the pages show it: an image, or a clip with its poster frame; and
    its look in the collection, when there is one (a deleted look leaves the output without)."""

    output: GeneratedOutput
    number: int  # counted from 1, like the zip's golden-roses-1.png
    url: str
    poster_url: str
    is_clip: bool
    look: Look | None = None
    title: str = ""  # the job's prompt: the lightbox's caption

    @property
    def label(self) -> str:
        return output_label(self.output.index, self.output.mime)

    @property
    def kind(self) -> str:
        return "clip" if self.is_clip else "image"

    @property
    def look_url(self) -> str:
        return reverse("look-page", args=[self.look.id]) if self.look else ""

    @property
    def delete_url(self) -> str:
        return reverse("look-delete", args=[self.look.id]) if self.look else ""


def output_view(output: GeneratedOutput, *, look: Look | None = None, title: str = "") -> OutputView:
    number = output.index + 1
    return OutputView(
        output=output,
        number=number,
        url=output.get_absolute_url(),
        poster_url=job_route("job-output-poster", output.job_id, number) if output.poster else "",
        is_clip=output.mime.startswith("video/"),
        look=look,
        title=title,
    )


def output_views(
    outputs: Sequence[GeneratedOutput], *, title: str = "", job: GenerationJob | None = None
) -> list[OutputView]:
    """The outputs of a job (as `job_outputs_of` gives them, maybe unsaved rows read from the
    job's own row) with their looks, in one query whatever their number. An output a retry
    carried over shows the look of the output it was carried from: that is where it was collected
    (generation/services/lifecycle.py, `outputs_collect`)."""
    if not outputs:
        return []
    if job is not None and all(hasattr(output, "row_look_id") for output in outputs):
        # Read with the job's row (`job_outputs_of`): the looks' ids came with it, no query. The
        # look's settings are its job's: a carried-over image's look was made by an earlier job of
        # the same retry chain, with the same settings.
        return [
            output_view(
                output,
                look=Look(id=output.row_look_id, team_id=job.team_id, job=job, output=output)  # type: ignore[attr-defined]
                if output.row_look_id  # type: ignore[attr-defined]
                else None,
                title=title,
            )
            for output in outputs
        ]
    own = {(output.job_id, output.index) for output in outputs if not output.carried_from_id}
    carried_from = {output.carried_from_id for output in outputs if output.carried_from_id}
    jobs = {job_id for job_id, _ in own}
    looks_by_place: dict[tuple[UUID, int], Look] = {}
    looks_by_output: dict[int, Look] = {}
    looks = Look.objects.filter(Q(job_id__in=jobs) | Q(output_id__in=carried_from)).select_related("output", "job")
    for found in looks:
        looks_by_place[(found.output.job_id, found.output.index)] = found
        looks_by_output[found.output_id] = found
    views = []
    for output in outputs:
        look: Look | None
        if output.carried_from_id:
            look = looks_by_output.get(output.carried_from_id)
        else:
            look = looks_by_place.get((output.job_id, output.index))
        views.append(output_view(output, look=look, title=title))
    return views
