"""Issue 9's sign-up and login attacks, each replayed against the pages: verification by email
before any credit, one answer whatever the email, a rate limit per address, and login lockout
(django-axes) per account and per address, on the site's login and the admin's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.core.cache import cache
from django.db.models import F
from django.test import Client

from accounts.models import User
from accounts.throttles import PerAddressRateThrottle
from credits.models import CreditAccount, LedgerEntry
from tests.factories import UserFactory
from tests.processes import ROOT

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-pass-phrase"
WRONG = "not-the-password"
VERIFY_LINK = re.compile(r"http://testserver(/accounts/verify/[^/\s]+/[^/\s]+/)")
# What differs between two renderings of one page: the CSRF token (masked afresh each time) and
# the server's clock.
PER_RESPONSE = re.compile(r'(name="csrfmiddlewaretoken" value="|"X-CSRFToken": "|data-server-time=")[^"]+')


def client_at(address: str, **kwargs: object) -> Client:
    """A browser at `address`, whose sign-up budget is whole (the counter lives in Redis)."""
    cache.delete(PerAddressRateThrottle.cache_format % {"scope": "signup", "ident": address})
    return Client(REMOTE_ADDR=address, **kwargs)


def sign_up(client: Client, email: str):  # type: ignore[no-untyped-def]
    return client.post("/accounts/signup/", {"email": email})


def verify(client: Client, path: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    """The verification page's form: the password chosen twice."""
    return client.post(path, {"new_password1": password, "new_password2": password})


def log_in(client: Client, email: str, password: str, path: str = "/accounts/login/"):  # type: ignore[no-untyped-def]
    return client.post(path, {"username": email, "password": password})


def verify_path(mail) -> str:  # type: ignore[no-untyped-def]
    match = VERIFY_LINK.search(mail.body)
    assert match, mail.body
    return match.group(1)


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def page_text(response, email: str) -> str:  # type: ignore[no-untyped-def]
    """The page, apart from the address typed and what differs in every response."""
    return PER_RESPONSE.sub(r"\1…", response.content.decode()).replace(email, "EMAIL")


# --- Sign-up ----------------------------------------------------------------------------------


def test_a_script_signing_up_twenty_accounts_gets_no_spendable_credits(settings, mailoutbox):
    settings.SIGNUP_CREDITS = 100  # what DEBUG grants; production grants none
    settings.RATE_LIMIT_SIGNUP = "10/hour"
    script = client_at("198.51.100.20")
    answers = [sign_up(script, f"bot{n}@example.com") for n in range(20)]

    assert [answer.status_code for answer in answers] == [200] * 10 + [429] * 10
    refused = answers[10]
    assert "Too many sign-ups from your address. Try again in 60 minutes." in refused.content.decode()
    assert 0 < int(refused["Retry-After"]) <= 3600
    # Ten accounts, none verified, none able to spend: no team of theirs holds a credit.
    bots = User.objects.filter(email__startswith="bot")
    assert bots.count() == 10 and not bots.filter(email_verified_at__isnull=False).exists()
    assert not CreditAccount.objects.filter(team__personal_owner__in=bots, available__gt=0).exists()
    assert not logged_in(script) and script.get("/api/v1/credits").status_code in (401, 403)
    # Refused sign-ups create nothing and send nothing.
    assert not User.objects.filter(email__in=[f"bot{n}@example.com" for n in range(10, 20)]).exists()
    assert len(mailoutbox) == 10


def test_the_rate_limit_counts_per_address_and_covers_new_link_and_password_reset_requests(settings, mailoutbox):
    settings.RATE_LIMIT_SIGNUP = "2/hour"
    script = client_at("198.51.100.21")
    assert sign_up(script, "one@example.com").status_code == 200
    assert script.post("/accounts/verify/resend/", {"email": "one@example.com"}).status_code == 200
    for path in ("/accounts/signup/", "/accounts/verify/resend/", "/accounts/password-reset/"):
        refused = script.post(path, {"email": "one@example.com"})
        assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
        assert "Try again in 60 minutes" in refused.content.decode()
    assert len(mailoutbox) == 2
    # Another address has its own budget.
    assert sign_up(client_at("198.51.100.22"), "two@example.com").status_code == 200


