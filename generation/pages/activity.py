"""The live status of every signed-in page, and the queue page.

Every page polls `GET /activity/` (live.js says when: every few seconds, sooner while something
runs). The answer is a set of htmx out-of-band fragments, each replacing its element by id: the
header's balance and "Queue (N)", the banner ("N still generating", what finished), the queue
panel, and the busy dot of each studio tab the page shows (the page sends their ids). An ETag
drawn from the same reads makes an unchanged state a 304, which swaps nothing.

This view is the one that shows the "finished" notice, so it is the one that marks those jobs
seen (`jobs_mark_seen`): the notice is shown once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import condition, require_GET

from accounts.quotas import Quota, team_quota
from generation.models import GenerationJob
from generation.pages.context import LiveStatus, page_team, page_user
from generation.selectors import jobs_unseen_by
from generation.services.seen import jobs_mark_seen

NOTICE_LIMIT = 10


def _ids(values: list[str], *, limit: int) -> list[int]:
    """The first `limit` distinct ids of a query parameter, sorted; anything but ASCII digits
    (a typo, "²", a negative number) is left out. The limit bounds what one poll renders: a
    request cannot ask for a fragment per id of a thousand."""
    ids: set[int] = set()
    for value in values:
        if len(ids) == limit:
            break
        if value.isascii() and value.isdigit() and len(value) <= 18:
            ids.add(int(value))
    return sorted(ids)


@dataclass
class Activity:
    """One poll's reading: the live status, the tabs the page shows, what finished unseen."""

    team_id: int
    user_id: int
    live: LiveStatus
    shown_tab_ids: list[int]
    finished: list[GenerationJob]
    arrival: bool  # the page's first poll: what finished did so while the person was away

    @property
    def tab_dots(self) -> list[tuple[int, bool]]:
        """Each studio tab the page shows, busy or not (a tab of someone else is never busy)."""
        busy = self.live.busy_tab_ids
        return [(tab_id, tab_id in busy) for tab_id in self.shown_tab_ids]

    @property
    def finished_images(self) -> int:
        return sum(job.completed_outputs for job in self.finished if job.kind != GenerationJob.Kind.VIDEO)

    @property
    def finished_clips(self) -> int:
        return sum(job.completed_outputs for job in self.finished if job.kind == GenerationJob.Kind.VIDEO)

    def version(self) -> str:
        jobs = [
            (row.job.id, row.job.status, row.job.completed_outputs, row.job.total_outputs, row.job.cancel_requested,
             row.job.provider_operation.get("progress"), row.job.outage_since, row.place)
            for row in self.live.queue
        ]  # fmt: skip
        shown = (
            self.team_id, self.user_id, self.live.balance, jobs,
            sorted(self.live.busy_tab_ids), self.shown_tab_ids, [job.id for job in self.finished], self.arrival,
        )  # fmt: skip
        return hashlib.sha256(repr(shown).encode()).hexdigest()[:32]


def _activity(request: HttpRequest) -> Activity:
    """Read once per request: the ETag and the answer are drawn from the same reading."""
    cached = getattr(request, "_atelier_activity_poll", None)
    if cached is None:
        team, user = page_team(request), page_user(request)
        arrival = request.GET.get("arrival") == "1"
        # Once the page is up, a job ending in the studio tab it shows ends in front of the
        # person: that tab's own panel shows it (and marks it seen), the notice does not.
        watching = _ids(request.GET.getlist("watching"), limit=1)
        except_tab_id = watching[0] if watching and not arrival else None
        finished = jobs_unseen_by(team=team, user=user, limit=NOTICE_LIMIT, except_tab_id=except_tab_id)
        cached = request._atelier_activity_poll = Activity(  # type: ignore[attr-defined]
            team_id=team.id,
            user_id=user.id,
            live=LiveStatus(request),
            # A page shows at most the person's tabs, which the studio-tabs quota bounds.
            shown_tab_ids=_ids(request.GET.getlist("tab"), limit=team_quota(team, Quota.STUDIO_TABS)),
            finished=finished,
            arrival=arrival,
        )
    return cached


def _activity_etag(request: HttpRequest) -> str | None:
    if not request.user.is_authenticated:
        return None
    return _activity(request).version()


@login_required
@require_GET
@condition(etag_func=_activity_etag)
def activity(request: HttpRequest) -> HttpResponse:
    reading = _activity(request)
    response = render(request, "partials/activity.html", {"live": reading.live, "activity": reading})
    # Drawn in the answer, so from now on they are seen: the next poll no longer lists them (the
    # notice stays on the page: an answer without it leaves it in place).
    jobs_mark_seen(jobs=reading.finished, user=page_user(request))
    return response


@login_required
@require_GET
def queue_page(request: HttpRequest) -> HttpResponse:
    """The queue panel as a page: where the header's "Queue (N)" goes without JavaScript, and a
    phone's full-screen view of it. The poll keeps its list live like the drawer's."""
    return render(request, "queue/queue.html")
