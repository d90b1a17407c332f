"""Admin actions need their permissions; the team sees "Atelier" for operators; people manage
their API keys (page and API), and a removed member's keys stay dead."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.test import Client, RequestFactory
from django.utils import timezone
from playwright.sync_api import expect
from rest_framework.test import APIClient

from accounts.models import ApiKey, Membership, User
from accounts.services import api_key_create, api_key_revoke, membership_ensure, membership_remove
from accounts.teams import SESSION_TEAM_KEY
from credits.models import CreditAccount, LedgerEntry
from generation.models import GenerationJob
from generation.services.submit import JobSpec, job_submit
from tests.browser import PHONE, SLOW, PolicyWatch, log_in, screenshot

pytestmark = pytest.mark.django_db

KEYS = "/api/v1/keys"
JOBS = "/api/v1/jobs"
VIEW_ONLY = [
    "generation.view_generationjob",
    "credits.view_creditaccount",
    "credits.view_ledgerentry",
    "accounts.view_team",
    "accounts.view_membership",
    "accounts.view_apikey",
]


def staff_client(email: str, permissions: list[str]) -> Client:
    """A signed-in operator (is_staff, not a superuser) holding exactly `permissions`."""
    user = User.objects.create_user(email=email, password="operator-password", is_staff=True)
    for name in permissions:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    client = Client()
    client.force_login(user)
    return client


def superuser_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser(email="ops@example.com", password="operator-password"))
    return client


def signed_in(client: Client, person) -> Client:  # type: ignore[no-untyped-def]
    """`client` signed in as the person, acting for the person's team (Bob's is Alice's)."""
    client.force_login(person.user)
    session = client.session
    session[SESSION_TEAM_KEY] = person.team.id
    session.save()
    return client


def session_api(person) -> APIClient:  # type: ignore[no-untyped-def]
    """The API as the person's browser calls it: their session, no API key."""
    client = signed_in(APIClient(), person)
    assert isinstance(client, APIClient)
    return client


def browser_of(person, **options) -> Client:  # type: ignore[no-untyped-def]
    return signed_in(Client(**options), person)


def bearer(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def grant_in_admin(client: Client, account: CreditAccount, amount: int, token: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/admin/credits/creditaccount/",
        {
            "action": "grant_credits",
            "_selected_action": [account.id],
            "apply": "1",
            "amount": amount,
            "memo": "launch bonus",
            "grant_token": token,
        },
    )


def admin_change_form(response) -> dict:  # type: ignore[no-untyped-def]
    """The POST an operator's browser sends back from an admin change page, as it was drawn."""
    data: dict = {}
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        forms.append(inline.formset.management_form)
        forms.extend(inline.formset.forms)
    for form in forms:
        for field in form:
            value = field.value()
            if value is not None and value is not False:
                data[field.html_name] = value
    return data


# --- Admin permissions ---------------------------------------------------------------------------


def test_view_only_staff_cannot_cancel_or_retry_jobs(alice):
    queued = job_submit(team=alice.team, user=alice.user, spec=JobSpec(prompt="queued")).job
    failed = job_submit(team=alice.team, user=alice.user, spec=JobSpec(prompt="failed")).job
    GenerationJob.objects.filter(id=failed.id).update(status="failed", finished_at=timezone.now(), error_code="X")
    viewer = staff_client("viewer@example.com", VIEW_ONLY)
    url = "/admin/generation/generationjob/"
    page = viewer.get(url)
    assert page.status_code == 200
    assert b"cancel_jobs" not in page.content and b"retry_jobs" not in page.content
    for action, job in [("cancel_jobs", queued), ("retry_jobs", failed)]:
        response = viewer.post(url, {"action": action, "index": 0, "_selected_action": [str(job.id)]})
        assert response.status_code in (200, 302)
    assert GenerationJob.objects.get(id=queued.id).status == "queued"
    assert not GenerationJob.objects.get(id=queued.id).cancel_requested
    assert not GenerationJob.objects.filter(retry_of=failed).exists()


def test_staff_with_change_on_jobs_can_cancel(alice):
    queued = job_submit(team=alice.team, user=alice.user, spec=JobSpec(prompt="queued")).job
    operator = staff_client("jobs-ops@example.com", [*VIEW_ONLY, "generation.change_generationjob"])
    response = operator.post(
        "/admin/generation/generationjob/",
        {"action": "cancel_jobs", "index": 0, "_selected_action": [str(queued.id)]},
        follow=True,
    )
    assert b"1 job(s) canceled or flagged" in response.content
    assert GenerationJob.objects.get(id=queued.id).status == "canceled"


@pytest.mark.parametrize("permissions", [VIEW_ONLY, [*VIEW_ONLY, "credits.change_creditaccount"]])
def test_staff_without_the_grant_permission_cannot_grant_even_with_a_crafted_post(alice, permissions):
    account = CreditAccount.objects.get(team=alice.team)
    operator = staff_client("viewer@example.com", permissions)
    page = operator.get("/admin/credits/creditaccount/")
    assert page.status_code == 200 and b"grant_credits" not in page.content
    form = operator.post(
        "/admin/credits/creditaccount/", {"action": "grant_credits", "index": 0, "_selected_action": [account.id]}
    )
    assert b"Grant credits to:" not in form.content
    crafted = grant_in_admin(operator, account, 1_000_000, "crafted")  # the intermediate form's own POST
    assert crafted.status_code in (200, 302)
    account.refresh_from_db()
    assert account.available == 1000
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.GRANT, memo="launch bonus").exists()


