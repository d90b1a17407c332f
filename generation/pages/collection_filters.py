"""The collection's search and filters, read from the query string: what the person asked for,
what the selector narrows by, and a note for each part that could not be used (a malformed date,
an unknown provider) rather than an error page."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django import forms
from django.http import QueryDict
from django.utils import timezone

from generation.providers.catalog import PROVIDERS
from generation.selectors import LookFilters, LookKind

# "Last 7 days" counts today as one of them: from the start of the day six days ago.
PERIODS = {"today": ("Today", 0), "7d": ("Last 7 days", 6), "30d": ("Last 30 days", 29)}
# Dates people can mean; beyond them a bound in any time zone would overflow Python's datetime.
EARLIEST_DATE = date(2000, 1, 1)
LATEST_DATE = date(9000, 12, 31)


class CollectionFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=200, label="Search prompts")
    period = forms.ChoiceField(
        required=False, label="When", choices=[("", "Any time")] + [(key, label) for key, (label, _) in PERIODS.items()]
    )
    date_from = forms.DateField(required=False, label="From", input_formats=["%Y-%m-%d"])
    date_to = forms.DateField(required=False, label="To", input_formats=["%Y-%m-%d"])
    kind = forms.ChoiceField(
        required=False,
        label="Kind",
        choices=[("", "Images and clips"), (LookKind.IMAGE.value, "Images"), (LookKind.CLIP.value, "Clips")],
    )
    provider = forms.ChoiceField(
        required=False,
        label="Provider",
        choices=[("", "Any provider")] + [(name, spec.label) for name, spec in PROVIDERS.items()],
    )

    def _clean_bounded_date(self, name: str) -> date | None:
        value = self.cleaned_data.get(name)
        if value is not None and not EARLIEST_DATE <= value <= LATEST_DATE:
            raise forms.ValidationError("out of range")
        return value

    def clean_date_from(self) -> date | None:
        return self._clean_bounded_date("date_from")

    def clean_date_to(self) -> date | None:
        return self._clean_bounded_date("date_to")


@dataclass
class CollectionSearch:
    form: CollectionFilterForm
    filters: LookFilters
    notes: list[str] = field(default_factory=list)  # what was ignored, in words

    @property
    def is_active(self) -> bool:
        return self.filters != LookFilters()


def _start_of_day(day: date) -> datetime:
    """Midnight of `day` in the person's time zone (config/timezones.py activates it)."""
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def _ignored_note(form: CollectionFilterForm, name: str) -> str:
    given = form.data.get(name, "")
    label = form.fields[name].label
    if name in ("date_from", "date_to"):
        return f"“{given}” is not a date we can use (YYYY-MM-DD); the {label} date was ignored."
    if name == "provider":
        return f"There is no provider “{given}”; the provider filter was ignored."
    if name == "q":
        return "The search was too long (over 200 characters) and was ignored."
    return f"“{given}” is not a choice for {str(label).lower()}; that filter was ignored."


def collection_search(query: QueryDict) -> CollectionSearch:
    form = CollectionFilterForm(query)
    form.is_valid()  # fills cleaned_data with the fields that are valid; the others are noted
    data = form.cleaned_data
    notes = [_ignored_note(form, name) for name in form.errors]
    created_from = _start_of_day(data["date_from"]) if data.get("date_from") else None
    created_before = _start_of_day(data["date_to"] + timedelta(days=1)) if data.get("date_to") else None
    if data.get("period"):
        _, days_back = PERIODS[data["period"]]
        period_start = _start_of_day(timezone.localdate() - timedelta(days=days_back))
        created_from = max(created_from, period_start) if created_from else period_start
    filters = LookFilters(
        prompt=(data.get("q") or "").strip(),
        created_from=created_from,
        created_before=created_before,
        kind=LookKind(data["kind"]) if data.get("kind") else None,
        provider=data.get("provider") or "",
    )
    return CollectionSearch(form=form, filters=filters, notes=notes)
