"""The figures of issue 10, each measured on the running stack (bench/harness.py: `Bench`) and
printed with the settings behind it; bench/README.md says how each is measured."""

from __future__ import annotations

import math
import os
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.harness import (
    PLAN,
    REDIS_URL,
    WORKER_THREADS,
    Bench,
    BenchTeam,
    cpu_of,
    drain_team,
    first_image_seconds,
    ms,
    percentile,
    say,
    submit_in_process,
    submit_over_http,
    thread_local_session,
    wait_for_jobs,
)

# -- 1. submit -> start ------------------------------------------------------------------------


def figure_start_latency(bench: Bench) -> None:
    """Jobs of one image submitted over HTTP at a steady rate (open loop: each at its scheduled
    time, whatever the answers before it); start = the job's started_at - created_at."""
    from bench.stack import cpu_seconds
    from generation.models import GenerationJob

    plan = PLAN
    bench.fake.configure(latency_seconds=plan.start_latency)
    # The team may run as many jobs as the worker has threads: a steady stream of one key's jobs
    # is then never held back by its cap, and what is measured is the wake-up path.
    team = bench.team("start-latency", active=10_000, running=WORKER_THREADS)
    session = thread_local_session()

    def steady(count: int, rate: float = plan.start_rate) -> list[tuple[str, float, float]]:
        begin = time.monotonic() + 0.2

        def one(n: int) -> tuple[str, float, float]:
            due = begin + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent = time.monotonic()
            job_id = submit_over_http(session(), bench.base_url, team, 1, f"start latency {n}")
            return job_id, sent - begin, time.monotonic() - sent

        # Enough threads that slow answers never hold the next submit back (an open loop).
        with ThreadPoolExecutor(max_workers=64) as pool:
            return list(pool.map(one, range(count)))

    warm = steady(10)  # connections and caches of every process warmed, not counted
    wait_for_jobs([job_id for job_id, _, _ in warm], timeout=60, what="warm-up jobs")
    web_before, worker_before = bench.web_cpu(), cpu_seconds(bench.worker.pid)
    with bench.database_waits() as waits:
        results = steady(plan.start_submits)
        job_ids = [job_id for job_id, _, _ in results]
        wait_for_jobs(job_ids, timeout=120, what="the start-latency jobs")
    web_cpu, worker_cpu = bench.web_cpu() - web_before, cpu_seconds(bench.worker.pid) - worker_before
    sent_at = sorted(at for _, at, _ in results)
    achieved = (len(sent_at) - 1) / (sent_at[-1] - sent_at[0])

    def start_seconds(job_ids: list[str]) -> list[float]:
        rows = GenerationJob.objects.filter(id__in=job_ids).values_list("created_at", "started_at")
        return [(started - created).total_seconds() for created, started in rows]

    starts = start_seconds(job_ids)
    p50, p95 = percentile(starts, 0.5), percentile(starts, 0.95)
    answers = [answer for _, _, answer in results]
    say(
        f"start latency at {plan.start_rate:.0f} submits/s: p50 {ms(p50)}, p95 {ms(p95)}, max {ms(max(starts))} "
        f"(n={len(starts)}, achieved {achieved:.1f} submits/s over HTTP with one API key; worker threads "
        f"{WORKER_THREADS}, team cap {WORKER_THREADS}, 1-image jobs, L={plan.start_latency} s)"
    )
    say(
        f"  submit answer time (client side): p50 {ms(percentile(answers, 0.5))}, "
        f"p95 {ms(percentile(answers, 0.95))}; web CPU {ms(web_cpu / len(job_ids))} per submit, worker CPU "
        f"{ms(worker_cpu / len(job_ids))} per job (claim, 1 image, finish)"
    )
    say(f"  database sessions meanwhile: {waits.summary()}")
    # The same path with the machine nearly idle: what the wake-up costs without queueing for CPU.
    slow = [job_id for job_id, _, _ in steady(plan.start_submits_slow, plan.start_rate_slow)]
    wait_for_jobs(slow, timeout=120, what="the slow start-latency jobs")
    floor = start_seconds(slow)
    say(
        f"  at {plan.start_rate_slow:.0f} submits/s: p50 {ms(percentile(floor, 0.5))}, p95 "
        f"{ms(percentile(floor, 0.95))} (n={len(floor)}): the path itself, with little load"
    )
    bench.record(
        "start latency p50 / p95", f"{ms(p50)} / {ms(p95)}", "<= 20 ms / <= 100 ms", p50 <= 0.020 and p95 <= 0.100
    )


