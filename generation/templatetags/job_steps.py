"""`{% job_next_steps job as steps %}`: what a finished job's progress panel offers
(generation/pages/failures.py). A tag, so that every view that draws the panel (a tab, a job's
page, their polls) gets it without each adding it to its context."""

from __future__ import annotations

from django import template

from generation.models import GenerationJob
from generation.pages.failures import JobNextSteps
from generation.pages.failures import job_next_steps as next_steps_of

register = template.Library()


@register.simple_tag
def job_next_steps(job: GenerationJob | None) -> JobNextSteps:
    return next_steps_of(job)
