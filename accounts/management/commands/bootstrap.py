"""`manage.py bootstrap`: a login, its team, starting credits, an API key and (optionally) an
operator for the admin, made once. `make run` calls it on every start, so a second run changes
nothing: the password stays (browsers stay logged in), the credits are granted once, and no
further key is made unless `--new-key` asks for one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction

from accounts.models import ApiKey, Team, User
from accounts.services import IssuedApiKey, api_key_create, team_create, user_create
from credits.models import LedgerEntry
from credits.services import credits_grant

BOOTSTRAP_KEY_NAME = "bootstrap"


def _starting_credits_key(team: Team) -> str:
    # One grant per team, whatever the number of runs: the ledger's idempotency key says so.
    return f"bootstrap:starting-credits:team:{team.id}"


class Command(BaseCommand):
    help = (
        "Create, once, a user, a team they own, its starting credits and an API key (printed alone on "
        "the last line when made), and an operator for the admin. Later runs change nothing."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--email", required=True)
        parser.add_argument("--password", required=True, help="Set when the user is made; never changed later")
        parser.add_argument("--team", required=True, help="Team name")
        parser.add_argument("--credits", type=int, default=0, help="Grant the team this many credits, once")
        parser.add_argument("--new-key", action="store_true", help="Make a further API key even if one exists")
        parser.add_argument(
            "--key-file", default="", help="Write a new key to this file (mode 600), where later runs point to it"
        )
        parser.add_argument("--operator-email", default="", help="A staff superuser for the admin, made once")
        parser.add_argument("--operator-password", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        email, password, team_name = options["email"], options["password"], options["team"].strip()
        _check_login(email, password, "--email", "--password")
        if not team_name:
            raise CommandError("--team: must not be empty.")
        if options["credits"] < 0:
            raise CommandError("--credits: must not be negative.")
        operator_email = options["operator_email"]
        if operator_email:
            _check_login(operator_email, options["operator_password"], "--operator-email", "--operator-password")
            if operator_email.lower() == email.lower():
                raise CommandError("--operator-email: the operator is a login of its own, not --email.")

        user, team = self._user_and_team(email, password, team_name)
        if options["credits"]:
            self._starting_credits(team, options["credits"])
        if operator_email:
            self._operator(operator_email, options["operator_password"])
        self._api_key(user, team, new_key=options["new_key"], key_file=options["key_file"])

    def _user_and_team(self, email: str, password: str, team_name: str) -> tuple[User, Team]:
        """1. The user by email, or a new one with this password (their personal team gets the
           team's name, so their browser session starts in it). An existing user's password is
           left alone: resetting it would log out every browser, on every `make run`.
        2. The user's team of that name, or a new one they own."""
        with transaction.atomic():
            user = User.objects.filter(email__iexact=email).first()
            made = user is None
            if user is None:
                user = user_create(email=email, password=password, team_name=team_name)
            team = Team.objects.filter(memberships__user=user, name=team_name).order_by("id").first()
            if team is None:
                team = team_create(name=team_name, owner=user)
        state = "created" if made else "already there, unchanged"
        self.stdout.write(f"user {user.email} (id {user.id}), team {team.name!r} (id {team.id}): {state}")
        if not made and not user.check_password(password):
            self.stderr.write(
                f"note: {user.email} has a password other than the one given; it is left as it is "
                "(reset it in the admin or with `manage.py changepassword`)."
            )
        return user, team

    def _starting_credits(self, team: Team, amount: int) -> None:
        # Any earlier bootstrap grant counts (before this command was idempotent, each run made
        # one under a key of its own); the fixed key keeps two runs at once from both granting.
        earlier = LedgerEntry.objects.filter(
            account__team=team, kind=LedgerEntry.Kind.GRANT, idempotency_key__startswith="bootstrap:"
        ).first()
        if earlier is not None:
            self.stdout.write(f"starting credits: {earlier.available_delta} granted on the first run, not again")
            return
        entry = credits_grant(
            team=team,
            amount=amount,
            idempotency_key=_starting_credits_key(team),
            actor=None,
            memo="Starting credits (manage.py bootstrap)",
        )
        self.stdout.write(f"granted {amount} credits; {entry.available_after} available")

    def _operator(self, email: str, password: str) -> None:
        """A staff superuser who logs in to the admin, and belongs to no team. Made once; an
        existing account is never given staff rights or a password by this command."""
        operator = User.objects.filter(email__iexact=email).first()
        if operator is None:
            User.objects.create_superuser(email=email, password=password)
            self.stdout.write(f"operator {email} (staff, superuser): created")
        elif operator.is_staff and operator.is_active:
            self.stdout.write(f"operator {operator.email}: already there, unchanged")
        else:
            raise CommandError(
                f"--operator-email: {operator.email} is an account that is not active staff; "
                "this command does not promote existing accounts (do it in the admin)."
            )

    def _api_key(self, user: User, team: Team, *, new_key: bool, key_file: str) -> None:
        existing = ApiKey.objects.filter(team=team, created_by=user, name=BOOTSTRAP_KEY_NAME).live()
        if existing.exists() and not new_key:
            where = f", saved in {key_file}" if key_file and Path(key_file).exists() else ""
            self.stdout.write(f"API key: created on the first run{where} (Atelier keeps only its hash)")
            return
        issued = api_key_create(team=team, created_by=user, name=BOOTSTRAP_KEY_NAME)
        if key_file:
            _write_key_file(Path(key_file), user=user, team=team, issued=issued)
        self.stdout.write("API key (shown once):")
        self.stdout.write(issued.raw_key)


def _check_login(email: str, password: str, email_option: str, password_option: str) -> None:
    try:
        validate_email(email)
    except ValidationError:
        raise CommandError(f"{email_option}: {email!r} is not an email address.") from None
    if len(password) < 8:
        raise CommandError(f"{password_option}: must be at least 8 characters.")


def _write_key_file(path: Path, *, user: User, team: Team, issued: IssuedApiKey) -> None:
    """The key's only plaintext copy, readable by its owner alone; the key is its last line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(f"API key of {user.email} in team {team.name!r}, made by manage.py bootstrap:\n{issued.raw_key}\n")
