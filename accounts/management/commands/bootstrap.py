from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from accounts.services import account_bootstrap


class Command(BaseCommand):
    help = "Create or reuse a user, a team they own and print a fresh API key on the last line."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--email", required=True)
        parser.add_argument("--password", required=True)
        parser.add_argument("--team", required=True, help="Team name")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            validate_email(options["email"])
        except ValidationError:
            raise CommandError(f"--email: {options['email']!r} is not an email address.") from None
        if len(options["password"]) < 8:
            raise CommandError("--password: must be at least 8 characters.")
        if not options["team"].strip():
            raise CommandError("--team: must not be empty.")
        user, team, issued = account_bootstrap(
            email=options["email"], password=options["password"], team_name=options["team"].strip()
        )
        self.stdout.write(f"user {user.email} (id {user.id}), team {team.name!r} (id {team.id})")
        self.stdout.write("API key (shown once):")
        self.stdout.write(issued.raw_key)
