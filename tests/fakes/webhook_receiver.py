"""A webhook receiver on localhost, as a team's server would run one: it records every request
and answers 200 unless a test scripted something else for a path (500, 429 with Retry-After,
410, a hang). It checks nothing itself: the tests verify each request with `standardwebhooks`,
the Standard Webhooks reference library, as a receiver would."""

from __future__ import annotations

import base64
import os
from collections import Counter
from typing import Any

from standardwebhooks import Webhook

from tests.fakes.server import Answer, FakeServer, Recorded, Scripted

__all__ = ["Answer", "Recorded", "Scripted", "WebhookReceiver", "new_secret"]


def new_secret() -> str:
    """A signing secret in the Standard Webhooks form: `whsec_` and base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


class WebhookReceiver(FakeServer):
    def default_answer(self, request: Recorded) -> Answer:
        return Answer(200, {"received": request.headers.get("webhook-id")})

    def webhook_ids(self, path_suffix: str = "") -> Counter[str]:
        """How many requests each webhook-id came in (a receiver's deduplication key)."""
        return Counter(request.headers.get("webhook-id", "") for request in self.received(path_suffix))

    def verified(self, secret: str, path_suffix: str = "") -> list[dict[str, Any]]:
        """Every payload received at the path, each verified as a receiver would (signature,
        headers, timestamp tolerance); raises WebhookVerificationError for one that is not."""
        return [Webhook(secret).verify(request.body, request.headers) for request in self.received(path_suffix)]
