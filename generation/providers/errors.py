"""One error taxonomy for every provider.

Each SDK raises its own exceptions; the providers translate them here, through `from_http`
(a status code and what the body said) or the helpers below, into the two exceptions of
generation/providers/base.py with a stable Atelier code and a message a person understands. The
raw SDK text never reaches a job's error: it goes to the log.

| code                  | kind      | when                                                          |
|-----------------------|-----------|---------------------------------------------------------------|
| RATE_LIMITED          | transient | 429 (Retry-After honoured)                                    |
| PROVIDER_UNAVAILABLE  | transient | 5xx, 408, 409 (the provider's own trouble)                    |
| PROVIDER_TIMEOUT      | transient | the call did not answer within its per-call timeout          |
| PROVIDER_CONNECTION   | transient | the connection could not be made or was dropped               |
| PROVIDER_ERROR        | transient | the SDK raised something unforeseen (logged in full)          |
| INVALID_REQUEST       | permanent | 400, 413, 422 other than the cases below                      |
| CONTENT_POLICY        | permanent | the prompt or an input image was refused, or no image was made for safety |
| PROVIDER_AUTH         | permanent | 401, 403: a wrong, revoked or unauthorised key                |
| PROVIDER_QUOTA        | permanent | the account's quota or billing limit is used up               |
| MODEL_NOT_FOUND       | permanent | 404: the model does not exist or this key cannot use it       |
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

from generation.providers.base import PermanentProviderError, ProviderError, TransientProviderError

RATE_LIMITED = "RATE_LIMITED"
PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"
PROVIDER_TIMEOUT = "PROVIDER_TIMEOUT"
PROVIDER_CONNECTION = "PROVIDER_CONNECTION"
INVALID_REQUEST = "INVALID_REQUEST"
CONTENT_POLICY = "CONTENT_POLICY"
PROVIDER_AUTH = "PROVIDER_AUTH"
PROVIDER_QUOTA = "PROVIDER_QUOTA"
MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
PROVIDER_ERROR = "PROVIDER_ERROR"

# Words in a provider's error code or message that mean a refusal on content grounds.
_POLICY_MARKERS = ("moderation", "safety", "content_policy", "content policy", "prohibited", "blocked")
# ...and that mean the account has no quota or money left (a 429 that waiting does not cure).
_QUOTA_MARKERS = ("insufficient_quota", "billing", "quota exceeded", "exceeded your current quota")

# Retry-After values beyond this are treated as this: a job does not sleep for an hour on a hint.
MAX_RETRY_AFTER_SECONDS = 120.0


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The wait a response asks for: `retry-after-ms`, or `Retry-After` in seconds or as an HTTP
    date; None when it asks for none (or for something unreadable)."""
    if not headers:
        return None
    lowered = {key.lower(): value for key, value in headers.items()}
    try:
        if "retry-after-ms" in lowered:
            return _bounded(float(lowered["retry-after-ms"]) / 1000)
        value = lowered.get("retry-after")
        if value is None:
            return None
        try:
            return _bounded(float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return _bounded(when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def _bounded(seconds: float) -> float | None:
    if seconds != seconds or seconds < 0:  # NaN or in the past
        return 0.0 if seconds == seconds else None
    return min(seconds, MAX_RETRY_AFTER_SECONDS)


def from_http(
    *,
    provider: str,
    status: int,
    code: str = "",
    message: str = "",
    retry_after: float | None = None,
) -> ProviderError:
    """The Atelier error for an HTTP error answer of `provider` (a label such as "OpenAI").

    `code` and `message` are what the provider's body said; they only steer the sorting.
    """
    said = f"{code} {message}".lower()
    if any(marker in said for marker in _QUOTA_MARKERS):
        return PermanentProviderError(
            f"{provider} says the account's quota or billing limit is used up; an operator must raise it.",
            code=PROVIDER_QUOTA,
        )
    if status == 429:
        return TransientProviderError(
            f"{provider} is rate limiting requests; the image will be tried again.",
            code=RATE_LIMITED,
            retry_after=retry_after,
        )
    if status >= 500 or status in (408, 409):
        return TransientProviderError(
            f"{provider} had a temporary problem (HTTP {status}); the image will be tried again.",
            code=PROVIDER_UNAVAILABLE,
            retry_after=retry_after,
        )
    if any(marker in said for marker in _POLICY_MARKERS):
        return content_policy(provider)
    if status in (401, 403):
        return PermanentProviderError(
            f"{provider} refused the credentials (HTTP {status}); an operator must check the API key.",
            code=PROVIDER_AUTH,
        )
    if status == 404:
        return PermanentProviderError(
            f"{provider} does not know this model, or the API key cannot use it.", code=MODEL_NOT_FOUND
        )
    return PermanentProviderError(
        f"{provider} rejected the request (HTTP {status}){_reason(message)}", code=INVALID_REQUEST
    )


def content_policy(provider: str, what: str = "The request") -> PermanentProviderError:
    return PermanentProviderError(
        f"{what} was refused by {provider}'s content policy; change the prompt or the images and try again.",
        code=CONTENT_POLICY,
    )


def timed_out(provider: str, seconds: float) -> TransientProviderError:
    return TransientProviderError(f"{provider} did not answer within {seconds:.0f} s.", code=PROVIDER_TIMEOUT)


def connection_failed(provider: str) -> TransientProviderError:
    return TransientProviderError(
        f"The connection to {provider} failed; the image will be tried again.", code=PROVIDER_CONNECTION
    )


def _reason(message: str) -> str:
    """A provider's own one-line explanation of a bad request is useful to a person; a long dump is not."""
    text = " ".join(message.split())
    if not text or len(text) > 300:
        return "."
    return f": {text.rstrip('.')}."


def unexpected() -> TransientProviderError:
    return TransientProviderError("The provider call failed unexpectedly; it will be tried again.", code=PROVIDER_ERROR)