def test_rotating_ipv6_addresses_inside_one_64_shares_one_signup_budget(settings, mailoutbox):
    settings.RATE_LIMIT_SIGNUP = "3/hour"
    cache.delete(PerAddressRateThrottle.cache_format % {"scope": "signup", "ident": "2001:db8:1:2::"})
    answers = [
        Client(REMOTE_ADDR=f"2001:db8:1:2:{n:x}::{n + 1:x}").post("/accounts/signup/", {"email": f"six{n}@example.com"})
        for n in range(5)
    ]
    assert [answer.status_code for answer in answers] == [200] * 3 + [429] * 2
    assert len(mailoutbox) == 3
    # The next /64 is another client.
    cache.delete(PerAddressRateThrottle.cache_format % {"scope": "signup", "ident": "2001:db8:1:3::"})
    assert (
        Client(REMOTE_ADDR="2001:db8:1:3::1").post("/accounts/signup/", {"email": "x@example.com"}).status_code == 200
    )


def test_a_signup_with_a_registered_email_answers_like_a_new_one_and_the_mail_says_which(alice, mailoutbox):
    new = sign_up(client_at("198.51.100.23"), "newcomer@example.com")
    registered = sign_up(client_at("198.51.100.24"), "Alice@Example.com")
    assert new.status_code == registered.status_code == 200
    assert page_text(new, "newcomer@example.com") == page_text(registered, "alice@example.com")
    assert "Check your inbox: we sent a link to <strong>alice@example.com</strong>" in registered.content.decode()

    to_newcomer, to_alice = mailoutbox
    assert to_newcomer.to == ["newcomer@example.com"] and VERIFY_LINK.search(to_newcomer.body)
    assert to_alice.to == ["alice@example.com"] and to_alice.subject == "You already have an Atelier account"
    assert "an account with this address already exists" in to_alice.body
    assert "Log in: http://testserver/accounts/login/" in to_alice.body
    assert "Reset it: http://testserver/accounts/password-reset/" in to_alice.body
    assert not VERIFY_LINK.search(to_alice.body)
    alice.user.refresh_from_db()
    assert alice.user.check_password("correct-horse-battery")  # the sign-up changed nothing
    assert User.objects.filter(email__iexact="alice@example.com").count() == 1


def test_signing_up_again_before_verifying_mails_a_new_link(mailoutbox):
    browser = client_at("198.51.100.25")
    sign_up(browser, "later@example.com")
    again = sign_up(browser, "later@example.com")
    assert again.status_code == 200
    user = User.objects.get(email="later@example.com")
    assert not user.has_usable_password() and User.objects.filter(email="later@example.com").count() == 1
    assert [mail.to for mail in mailoutbox] == [["later@example.com"]] * 2
    verify(browser, verify_path(mailoutbox[1]))
    assert logged_in(browser)


def test_signing_up_someone_elses_email_gives_the_signer_no_way_into_the_account(settings, mailoutbox):
    """Account pre-takeover: the attacker signs up the victim's address first. The sign-up takes
    no password, so the attacker never knows one; the victim chooses it from the link."""
    settings.SIGNUP_CREDITS = 40
    attacker = client_at("198.51.100.40")
    assert sign_up(attacker, "victim@x.example").status_code == 200
    page = attacker.get("/accounts/signup/").content.decode()
    assert 'name="password1"' not in page and 'name="password"' not in page
    user = User.objects.get(email="victim@x.example")
    assert not user.has_usable_password() and user.email_verified_at is None

    victim = client_at("198.51.100.41")
    sign_up(victim, "victim@x.example")  # the victim signs up too, and gets a new link
    assert User.objects.filter(email="victim@x.example").count() == 1
    first_link, latest_link = (verify_path(mail) for mail in mailoutbox)
    opened = victim.get(latest_link).content.decode()
    assert "Confirm your email and choose your password" in opened and 'name="new_password1"' in opened
    assert verify(victim, latest_link, "victims-own-phrase").status_code == 302 and logged_in(victim)

    # Nothing the attacker could have typed logs in; the victim's password does.
    for guess in (PASSWORD, "", "!"):
        assert not logged_in(attacker) and log_in(attacker, "victim@x.example", guess).status_code == 200
    assert log_in(client_at("198.51.100.42"), "victim@x.example", "victims-own-phrase").status_code == 302
    # Once the password is set, no link of that account works any more, nor sets another one.
    for link in (first_link, latest_link):
        assert "This link does not work" in attacker.get(link).content.decode()
        assert "expired or has already been used" in verify(attacker, link, "attackers-phrase").content.decode()
    user.refresh_from_db()
    assert user.check_password("victims-own-phrase") and not logged_in(attacker)
    assert CreditAccount.objects.get(team=user.personal_team).available == 40  # granted once