# -- 3. overhead per image at L = 0, and the anchor ---------------------------------------------


def figure_overhead(bench: Bench) -> None:
    from bench.stack import cpu_seconds, start_anchor_worker
    from generation.models import GenerationJob

    plan = PLAN
    bench.fake.configure(latency_seconds=0.0)
    team = bench.team("overhead", active=10_000, running=WORKER_THREADS)
    worker = bench.worker.pid

    # The idle worker's own CPU (its lifeline's tick, heartbeats): the floor under the figure.
    idle_start = cpu_seconds(worker)
    time.sleep(3)
    idle_rate = (cpu_seconds(worker) - idle_start) / 3

    lone_per_image = []
    for _ in range(3):  # one job alone in the worker, three times: the path's latency per image
        lone = submit_in_process(team, 1, plan.overhead_images, "lone job")
        wait_for_jobs(lone, timeout=60, what="the lone job")
        started, finished = GenerationJob.objects.values_list("started_at", "finished_at").get(id=lone[0])
        lone_per_image.append((finished - started).total_seconds() / plan.overhead_images)
    queries = _queries_of_a_job(team, plan.overhead_images)

    with cpu_of(worker) as cpu:
        job_ids = submit_in_process(team, plan.overhead_jobs, plan.overhead_images, "overhead")
        wait_for_jobs(job_ids, timeout=300, what="the L=0 jobs")
    images = plan.overhead_jobs * plan.overhead_images
    rows = list(GenerationJob.objects.filter(id__in=job_ids).values_list("started_at", "finished_at"))
    wall = (max(f for _, f in rows) - min(s for s, _ in rows)).total_seconds()
    atelier_cpu = cpu["seconds"] / images

    sdk_cpu = _sdk_call_cpu(plan.sdk_calls)

    anchor = start_anchor_worker(bench.env, bench.log_dir, WORKER_THREADS)
    bench.processes.append(anchor)
    try:
        anchor_cpu, anchor_wall = _anchor_run(anchor.pid, plan.anchor_tasks)
    finally:
        anchor.stop()
        bench.processes.remove(anchor)

    overhead = atelier_cpu - anchor_cpu
    say(
        f"overhead per image at L=0: Atelier worker CPU {ms(atelier_cpu)}/image "
        f"({images} images in {plan.overhead_jobs} jobs x {plan.overhead_images}, {WORKER_THREADS} threads, team cap "
        f"{WORKER_THREADS}; wall {ms(wall / images)}/image, {images / wall:.0f} images/s); bare Celery task: CPU "
        f"{ms(anchor_cpu)}/task, wall {ms(anchor_wall)}/task ({plan.anchor_tasks} tasks, same broker, same pool); "
        f"difference {ms(overhead)}/image"
    )
    say(
        f"  of Atelier's CPU per image, the openai SDK's call itself (client side, measured in the bench process "
        f"against the same fake at L=0): {ms(sdk_cpu)}; the worker idles at {idle_rate * 100:.1f}% of a core"
    )
    say(
        f"  a lone {plan.overhead_images}-image job at L=0: {ms(statistics.median(lone_per_image))} per image, "
        f"claim to finish (median of 3); its queries: {queries}"
    )
    bench.record("overhead per image at L=0 (CPU, minus bare task)", ms(overhead), "<= 10 ms", overhead <= 0.010)


def _queries_of_a_job(team: BenchTeam, images: int) -> str:
    """The database queries of one job's run (claim, images, finish), counted in this process:
    the job is held back (run_after) while the worker's wake-up passes, then run here with
    the pipeline's own `job_run`."""
    from collections import Counter
    from datetime import timedelta

    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from generation.models import GenerationJob
    from generation.services.pipeline import RunOutcome, job_run

    with transaction.atomic():
        job_id = submit_in_process(team, 1, images, "queries")[0]
        GenerationJob.objects.filter(id=job_id).update(run_after=timezone.now() + timedelta(hours=1))
    GenerationJob.objects.filter(id=job_id).update(run_after=None)
    with CaptureQueriesContext(connection) as captured:
        outcome = job_run(job_id=job_id)
    if outcome != RunOutcome.SUCCEEDED:
        return f"not measured (the run ended {outcome})"
    kinds = Counter(query["sql"].split(None, 1)[0].upper() for query in captured.captured_queries)
    per_kind = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
    return f"{len(captured)} for {images} images = {len(captured) / images:.1f} per image ({per_kind})"


