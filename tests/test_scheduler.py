"""The fair order, claim by claim, in this process (generation/services/scheduler.py): teams take
turns, a team's cap holds, a provider at its limit is passed over, and the queue position and
waiting reason the API shows follow the same rules."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from generation.checks import provider_limits_name_known_models
from generation.models import GenerationJob
from generation.selectors import WaitingReason, queue_snapshot
from generation.services.scheduler import job_claim_next
from tests.factories import GenerationJobFactory

pytestmark = pytest.mark.django_db


def queue(team, *prompts: str, provider: str = "local", model: str = "atelier-sketch-1") -> list[GenerationJob]:
    """Queued jobs of `team`, one a second apart so their order is plain."""
    start = timezone.now() - timedelta(hours=1) + timedelta(seconds=GenerationJob.objects.count())
    return [
        GenerationJobFactory(
            team=team, prompt=prompt, provider=provider, model=model, created_at=start + timedelta(seconds=n)
        )
        for n, prompt in enumerate(prompts)
    ]


def claim_all() -> list[str]:
    """Claim until nothing may start; the prompts in the order they were claimed."""
    claimed = []
    while (job := job_claim_next(suspects=False, token=f"t{len(claimed)}", worker="w", ran_alone=False)) is not None:
        claimed.append(GenerationJob.objects.get(id=job.job_id).prompt)
    return claimed


def test_teams_take_turns_whatever_the_order_of_their_submits(alice, charlie, settings):
    settings.TEAM_MAX_RUNNING_JOBS = 10
    queue(alice.team, "a1", "a2", "a3", "a4")
    queue(charlie.team, "c1", "c2")

    assert claim_all() == ["a1", "c1", "a2", "c2", "a3", "a4"]


def test_a_team_at_its_cap_waits_while_other_teams_run(alice, charlie, settings):
    settings.TEAM_MAX_RUNNING_JOBS = 2
    flood = queue(alice.team, "a1", "a2", "a3", "a4")
    queue(charlie.team, "c1")

    assert claim_all() == ["a1", "c1", "a2"]
    snapshot = queue_snapshot()
    waiting = snapshot.place(GenerationJob.objects.get(id=flood[2].id))
    assert waiting is not None and waiting.waiting_reason is WaitingReason.TEAM_LIMIT
    # One of hers ends: the next of hers may start.
    GenerationJob.objects.filter(id=flood[0].id).update(
        status="succeeded", finished_at=timezone.now(), lease_owner="", lease_expires_at=None
    )
    assert claim_all() == ["a3"]


def test_a_teams_own_cap_from_the_admin_overrides_the_setting(alice, charlie, settings):
    settings.TEAM_MAX_RUNNING_JOBS = 1
    alice.team.quota_running_jobs = 3
    alice.team.save(update_fields=["quota_running_jobs"])
    queue(alice.team, "a1", "a2", "a3", "a4")
    queue(charlie.team, "c1", "c2")

    assert claim_all() == ["a1", "c1", "a2", "a3"]


def test_a_job_whose_provider_is_at_its_limit_is_passed_over_for_the_teams_next_at_another(alice, settings):
    settings.TEAM_MAX_RUNNING_JOBS = 10
    settings.PROVIDER_LIMITS = {("openai", ""): (None, 1)}
    first, second = queue(alice.team, "o1", "o2", provider="openai", model="gpt-image-2")
    queue(alice.team, "l1")

    assert claim_all() == ["o1", "l1"]
    place = queue_snapshot().place(GenerationJob.objects.get(id=second.id))
    assert place is not None and place.waiting_reason is WaitingReason.PROVIDER_LIMIT
    assert first.id != second.id


def test_a_suspect_is_claimed_only_by_the_quarantine_pool_and_a_backoff_is_waited_out(alice, settings):
    settings.TEAM_MAX_RUNNING_JOBS = 10
    suspect, paused = queue(alice.team, "suspect", "paused")
    GenerationJob.objects.filter(id=suspect.id).update(suspect_crashes=1)
    GenerationJob.objects.filter(id=paused.id).update(run_after=timezone.now() + timedelta(minutes=1))

    assert claim_all() == []
    quarantined = job_claim_next(suspects=True, token="q", worker="quarantine", ran_alone=True)
    assert quarantined is not None and quarantined.job_id == str(suspect.id) and quarantined.suspect


def test_the_queue_position_is_the_place_in_the_fair_order(alice, charlie):
    mine = queue(alice.team, "a1", "a2", "a3")
    theirs = queue(charlie.team, "c1", "c2")
    snapshot = queue_snapshot()

    def position(job: GenerationJob) -> int:
        place = snapshot.place(GenerationJob.objects.get(id=job.id))
        assert place is not None and place.waiting_reason is WaitingReason.CAPACITY
        return place.position

    # The order a worker will take them in: a1 c1 a2 c2 a3.
    assert [position(job) for job in mine] == [1, 3, 5]
    assert [position(job) for job in theirs] == [2, 4]


def test_a_misspelled_provider_or_model_in_provider_limits_stops_the_start(settings):
    settings.PROVIDER_LIMITS = {("opneai", ""): (60.0, None), ("openai", "gpt-image-9"): (5.0, None)}

    errors = provider_limits_name_known_models()

    assert [error.id for error in errors] == ["generation.E001", "generation.E002"]
    assert "opneai" in errors[0].msg and "gpt-image-9" in errors[1].msg