def test_the_verification_page_holds_the_password_to_djangos_validators(mailoutbox):
    browser = client_at("198.51.100.43")
    sign_up(browser, "weak@example.com")
    link = verify_path(mailoutbox[0])
    refused = browser.post(link, {"new_password1": "12345678", "new_password2": "12345678"})
    assert refused.status_code == 400 and "This password is too common." in refused.content.decode()
    mismatched = browser.post(link, {"new_password1": PASSWORD, "new_password2": PASSWORD + "x"})
    assert mismatched.status_code == 400 and "The two password fields" in mismatched.content.decode()
    user = User.objects.get(email="weak@example.com")
    assert user.email_verified_at is None and not user.has_usable_password() and not logged_in(browser)
    assert verify(browser, link).status_code == 302  # the link still works after a refused form


def test_an_inactive_accounts_link_does_not_work(settings, mailoutbox):
    settings.SIGNUP_CREDITS = 40
    browser = client_at("198.51.100.44")
    sign_up(browser, "banned@example.com")
    User.objects.filter(email="banned@example.com").update(is_active=False)  # an operator deactivated it
    link = verify_path(mailoutbox[0])
    assert "This link does not work" in browser.get(link).content.decode()
    assert "This link does not work" in verify(browser, link).content.decode()
    user = User.objects.get(email="banned@example.com")
    assert user.email_verified_at is None and not user.has_usable_password() and not logged_in(browser)
    assert not LedgerEntry.objects.filter(account__team=user.personal_team).exists()


def test_the_link_from_the_mail_grants_the_welcome_credits_once_and_logs_in(settings, mailoutbox):
    settings.SIGNUP_CREDITS = 40
    browser = client_at("198.51.100.26")
    sign_up(browser, "Verified@Example.com")
    user = User.objects.get(email="verified@example.com")
    link = verify_path(mailoutbox[0])

    # Opening the link (as a mail scanner does) changes nothing; its button confirms.
    opened = browser.get(link)
    assert opened.status_code == 200 and "Confirm my email" in opened.content.decode()
    user.refresh_from_db()
    assert user.email_verified_at is None and not logged_in(browser)
    assert browser.post(link).status_code == 400  # the form needs the password
    user.refresh_from_db()
    assert user.email_verified_at is None and not logged_in(browser)

    confirmed = verify(browser, link)
    assert confirmed.status_code == 302 and confirmed["Location"] == "/studio/"
    user.refresh_from_db()
    assert user.email_verified_at is not None and logged_in(browser)
    tab_page = browser.get("/studio/", follow=True).content.decode()
    assert "Your email is confirmed. Welcome to Atelier: 40 credits to start with." in tab_page
    assert CreditAccount.objects.get(team=user.personal_team).available == 40

    # The link works once: opened again (or by someone else), it grants nothing more.
    for other in (browser, client_at("198.51.100.27")):
        again = verify(other, link)
        assert again.status_code == 200 and "expired or has already been used" in again.content.decode()
    grants = LedgerEntry.objects.filter(account__team=user.personal_team, kind=LedgerEntry.Kind.GRANT)
    assert [(entry.available_delta, entry.idempotency_key, entry.memo) for entry in grants] == [
        (40, f"signup:{user.id}", "Welcome credits")
    ]
    assert CreditAccount.objects.get(team=user.personal_team).available == 40