def _sdk_call_cpu(calls: int) -> float:
    """CPU seconds per call of the openai provider's `generate`, in this process's thread."""
    from generation.providers.base import OutputRequest
    from generation.providers.registry import get_provider

    provider = get_provider("openai")
    request = OutputRequest(
        job_id="bench", kind="image", model="gpt-image-2", prompt="bench", index=0, seed=1, timeout_seconds=30
    )
    provider.generate(request)  # the client and its connection, made once
    begin = time.thread_time()
    for _ in range(calls):
        provider.generate(request)
    return (time.thread_time() - begin) / calls


def _anchor_run(pid: int, tasks: int) -> tuple[float, float]:
    """CPU and wall seconds per task of the bare Celery task (published from here)."""
    import redis

    from bench import anchor
    from bench.stack import cpu_seconds
    from tests.processes import wait_until

    counter = redis.Redis.from_url(REDIS_URL)
    counter.delete(anchor.COUNTER_KEY)
    for _ in range(50):  # warm-up: the pool's threads and connections
        anchor.trivial.delay()
    wait_until(lambda: int(counter.get(anchor.COUNTER_KEY) or 0) >= 50, timeout=60, message="anchor warm-up")
    counter.delete(anchor.COUNTER_KEY)
    cpu_before = cpu_seconds(pid)
    begin = time.monotonic()
    for _ in range(tasks):
        anchor.trivial.delay()
    wait_until(lambda: int(counter.get(anchor.COUNTER_KEY) or 0) >= tasks, timeout=300, message="the anchor's tasks")
    wall = time.monotonic() - begin
    return (cpu_seconds(pid) - cpu_before) / tasks, wall / tasks


# -- 4. the status poll -------------------------------------------------------------------------


def figure_poll(bench: Bench) -> None:
    plan = PLAN
    bench.fake.configure(latency_seconds=0.0)
    team = bench.team("poll", active=10_000, running=WORKER_THREADS)
    one, ten = submit_in_process(team, 1, 1, "poll one"), submit_in_process(team, 1, 10, "poll ten")
    wait_for_jobs(one + ten, timeout=60, what="the polled jobs")
    for job_id, images in ((one[0], 1), (ten[0], 10)):
        queries, etag = _poll_queries(team, job_id)
        url = f"{bench.base_url}/api/v1/jobs/{job_id}"
        run = _wrk(bench, url, team.headers, plan.wrk_seconds)
        say(
            f"status poll, {images}-image job: {queries} queries per request; {run.rate:.0f} requests/s, mean "
            f"latency {run.latency} ({run.errors_text}; wrk -t2 -c16 -d{plan.wrk_seconds}s against gunicorn "
            f"{_web_shape()}, API key auth); web CPU {ms(run.web_cpu_per_request)} per request, so at most "
            f"{(os.cpu_count() or 1) / run.web_cpu_per_request:.0f}/s on {os.cpu_count()} cores"
        )
        if etag:
            conditional = _wrk(bench, url, {**team.headers, "If-None-Match": etag}, plan.wrk_seconds)
            say(
                f"  with If-None-Match (304): {conditional.rate:.0f} requests/s, mean latency {conditional.latency}, "
                f"web CPU {ms(conditional.web_cpu_per_request)} per request ({conditional.errors_text})"
            )
        else:
            say("  (the answer carries no ETag: no conditional poll to measure)")
        ok = queries <= 4 and run.rate >= 500 and not run.errors
        bench.record(f"poll, {images}-image job", f"{queries} queries, {run.rate:.0f} req/s", "<= 4, >= 500/s", ok)


@dataclass(frozen=True)
class WrkRun:
    rate: float
    latency: str
    requests: int
    errors: int
    web_cpu_per_request: float

    @property
    def errors_text(self) -> str:
        return "no errors" if not self.errors else f"{self.errors} non-2xx/3xx answers"


