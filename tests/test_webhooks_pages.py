"""The webhooks settings page (/settings/webhooks/), the notice of an endpoint disabled
automatically on every page, and the admin of endpoints and deliveries.

The browser tests drive Debian's Chromium (Playwright) against the live server; deliveries are
sent by the sending service in the test process to a real HTTP receiver, as the webhooks process
would send them."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils.html import escape
from playwright.sync_api import Browser, BrowserContext, Dialog, Page, expect
from standardwebhooks import Webhook

from accounts.models import User
from generation.models import JobEvent
from tests.browser import DESKTOP, PHONE, SLOW, PolicyWatch, log_in, screenshot
from tests.factories import UserFactory
from tests.fakes.webhook_receiver import Answer, Scripted, WebhookReceiver
from tests.helpers import announce, signed_in
from webhooks.endpoints import endpoint_create
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import SendOutcome, delivery_send

HOOK_URL = "http://127.0.0.1:9/hooks"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    yield server
    server.stop()


def send_all(endpoint: WebhookEndpoint) -> list[SendOutcome]:
    """What the webhooks process does for every pending delivery of the endpoint: one attempt."""
    pending = WebhookDelivery.objects.filter(endpoint=endpoint, status=WebhookDelivery.Status.PENDING)
    return [delivery_send(delivery_id=delivery_id) for delivery_id in pending.values_list("id", flat=True)]


def disabled_automatically(person, receiver: WebhookReceiver, settings) -> WebhookEndpoint:  # type: ignore[no-untyped-def]
    """An endpoint whose receiver answered 503 until the senders disabled it (one failure is
    enough here; in production a day of them)."""
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 1
    settings.WEBHOOK_DISABLE_AFTER_SECONDS = 0
    endpoint, _ = endpoint_create(
        team=person.team, user=person.user, url=f"{receiver.url}/broken", events=[JobEvent.Type.SUCCEEDED]
    )
    receiver.script("/broken", Scripted(Answer(503, {"down": True})))
    announce(person, JobEvent.Type.SUCCEEDED)
    assert send_all(endpoint) == [SendOutcome.RETRY_SCHEDULED]
    endpoint.refresh_from_db()
    assert endpoint.disabled_reason == WebhookEndpoint.DisabledReason.FAILING
    return endpoint


# --- The page, with Django's test client ----------------------------------------------------------


@pytest.mark.django_db
def test_the_page_needs_a_signed_in_person(client: Client):
    response = client.get("/settings/webhooks/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.django_db
def test_a_form_sent_twice_adds_one_endpoint_and_shows_its_secret_once(alice):
    browser = signed_in(alice)
    form = {"url": HOOK_URL, "description": "orders", "events": ["job.succeeded"], "form_token": "t" * 32}
    first = browser.post("/settings/webhooks/", form)
    endpoint = WebhookEndpoint.objects.get(team=alice.team)
    assert first.status_code == 200 and endpoint.secret in first.content.decode()
    assert endpoint.events == ["job.succeeded"] and endpoint.description == "orders"
    assert "no-store" in first["Cache-Control"]

    again = browser.post("/settings/webhooks/", form)  # a reload of the answer sends it again
    assert WebhookEndpoint.objects.filter(team=alice.team).count() == 1
    assert endpoint.secret not in again.content.decode() and "This form was sent already" in again.content.decode()
    assert endpoint.secret not in browser.get("/settings/webhooks/").content.decode()
    assert endpoint.secret not in browser.get(f"/settings/webhooks/{endpoint.id}/").content.decode()


@pytest.mark.django_db
def test_the_page_says_why_a_url_is_refused_on_its_field(alice, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    response = signed_in(alice).post("/settings/webhooks/", {"url": "http://169.254.169.254/latest"})
    assert response.status_code == 400
    assert "169.254.169.254 is a link-local address" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_an_endpoints_page_changes_its_url_and_events_checked_as_when_added(alice, settings):
    endpoint, secret = endpoint_create(team=alice.team, user=alice.user, url=HOOK_URL, description="orders")
    browser = signed_in(alice)
    page = f"/settings/webhooks/{endpoint.id}/"
    changed = {"url": "http://127.0.0.1:9/v2", "description": "orders v2", "events": ["job.failed", "job.started"]}
    response = browser.post(page, changed, follow=True)
    assert "The endpoint&#x27;s settings are saved." in response.content.decode()
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.description, endpoint.events) == (
        "http://127.0.0.1:9/v2", "orders v2", ["job.started", "job.failed"],
    )  # fmt: skip
    assert endpoint.secret == secret  # the receiver keeps verifying with the same secret

    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    refused = browser.post(page, {**changed, "url": "http://10.0.0.8/hooks"})
    assert refused.status_code == 400 and "10.0.0.8 is a private address" in refused.content.decode()
    endpoint.refresh_from_db()
    assert endpoint.url == "http://127.0.0.1:9/v2"


@pytest.mark.django_db
def test_an_outsider_gets_404_from_every_page_of_an_endpoint(alice, charlie):
    endpoint, _ = endpoint_create(team=alice.team, user=alice.user, url=HOOK_URL)
    announce(alice, JobEvent.Type.SUCCEEDED)
    delivery = WebhookDelivery.objects.get()
    outsider = signed_in(charlie)
    base = f"/settings/webhooks/{endpoint.id}"
    answers = [
        outsider.get(f"{base}/"),
        outsider.post(f"{base}/", {"url": "http://127.0.0.1:9/mine"}),
        outsider.post(f"{base}/disable/"),
        outsider.post(f"{base}/enable/"),
        outsider.post(f"{base}/delete/"),
        outsider.post(f"{base}/deliveries/{delivery.id}/resend/"),
    ]
    assert [response.status_code for response in answers] == [404] * 6
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.url == HOOK_URL
    assert b"127.0.0.1:9/hooks" not in outsider.get("/settings/webhooks/").content


@pytest.mark.django_db
def test_the_notice_reads_one_row_and_never_writes(alice, charlie, django_assert_max_num_queries):
    from webhooks.selectors import endpoints_disabled_notice

    endpoint, _ = endpoint_create(team=alice.team, user=alice.user, url=HOOK_URL)
    WebhookEndpoint.objects.filter(id=endpoint.id).update(
        enabled=False, disabled_reason=WebhookEndpoint.DisabledReason.FAILING
    )
    with django_assert_max_num_queries(1):
        notice = endpoints_disabled_notice(team=alice.team)
    assert notice is not None and notice.count == 1 and notice.latest.id == endpoint.id
    assert endpoints_disabled_notice(team=charlie.team) is None
    page = signed_in(alice).get("/collection/").content.decode()
    assert 'data-testid="webhook-notice"' in page and HOOK_URL in page
    assert 'data-testid="webhook-notice"' not in signed_in(charlie).get("/collection/").content.decode()


@pytest.mark.django_db
def test_adding_changing_and_sending_again_on_the_pages_have_the_webhook_limit(alice, settings):
    settings.RATE_LIMIT_WEBHOOK = "1/min"
    browser = signed_in(alice)
    assert browser.post("/settings/webhooks/", {"url": HOOK_URL, "form_token": "a" * 32}).status_code == 200
    endpoint = WebhookEndpoint.objects.get()
    announce(alice, JobEvent.Type.SUCCEEDED)
    failed = WebhookDelivery.objects.filter(endpoint=endpoint)
    failed.update(status=WebhookDelivery.Status.FAILED, attempts=3)

    added = browser.post("/settings/webhooks/", {"url": f"{HOOK_URL}/2", "form_token": "b" * 32})
    assert added.status_code == 429 and int(added["Retry-After"]) >= 1
    assert "Too many endpoint changes in a short time; try again in" in added.content.decode()
    assert f'value="{HOOK_URL}/2"' in added.content.decode()  # the form comes back as it was sent
    changed = browser.post(f"/settings/webhooks/{endpoint.id}/", {"url": f"{HOOK_URL}/moved"})
    assert changed.status_code == 429 and int(changed["Retry-After"]) >= 1
    assert "Too many endpoint changes in a short time; try again in" in changed.content.decode()
    resent = browser.post(f"/settings/webhooks/{endpoint.id}/deliveries/{failed.get().id}/resend/", follow=True)
    assert resent.redirect_chain == [(f"/settings/webhooks/{endpoint.id}/", 302)]  # a reload sends nothing
    assert "Too many deliveries sent again in a short time; try again in" in resent.content.decode()

    assert list(WebhookEndpoint.objects.values_list("url", flat=True)) == [HOOK_URL]
    assert failed.values_list("status", "attempts").get() == (WebhookDelivery.Status.FAILED, 3)


# --- The page in a browser --------------------------------------------------------------------------


@pytest.fixture
def context(browser: Browser, live_server) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=live_server.url, viewport=DESKTOP)
    context.set_default_timeout(SLOW)
    watch = PolicyWatch(context)
    yield context
    for page in context.pages:
        page.wait_for_load_state()
    context.close()
    assert watch.refusals == []  # the pages did all they did under the Content-Security-Policy


def row_of(page: Page, url: str):  # type: ignore[no-untyped-def]
    return page.get_by_test_id("webhook-row").filter(has_text=url)


@pytest.mark.django_db(transaction=True)
def test_add_an_endpoint_see_its_secret_once_read_its_log_send_again_disable_and_delete(alice, context, receiver):
    page = log_in(context, alice.user.email)
    page.get_by_role("link", name="Webhooks").click()
    expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
    url = f"{receiver.url}/hooks"
    page.get_by_label("URL").fill(url)
    page.get_by_label("Description (optional)").fill("order system")
    page.get_by_label("job.output").check()
    page.get_by_label("job.succeeded").check()
    page.get_by_test_id("webhook-add").click()

    secret = page.get_by_test_id("new-webhook-secret").input_value()
    assert secret.startswith("whsec_")
    Webhook(secret)  # the reference library takes it
    endpoint = WebhookEndpoint.objects.get(team=alice.team)
    assert endpoint.secret == secret and endpoint.events == ["job.output", "job.succeeded"]
    expect(row_of(page, url).get_by_test_id("webhook-state")).to_have_text("Enabled")

    page.goto("/settings/webhooks/")  # the secret is shown this once
    expect(page.get_by_test_id("new-webhook")).to_have_count(0)
    assert secret not in page.content()

    # The team's job makes an image and succeeds; the senders deliver both events.
    job = announce(alice, JobEvent.Type.STARTED)  # not wanted by this endpoint: no delivery
    announce(alice, JobEvent.Type.OUTPUT, job=job)
    announce(alice, JobEvent.Type.SUCCEEDED, job=job)
    assert send_all(endpoint) == [SendOutcome.DELIVERED, SendOutcome.DELIVERED]
    assert sorted(payload["type"] for payload in receiver.verified(secret, "/hooks")) == [
        "job.output",
        "job.succeeded",
    ]

    row_of(page, url).get_by_test_id("webhook-link").click()
    expect(page.get_by_test_id("webhook-url")).to_have_text(url)
    log = page.get_by_test_id("delivery-row")
    expect(log).to_have_count(2)
    expect(log.first.get_by_test_id("delivery-event")).to_have_text("job.succeeded")  # newest first
    expect(log.get_by_test_id("delivery-status")).to_have_text(["Delivered", "Delivered"])
    expect(log.first.get_by_test_id("delivery-code")).to_have_text("HTTP 200")

    log.first.get_by_test_id("delivery-resend").click()
    expect(page.locator(".flash")).to_contain_text("is being sent again")
    expect(page.get_by_test_id("delivery-row").first.get_by_test_id("delivery-status")).to_have_text("Pending")
    assert send_all(endpoint) == [SendOutcome.DELIVERED]
    page.reload()
    newest = page.get_by_test_id("delivery-row").first
    expect(newest.get_by_test_id("delivery-status")).to_have_text("Delivered")
    newest.locator("summary").click()
    expect(newest.get_by_test_id("delivery-attempts").locator("li")).to_have_count(2)
    ids = [request.headers["webhook-id"] for request in receiver.received("/hooks")]
    assert len(ids) == 3 and len(set(ids)) == 2  # sent again: the same webhook-id

    page.get_by_test_id("webhook-disable").click()
    expect(page.get_by_test_id("webhook-state")).to_have_text("Disabled")
    expect(page.get_by_test_id("delivery-resend")).to_have_count(0)
    endpoint.refresh_from_db()
    assert not endpoint.enabled and endpoint.disabled_reason == WebhookEndpoint.DisabledReason.BY_TEAM

    questions: list[str] = []

    def answer(dialog: Dialog) -> None:
        questions.append(dialog.message)
        dialog.dismiss() if len(questions) == 1 else dialog.accept()

    page.on("dialog", answer)
    page.get_by_test_id("webhook-delete").click()  # dismissed: nothing happens
    expect(page.get_by_test_id("webhook-url")).to_be_visible()
    assert WebhookEndpoint.objects.filter(id=endpoint.id).exists()
    page.get_by_test_id("webhook-delete").click()
    page.wait_for_url("**/settings/webhooks/")
    expect(page.get_by_test_id("webhook-row")).to_have_count(0)
    assert questions[0].startswith("Delete this endpoint and its delivery log?")
    assert not WebhookEndpoint.objects.filter(id=endpoint.id).exists()


@pytest.mark.django_db(transaction=True)
def test_an_endpoint_disabled_automatically_is_told_on_every_page_until_it_is_enabled(
    alice, context, receiver, settings
):
    healthy, _ = endpoint_create(
        team=alice.team, user=alice.user, url=f"{receiver.url}/orders", description="order system"
    )
    announce(alice, JobEvent.Type.STARTED)
    assert send_all(healthy) == [SendOutcome.DELIVERED]
    broken = disabled_automatically(alice, receiver, settings)

    page = log_in(context, alice.user.email)  # the studio
    notice = page.get_by_test_id("webhook-notice")
    expect(notice).to_contain_text(broken.url)
    expect(notice).to_contain_text("disabled automatically")
    page.goto("/jobs/")
    expect(page.get_by_test_id("webhook-notice")).to_be_visible()

    page.goto("/settings/webhooks/")
    expect(row_of(page, broken.url).get_by_test_id("webhook-state")).to_have_text("Disabled automatically")
    expect(row_of(page, broken.url).get_by_test_id("webhook-why")).to_contain_text("every delivery attempt since")
    expect(row_of(page, healthy.url).get_by_test_id("webhook-state")).to_have_text("Enabled")
    screenshot(page, "webhooks.png")
    page.set_viewport_size(PHONE)
    screenshot(page, "webhooks-phone.png")
    page.set_viewport_size(DESKTOP)

    page.get_by_test_id("webhook-notice-link").click()
    expect(page.get_by_test_id("webhook-url")).to_have_text(broken.url)
    expect(page.get_by_test_id("webhook-why")).to_contain_text("Fix the receiver, then enable it")
    expect(page.get_by_test_id("delivery-code")).to_have_text("HTTP 503")
    page.get_by_test_id("webhook-enable").click()
    expect(page.get_by_test_id("webhook-state")).to_have_text("Enabled")
    expect(page.get_by_test_id("webhook-notice")).to_have_count(0)
    broken.refresh_from_db()
    assert broken.enabled and broken.failing_since is None and broken.consecutive_failures == 0
    page.goto("/collection/")
    expect(page.get_by_test_id("webhook-notice")).to_have_count(0)


# --- The admin ---------------------------------------------------------------------------------------


def operator(*codenames: str) -> Client:
    """A staff member with exactly these permissions, signed in to the admin."""
    user = UserFactory()
    User.objects.filter(id=user.id).update(is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(User.objects.get(id=user.id))
    return client


@pytest.mark.django_db
def test_the_admin_shows_endpoints_and_their_deliveries_never_the_secret(alice, settings):
    endpoint, secret = endpoint_create(team=alice.team, user=alice.user, url=HOOK_URL, description="orders")
    announce(alice, JobEvent.Type.SUCCEEDED)
    staff = operator("view_webhookendpoint", "view_webhookdelivery")

    listing = staff.get("/admin/webhooks/webhookendpoint/").content.decode()
    change = staff.get(f"/admin/webhooks/webhookendpoint/{endpoint.id}/change/").content.decode()
    assert HOOK_URL in listing and escape(alice.team.name) in listing
    assert 'data-testid="admin-endpoint-deliveries"' in change and "job.succeeded" in change
    for page in (listing, change):
        assert secret not in page and secret.removeprefix("whsec_") not in page

    deliveries = staff.get("/admin/webhooks/webhookdelivery/?status__exact=pending&event_type=job.succeeded")
    assert deliveries.status_code == 200 and HOOK_URL in deliveries.content.decode()
    none = staff.get("/admin/webhooks/webhookdelivery/?event_type=job.started").content.decode()
    assert re.search(r"0 webhook deliver", none)


@pytest.mark.django_db(transaction=True)
def test_send_again_in_the_admin_needs_the_change_permission(alice, receiver):
    endpoint, secret = endpoint_create(team=alice.team, user=alice.user, url=f"{receiver.url}/hooks")
    announce(alice, JobEvent.Type.SUCCEEDED)
    assert send_all(endpoint) == [SendOutcome.DELIVERED]
    delivery = WebhookDelivery.objects.get()
    action = {"action": "send_again", "_selected_action": [delivery.id]}

    viewer = operator("view_webhookdelivery")
    assert "send_again" not in viewer.get("/admin/webhooks/webhookdelivery/").content.decode()
    viewer.post("/admin/webhooks/webhookdelivery/", action)
    assert WebhookDelivery.objects.get(id=delivery.id).status == WebhookDelivery.Status.DELIVERED

    changer = operator("view_webhookdelivery", "change_webhookdelivery")
    response = changer.post("/admin/webhooks/webhookdelivery/", action, follow=True)
    assert "1 delivery(ies) sent again." in response.content.decode()
    assert WebhookDelivery.objects.get(id=delivery.id).status == WebhookDelivery.Status.PENDING
    assert send_all(endpoint) == [SendOutcome.DELIVERED]
    assert [payload["type"] for payload in receiver.verified(secret, "/hooks")] == ["job.succeeded"] * 2


@pytest.mark.django_db
def test_send_again_in_the_admin_is_for_operators_and_not_rate_limited(alice, settings):
    settings.RATE_LIMIT_WEBHOOK = "1/min"
    endpoint, _ = endpoint_create(team=alice.team, user=alice.user, url=HOOK_URL)
    announce(alice, JobEvent.Type.SUCCEEDED)
    announce(alice, JobEvent.Type.FAILED)
    deliveries = WebhookDelivery.objects.filter(endpoint=endpoint)
    deliveries.update(status=WebhookDelivery.Status.FAILED, attempts=3)
    changer = operator("view_webhookdelivery", "change_webhookdelivery")

    for delivery_id in deliveries.order_by("id").values_list("id", flat=True):
        action = {"action": "send_again", "_selected_action": [delivery_id]}
        response = changer.post("/admin/webhooks/webhookdelivery/", action, follow=True)
        assert "1 delivery(ies) sent again." in response.content.decode()

    assert set(deliveries.values_list("status", flat=True)) == {WebhookDelivery.Status.PENDING}