def test_with_no_signup_credits_the_verification_grants_nothing(settings, mailoutbox):
    settings.SIGNUP_CREDITS = 0
    browser = client_at("198.51.100.28")
    sign_up(browser, "frugal@example.com")
    verify(browser, verify_path(mailoutbox[0]))
    user = User.objects.get(email="frugal@example.com")
    assert user.email_verified_at is not None and logged_in(browser)
    assert not LedgerEntry.objects.filter(account__team=user.personal_team).exists()


def test_a_bad_link_says_so_and_offers_a_new_one(mailoutbox):
    browser = client_at("198.51.100.29")
    sign_up(browser, "typo@example.com")
    link = verify_path(mailoutbox[0])
    for bad in (
        link[:-3] + "xx/",
        "/accounts/verify/bm9wZQ/abc-def/",
        "/accounts/verify/OTk5OTk5OTk5OTk5OTk5OTk5OTk5/x-y/",
    ):
        page = browser.get(bad)
        assert page.status_code == 200, bad
        text = page.content.decode()
        assert "This link does not work" in text and 'href="/accounts/verify/resend/"' in text
    assert User.objects.get(email="typo@example.com").email_verified_at is None


def test_an_unverified_account_cannot_log_in_and_is_offered_a_new_link(mailoutbox):
    browser = client_at("198.51.100.30")
    sign_up(browser, "signed-up@example.com")  # no password yet: nothing logs in
    assert log_in(browser, "signed-up@example.com", PASSWORD).status_code == 200 and not logged_in(browser)
    # An account with a password but no verified email (made by an operator) is told why.
    User.objects.create_user("waiting@example.com", PASSWORD, email_verified_at=None)
    refused = log_in(browser, "waiting@example.com", PASSWORD)
    text = refused.content.decode()
    assert refused.status_code == 200 and not logged_in(browser)
    assert "Confirm your email address first: open the link we sent you." in text
    assert 'href="/accounts/verify/resend/"' in text


def test_asking_for_a_new_link_answers_the_same_for_every_email(alice, mailoutbox):
    browser = client_at("198.51.100.31")
    sign_up(browser, "waiting@example.com")
    mailoutbox.clear()
    pages = {}
    for email in ("waiting@example.com", "alice@example.com", "nobody@example.com"):
        response = browser.post("/accounts/verify/resend/", {"email": email})
        assert response.status_code == 200
        pages[email] = page_text(response, email)
    assert len(set(pages.values())) == 1
    # The waiting account gets a new link; the verified one hears it exists; a stranger nothing.
    assert [mail.to for mail in mailoutbox] == [["waiting@example.com"], ["alice@example.com"]]
    assert VERIFY_LINK.search(mailoutbox[0].body) and "already exists" in mailoutbox[1].body


def test_the_password_reset_link_of_the_already_registered_mail_works(alice, mailoutbox):
    browser = client_at("198.51.100.32")
    assert "Reset your password" in browser.get("/accounts/password-reset/").content.decode()
    sent = browser.post("/accounts/password-reset/", {"email": "ALICE@example.com"})
    assert sent.status_code == 302 and sent["Location"] == "/accounts/password-reset/sent/"
    (mail,) = mailoutbox
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", mail.body).group(1)  # type: ignore[union-attr]
    form = browser.get(link, follow=True)
    assert "Choose a new password" in form.content.decode()
    saved = browser.post(
        form.redirect_chain[-1][0], {"new_password1": "brand-new-phrase", "new_password2": "brand-new-phrase"}
    )
    assert saved.status_code == 302 and saved["Location"] == "/accounts/reset/done/"
    assert log_in(browser, "alice@example.com", "brand-new-phrase").status_code == 302


def test_a_password_reset_mails_only_verified_accounts_and_answers_the_same(mailoutbox):
    browser = client_at("198.51.100.33")
    sign_up(browser, "waiting@example.com")
    mailoutbox.clear()
    for email in ("waiting@example.com", "nobody@example.com"):
        response = browser.post("/accounts/password-reset/", {"email": email})
        assert response.status_code == 302 and response["Location"] == "/accounts/password-reset/sent/"
    assert mailoutbox == []


