"""What one team may hold at once: active jobs, uploads, studio tabs, the size of a draft, live
API keys, webhook endpoints.

Each quota has a default in settings (`QUOTA_*`, API_KEYS_PER_TEAM) and most a per-team override
on `Team` (`quota_*`, set in the admin; empty means the default). Services check a quota before they
store anything and raise `QuotaExceeded`, which the API answers in its error shape and the
pages show as a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from django.conf import settings

from accounts.models import Team
from config.errors import ServiceError


class Quota(StrEnum):
    ACTIVE_JOBS = "active_jobs"  # queued and running jobs of the team
    RUNNING_JOBS = "running_jobs"  # running jobs of the team: the fair scheduler's cap (not refused, waited for)
    UPLOADS = "uploads"  # uploaded images the team keeps
    UPLOAD_MB = "upload_mb"  # their bytes, in MB
    STUDIO_TABS = "studio_tabs"  # open studio tabs of one person in the team
    DRAFT_KB = "draft_kb"  # one studio tab's saved draft, in KB
    API_KEYS = "api_keys"  # live API keys of the team
    WEBHOOK_ENDPOINTS = "webhook_endpoints"  # the team's webhook endpoints, enabled or not


@dataclass(frozen=True)
class _QuotaSpec:
    setting: str  # the default, in settings
    team_field: str | None  # the per-team override on Team; None: the setting for every team
    describe: str  # "{limit} active jobs": how a person reads the limit


_SPECS: dict[Quota, _QuotaSpec] = {
    Quota.ACTIVE_JOBS: _QuotaSpec("QUOTA_ACTIVE_JOBS", "quota_active_jobs", "{limit} queued or running jobs"),
    Quota.RUNNING_JOBS: _QuotaSpec("TEAM_MAX_RUNNING_JOBS", "quota_running_jobs", "{limit} running jobs at once"),
    Quota.UPLOADS: _QuotaSpec("QUOTA_UPLOADS", "quota_uploads", "{limit} uploaded images"),
    Quota.UPLOAD_MB: _QuotaSpec("QUOTA_UPLOAD_MB", "quota_upload_mb", "{limit} MB of uploaded images"),
    Quota.STUDIO_TABS: _QuotaSpec("QUOTA_STUDIO_TABS", "quota_studio_tabs", "{limit} studio tabs per person"),
    Quota.DRAFT_KB: _QuotaSpec("QUOTA_DRAFT_KB", "quota_draft_kb", "{limit} KB per studio draft"),
    # No override: a team needing more keys than the default is rare enough for the setting.
    Quota.API_KEYS: _QuotaSpec("API_KEYS_PER_TEAM", None, "{limit} live API keys"),
    # No override either (a Team field would need a migration of accounts for a rare need).
    Quota.WEBHOOK_ENDPOINTS: _QuotaSpec("QUOTA_WEBHOOK_ENDPOINTS", None, "{limit} webhook endpoints"),
}


class QuotaExceeded(ServiceError):
    """Over a quota: nothing was stored. 409 for what the team holds, 413 for a too-large draft."""

    status_code = 409
    code = "QUOTA_EXCEEDED"

    def __init__(self, quota: Quota, *, limit: int, used: int, message: str = "") -> None:
        allowed = _SPECS[quota].describe.format(limit=limit)
        super().__init__(
            message or f"Your team's quota of {allowed} is reached.",
            details={"quota": quota.value, "limit": limit, "used": used},
        )
        self.quota = quota
        if quota is Quota.DRAFT_KB:
            self.status_code = 413


def team_quota(team: Team, quota: Quota) -> int:
    """The limit that applies to `team`: its own override, else the setting."""
    spec = _SPECS[quota]
    override = getattr(team, spec.team_field) if spec.team_field is not None else None
    return int(override) if override is not None else int(getattr(settings, spec.setting))


def quota_check(team: Team, quota: Quota, *, used: int, adding: int = 1, message: str = "") -> None:
    """Raise QuotaExceeded when `used + adding` would pass the team's limit."""
    limit = team_quota(team, quota)
    if used + adding > limit:
        raise QuotaExceeded(quota, limit=limit, used=used, message=message)


def quota_overrides() -> dict[str, str]:
    """Team's override fields, each with what leaving it empty means now, as the admin says it
    ("QUOTA_ACTIVE_JOBS: 20 queued or running jobs")."""
    return {
        spec.team_field: f"{spec.setting}: {spec.describe.format(limit=getattr(settings, spec.setting))}"
        for spec in _SPECS.values()
        if spec.team_field is not None
    }
