"""Delivered outputs as every page shows them (the studio, a job's page, the collection)."""

from __future__ import annotations

from dataclasses import dataclass

from generation.models import GeneratedOutput
from generation.routes import job_route


@dataclass(frozen=True)
class OutputView:
    """One delivered output as the pages show it: an image, or a clip with its poster frame."""

    output: GeneratedOutput
    number: int  # counted from 1, like the zip's image-1.png
    url: str
    poster_url: str
    is_clip: bool

    @property
    def label(self) -> str:
        return f"{'Clip' if self.is_clip else 'Image'} {self.number}"


def output_view(output: GeneratedOutput) -> OutputView:
    number = output.index + 1
    return OutputView(
        output=output,
        number=number,
        url=output.get_absolute_url(),
        poster_url=job_route("job-output-poster", output.job_id, number) if output.poster else "",
        is_clip=output.mime.startswith("video/"),
    )