def test_the_signup_form_works_with_csrf_checks_on(mailoutbox):
    browser = client_at("198.51.100.34", enforce_csrf_checks=True)
    form = browser.get("/accounts/signup/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    fields = {"email": "careful@example.com"}
    assert browser.post("/accounts/signup/", fields).status_code == 403
    assert browser.post("/accounts/signup/", {**fields, "csrfmiddlewaretoken": token}).status_code == 200
    assert User.objects.filter(email="careful@example.com").exists() and len(mailoutbox) == 1


def _settings_of(**env: str) -> subprocess.CompletedProcess:
    """config.settings imported in a fresh process with `env` (and no SIGNUP_CREDITS of ours)."""
    base = {key: value for key, value in os.environ.items() if key not in ("DJANGO_SETTINGS_MODULE", "SIGNUP_CREDITS")}
    code = "import config.settings as s; print(s.SIGNUP_CREDITS, s.EMAIL_BACKEND)"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=base | env, capture_output=True, text=True, timeout=60
    )


def test_production_grants_no_signup_credits_by_default():
    production = {
        "DEBUG": "false",
        "SECRET_KEY": "p" * 20 + "-production-secret-0123456789abcdefghij",
        "ALLOWED_HOSTS": "a.example",
    }
    result = _settings_of(**production)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "django.core.mail.backends.console.EmailBackend"]
    assert _settings_of(DEBUG="true").stdout.split()[0] == "100"
    # The SMTP backend needs its server and credentials; a malformed rate stops the start.
    smtp = _settings_of(**production, EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend")
    assert smtp.returncode != 0 and "EMAIL_HOST must be set" in smtp.stderr
    assert "RATE_LIMIT_SIGNUP" in _settings_of(RATE_LIMIT_SIGNUP="ten an hour").stderr


# --- Login lockout ----------------------------------------------------------------------------


def assert_locked_out(response, *, account: bool) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 15 * 60
    what = "This account" if account else "Logging in from your address"
    assert f"{what} is locked for 15 minutes after too many failed logins." in response.content.decode()


def test_the_eleventh_login_after_ten_wrong_passwords_is_refused_even_with_the_right_one(alice):
    attacker = client_at("203.0.113.10")
    # The email in any case is the same account.
    answers = [log_in(attacker, "alice@example.com" if n % 2 else "ALICE@Example.com", WRONG) for n in range(10)]
    assert [answer.status_code for answer in answers] == [200] * 9 + [429]
    assert "Please enter a correct email and password" in answers[0].content.decode()
    assert set(AccessAttempt.objects.values_list("username", flat=True)) == {"alice@example.com"}

    eleventh = log_in(attacker, "alice@example.com", "correct-horse-battery")
    assert_locked_out(eleventh, account=True)
    assert not logged_in(attacker)
    # From anywhere else too: the account itself is locked.
    assert_locked_out(log_in(client_at("203.0.113.11"), "alice@example.com", "correct-horse-battery"), account=True)


def test_a_password_reset_lifts_the_account_lockout(alice, mailoutbox):
    attacker = client_at("203.0.113.14")
    for _ in range(10):
        log_in(attacker, "alice@example.com", WRONG)
    owner = client_at("198.51.100.40")
    assert_locked_out(log_in(owner, "alice@example.com", "correct-horse-battery"), account=True)

    owner.post("/accounts/password-reset/", {"email": "alice@example.com"})
    (mail,) = mailoutbox
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", mail.body).group(1)  # type: ignore[union-attr]
    form = owner.get(link, follow=True)
    owner.post(form.redirect_chain[-1][0], {"new_password1": "brand-new-phrase", "new_password2": "brand-new-phrase"})

    assert log_in(owner, "alice@example.com", "brand-new-phrase").status_code == 302
    assert logged_in(owner)
    # The failures against the account are forgotten: ten more wrong guesses lock it again.
    assert not AccessAttempt.objects.filter(username="alice@example.com").exists()


def test_one_address_trying_many_accounts_is_locked_out(alice):
    attacker = client_at("203.0.113.12")
    for n in range(10):
        log_in(attacker, f"victim{n}@example.com", WRONG)
    assert_locked_out(log_in(attacker, "alice@example.com", "correct-horse-battery"), account=False)
    # Alice herself, elsewhere, is not.
    elsewhere = client_at("203.0.113.13")
    assert log_in(elsewhere, "alice@example.com", "correct-horse-battery").status_code == 302
    assert logged_in(elsewhere)


def test_rotating_ipv6_addresses_inside_one_64_does_not_escape_the_address_lockout(alice):
    for n in range(10):
        log_in(Client(REMOTE_ADDR=f"2001:db8:9:9::{n + 1:x}"), f"victim{n}@example.com", WRONG)
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"2001:db8:9:9::"}
    rotated = Client(REMOTE_ADDR="2001:db8:9:9:ffff:ffff:ffff:ffff")
    assert_locked_out(log_in(rotated, "alice@example.com", "correct-horse-battery"), account=False)
    # Another /64, and an IPv4 client, are not locked out.
    assert (
        log_in(Client(REMOTE_ADDR="2001:db8:9:a::1"), "alice@example.com", "correct-horse-battery").status_code == 302
    )
    assert log_in(client_at("203.0.113.30"), "alice@example.com", "correct-horse-battery").status_code == 302


