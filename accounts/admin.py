from typing import Any

from axes import admin as axes_admin  # registers its admin first, whatever the order of the apps
from axes.models import AccessAttempt
from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import ApiKey, Membership, Team, User
from accounts.quotas import quota_overrides
from accounts.services import api_key_revoke, membership_remove


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "display_name", "is_staff", "is_active", "date_joined"]
    search_fields = ["email", "display_name"]
    fieldsets = [
        (None, {"fields": ["email", "password", "display_name"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]


class MembershipForm(forms.ModelForm):
    """An existing membership's person is fixed: handing the row to someone else would let the
    first person's keys act through it (they die, ApiKey.state_at, but silently). Remove the row
    and add one instead. New rows still choose their person.

    Per row rather than the inline's get_readonly_fields(obj): there `obj` is the team, so it would
    also fix the person of the rows added to an existing team.
    """

    class Meta:
        model = Membership
        fields = ["user", "role"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None and "user" in self.fields:
            self.fields["user"].disabled = True  # a posted value is ignored; the stored one stays


class MembershipInline(admin.TabularInline):
    model = Membership
    form = MembershipForm
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "personal_owner", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]
    fieldsets = [
        (None, {"fields": ["name", "personal_owner"]}),
        (
            "Quotas",
            {
                "fields": list(quota_overrides()),
                "description": "What this team may hold at once. Empty: the setting's default, shown under each field.",
            },
        ),
    ]

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)
        default = quota_overrides().get(db_field.name)
        if default is not None and formfield is not None:
            # Here rather than in the model's help_text: the default is the running setting's value.
            formfield.help_text = f"Empty = the default, {default}."
        return formfield

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """A membership deleted in the inline goes through `membership_remove`, which revokes the
        person's keys in the team, as it does everywhere else."""
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        instances = formset.save(commit=False)  # collects the deleted ones without deleting them
        for membership in formset.deleted_objects:
            membership_remove(membership=membership)
        for instance in instances:
            instance.save()
        formset.save_m2m()


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "prefix", "name", "team", "created_by", "key_state", "created_at", "last_used_at", "expires_at", "revoked_at",
    ]  # fmt: skip
    list_select_related = ["team", "created_by"]
    # Only the name changes here: moving a key to another team or member, or pushing back its
    # expiry, would hand its holder access nobody asked for. Operators revoke with the action.
    readonly_fields = [
        "key_state", "team", "created_by", "membership", "prefix", "key_hash", "created_at", "last_used_at",
        "expires_at", "revoked_at",
    ]  # fmt: skip
    list_filter = ["revoked_at"]
    search_fields = ["prefix", "team__name"]
    actions = ["revoke_keys"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A key is shown once to whoever makes it: people make theirs on /account/keys/, operators
        # with `manage.py bootstrap`.
        return False

    @admin.display(description="state")
    def key_state(self, api_key: ApiKey) -> str:
        return api_key.state.label

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            api_key_revoke(api_key=api_key, by=None)
        self.message_user(request, f"{queryset.count()} key(s) revoked.", messages.SUCCESS)


# django-axes registers its attempts with a "clean up expired attempts" action that declares no
# permission, so a view-only operator could delete rows with it. Every action here names the
# permission it needs; this one deletes, so it needs "delete".
if admin.site.is_registered(AccessAttempt):

    class AccessAttemptAdmin(axes_admin.AccessAttemptAdmin):
        @admin.action(description="Clean up expired attempts", permissions=["delete"])
        def cleanup_expired_attempts(self, request: HttpRequest, queryset: QuerySet[AccessAttempt]) -> None:
            super().cleanup_expired_attempts(request, queryset)

    admin.site.unregister(AccessAttempt)
    admin.site.register(AccessAttempt, AccessAttemptAdmin)
