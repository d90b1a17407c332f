"""What a failed or canceled job says to a person and offers next: the one place that turns an
error code (generation/providers/errors.py, the worker's own codes) into words and an action.

The raw code stays on the job (and in small print on the page) for support; a person reads the
words. A refusal on content grounds offers to edit the prompt, since the same prompt would most
likely be refused again; every other failure offers to retry what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from generation.models import GenerationJob
from generation.providers import errors as provider_errors


class NextStep(StrEnum):
    RETRY = "retry"  # make the missing images again with the same settings
    EDIT_PROMPT = "edit_prompt"  # change the prompt (or the images) first


@dataclass(frozen=True)
class FailureAdvice:
    words: str
    step: NextStep = NextStep.RETRY


CONTENT_POLICY_ADVICE = FailureAdvice(
    "The provider refused this prompt or image under its content policy. Change the prompt and try again.",
    NextStep.EDIT_PROMPT,
)
# Words for the codes a person may meet; a code not listed gets GENERIC_ADVICE.
ADVICE_BY_CODE: dict[str, FailureAdvice] = {
    provider_errors.CONTENT_POLICY: CONTENT_POLICY_ADVICE,
    provider_errors.RATE_LIMITED: FailureAdvice(
        "The provider was too busy to take more requests for a long while. Retry later to make the missing images."
    ),
    provider_errors.PROVIDER_UNAVAILABLE: FailureAdvice(
        "The provider's service was unavailable. Retry to make the missing images."
    ),
    provider_errors.PROVIDER_TIMEOUT: FailureAdvice(
        "The provider did not answer in time. Retry to make the missing images."
    ),
    provider_errors.PROVIDER_CONNECTION: FailureAdvice(
        "Atelier could not reach the provider. Retry to make the missing images."
    ),
    provider_errors.PROVIDER_ERROR: FailureAdvice(
        "The provider answered with an error we did not expect. Retry to make the missing images."
    ),
    provider_errors.INVALID_REQUEST: FailureAdvice(
        "The provider could not use these settings or images. Change them and try again.", NextStep.EDIT_PROMPT
    ),
    provider_errors.PROVIDER_AUTH: FailureAdvice(
        "Atelier's access to this provider was refused. Ask your administrator, then retry."
    ),
    provider_errors.PROVIDER_QUOTA: FailureAdvice(
        "Atelier's account with this provider has run out of quota. Ask your administrator, then retry."
    ),
    provider_errors.MODEL_NOT_FOUND: FailureAdvice(
        "This model is not available from the provider any more. Pick another model and try again.",
        NextStep.EDIT_PROMPT,
    ),
    "SOURCE_IMAGE_REQUIRED": FailureAdvice(
        "An edit needs a source image. Add the picture to edit and try again.", NextStep.EDIT_PROMPT
    ),
    "INVALID_SOURCE_IMAGE": FailureAdvice(
        "The provider could not read the source image. Pick another image and try again.", NextStep.EDIT_PROMPT
    ),
    "INVALID_INPUT_IMAGE": FailureAdvice(
        "One of the images given could not be read. Pick another image and try again.", NextStep.EDIT_PROMPT
    ),
    "INPUT_TOO_LARGE": FailureAdvice(
        "One of the images given is too large to work with. Pick a smaller image and try again.",
        NextStep.EDIT_PROMPT,
    ),
    "UNSUPPORTED_KIND": FailureAdvice(
        "This model cannot make this kind of output. Pick another model and try again.", NextStep.EDIT_PROMPT
    ),
    "INFRASTRUCTURE_OUTAGE": FailureAdvice(
        "Part of Atelier was unavailable for too long. Retry to make the missing images."
    ),
    "JOB_TIMEOUT": FailureAdvice("The job ran longer than a job may. Retry to make the missing images."),
    "JOB_ERROR": FailureAdvice("Something went wrong while making the images. Retry to make the missing images."),
    "POISON_JOB": FailureAdvice(
        "This job kept stopping the worker that ran it, so Atelier stopped trying it. "
        "Its inputs are the likely cause: change them and try again.",
        NextStep.EDIT_PROMPT,
    ),
}
GENERIC_ADVICE = FailureAdvice("Something went wrong while making the images. Retry to make the missing images.")


def failure_advice(job: GenerationJob) -> FailureAdvice:
    """The words and the next step for a failed job.

    A content-policy refusal after some images were delivered (one image refused, a later one of
    the same prompt: safety filters judge each image) still offers Retry beside Edit prompt; one
    that delivered nothing offers only Edit prompt, as the same prompt would be refused again.
    """
    return ADVICE_BY_CODE.get(job.error_code, GENERIC_ADVICE)


def offers_retry(job: GenerationJob, advice: FailureAdvice) -> bool:
    return advice.step is NextStep.RETRY or job.completed_outputs > 0


@dataclass(frozen=True)
class JobNextSteps:
    """What the progress panel of a finished job offers (none of it while the job is active)."""

    advice: FailureAdvice | None = None  # a failed job's words
    retry: bool = False  # "Retry the missing images"
    edit_prompt: bool = False
    finish_missing: int = 0  # a canceled job's "Finish the missing N images"
    credits: int = 0  # what making the missing outputs holds (named on the Retry and Finish buttons)
    retried_as: GenerationJob | None = None  # the newest retry of this job: "Retried: see the retry"


def job_next_steps(job: GenerationJob | None) -> JobNextSteps:
    """One query at most (a failed or canceled job's newest retry). A job already retried points
    at its retry instead of offering another: the retry is where the chain goes on."""
    if job is None or job.status not in (GenerationJob.Status.FAILED, GenerationJob.Status.CANCELED):
        return JobNextSteps()
    retried_as = job.retries.order_by("-created_at").first()
    missing = job.total_outputs - job.completed_outputs
    credits = missing * job.credits_per_output
    if job.status == GenerationJob.Status.CANCELED:
        return JobNextSteps(finish_missing=0 if retried_as else missing, retried_as=retried_as, credits=credits)
    advice = failure_advice(job)
    return JobNextSteps(
        advice=advice,
        retry=retried_as is None and offers_retry(job, advice),
        edit_prompt=advice.step is NextStep.EDIT_PROMPT,
        retried_as=retried_as,
        credits=credits,
    )