def test_the_grant_action_itself_refuses_a_request_without_the_permission(alice):
    viewer = User.objects.create_user(email="viewer@example.com", password="x", is_staff=True)
    request = RequestFactory().post("/admin/credits/creditaccount/", {"apply": "1", "amount": 5, "memo": "m"})
    request.user = viewer
    model_admin = admin.site._registry[CreditAccount]
    with pytest.raises(PermissionDenied):
        model_admin.grant_credits(request, CreditAccount.objects.filter(team=alice.team))  # type: ignore[attr-defined]
    assert CreditAccount.objects.get(team=alice.team).available == 1000


def test_staff_with_the_grant_permission_grants_once(alice):
    account = CreditAccount.objects.get(team=alice.team)
    operator = staff_client("granter@example.com", ["credits.view_creditaccount", "credits.grant_credits"])
    assert b"grant_credits" in operator.get("/admin/credits/creditaccount/").content
    granted = grant_in_admin(operator, account, 50, "t1")
    assert granted.status_code == 302
    grant_in_admin(operator, account, 50, "t1")  # the page sent again
    account.refresh_from_db()
    assert account.available == 1050
    assert LedgerEntry.objects.get(memo="launch bonus").actor_label == "user:granter@example.com"


def test_view_only_staff_cannot_change_team_quotas_or_api_keys(alice):
    viewer = staff_client("viewer@example.com", VIEW_ONLY)
    team_url = f"/admin/accounts/team/{alice.team.id}/change/"
    assert viewer.get(team_url).status_code == 200
    form = admin_change_form(superuser_client().get(team_url)) | {"quota_active_jobs": 999}
    assert viewer.post(team_url, form).status_code == 403
    alice.team.refresh_from_db()
    assert alice.team.quota_active_jobs is None

    key = ApiKey.objects.get(team=alice.team)
    key_url = f"/admin/accounts/apikey/{key.id}/change/"
    assert viewer.post(key_url, {"name": "renamed"}).status_code == 403
    keys_list = "/admin/accounts/apikey/"
    viewer.post(keys_list, {"action": "revoke_keys", "index": 0, "_selected_action": [key.id]})
    key.refresh_from_db()
    assert (key.name, key.revoked_at) == ("test", None)
    assert alice.client.get(JOBS).status_code == 200


