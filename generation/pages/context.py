"""What every page knows: the person, their current team, its credits and its live activity.
Reads only: rendering a page changes nothing (the activity poll's view marks jobs seen)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from django.http import Http404, HttpRequest
from django.utils.functional import SimpleLazyObject

from accounts.models import Team, User
from accounts.teams import current_team
from generation.models import GenerationJob
from generation.selectors import QueuePlace, QueuePlaces, TeamActivity, team_activity

# How often a page asks for its live status, in seconds (live.js reads it from the page): often
# while the team has something queued or running, rarely when only a job started elsewhere (the
# API, another browser) can change what it shows.
POLL_SECONDS_ACTIVE = 2
POLL_SECONDS_IDLE = 5


def page_user(request: HttpRequest) -> User:
    assert isinstance(request.user, User), "pages are behind login_required"
    return request.user


def page_team(request: HttpRequest) -> Team:
    team = current_team(request)
    if team is None:
        raise Http404("You are not a member of any team.")
    return team


def page_queue_places(request: HttpRequest) -> QueuePlaces:
    """One reading of the queue per request, shared by everything the request draws (a panel and
    its ETag, the queue panel), so they agree."""
    places = getattr(request, "_atelier_queue_places", None)
    if places is None:
        places = request._atelier_queue_places = QueuePlaces()  # type: ignore[attr-defined]
    return places


def page_activity(request: HttpRequest) -> TeamActivity:
    """The team's balance and active jobs, read once per request (the header, the banner, the
    tab dots and the queue panel all draw from it)."""
    activity = getattr(request, "_atelier_activity", None)
    if activity is None:
        activity = request._atelier_activity = team_activity(team=page_team(request))  # type: ignore[attr-defined]
    return activity


@dataclass(frozen=True)
class QueueRow:
    """One job of the queue panel: the job's row and, while it is queued, its place."""

    job: GenerationJob
    place: QueuePlace | None

    @property
    def progress_value(self) -> str:
        """Outputs made, with the provider's own progress of the one it is making (Veo's)."""
        operation = self.job.provider_operation if self.job.status == GenerationJob.Status.RUNNING else {}
        return f"{self.job.completed_outputs + (operation.get('progress') or 0) / 100:.2f}"


class LiveStatus:
    """The live parts of a page as the templates read them (templates/partials/activity_*.html):
    the same object draws the full page and the activity poll's fragments."""

    def __init__(self, request: HttpRequest) -> None:
        self._request = request
        self._user = page_user(request)
        self.activity = page_activity(request)

    @property
    def poll_seconds(self) -> int:
        return POLL_SECONDS_ACTIVE if self.activity.active else POLL_SECONDS_IDLE

    @property
    def balance(self) -> int:
        return self.activity.balance

    @property
    def queue_count(self) -> int:
        return len(self.activity.active)

    @property
    def mine_active_count(self) -> int:
        return len(self.activity.active_of(self._user))

    @property
    def busy_tab_ids(self) -> set[int]:
        return self.activity.busy_tab_ids(self._user)

    @cached_property
    def queue(self) -> list[QueueRow]:
        """The queue panel's rows: the running jobs first (oldest first), then the queued ones
        in the order they will start."""
        places = page_queue_places(self._request)
        rows = [QueueRow(job=job, place=places.of(job)) for job in self.activity.active]
        return sorted(rows, key=lambda row: row.place.position if row.place is not None else 0)


def page_context(request: HttpRequest) -> dict:
    """Context processor: lazy, so a partial or an anonymous page pays nothing (the status poll's
    panel does not even look up the team)."""
    if not request.user.is_authenticated:
        return {}

    def live() -> LiveStatus | None:
        return LiveStatus(request) if current_team(request) is not None else None

    return {
        "team": SimpleLazyObject(lambda: current_team(request)),  # false for a person in no team
        "user_teams": SimpleLazyObject(
            lambda: list(Team.objects.filter(memberships__user=page_user(request)).order_by("name"))
        ),
        "live": SimpleLazyObject(live),
    }