def _wrk(bench: Bench, url: str, headers: dict[str, str], seconds: int) -> WrkRun:
    args = ["wrk", "-t2", "-c16", f"-d{seconds}s"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    web_before = bench.web_cpu()
    output = subprocess.run([*args, url], capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    web_cpu = bench.web_cpu() - web_before
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    latency = re.search(r"Latency\s+(\S+)", output)
    requests = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if rate is None or requests is None:
        raise RuntimeError(f"wrk printed no rate:\n{output}")
    return WrkRun(
        rate=float(rate[1]),
        latency=latency[1] if latency else "?",
        requests=int(requests[1]),
        errors=int(errors[1]) if errors else 0,
        web_cpu_per_request=web_cpu / max(1, int(requests[1])),
    )


def _web_shape() -> str:
    from django.conf import settings

    from bench.stack import procfile_line

    line = procfile_line("web")
    workers = re.search(r"--workers \$\{WEB_CONCURRENCY:-(\d+)\}", line)
    # uvicorn workers, each running Django on WEB_THREADS threads (config/asgi.py)
    return f"{workers[1] if workers else '?'} processes x {settings.WEB_THREADS} threads"


def _poll_queries(team: BenchTeam, job_id: str) -> tuple[int, str]:
    """Queries of one poll, in this process through the whole middleware stack (the second of
    two requests: the first may fill per-process caches)."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Bearer {team.key}")
    client.get(f"/api/v1/jobs/{job_id}")
    with CaptureQueriesContext(connection) as captured:
        answer = client.get(f"/api/v1/jobs/{job_id}")
    if answer.status_code != 200:
        raise RuntimeError(f"the poll answered {answer.status_code}")
    return len(captured), answer.headers.get("ETag", "")


# -- 5. the zip of 10 x 5 MB --------------------------------------------------------------------


def figure_zip(bench: Bench) -> None:
    import requests

    from bench.stack import children, memory, peak_reset
    from generation.models import GenerationJob

    plan = PLAN
    described = bench.fake.configure(latency_seconds=0.05, image="noise5mb")
    image_mb = described["image_bytes"] / 1024 / 1024
    team = bench.team("zip", active=10_000, running=WORKER_THREADS)

    worker = bench.worker.pid
    peak_reset(worker)
    worker_base = memory(worker).rss_mb
    job_ids = submit_in_process(team, 1, plan.zip_images, "zip")
    wait_for_jobs(job_ids, timeout=180, what="the 10 x 5 MB job")
    worker_extra = memory(worker).peak_mb - worker_base
    job = GenerationJob.objects.get(id=job_ids[0])
    if not job.archive:
        raise RuntimeError("the worker stored no zip for the job")
    zip_mb = job.archive.size / 1024 / 1024

    build_extra = _zip_build_extra(job)

    def download_extra() -> tuple[float, int]:
        """The most any gunicorn worker's resident memory rose above its size before the
        download, over a few downloads (the requests go to either process)."""
        most, size = 0.0, 0
        for _ in range(3):
            pids = children(bench.web.pid)
            for pid in pids:
                peak_reset(pid)
            base = {pid: memory(pid).rss_mb for pid in pids}
            with requests.get(
                f"{bench.base_url}/api/v1/jobs/{job.id}/download", headers=team.headers, stream=True, timeout=60
            ) as answer:
                answer.raise_for_status()
                size = sum(len(chunk) for chunk in answer.iter_content(1024 * 1024))
            most = max(most, *(memory(pid).peak_mb - base[pid] for pid in pids))
        return most, size

    stored_extra, stored_size = download_extra()
    # The fallback when the stored zip is missing (storage refused it): built per request.
    archive_name = job.archive.name
    GenerationJob.objects.filter(id=job.id).update(archive="")
    try:
        fly_extra, fly_size = download_extra()
    finally:
        GenerationJob.objects.filter(id=job.id).update(archive=archive_name)
    bench.fake.configure(latency_seconds=0.0, image="small")

    say(
        f"zip of a {plan.zip_images}-image job of {image_mb:.1f} MB images ({zip_mb:.1f} MB zip): download of the "
        f"stored zip +{stored_extra:.1f} MB peak RSS in the web process; download with the zip built on the fly "
        f"+{fly_extra:.1f} MB; the zip build itself (archive_store) +{build_extra:.1f} MB"
    )
    say(
        f"  the worker's peak over the whole job (10 images of {image_mb:.1f} MB through the SDK, then the zip): "
        f"+{worker_extra:.1f} MB above its {worker_base:.0f} MB; bytes downloaded {stored_size} / {fly_size}"
    )
    worst = max(stored_extra, fly_extra, build_extra)
    bench.record("zip extra memory (worst of download, on-the-fly, build)", f"+{worst:.1f} MB", "<= 16 MB", worst <= 16)


def _zip_build_extra(job: Any) -> float:
    """The extra peak RSS of the worker's zip build (files.archive_store, the function the worker
    runs at a job's end), run here in the bench process on the job's stored images."""
    import gc

    from bench.stack import memory, peak_reset
    from generation.services.files import archive_name_for, archive_store, storage_delete

    outputs = list(job.outputs.order_by("index"))
    gc.collect()
    pid = os.getpid()
    peak_reset(pid)
    base = memory(pid).rss_mb
    name = archive_store(job=job, outputs=outputs, name=archive_name_for(job))
    extra = memory(pid).peak_mb - base
    storage_delete(name)
    return extra


# -- 6. fairness --------------------------------------------------------------------------------


def figure_fairness(bench: Bench) -> None:
    plan = PLAN
    latency = plan.fairness_latency
    bench.fake.configure(latency_seconds=latency)
    cap = _default_team_cap()
    first = _flood_and_five(bench, latency, flood_cap=None)
    worst = max(first)
    say(
        f"fairness: first image of {plan.other_teams} other teams' 1-image jobs submitted right after one team's "
        f"{plan.flood_jobs} x {plan.flood_images}-image jobs: worst {worst / latency:.2f} x L, each "
        f"{', '.join(f'{s / latency:.2f}' for s in sorted(first))} x L (L={latency} s; worker threads "
        f"{WORKER_THREADS}; every team at the default cap TEAM_MAX_RUNNING_JOBS={cap})"
    )
    bench.record("fairness: others' first image", f"{worst / latency:.2f} x L", "<= 1.5 x L", worst <= 1.5 * latency)
    if plan.fairness_capped_variant:
        capped = _flood_and_five(bench, latency, flood_cap=WORKER_THREADS)
        say(
            f"  the same with the flood team's cap raised to the worker's {WORKER_THREADS} threads (a bigger plan "
            f"that can fill every slot): worst {max(capped) / latency:.2f} x L, each "
            f"{', '.join(f'{s / latency:.2f}' for s in sorted(capped))} x L"
        )


def _default_team_cap() -> int:
    from django.conf import settings

    return int(settings.TEAM_MAX_RUNNING_JOBS)


def _flood_and_five(bench: Bench, latency: float, flood_cap: int | None) -> list[float]:
    """One team submits its flood over HTTP, then the other teams one job each, at once; the
    seconds from each other job's submit to its first image."""
    from tests.processes import wait_until

    plan = PLAN
    flood = bench.team("flood", active=plan.flood_jobs + 10, running=flood_cap)
    others = [bench.team(f"other-{n}") for n in range(plan.other_teams)]
    session = thread_local_session()
    for n in range(plan.flood_jobs):
        submit_over_http(session(), bench.base_url, flood, plan.flood_images, f"flood {n}")
    with ThreadPoolExecutor(max_workers=len(others)) as pool:
        job_ids = list(
            pool.map(lambda team: submit_over_http(session(), bench.base_url, team, 1, "after the flood"), others)
        )
    times: dict[str, float] = {}

    def all_have_an_image() -> bool:
        for job_id in job_ids:
            if job_id not in times and (seconds := first_image_seconds(job_id)) is not None:
                times[job_id] = seconds
        return len(times) == len(job_ids)

    wait_until(
        all_have_an_image,
        timeout=(plan.flood_images + 5) * latency * 2 + 60,
        interval=0.1,
        message="the other teams' first images",
    )
    drain_team(flood)
    return list(times.values())


# -- 2. throughput at C = 100 -------------------------------------------------------------------


def figure_throughput(bench: Bench) -> None:
    """Twice: the C jobs' teams at the default cap (as many teams as it takes: the usual load of
    many customers), then one team whose cap is raised to C (one big customer)."""
    plan = PLAN
    concurrency = plan.throughput_concurrency
    cap = _default_team_cap()
    many = _throughput_run(bench, teams=math.ceil(concurrency / cap), cap=None)
    fraction = many / (concurrency / plan.throughput_latency)
    bench.record(
        f"images/s at C={concurrency}, L={plan.throughput_latency:g} s",
        f"{fraction * 100:.1f}% of C/L",
        ">= 95%",
        fraction >= 0.95,
    )
    if plan.throughput_one_team:
        _throughput_run(bench, teams=1, cap=concurrency)
    # The same C over two worker processes of C/2 threads: one process per core, as production
    # scales out (a process runs Python on one core at a time).
    split = _throughput_run(bench, teams=math.ceil(concurrency / cap), cap=None, processes=2)
    fraction = split / (concurrency / plan.throughput_latency)
    bench.record(
        f"images/s at C={concurrency}, L={plan.throughput_latency:g} s, 2 workers x {concurrency // 2}",
        f"{fraction * 100:.1f}% of C/L",
        ">= 95%",
        fraction >= 0.95,
    )


def _throughput_run(bench: Bench, *, teams: int, cap: int | None, processes: int = 1) -> float:
    """Images per second of C worker threads (in one process, or split over `processes`), from
    the first start to the last image."""
    from django.db.models import Max

    from bench.stack import cpu_split, memory, start_worker
    from generation.models import GeneratedOutput, GenerationJob

    plan = PLAN
    concurrency, latency = plan.throughput_concurrency, plan.throughput_latency
    bench.fake.configure(latency_seconds=latency)
    per_team = math.ceil(plan.throughput_jobs / teams)
    made = [bench.team(f"throughput-{n}", active=per_team + 10, running=cap) for n in range(teams)]
    # The jobs wait in the queue before the worker of C threads starts, so every thread has work
    # from its first moment and the figure is the steady state, not the submits' pace.
    bench.worker.stop()
    job_ids = [
        job_id
        for n in range(plan.throughput_jobs)
        for job_id in submit_in_process(made[n % teams], 1, plan.throughput_images, f"throughput {n}")
    ]
    bench.fake.stats(reset=True)
    bench.restart_worker(concurrency // processes)
    extra = [start_worker(bench.env, bench.log_dir, concurrency // processes) for _ in range(processes - 1)]
    workers = [bench.worker.pid, *(process.pid for process in extra)]
    before = [cpu_split(pid) for pid in workers]
    ready_rss = sum(memory(pid).rss_mb for pid in workers)
    images = len(job_ids) * plan.throughput_images
    ideal_rate = concurrency / latency
    with bench.database_waits() as waits:
        wait_for_jobs(job_ids, timeout=images / ideal_rate * 4 + 120, what="the throughput jobs")
    after = [cpu_split(pid) for pid in workers]
    user = sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
    system = sum(a[1] - b[1] for a, b in zip(after, before, strict=True))
    cpu = user + system
    peak = sum(memory(pid).peak_mb for pid in workers)
    for process in extra:
        process.stop()
    starts = sorted(GenerationJob.objects.filter(id__in=job_ids).values_list("started_at", flat=True))
    last_image = GeneratedOutput.objects.filter(job_id__in=job_ids).aggregate(at=Max("created_at"))["at"]
    span = (last_image - starts[0]).total_seconds()
    rate = images / span
    ramp = (starts[min(concurrency, len(starts)) - 1] - starts[0]).total_seconds()
    fake = bench.fake.stats()
    who = (
        f"{teams} teams at the default cap of {_default_team_cap()}"
        if cap is None
        else f"one team with its cap raised to {cap}"
    )
    say(
        f"throughput at C={concurrency}, L={latency} s, {who}: {rate:.1f} images/s = "
        f"{rate / ideal_rate * 100:.1f}% of C/L={ideal_rate:.0f}/s ({images} images in {len(job_ids)} jobs x "
        f"{plan.throughput_images}, {span:.1f} s from the first start to the last image, ideal "
        f"{images / ideal_rate:.1f} s; "
        + (
            f"one worker of {concurrency} threads)"
            if processes == 1
            else f"{processes} workers of {concurrency // processes} threads)"
        )
    )
    say(
        f"  worker CPU {cpu:.1f} s (user {user:.1f}, sys {system:.1f}) = {cpu / span * 100:.0f}% of a core, "
        f"{ms(cpu / images)}/image; peak RSS {peak:.0f} MB ({ready_rss:.0f} MB when ready"
        f"{', summed over the workers' if processes > 1 else ''}); the first "
        f"{concurrency} jobs started within {ms(ramp)}; the fake saw at most {fake['max_in_flight']} calls at once"
    )
    say(
        f"  a worker process runs Python on one core at a time (the GIL): at {ms(cpu / images)} of CPU per image "
        f"{_workers_text(processes, concurrency).split(' of ')[0]} make at most {processes * images / cpu:.0f} "
        f"images/s; database sessions meanwhile: {waits.summary()}"
    )
    return rate


def _workers_text(processes: int, concurrency: int) -> str:
    if processes == 1:
        return f"one worker of {concurrency} threads"
    return f"{processes} workers of {concurrency // processes} threads"


# -- the run ------------------------------------------------------------------------------------


FIGURES: list[tuple[str, Callable[[Bench], None]]] = [
    ("start latency", figure_start_latency),
    ("overhead at L=0", figure_overhead),
    ("status poll", figure_poll),
    ("zip memory", figure_zip),
    ("fairness", figure_fairness),
    ("throughput", figure_throughput),
]
