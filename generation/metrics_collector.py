"""The figures the database knows, read at scrape time: queue depth, running and finished jobs.

Read from the jobs table on every scrape, they are right however many web and worker processes
there are and on whichever machines; no process has to remember anything. Two aggregate queries:
- the active jobs, grouped by status, team and provider: served by the (status, team,
  created_at) index, and only as many rows as jobs are queued or running;
- the finished jobs, grouped by status: an index-only scan of a (status, ...) index that grows
  with the table's history (about 0.1 s at a million finished jobs on 2 cores; scrape every 15 s
  or more, not every second).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator

from django.db import DatabaseError
from django.db.models import Count
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from generation.models import FINISHED_STATUSES, GenerationJob
from generation.providers.registry import provider_names

logger = logging.getLogger(__name__)


class JobsCollector(Collector):
    """Queue depth per team and provider, running jobs per provider, finished jobs per status,
    and whether the database answered (`atelier_metrics_database_up`)."""

    def describe(self) -> list[Metric]:
        # Registering must not query the database; the names are fixed, nothing to check.
        return []

    def collect(self) -> Iterator[Metric]:
        database_up = GaugeMetricFamily(
            "atelier_metrics_database_up", "1 when this scrape could read the jobs table, else 0."
        )
        try:
            active = list(
                GenerationJob.objects.filter(status__in=(GenerationJob.Status.QUEUED, GenerationJob.Status.RUNNING))
                .order_by()
                .values("status", "team_id", "provider")
                .annotate(n=Count("*"))
                .values_list("status", "team_id", "provider", "n")
            )
            finished = dict(
                GenerationJob.objects.filter(status__in=FINISHED_STATUSES)
                .order_by()
                .values("status")
                .annotate(n=Count("*"))
                .values_list("status", "n")
            )
        except DatabaseError:
            # The multiprocess figures are still worth a scrape while the database is away.
            logger.warning("metrics: the jobs table could not be read", exc_info=True)
            database_up.add_metric([], 0)
            yield database_up
            return
        database_up.add_metric([], 1)
        yield database_up

        queued = GaugeMetricFamily(
            "atelier_jobs_queued",
            "Jobs waiting to start (including those in backoff after a pause), per team id and provider.",
            labels=["team", "provider"],
        )
        running_per_provider: Counter[str] = Counter(dict.fromkeys(provider_names(), 0))
        for status, team_id, provider, n in active:
            if status == GenerationJob.Status.QUEUED:
                queued.add_metric([str(team_id), provider], n)
            else:
                running_per_provider[provider] += n
        yield queued

        running = GaugeMetricFamily(
            "atelier_jobs_running", "Jobs running on a worker, per provider.", labels=["provider"]
        )
        for provider, n in sorted(running_per_provider.items()):
            running.add_metric([provider], n)
        yield running

        finished_total = CounterMetricFamily(
            "atelier_jobs_finished", "Jobs that reached a final status, by status.", labels=["status"]
        )
        for status in FINISHED_STATUSES:
            finished_total.add_metric([status], finished.get(status, 0))
        yield finished_total
