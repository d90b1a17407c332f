from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from accounts.services import account_bootstrap
from credits.services import credits_grant


class Command(BaseCommand):
    help = "Create or reuse a user, a team they own and print a fresh API key on the last line."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--email", required=True)
        parser.add_argument("--password", required=True)
        parser.add_argument("--team", required=True, help="Team name")
        parser.add_argument("--credits", type=int, default=0, help="Grant this many credits to the team")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            validate_email(options["email"])
        except ValidationError:
            raise CommandError(f"--email: {options['email']!r} is not an email address.") from None
        if len(options["password"]) < 8:
            raise CommandError("--password: must be at least 8 characters.")
        if not options["team"].strip():
            raise CommandError("--team: must not be empty.")
        if options["credits"] < 0:
            raise CommandError("--credits: must not be negative.")
        user, team, issued = account_bootstrap(
            email=options["email"], password=options["password"], team_name=options["team"].strip()
        )
        self.stdout.write(f"user {user.email} (id {user.id}), team {team.name!r} (id {team.id})")
        if options["credits"]:
            entry = credits_grant(
                team=team,
                amount=options["credits"],
                idempotency_key=f"bootstrap:{uuid.uuid4()}",
                actor=None,
                memo="manage.py bootstrap --credits",
            )
            self.stdout.write(f"granted {options['credits']} credits; {entry.available_after} available")
        self.stdout.write("API key (shown once):")
        self.stdout.write(issued.raw_key)
