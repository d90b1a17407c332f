"""/api/v1/webhooks: a team's webhook endpoints (the secret shown once), their delivery logs and
"send again", as a client of the API sees them."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from standardwebhooks import Webhook

from generation.models import JobEvent
from tests.fakes.webhook_receiver import Answer, Scripted, WebhookReceiver
from tests.helpers import announce, signed_in
from webhooks.endpoints import DeliveryGone, endpoint_delivery_resend
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.services import SendOutcome, delivery_send

pytestmark = pytest.mark.django_db

HOOK_URL = "http://127.0.0.1:9/hooks"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    yield server
    server.stop()


def create(person, **body) -> dict:  # type: ignore[no-untyped-def]
    response = person.client.post("/api/v1/webhooks", {"url": HOOK_URL, **body}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def error_of(response) -> dict:  # type: ignore[no-untyped-def]
    return response.json()["error"]


# --- Creating an endpoint -----------------------------------------------------------------------


def test_create_answers_the_endpoint_and_a_standard_webhooks_secret_shown_only_then(alice):
    body = create(alice, events=["job.succeeded", "job.output", "job.succeeded"], description="  order system ")

    secret = body.pop("secret")
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    # The reference library takes it, and what it signs with it, it verifies.
    signer = Webhook(secret)
    sent_at = datetime.now(tz=UTC)
    headers = {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": signer.sign("evt_1", sent_at, '{"type":"job.succeeded"}'),
    }
    assert signer.verify('{"type":"job.succeeded"}', headers) == {"type": "job.succeeded"}

    assert body["url"] == HOOK_URL
    assert body["events"] == ["job.output", "job.succeeded"]  # each once, in the events' own order
    assert body["description"] == "order system"
    assert body["enabled"] is True and body["disabled_reason"] is None
    endpoint = WebhookEndpoint.objects.get(id=body["id"])
    assert endpoint.team == alice.team and endpoint.created_by == alice.user and endpoint.secret == secret

    shown_later = [
        alice.client.get("/api/v1/webhooks"),
        alice.client.get(f"/api/v1/webhooks/{body['id']}"),
        alice.client.patch(f"/api/v1/webhooks/{body['id']}", {"description": "x"}, format="json"),
    ]
    for response in shown_later:
        assert response.status_code == 200
        assert secret.encode() not in response.content and b'"secret"' not in response.content


def test_events_left_out_or_empty_mean_every_event(alice):
    assert create(alice)["events"] == []
    assert create(alice, events=[])["events"] == []
    endpoint = WebhookEndpoint.objects.filter(team=alice.team).first()
    assert endpoint is not None and all(endpoint.receives(event_type) for event_type in JobEvent.Type.values)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "url"),
        ({"url": ""}, "url"),
        ({"url": "ftp://hooks.example.com/x"}, "url"),
        ({"url": "http:///no-host"}, "url"),
        ({"url": "https://user:pw@hooks.example.com/x"}, "url"),
        ({"url": HOOK_URL, "events": ["job.finished"]}, "events.0"),
        ({"url": HOOK_URL, "events": "job.started"}, "events"),
        ({"url": HOOK_URL, "description": "d" * 201}, "description"),
        ({"url": HOOK_URL, "secret": "whsec_mine"}, "secret"),  # a secret is made, never given
    ],
)
def test_a_refused_body_is_a_validation_error_naming_its_field(alice, body, field):
    response = alice.client.post("/api/v1/webhooks", body, format="json")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "VALIDATION_ERROR"
    assert field in error["details"] and error["message"].startswith(field)
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1:8000/hooks", "127.0.0.1 is a loopback address"),
        ("http://10.1.2.3/hooks", "10.1.2.3 is a private address"),
        ("http://169.254.169.254/latest/meta-data", "a link-local address"),
        ("http://[::1]/hooks", "::1 is a loopback address"),
        ("http://localhost:8000/hooks", "localhost resolves to 127.0.0.1"),
    ],
)
def test_a_url_to_a_private_address_is_refused_unless_the_setting_allows_it(alice, settings, url, words):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    response = alice.client.post("/api/v1/webhooks", {"url": url}, format="json")
    assert response.status_code == 400
    assert words in error_of(response)["details"]["url"][0]
    assert not WebhookEndpoint.objects.exists()

    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True  # tests and development on one machine
    assert alice.client.post("/api/v1/webhooks", {"url": url}, format="json").status_code == 201


def test_a_team_holds_at_most_its_quota_of_endpoints(alice, bob, settings):
    settings.QUOTA_WEBHOOK_ENDPOINTS = 2
    create(alice)
    second = create(bob)  # a member of the same team: the quota is the team's
    response = alice.client.post("/api/v1/webhooks", {"url": HOOK_URL}, format="json")
    assert response.status_code == 409
    assert error_of(response)["code"] == "QUOTA_EXCEEDED"
    assert error_of(response)["details"] == {"quota": "webhook_endpoints", "limit": 2, "used": 2}
    assert WebhookEndpoint.objects.filter(team=alice.team).count() == 2

    assert alice.client.delete(f"/api/v1/webhooks/{second['id']}").status_code == 204
    create(alice)


def test_a_browser_session_manages_endpoints_too(alice):
    browser = signed_in(alice)
    response = browser.post("/api/v1/webhooks", {"url": HOOK_URL}, content_type="application/json")
    assert response.status_code == 201
    assert browser.get("/api/v1/webhooks").json()["count"] == 1


# --- Reading, changing, deleting ----------------------------------------------------------------


def test_the_list_shows_the_teams_own_endpoints_oldest_first_in_pages(alice, charlie):
    first = create(alice, description="first")
    second = create(alice, description="second")
    create(charlie, description="charlie's")

    page = alice.client.get("/api/v1/webhooks").json()
    assert page["count"] == 2
    assert [endpoint["id"] for endpoint in page["results"]] == [first["id"], second["id"]]
    one = alice.client.get("/api/v1/webhooks?limit=1&offset=1").json()
    assert [endpoint["description"] for endpoint in one["results"]] == ["second"]
    assert one["previous"] is not None and one["next"] is None


def test_patch_changes_only_the_fields_given(alice):
    endpoint = create(alice, events=["job.failed"], description="orders")
    response = alice.client.patch(f"/api/v1/webhooks/{endpoint['id']}", {"events": ["job.started"]}, format="json")
    assert response.status_code == 200
    assert response.json()["events"] == ["job.started"]
    assert response.json()["description"] == "orders" and response.json()["url"] == HOOK_URL

    response = alice.client.patch(
        f"/api/v1/webhooks/{endpoint['id']}", {"url": "http://127.0.0.1:9/v2", "description": ""}, format="json"
    )
    assert response.json()["url"] == "http://127.0.0.1:9/v2" and response.json()["description"] == ""
    stored = WebhookEndpoint.objects.get(id=endpoint["id"])
    assert (stored.url, stored.events, stored.description) == ("http://127.0.0.1:9/v2", ["job.started"], "")


def test_patch_checks_what_it_changes_as_creation_does(alice, settings):
    endpoint = create(alice)
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    response = alice.client.patch(f"/api/v1/webhooks/{endpoint['id']}", {"url": "http://10.0.0.1/"}, format="json")
    assert response.status_code == 400 and "private address" in error_of(response)["details"]["url"][0]
    response = alice.client.patch(f"/api/v1/webhooks/{endpoint['id']}", {"events": ["job.done"]}, format="json")
    assert response.status_code == 400 and "events.0" in error_of(response)["details"]
    response = alice.client.patch(f"/api/v1/webhooks/{endpoint['id']}", {"enabled": "no"}, format="json")
    assert response.status_code == 400 and "enabled" in error_of(response)["details"]
    assert WebhookEndpoint.objects.get(id=endpoint["id"]).url == HOOK_URL


def test_disabling_stops_new_deliveries_and_enabling_again_clears_an_automatic_disabling(alice):
    endpoint_id = create(alice)["id"]
    response = alice.client.patch(f"/api/v1/webhooks/{endpoint_id}", {"enabled": False}, format="json")
    assert response.json()["enabled"] is False and response.json()["disabled_reason"] == "team"
    announce(alice, JobEvent.Type.STARTED)
    assert not WebhookDelivery.objects.exists()  # a disabled endpoint gets no deliveries

    # What the senders do to an endpoint that kept failing (webhooks/services.py).
    failing_since = timezone.now() - timedelta(days=1, minutes=5)
    WebhookEndpoint.objects.filter(id=endpoint_id).update(
        enabled=False, disabled_reason=WebhookEndpoint.DisabledReason.FAILING, disabled_at=timezone.now(),
        failing_since=failing_since, consecutive_failures=15,
    )  # fmt: skip
    shown = alice.client.get(f"/api/v1/webhooks/{endpoint_id}").json()
    assert shown["disabled_reason"] == "failing" and shown["consecutive_failures"] == 15
    assert shown["failing_since"] is not None

    response = alice.client.patch(f"/api/v1/webhooks/{endpoint_id}", {"enabled": True}, format="json")
    assert response.status_code == 200
    shown = response.json()
    assert shown["enabled"] is True and shown["disabled_reason"] is None and shown["disabled_at"] is None
    assert shown["failing_since"] is None and shown["consecutive_failures"] == 0
    announce(alice, JobEvent.Type.STARTED)
    assert WebhookDelivery.objects.filter(endpoint_id=endpoint_id).count() == 1


def test_delete_removes_the_endpoint_and_its_delivery_log(alice):
    endpoint_id = create(alice)["id"]
    announce(alice, JobEvent.Type.SUCCEEDED)
    assert WebhookDelivery.objects.filter(endpoint_id=endpoint_id).count() == 1

    assert alice.client.delete(f"/api/v1/webhooks/{endpoint_id}").status_code == 204
    assert alice.client.get(f"/api/v1/webhooks/{endpoint_id}").status_code == 404
    assert not WebhookEndpoint.objects.filter(id=endpoint_id).exists()
    assert not WebhookDelivery.objects.exists()
    assert JobEvent.objects.count() == 1  # the job's own history stays


def test_an_outsider_gets_404_on_every_route_with_an_id(alice, charlie):
    endpoint_id = create(alice)["id"]
    announce(alice, JobEvent.Type.SUCCEEDED)
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(id=delivery.id).update(status=WebhookDelivery.Status.FAILED)
    base = f"/api/v1/webhooks/{endpoint_id}"

    answers = [
        charlie.client.get(base),
        charlie.client.patch(base, {"enabled": False}, format="json"),
        charlie.client.delete(base),
        charlie.client.get(f"{base}/deliveries"),
        charlie.client.post(f"{base}/deliveries/{delivery.id}/resend"),
    ]
    assert [response.status_code for response in answers] == [404] * 5
    assert {error_of(response)["code"] for response in answers} == {"NOT_FOUND"}
    endpoint = WebhookEndpoint.objects.get(id=endpoint_id)
    assert endpoint.enabled is True
    assert WebhookDelivery.objects.get(id=delivery.id).status == WebhookDelivery.Status.FAILED

    # A delivery of another endpoint of one's own team is no delivery of this one either.
    other_id = create(alice)["id"]
    response = alice.client.post(f"/api/v1/webhooks/{other_id}/deliveries/{delivery.id}/resend")
    assert response.status_code == 404


def test_every_route_answers_401_without_authentication(anonymous):
    base = f"/api/v1/webhooks/{uuid.uuid4()}"
    requests = [
        ("get", "/api/v1/webhooks"), ("post", "/api/v1/webhooks"), ("get", base), ("patch", base),
        ("delete", base), ("get", f"{base}/deliveries"), ("post", f"{base}/deliveries/1/resend"),
    ]  # fmt: skip
    for method, path in requests:
        response = getattr(anonymous, method)(path)
        assert response.status_code == 401 and error_of(response)["code"] == "NOT_AUTHENTICATED"
        assert response["WWW-Authenticate"].startswith("Bearer")


# --- The delivery log and "send again" ----------------------------------------------------------


# The sender makes its HTTP request outside any transaction: the test's must commit.
@pytest.mark.django_db(transaction=True)
def test_the_delivery_log_lists_the_newest_first_with_every_attempt(alice, charlie, receiver):
    endpoint_id = create(alice, url=f"{receiver.url}/hooks")["id"]
    receiver.script("/hooks", Scripted(Answer(500, {"oops": True})))  # the first attempt fails, the next passes
    job = announce(alice, JobEvent.Type.STARTED)
    announce(alice, JobEvent.Type.SUCCEEDED, job=job)
    announce(charlie, JobEvent.Type.SUCCEEDED)  # another team's event is not in the log
    started, succeeded = WebhookDelivery.objects.filter(endpoint_id=endpoint_id).order_by("id")
    assert delivery_send(delivery_id=started.id) is SendOutcome.RETRY_SCHEDULED
    WebhookDelivery.objects.filter(id=started.id).update(next_attempt_at=timezone.now())  # its wait is over
    assert delivery_send(delivery_id=started.id) is SendOutcome.DELIVERED

    log = alice.client.get(f"/api/v1/webhooks/{endpoint_id}/deliveries").json()
    assert log["count"] == 2
    newest, oldest = log["results"]
    assert (newest["id"], newest["event_type"], newest["status"]) == (succeeded.id, "job.succeeded", "pending")
    assert newest["attempt_log"] == [] and newest["next_attempt_at"] is not None
    assert oldest["event_id"] == f"evt_{started.event_id}" and oldest["job_id"] == str(job.id)
    assert (oldest["status"], oldest["attempts"], oldest["last_status_code"]) == ("delivered", 2, 200)
    assert oldest["delivered_at"] is not None and oldest["next_attempt_at"] is None
    first, second = oldest["attempt_log"]
    assert (first["number"], first["status_code"], second["number"], second["status_code"]) == (1, 500, 2, 200)
    assert "500" in first["error"] and second["error"] == ""
    assert set(first) == {"number", "started_at", "duration_ms", "status_code", "error", "response_body"}
    received = receiver.verified(WebhookEndpoint.objects.get(id=endpoint_id).secret, "/hooks")
    assert [payload["type"] for payload in received] == ["job.started", "job.started"]

    assert alice.client.get(f"/api/v1/webhooks/{endpoint_id}/deliveries?limit=1").json()["results"][0]["id"] == (
        succeeded.id
    )


# The sender makes its HTTP request outside any transaction: the test's must commit.
@pytest.mark.django_db(transaction=True)
def test_send_again_sends_the_same_event_with_the_same_webhook_id(alice, receiver):
    endpoint = create(alice, url=f"{receiver.url}/hooks", events=["job.succeeded"])
    receiver.script("/hooks", Scripted(Answer(410, {"gone": True})))  # not retried: the delivery fails
    announce(alice, JobEvent.Type.SUCCEEDED)
    delivery = WebhookDelivery.objects.get()
    assert delivery_send(delivery_id=delivery.id) is SendOutcome.FAILED

    response = alice.client.post(f"/api/v1/webhooks/{endpoint['id']}/deliveries/{delivery.id}/resend")
    assert response.status_code == 202
    answer = response.json()
    assert (answer["id"], answer["status"], answer["attempts"]) == (delivery.id, "pending", 0)
    assert len(answer["attempt_log"]) == 1  # the log keeps the failed round
    assert delivery_send(delivery_id=delivery.id) is SendOutcome.DELIVERED  # what the woken sender does

    first, second = receiver.received("/hooks")
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == f"evt_{delivery.event_id}"
    assert [payload["type"] for payload in receiver.verified(endpoint["secret"], "/hooks")] == ["job.succeeded"] * 2
    assert [attempt.status_code for attempt in WebhookAttempt.objects.filter(delivery=delivery)] == [410, 200]
    assert WebhookDelivery.objects.get(id=delivery.id).status == WebhookDelivery.Status.DELIVERED


def test_send_again_to_a_disabled_endpoint_is_refused_until_it_is_enabled(alice):
    endpoint_id = create(alice)["id"]
    announce(alice, JobEvent.Type.SUCCEEDED)
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(id=delivery.id).update(status=WebhookDelivery.Status.FAILED, attempts=3)
    alice.client.patch(f"/api/v1/webhooks/{endpoint_id}", {"enabled": False}, format="json")

    response = alice.client.post(f"/api/v1/webhooks/{endpoint_id}/deliveries/{delivery.id}/resend")
    assert response.status_code == 409 and error_of(response)["code"] == "ENDPOINT_DISABLED"
    assert WebhookDelivery.objects.get(id=delivery.id).status == WebhookDelivery.Status.FAILED

    alice.client.patch(f"/api/v1/webhooks/{endpoint_id}", {"enabled": True}, format="json")
    response = alice.client.post(f"/api/v1/webhooks/{endpoint_id}/deliveries/{delivery.id}/resend")
    assert response.status_code == 202
    assert WebhookDelivery.objects.get(id=delivery.id).status == WebhookDelivery.Status.PENDING


def test_send_again_of_a_delivery_deleted_since_it_was_read_is_not_found(alice):
    endpoint_id = create(alice)["id"]
    announce(alice, JobEvent.Type.SUCCEEDED)
    delivery = WebhookDelivery.objects.select_related("endpoint").get()
    endpoint = delivery.endpoint
    # What the view read a moment ago, then removed by retention (or by another tab, with its
    # endpoint): "send again" answers 404 in the API's words, not a server error.
    WebhookDelivery.objects.filter(id=delivery.id).delete()
    with pytest.raises(DeliveryGone) as gone:
        endpoint_delivery_resend(endpoint=endpoint, delivery=delivery)
    assert (gone.value.status_code, gone.value.code) == (404, "NOT_FOUND")

    WebhookEndpoint.objects.filter(id=endpoint_id).delete()
    with pytest.raises(DeliveryGone):
        endpoint_delivery_resend(endpoint=endpoint, delivery=delivery)


# --- Rate limit (RATE_LIMIT_WEBHOOK) --------------------------------------------------------------


def assert_throttled(response) -> None:  # type: ignore[no-untyped-def]
    """A 429 in the API's error shape whose Retry-After and details agree, as every scope's."""
    assert response.status_code == 429, response.content
    error = error_of(response)
    assert error["code"] == "THROTTLED"
    assert response["Retry-After"] == str(error["details"]["wait"]) and int(response["Retry-After"]) >= 1


def test_adding_and_changing_endpoints_have_the_webhook_limit_and_a_refused_one_changes_nothing(alice, settings):
    settings.RATE_LIMIT_WEBHOOK = "2/min"
    endpoint_id = create(alice)["id"]
    changed = alice.client.patch(f"/api/v1/webhooks/{endpoint_id}", {"description": "orders"}, format="json")
    assert changed.status_code == 200

    assert_throttled(alice.client.post("/api/v1/webhooks", {"url": f"{HOOK_URL}/2"}, format="json"))
    assert_throttled(alice.client.patch(f"/api/v1/webhooks/{endpoint_id}", {"url": f"{HOOK_URL}/moved"}, format="json"))

    assert list(WebhookEndpoint.objects.filter(team=alice.team).values_list("url", "description")) == [
        (HOOK_URL, "orders")
    ]
    # Reading is not a webhook change: the general API limit still lets it through.
    assert alice.client.get("/api/v1/webhooks").status_code == 200
    assert alice.client.get(f"/api/v1/webhooks/{endpoint_id}").status_code == 200


def test_send_again_has_the_webhook_limit_and_a_refused_one_sends_nothing(alice, settings):
    settings.RATE_LIMIT_WEBHOOK = "2/min"  # the endpoint's creation is the first
    endpoint_id = create(alice)["id"]
    announce(alice, JobEvent.Type.SUCCEEDED)
    delivery = WebhookDelivery.objects.get()
    failed = WebhookDelivery.objects.filter(id=delivery.id)
    failed.update(status=WebhookDelivery.Status.FAILED, attempts=3)
    resend = f"/api/v1/webhooks/{endpoint_id}/deliveries/{delivery.id}/resend"
    assert alice.client.post(resend).status_code == 202
    failed.update(status=WebhookDelivery.Status.FAILED, attempts=3)

    assert_throttled(alice.client.post(resend))

    assert failed.values_list("status", "attempts").get() == (WebhookDelivery.Status.FAILED, 3)
    assert alice.client.get(f"/api/v1/webhooks/{endpoint_id}/deliveries").status_code == 200


def test_the_schema_shows_429_on_the_webhook_writes(anonymous):
    paths = anonymous.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    for path, method in [
        ("/api/v1/webhooks", "post"),
        ("/api/v1/webhooks/{endpoint_id}", "patch"),
        ("/api/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/resend", "post"),
    ]:
        refused = paths[path][method]["responses"]["429"]
        assert "THROTTLED" in refused["description"] and "Retry-After" in refused["headers"]
