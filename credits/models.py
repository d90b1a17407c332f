"""Credits: one account per team and an append-only ledger of every change to it."""

from __future__ import annotations

from typing import Any, NoReturn

from django.conf import settings
from django.db import models
from django.db.models import Q


class CreditAccount(models.Model):
    """`available` can be spent; `held` is reserved by accepted jobs until they deliver or end."""

    team = models.OneToOneField("accounts.Team", on_delete=models.CASCADE, related_name="credit_account")
    available = models.BigIntegerField(default=0)
    held = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # Granting credits mints money: it is a permission of its own, not "change credit account".
        permissions = [("grant_credits", "Can grant credits to a team")]
        constraints = [
            models.CheckConstraint(condition=Q(available__gte=0), name="credits_account_available_nonnegative"),
            models.CheckConstraint(condition=Q(held__gte=0), name="credits_account_held_nonnegative"),
        ]

    def __str__(self) -> str:
        return f"{self.team}: {self.available} available, {self.held} held"


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> NoReturn:
        raise TypeError("Ledger entries are never updated.")

    def delete(self) -> NoReturn:  # type: ignore[override]
        raise TypeError("Ledger entries are never deleted.")


class LedgerEntry(models.Model):
    """One change to an account. Never updated or deleted (PostgreSQL also refuses it by trigger).

    `available_delta` and `held_delta` are the signed changes to the two balances, so an
    account's balances are the sums of its entries; `*_after` are the balances right after it.
    """

    class Kind(models.TextChoices):
        GRANT = "grant", "Grant"  # available +n
        HOLD = "hold", "Hold"  # available -n, held +n (a job was accepted)
        CAPTURE = "capture", "Capture"  # held -n (an image was delivered)
        RELEASE = "release", "Release"  # held -n, available +n (a job ended with images undelivered)
        REFUND = "refund", "Refund"  # available +n (paid credits given back)
        ADJUST = "adjust", "Adjust"  # available ±n (an operator's correction)

    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="entries")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    available_delta = models.BigIntegerField()
    held_delta = models.BigIntegerField()
    job = models.ForeignKey(
        "generation.GenerationJob", null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_entries"
    )
    output_index = models.PositiveSmallIntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=200, unique=True)
    available_after = models.BigIntegerField()
    held_after = models.BigIntegerField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="ledger_entries"
    )
    actor_label = models.CharField(max_length=80)  # "user:alice@example.com", "system:pipeline", ...
    memo = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "ledger entries"
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["grant", "hold", "capture", "release", "refund", "adjust"]),
                name="credits_entry_kind_valid",
            ),
            models.CheckConstraint(
                condition=Q(available_after__gte=0, held_after__gte=0), name="credits_entry_balances_nonnegative"
            ),
        ]
        indexes = [
            # The account's ledger, newest first (the credits page and GET /credits).
            models.Index(fields=["account", "-id"], name="credits_entry_account"),
            # Per-job settlement: the audit sums a job's hold, captures and releases.
            models.Index(fields=["job", "kind"], name="credits_entry_job_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.available_delta:+}/{self.held_delta:+} ({self.idempotency_key})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise TypeError("Ledger entries are never updated.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("Ledger entries are never deleted.")
