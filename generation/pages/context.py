"""What every page knows: the person, their current team, its credits, and the return notice."""

from __future__ import annotations

from django.http import Http404, HttpRequest
from django.utils import timezone
from django.utils.functional import SimpleLazyObject

from accounts.models import Team, User
from accounts.teams import current_team
from credits.models import CreditAccount
from generation.models import ACTIVE_STATUSES, FINISHED_STATUSES, GenerationJob

NOTICE_LIMIT = 10


def page_user(request: HttpRequest) -> User:
    assert isinstance(request.user, User), "pages are behind login_required"
    return request.user


def page_team(request: HttpRequest) -> Team:
    team = current_team(request)
    if team is None:
        raise Http404("You are not a member of any team.")
    return team


class ActivityNotice:
    """Finished jobs the person has not seen, and how many are still running.

    Built only when a page's template reads it (partials never do), and once built the jobs it
    lists count as seen: the notice is shown once.
    """

    def __init__(self, user: User, team: Team) -> None:
        mine = GenerationJob.objects.filter(team=team, created_by=user)
        unseen = list(
            mine.filter(status__in=FINISHED_STATUSES, seen_at__isnull=True).order_by("-finished_at")[:NOTICE_LIMIT]
        )
        self.finished = unseen
        self.finished_count = len(unseen)
        self.images = sum(job.completed_outputs for job in unseen if job.kind != GenerationJob.Kind.VIDEO)
        self.clips = sum(job.completed_outputs for job in unseen if job.kind == GenerationJob.Kind.VIDEO)
        self.active_count = mine.filter(status__in=ACTIVE_STATUSES).count()
        if unseen:
            GenerationJob.objects.filter(id__in=[job.id for job in unseen]).update(seen_at=timezone.now())

    def __bool__(self) -> bool:
        return bool(self.finished_count or self.active_count)


def page_context(request: HttpRequest) -> dict:
    """Context processor: lazy, so a partial or an anonymous page pays nothing (the status poll's
    panel does not even look up the team)."""
    if not request.user.is_authenticated:
        return {}

    def balance() -> CreditAccount | None:
        team = current_team(request)
        return CreditAccount.objects.get_or_create(team=team)[0] if team is not None else None

    def notice() -> ActivityNotice | None:
        team = current_team(request)
        return ActivityNotice(page_user(request), team) if team is not None else None

    return {
        "team": SimpleLazyObject(lambda: current_team(request)),  # false for a person in no team
        "user_teams": SimpleLazyObject(
            lambda: list(Team.objects.filter(memberships__user=page_user(request)).order_by("name"))
        ),
        "credit_account": SimpleLazyObject(balance),
        "activity_notice": SimpleLazyObject(notice),
    }