def test_operator_revokes_a_key_in_the_admin_and_cannot_add_one(alice):
    operator = superuser_client()
    key = ApiKey.objects.get(team=alice.team)
    response = operator.post(
        "/admin/accounts/apikey/", {"action": "revoke_keys", "index": 0, "_selected_action": [key.id]}, follow=True
    )
    assert b"1 key(s) revoked" in response.content
    assert alice.client.get(JOBS).status_code == 401
    # A key is shown once to whoever makes it; the admin has no form that could show it.
    assert operator.get("/admin/accounts/apikey/add/").status_code == 403


# --- Who the team sees in its ledger -------------------------------------------------------------


def test_the_team_sees_atelier_for_an_operators_grant_and_the_member_for_their_hold(alice, bob):
    operator = superuser_client()
    grant_in_admin(operator, CreditAccount.objects.get(team=alice.team), 50, "t1")
    assert bob.client.post(JOBS, {"prompt": "bob's design"}, format="json").status_code == 202

    response = alice.client.get("/api/v1/credits")
    assert b"ops@example.com" not in response.content
    actors = {entry["kind"]: entry["actor"] for entry in response.json()["entries"]}
    assert actors == {"grant": "Atelier", "hold": "bob@example.com"}

    browser = browser_of(alice)
    assert "ops@example.com" not in browser.get("/credits/").content.decode()  # the summary by job
    page = browser.get("/credits/?view=ledger").content.decode()  # every entry, with its actor
    assert "ops@example.com" not in page
    shown = re.findall(r'data-testid="ledger-actor">([^<]*)<', page)
    assert shown == ["bob@example.com", "Atelier", "Atelier"]  # the hold, the admin grant, the fixture's grant

    # The operators' books keep who did it.
    assert b"user:ops@example.com" in operator.get("/admin/credits/ledgerentry/").content

    # Someone who has left the team is no longer named to it.
    membership_remove(membership=Membership.objects.get(team=alice.team, user=bob.user))
    actors = {entry["kind"]: entry["actor"] for entry in alice.client.get("/api/v1/credits").json()["entries"]}
    assert actors["hold"] == "A former member"


def test_an_operators_retry_in_the_admin_shows_as_atelier(alice):
    failed = job_submit(team=alice.team, user=alice.user, spec=JobSpec(prompt="failed")).job
    GenerationJob.objects.filter(id=failed.id).update(status="failed", finished_at=timezone.now(), error_code="X")
    superuser_client().post(
        "/admin/generation/generationjob/", {"action": "retry_jobs", "index": 0, "_selected_action": [str(failed.id)]}
    )
    retry = GenerationJob.objects.get(retry_of=failed)
    entries = alice.client.get("/api/v1/credits").json()["entries"]
    assert [entry["actor"] for entry in entries if entry["job_id"] == str(retry.id)] == ["Atelier"]


# --- A removed member's keys ---------------------------------------------------------------------


def _remove_with_the_service(team, user) -> None:  # type: ignore[no-untyped-def]
    membership_remove(membership=Membership.objects.get(team=team, user=user))


def _remove_in_the_admin_inline(team, user) -> None:  # type: ignore[no-untyped-def]
    operator = superuser_client()
    url = f"/admin/accounts/team/{team.id}/change/"
    form = admin_change_form(operator.get(url))
    membership = Membership.objects.get(team=team, user=user)
    (prefix,) = {
        name.rsplit("-", 1)[0] for name, value in form.items() if name.endswith("-id") and value == membership.id
    }
    response = operator.post(url, form | {f"{prefix}-DELETE": "on"})
    assert response.status_code == 302, response.context["errors"] if response.context else response


