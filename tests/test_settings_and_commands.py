"""Settings that refuse bad configuration, production checks, and the bootstrap command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.management import call_command

from accounts.models import ApiKey, Membership, Team, User
from accounts.services import api_key_hash
from accounts.teams import team_for_user
from tests.processes import ROOT


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE")
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=base | env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DEBUG", "maybe"),
        ("JOB_LEASE_SECONDS", "soon"),
        ("LOCAL_PROVIDER_TRANSIENT_FAILURE_RATE", "2"),
        ("DATABASE_URL", "nosuchdb://x"),
        ("GENERATION_DEFAULT_PROVIDER", "midjourney"),
        ("JOB_MEMORY_CEILING_MB", "256MB"),
    ],
)
def test_a_malformed_variable_stops_the_start_with_an_error_naming_it(name, value):
    result = run_manage("check", **{name: value})
    assert result.returncode != 0
    assert name in result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    result = run_manage("check", DEBUG="false", SECRET_KEY="", ALLOWED_HOSTS="atelier.example.com")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_settings_pass_the_deploy_check():
    result = run_manage(
        "check", "--deploy", "--fail-level", "WARNING",
        DEBUG="false", SECRET_KEY="s" * 20 + "-production-secret-with-enough-entropy-0123456789",
        ALLOWED_HOSTS="atelier.example.com",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.django_db
def test_bootstrap_creates_user_team_and_prints_a_working_key_last(capsys):
    call_command("bootstrap", email="ops@example.com", password="long-enough-pw", team="Studio")
    output = capsys.readouterr().out.strip().splitlines()
    raw_key = output[-1]
    assert raw_key.startswith("atl_")
    user = User.objects.get(email="ops@example.com")
    team = Team.objects.get(name="Studio")
    assert Membership.objects.get(user=user, team=team).role == "owner"
    assert team_for_user(user) == team  # the browser session starts in the bootstrapped team
    stored = ApiKey.objects.get(team=team)
    assert stored.key_hash == api_key_hash(raw_key)
    assert raw_key not in stored.key_hash and stored.prefix in raw_key  # only the hash is kept

    # Run again: the same user, team and key; nothing changes (the key cannot be shown again).
    password_hash = User.objects.get(email="ops@example.com").password
    call_command("bootstrap", email="ops@example.com", password="a-different-pw", team="Studio")
    again = capsys.readouterr()
    assert again.out.strip().splitlines()[-1].startswith("API key: created on the first run")
    assert "atl_" not in again.out
    assert "password other than the one given" in again.err  # told, not changed
    assert User.objects.get(email="ops@example.com").password == password_hash
    assert User.objects.filter(email="ops@example.com").count() == 1
    assert Team.objects.filter(name="Studio").count() == 1
    assert ApiKey.objects.filter(team=team).count() == 1

    # --new-key asks for a further key: printed alone on the last line.
    call_command("bootstrap", email="ops@example.com", password="long-enough-pw", team="Studio", new_key=True)
    second_key = capsys.readouterr().out.strip().splitlines()[-1]
    assert second_key.startswith("atl_") and second_key != raw_key
    assert ApiKey.objects.filter(team=team).count() == 2


@pytest.mark.django_db
def test_bootstrap_makes_the_operator_once_and_grants_starting_credits_once(capsys, tmp_path):
    key_file = tmp_path / "demo-login.txt"
    options = {
        "email": "demo@example.com", "password": "demo-password", "team": "Demo", "credits": 500,
        "key_file": str(key_file), "operator_email": "operator@example.com", "operator_password": "operator-pw-1",
    }  # fmt: skip
    call_command("bootstrap", **options)
    first = capsys.readouterr().out
    raw_key = key_file.read_text().splitlines()[-1]
    assert first.strip().splitlines()[-1] == raw_key  # the file holds the key printed once
    assert key_file.stat().st_mode & 0o777 == 0o600
    operator = User.objects.get(email="operator@example.com")
    assert (operator.is_staff, operator.is_superuser) == (True, True)
    assert not operator.teams.exists()  # an operator, not a member of the demo team
    assert operator.check_password("operator-pw-1")
    team = Team.objects.get(name="Demo")
    account = team.credit_account

    before = (
        User.objects.get(email="demo@example.com").password, operator.password, account.entries.count(),
        ApiKey.objects.count(),
    )  # fmt: skip
    call_command("bootstrap", **options)
    second = capsys.readouterr().out
    assert "granted on the first run, not again" in second
    assert "operator operator@example.com: already there, unchanged" in second
    assert f"saved in {key_file}" in second
    account.refresh_from_db()
    after = (
        User.objects.get(email="demo@example.com").password, User.objects.get(email="operator@example.com").password,
        account.entries.count(), ApiKey.objects.count(),
    )  # fmt: skip
    assert after == before
    assert (account.available, account.held) == (500, 0)
    assert key_file.read_text().splitlines()[-1] == raw_key  # the file is not rewritten


@pytest.mark.django_db
def test_every_new_user_gets_a_personal_team_they_own(alice):
    assert alice.team.personal_owner == alice.user
    assert Membership.objects.get(team=alice.team, user=alice.user).role == "owner"