def test_a_forged_forwarded_for_header_does_not_escape_the_address_lockout(alice):
    attacker = client_at("203.0.113.14")
    for n in range(10):
        attacker.post(
            "/accounts/login/",
            {"username": f"victim{n}@example.com", "password": WRONG},
            headers={"X-Forwarded-For": f"192.0.2.{n}"},
        )
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.14"}
    assert_locked_out(log_in(attacker, "alice@example.com", "correct-horse-battery"), account=False)


def test_behind_a_trusted_proxy_the_lockout_counts_the_forwarded_address(alice, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxy = client_at("10.0.0.2")
    for n in range(10):
        proxy.post(
            "/accounts/login/",
            {"username": f"victim{n}@example.com", "password": WRONG},
            headers={"X-Forwarded-For": "forged, 203.0.113.15"},
        )
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.15"}
    someone_else = proxy.post(
        "/accounts/login/",
        {"username": "alice@example.com", "password": "correct-horse-battery"},
        headers={"X-Forwarded-For": "203.0.113.16"},
    )
    assert someone_else.status_code == 302


def test_the_admin_login_is_locked_out_too():
    UserFactory(email="ops@example.com")
    User.objects.filter(email="ops@example.com").update(is_staff=True, is_superuser=True)
    attacker = client_at("203.0.113.17")
    for _ in range(10):
        log_in(attacker, "ops@example.com", WRONG, path="/admin/login/")
    eleventh = log_in(attacker, "OPS@example.com", "correct-horse-battery", path="/admin/login/")
    assert_locked_out(eleventh, account=True)
    assert attacker.get("/admin/").status_code == 302  # still not in
    # One counter for both doors.
    assert_locked_out(log_in(client_at("203.0.113.18"), "ops@example.com", "correct-horse-battery"), account=True)


def test_after_the_cool_down_the_right_password_works_again(alice, settings):
    attacker = client_at("203.0.113.19")
    for _ in range(10):
        log_in(attacker, "alice@example.com", WRONG)
    assert_locked_out(log_in(attacker, "alice@example.com", "correct-horse-battery"), account=True)
    # Fifteen minutes pass (LOGIN_COOLOFF_MINUTES).
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=settings.LOGIN_COOLOFF_MINUTES))
    assert log_in(attacker, "alice@example.com", "correct-horse-battery").status_code == 302
    assert logged_in(attacker)


def test_the_lockout_page_says_how_long_is_left():
    attacker = client_at("203.0.113.20")
    for _ in range(10):
        log_in(attacker, "someone@example.com", WRONG)
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=10, seconds=30))
    left = log_in(attacker, "someone@example.com", WRONG)
    assert left.status_code == 429 and 240 < int(left["Retry-After"]) <= 270
    assert "is locked for 5 minutes" in left.content.decode()