@pytest.mark.parametrize("remove", [_remove_with_the_service, _remove_in_the_admin_inline], ids=["service", "admin"])
def test_a_re_added_members_old_key_stays_revoked(alice, bob, remove):
    assert bob.client.get(JOBS).status_code == 200
    old_key = ApiKey.objects.get(team=alice.team, created_by=bob.user)
    remove(alice.team, bob.user)
    assert not Membership.objects.filter(team=alice.team, user=bob.user).exists()
    membership_ensure(team=alice.team, user=bob.user)  # back in the team
    response = bob.client.get(JOBS)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "NOT_AUTHENTICATED"
    old_key.refresh_from_db()
    assert old_key.revoked_at is not None and old_key.membership is None
    assert old_key.state is ApiKey.State.REVOKED
    listed = {key["id"]: key["state"] for key in session_api(alice).get(KEYS).json()["results"]}
    assert listed[old_key.id] == "revoked"
    assert alice.client.get(JOBS).status_code == 200  # the other members' keys live on


def test_a_key_whose_membership_went_without_the_service_is_dead_and_says_why(alice, bob):
    """Deleting the membership row directly (a user deleted, a shell) kills the key by its FK."""
    Membership.objects.filter(team=alice.team, user=bob.user).delete()
    membership_ensure(team=alice.team, user=bob.user)
    response = bob.client.get(JOBS)
    assert response.status_code == 401
    assert "no longer a member" in response.json()["error"]["message"]
    assert ApiKey.objects.get(created_by=bob.user).state is ApiKey.State.MEMBER_REMOVED


def test_an_operator_cannot_hand_an_existing_membership_to_someone_else_in_the_admin(alice, bob, charlie):
    operator = superuser_client()
    url = f"/admin/accounts/team/{alice.team.id}/change/"
    form = admin_change_form(operator.get(url))
    membership = Membership.objects.get(team=alice.team, user=bob.user)
    (prefix,) = {
        name.rsplit("-", 1)[0] for name, value in form.items() if name.endswith("-id") and value == membership.id
    }
    response = operator.post(url, form | {f"{prefix}-user": charlie.user.id})
    assert response.status_code == 302
    membership.refresh_from_db()
    assert membership.user == bob.user and bob.client.get(JOBS).status_code == 200
    assert not Membership.objects.filter(team=alice.team, user=charlie.user).exists()


def test_a_key_whose_membership_now_names_someone_else_is_dead(alice, bob, charlie):
    """Whatever changed the membership's user (a shell, an old admin), the key does not act for them."""
    key = ApiKey.objects.get(team=alice.team, created_by=bob.user)
    Membership.objects.filter(team=alice.team, user=bob.user).update(user=charlie.user)
    response = bob.client.get(JOBS)
    assert response.status_code == 401 and "no longer a member" in response.json()["error"]["message"]
    key.refresh_from_db()
    assert key.state is ApiKey.State.MEMBER_REMOVED
    assert not ApiKey.objects.filter(id=key.id).live().exists()


def test_live_keys_in_sql_are_the_keys_whose_state_is_live(alice, bob, charlie):
    now = timezone.now()
    expired = api_key_create(team=alice.team, created_by=alice.user, name="expired").api_key
    ApiKey.objects.filter(id=expired.id).update(expires_at=now - timedelta(seconds=1))
    later = api_key_create(team=alice.team, created_by=alice.user, expires_at=now + timedelta(days=1)).api_key
    revoked = api_key_revoke(api_key=api_key_create(team=alice.team, created_by=alice.user).api_key, by=None)
    moved = api_key_create(team=alice.team, created_by=alice.user, name="moved").api_key
    # Its membership now names someone else (changed outside the admin, which forbids it).
    ApiKey.objects.filter(id=moved.id).update(membership=membership_ensure(team=alice.team, user=charlie.user))
    _remove_with_the_service(alice.team, bob.user)
    keys = list(ApiKey.objects.filter(team=alice.team))
    states = {key.id: key.state_at(now) for key in keys}
    assert states[expired.id] is ApiKey.State.EXPIRED
    assert states[later.id] is ApiKey.State.LIVE
    assert states[revoked.id] is ApiKey.State.REVOKED
    assert states[moved.id] is ApiKey.State.MEMBER_REMOVED
    live_in_sql = set(ApiKey.objects.filter(team=alice.team).live(now).values_list("id", flat=True))
    assert live_in_sql == {key_id for key_id, state in states.items() if state is ApiKey.State.LIVE}


