"""Studio tabs: each holds its own draft settings and its current job, server-side per user."""

from __future__ import annotations

import json
import math

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from accounts.models import Team, User
from accounts.quotas import Quota, QuotaExceeded, quota_check, team_quota
from generation.models import GenerationJob, StudioTab

TITLE_MAX = 80


def tab_create(*, user: User, team: Team, title: str = "", draft: dict | None = None) -> StudioTab:
    """A new tab at the end of the person's tabs in `team`; QuotaExceeded (409) once they have
    as many as the team's studio-tabs quota, or when `draft` is over its size quota."""
    if draft:
        tab_draft_check(team=team, draft=draft)
    with transaction.atomic():
        # The person's row serializes their tab creations: the count below then sees every tab
        # made before (locking their tabs instead locks nothing while they have none, and
        # PostgreSQL takes no lock for an aggregate). NO KEY: rows that point at the user
        # (a job, a key) can still be inserted meanwhile.
        User.objects.select_for_update(no_key=True).filter(id=user.id).first()
        tabs = StudioTab.objects.filter(user=user, team=team)
        count = tabs.count()
        quota_check(team, Quota.STUDIO_TABS, used=count)
        last = tabs.aggregate(last=Max("position"))["last"]
        position = 0 if last is None else last + 1
        return StudioTab.objects.create(
            user=user,
            team=team,
            title=(title.strip() or f"Design {count + 1}")[:TITLE_MAX],
            position=position,
            draft=draft or {},
        )


def tab_rename(*, tab: StudioTab, title: str) -> StudioTab:
    tab.title = title.strip()[:TITLE_MAX] or tab.title
    tab.save(update_fields=["title", "updated_at"])
    return tab


def tab_close(*, tab: StudioTab) -> None:
    """Closing a tab never stops its job: the job stays in the history and the collection."""
    tab.delete()


def tab_draft_check(*, team: Team, draft: dict) -> None:
    """Refuse a draft larger than the team's draft quota (QuotaExceeded, 413), before anything
    stores it: a draft is saved as the person types, and the tab's page carries it back."""
    size_kb = math.ceil(len(json.dumps(draft, separators=(",", ":"), default=str).encode()) / 1024)
    limit_kb = team_quota(team, Quota.DRAFT_KB)
    if size_kb > limit_kb:
        raise QuotaExceeded(
            Quota.DRAFT_KB,
            limit=limit_kb,
            used=size_kb,
            message=f"This draft is {size_kb} KB; a studio draft may hold at most {limit_kb} KB. Shorten the prompt.",
        )


def tab_save_draft(*, tab: StudioTab, draft: dict) -> None:
    """Store the form as it stands (QuotaExceeded, and nothing stored, when it is too large)."""
    tab_draft_check(team=tab.team, draft=draft)
    StudioTab.objects.filter(id=tab.id).update(draft=draft, updated_at=timezone.now())
    tab.draft = draft


def tab_current_job(tab: StudioTab) -> GenerationJob | None:
    return GenerationJob.objects.filter(tab=tab).order_by("-created_at").first()


TITLE_PROMPT_CHARS = 40


def tab_title(prefix: str, prompt: str) -> str:
    """A tab's title made from a prompt, such as "Remix: a watercolor fox in…": the prompt cut at
    a word boundary within TITLE_PROMPT_CHARS (a single longer word is cut where it must), with
    an ellipsis when anything was left out."""
    words = " ".join(prompt.split())
    if len(words) <= TITLE_PROMPT_CHARS:
        return f"{prefix}: {words}"
    head = words[: TITLE_PROMPT_CHARS + 1]  # one more: a word that ends right at the limit stays whole
    space = head.rfind(" ")
    shown = head[:space] if space > 0 else words[:TITLE_PROMPT_CHARS]
    return f"{prefix}: {shown.rstrip(' ,;:.-')}…"


def job_draft(job: GenerationJob) -> dict:
    """The studio draft that makes `job` again: its prompt, settings and inputs."""
    links = list(job.reference_links.all())
    inputs: dict = {}
    references = [{"asset_id": str(link.asset_id), "weight": link.weight} for link in links if link.role == "reference"]
    if references:
        inputs["references"] = references
    for link in links:
        if link.role == "sketch":
            inputs["sketch"] = {"asset_id": str(link.asset_id), "weight": link.weight}
        elif link.role == "mask":
            inputs["mask_asset_id"] = str(link.asset_id)
    if job.source_asset_id:
        inputs["source_asset_id"] = str(job.source_asset_id)
    return {
        "prompt": job.prompt,
        "kind": job.kind,
        "provider": job.provider,
        "model": job.model,
        "count": job.total_outputs,
        "params": {key: value for key, value in job.params.items() if value is not None},
        "inputs": inputs,
    }


def tab_for_prompt_edit(*, job: GenerationJob, user: User, team: Team) -> StudioTab:
    """The tab in which to change the prompt that made `job`: the job's own tab while the job is
    its current one (its form holds the job's settings), else a new tab with the job's settings
    (QuotaExceeded when the person has no room for one)."""
    tab = StudioTab.objects.filter(id=job.tab_id, user=user, team=team).first() if job.tab_id else None
    if tab is not None and tab_current_job(tab) == job:
        return tab
    return tab_create(user=user, team=team, title=tab_title("Edit", job.prompt), draft=job_draft(job))
