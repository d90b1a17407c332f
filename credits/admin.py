"""Accounts and their ledger, read-only, with a "grant credits" action that asks for a memo."""

from __future__ import annotations

import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import truncatechars
from django.template.response import TemplateResponse

from credits.models import CreditAccount, LedgerEntry
from credits.services import credits_grant


class GrantForm(forms.Form):
    amount = forms.IntegerField(min_value=1, max_value=1_000_000)
    memo = forms.CharField(max_length=500, help_text="Why: shown in the team's ledger.")


@admin.register(CreditAccount)
class CreditAccountAdmin(admin.ModelAdmin):
    list_display = ["team", "available", "held", "updated_at"]
    search_fields = ["team__name"]
    readonly_fields = ["team", "available", "held", "updated_at"]
    actions = ["grant_credits"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_grant_credits_permission(self, request: HttpRequest) -> bool:
        # Granting mints money: a permission of its own, not "change credit account".
        return request.user.has_perm("credits.grant_credits")

    @admin.action(description="Grant credits to the selected teams", permissions=["grant_credits"])
    def grant_credits(self, request: HttpRequest, queryset: QuerySet[CreditAccount]) -> HttpResponse | None:
        # Django offers the action only with the permission and refuses a POST naming it
        # without; the form's own POST (apply=1) comes back through here, so check once more
        # where the money is made rather than rely on that alone.
        if not self.has_grant_credits_permission(request):
            raise PermissionDenied("Granting credits needs the credits.grant_credits permission.")
        form = GrantForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            # The form's token makes a resubmitted page a no-op instead of a second grant.
            token = request.POST.get("grant_token") or uuid.uuid4().hex
            for account in queryset.select_related("team"):
                credits_grant(
                    team=account.team,
                    amount=form.cleaned_data["amount"],
                    idempotency_key=f"admin-grant:{token}:{account.team_id}",
                    actor=request.user,  # type: ignore[arg-type]
                    memo=form.cleaned_data["memo"],
                )
            self.message_user(
                request,
                f"Granted {form.cleaned_data['amount']} credits to {queryset.count()} team(s).",
                messages.SUCCESS,
            )
            return None
        return TemplateResponse(
            request,
            "admin/credits/grant.html",
            {
                **self.admin_site.each_context(request),
                "title": "Grant credits",
                "form": form,
                "accounts": queryset,
                "grant_token": uuid.uuid4().hex,
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
                "opts": self.model._meta,
            },
        )


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "account",
        "kind",
        "available_delta",
        "held_delta",
        "job_shown",
        "image",
        "available_after",
        "held_after",
        "actor_label",
        "memo",
    ]
    list_filter = ["kind"]
    search_fields = ["idempotency_key", "account__team__name", "memo", "job__prompt"]
    list_select_related = ["account__team", "job"]

    @admin.display(description="job", ordering="job__created_at")
    def job_shown(self, entry: LedgerEntry) -> str:
        # The job by its prompt, as its team knows it, rather than its UUID.
        return truncatechars(entry.job.prompt, 50) if entry.job is not None else ""

    @admin.display(description="image", ordering="output_index")
    def image(self, entry: LedgerEntry) -> str:
        # Counted from 1, like everywhere people see images (the stored index is 0-based).
        return f"Image {entry.output_index + 1}" if entry.output_index is not None else ""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