# --- Keys through the API -------------------------------------------------------------------------


def test_create_list_use_and_revoke_a_key_through_the_api(alice):
    client = session_api(alice)
    created = client.post(KEYS, {"name": "nightly export"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    raw_key = body["key"]
    assert raw_key.startswith(f"atl_{body['prefix']}_")
    assert (body["name"], body["created_by"], body["state"], body["expires_at"]) == (
        "nightly export",
        "alice@example.com",
        "live",
        None,
    )
    stored = ApiKey.objects.get(id=body["id"])
    assert stored.key_hash == hashlib.sha256(raw_key.encode()).hexdigest()
    secret = raw_key.rsplit("_", 1)[1]
    assert not any(secret in str(value) for value in ApiKey.objects.filter(id=stored.id).values().first().values())

    listing = client.get(KEYS)
    assert listing.status_code == 200
    assert secret not in listing.content.decode()
    assert listing.json()["count"] == 2  # the fixture's key and this one
    assert listing.json()["results"][0]["id"] == stored.id
    assert {
        "id",
        "name",
        "prefix",
        "created_by",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
        "state",
    } == set(listing.json()["results"][0])

    assert bearer(raw_key).get(JOBS).status_code == 200
    assert client.get(KEYS).json()["results"][0]["last_used_at"] is not None

    assert client.delete(f"{KEYS}/{stored.id}").status_code == 204
    assert client.delete(f"{KEYS}/{stored.id}").status_code == 204  # again: nothing changes
    refused = bearer(raw_key).get(JOBS)
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == "The API key has been revoked."
    assert client.get(KEYS).json()["results"][0]["state"] == "revoked"


def test_key_management_with_an_api_key_is_refused(alice):
    for response in [
        alice.client.get(KEYS),
        alice.client.post(KEYS, {"name": "minted by a key"}, format="json"),
        alice.client.delete(f"{KEYS}/{ApiKey.objects.get(team=alice.team).id}"),
    ]:
        assert response.status_code == 403
        error = response.json()["error"]
        assert error["code"] == "PERMISSION_DENIED"
        assert "session" in error["message"]
    assert ApiKey.objects.filter(team=alice.team).count() == 1
    assert ApiKey.objects.get(team=alice.team).revoked_at is None


def test_key_management_without_authentication_is_401(anonymous):
    assert anonymous.get(KEYS).status_code == 401
    assert anonymous.post(KEYS, {"name": "x"}, format="json").status_code == 401
    assert anonymous.delete(f"{KEYS}/1").status_code == 401


def test_another_teams_key_is_404_and_another_members_key_needs_the_owner(alice, bob, charlie):
    charlies_key = ApiKey.objects.get(team=charlie.team)
    assert session_api(alice).delete(f"{KEYS}/{charlies_key.id}").status_code == 404
    assert session_api(alice).delete(f"{KEYS}/{10**30}").status_code == 404
    assert charlie.client.get(JOBS).status_code == 200

    alices_key = ApiKey.objects.get(team=alice.team, created_by=alice.user)
    refused = session_api(bob).delete(f"{KEYS}/{alices_key.id}")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "PERMISSION_DENIED"
    assert alice.client.get(JOBS).status_code == 200
    # Bob lists the team's keys and revokes his own; Alice owns the team and revokes anyone's.
    assert session_api(bob).get(KEYS).json()["count"] == 2
    bobs_key = ApiKey.objects.get(team=alice.team, created_by=bob.user)
    assert session_api(alice).delete(f"{KEYS}/{bobs_key.id}").status_code == 204
    assert bob.client.get(JOBS).status_code == 401


def test_expiry_must_be_in_the_future_and_an_expired_key_is_401(alice):
    client = session_api(alice)
    past = client.post(KEYS, {"name": "old", "expires_at": "2020-01-01T00:00:00Z"}, format="json")
    assert past.status_code == 400
    assert "expires_at" in past.json()["error"]["details"]
    soon = (timezone.now() + timedelta(days=1)).isoformat()
    created = client.post(KEYS, {"name": "soon", "expires_at": soon}, format="json").json()
    assert created["expires_at"] is not None
    assert bearer(created["key"]).get(JOBS).status_code == 200
    ApiKey.objects.filter(id=created["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = bearer(created["key"]).get(JOBS)
    assert expired.status_code == 401
    assert expired.json()["error"]["message"] == "The API key has expired."
    assert client.get(KEYS).json()["results"][0]["state"] == "expired"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x" * 121}, "name"),
        ({}, "name"),
        ({"name": "x", "expire_at": "2099-01-01T00:00:00Z"}, "expire_at"),
        ({"name": 5}, "name"),  # a number is no name (DRF alone would take it as "5")
        ({"name": "x", "expires_at": 4102444800}, "expires_at"),
    ],
)
def test_a_bad_key_request_names_the_field_and_creates_nothing(alice, body, field):
    response = session_api(alice).post(KEYS, body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]
    assert ApiKey.objects.filter(team=alice.team).count() == 1


def test_live_keys_per_team_are_bounded_and_revoked_ones_do_not_count(alice, settings):
    settings.API_KEYS_PER_TEAM = 2
    client = session_api(alice)
    second = client.post(KEYS, {"name": "second"}, format="json")
    assert second.status_code == 201
    over = client.post(KEYS, {"name": "third"}, format="json")
    assert over.status_code == 409
    assert over.json()["error"]["code"] == "QUOTA_EXCEEDED"
    assert over.json()["error"]["details"] == {"quota": "api_keys", "limit": 2, "used": 2}
    assert ApiKey.objects.filter(team=alice.team).count() == 2
    client.delete(f"{KEYS}/{second.json()['id']}")
    assert client.post(KEYS, {"name": "third"}, format="json").status_code == 201


# --- Keys on the page ----------------------------------------------------------------------------


def test_the_keys_page_shows_a_new_key_once_and_lists_the_teams_keys(alice, bob):
    browser = browser_of(alice)
    page = browser.get("/account/keys/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'href="/account/keys/"' in html  # in the site's navigation
    assert html.count('data-testid="key-row"') == 2
    assert "bob@example.com" in html and "alice@example.com" in html
    assert 'data-testid="new-key"' not in html

    created = browser.post("/account/keys/", {"name": "laptop", "expires_in": "30"})
    assert created.status_code == 200
    assert "no-store" in created["Cache-Control"]
    key = ApiKey.objects.get(name="laptop")
    raw_key = re.search(r'value="(atl_[^"]+)"', created.content.decode()).group(1)  # type: ignore[union-attr]
    assert raw_key.startswith(f"atl_{key.prefix}_")
    assert key.key_hash == hashlib.sha256(raw_key.encode()).hexdigest()
    assert timedelta(days=29) < key.expires_at - timezone.now() <= timedelta(days=30)
    assert bearer(raw_key).get(JOBS).status_code == 200

    again = browser.get("/account/keys/").content.decode()
    assert raw_key not in again and raw_key.rsplit("_", 1)[1] not in again
    assert f"atl_{key.prefix}_…" in again

    browser.post("/account/keys/", {"name": "forever", "expires_in": "never"})
    assert ApiKey.objects.get(name="forever").expires_at is None


def test_sending_the_keys_form_again_makes_no_second_key(alice):
    browser = browser_of(alice)
    token = re.search(r'name="form_token" value="([0-9a-f]+)"', browser.get("/account/keys/").content.decode())
    form = {"name": "reloaded", "expires_in": "90", "form_token": token.group(1)}  # type: ignore[union-attr]
    first = browser.post("/account/keys/", form).content.decode()
    assert 'data-testid="new-key-value"' in first
    again = browser.post("/account/keys/", form).content.decode()  # the browser's reload of that page
    assert 'data-testid="key-form-resent"' in again and 'data-testid="new-key-value"' not in again
    assert ApiKey.objects.filter(name="reloaded").count() == 1


def test_the_keys_page_refuses_a_bad_form_and_the_limit_with_nothing_stored(alice, settings):
    browser = browser_of(alice)
    bad = browser.post("/account/keys/", {"name": "", "expires_in": "7"})
    assert bad.status_code == 400
    settings.API_KEYS_PER_TEAM = 1
    over = browser.post("/account/keys/", {"name": "one too many", "expires_in": "never"})
    assert over.status_code == 409
    assert "quota of 1 live API keys" in over.content.decode()
    assert ApiKey.objects.filter(team=alice.team).count() == 1


def test_revoking_on_the_page_needs_csrf_and_the_owner_for_anothers_key(alice, bob, charlie):
    alices_key = ApiKey.objects.get(team=alice.team, created_by=alice.user)
    url = f"/account/keys/{alices_key.id}/revoke/"

    bobs_browser = browser_of(bob)
    assert f"/account/keys/{alices_key.id}/revoke/" not in bobs_browser.get("/account/keys/").content.decode()
    assert bobs_browser.post(url).status_code == 403
    charlies_browser = browser_of(charlie)
    assert charlies_browser.post(url).status_code == 404
    careful_browser = browser_of(alice, enforce_csrf_checks=True)
    assert careful_browser.post(url).status_code == 403  # no CSRF token
    assert alice.client.get(JOBS).status_code == 200

    browser = browser_of(alice)
    assert url in browser.get("/account/keys/").content.decode()
    revoked = browser.post(url, follow=True)
    assert f"Key atl_{alices_key.prefix}_… (test) is revoked." in revoked.content.decode()
    states = re.findall(r'data-testid="key-state">([^<]*)<', revoked.content.decode())
    assert sorted(states) == ["Live", "Revoked"]
    assert alice.client.get(JOBS).status_code == 401
    assert browser.get(url).status_code == 405


# --- The page in a browser, on a phone, under the Content-Security-Policy ------------------------


@pytest.mark.django_db(transaction=True)
def test_on_a_phone_a_person_makes_copies_and_revokes_a_key_with_nothing_refused(alice, browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport=PHONE)
    context.set_default_timeout(SLOW)
    watch = PolicyWatch(context)
    page = log_in(context, alice.user.email)
    link = page.locator("header.site nav").get_by_role("link", name="API keys")
    expect(link).to_be_visible()  # the navigation wraps on a narrow screen; the link stays in reach
    link.click()
    expect(page.get_by_test_id("key-row")).to_have_count(1)
    page.get_by_label("Name").fill("phone script")
    page.get_by_label("Expires").select_option("never")
    page.get_by_role("button", name="Create key").click()
    box = page.get_by_test_id("new-key-value")
    expect(box).to_be_visible()
    raw_key = box.input_value()
    assert bearer(raw_key).get(JOBS).status_code == 200
    expect(page.get_by_test_id("key-row")).to_have_count(2)
    screenshot(page, "api-keys-phone.png")

    page.reload()  # sends the form again: no second key, and the secret is not shown again
    expect(page.get_by_test_id("key-form-resent")).to_be_visible()
    expect(page.get_by_test_id("new-key")).to_have_count(0)
    expect(page.get_by_test_id("key-row")).to_have_count(2)
    row = page.get_by_test_id("key-row").filter(has_text="phone script")
    row.get_by_text("Revoke…").click()  # asks first: the button is behind the disclosure
    row.get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("is revoked.")).to_be_visible()
    expect(page.get_by_test_id("key-row").filter(has_text="phone script").get_by_test_id("key-state")).to_have_text(
        "Revoked"
    )
    assert bearer(raw_key).get(JOBS).status_code == 401
    page.wait_for_load_state("networkidle")
    assert watch.refusals == []
    context.close()
