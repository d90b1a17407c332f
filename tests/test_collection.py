"""The collection through Django's test client: search and filters, dates in the person's time
zone, a bounded number of queries, what the lightbox is given, and delete's way back."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from generation.models import GeneratedOutput, GenerationJob, Look
from generation.pages.outputs import output_views
from generation.selectors import job_outputs_of, job_queryset_for_team
from generation.services.lifecycle import job_finish
from generation.services.retry import job_retry
from generation.services.submit import JobSpec, job_submit
from tests.factories import GenerationJobFactory
from tests.helpers import job_deliver, job_fail, signed_in

pytestmark = pytest.mark.django_db


def make_look(
    person,  # type: ignore[no-untyped-def]
    prompt: str,
    *,
    kind: str = GenerationJob.Kind.IMAGE,
    provider: str = "local",
    created_at: datetime | None = None,
    size: tuple[int, int] = (64, 48),
) -> Look:
    """A finished job of one output and its look, saved `created_at` (now by default)."""
    job = GenerationJobFactory(
        team=person.team,
        created_by=person.user,
        kind=kind,
        provider=provider,
        prompt=prompt,
        status=GenerationJob.Status.SUCCEEDED,
        completed_outputs=1,
        finished_at=timezone.now(),
    )
    is_clip = kind == GenerationJob.Kind.VIDEO
    output = GeneratedOutput.objects.create(
        job=job,
        index=0,
        file=f"teams/{job.team_id}/jobs/{job.id}/{'clip' if is_clip else 'image'}-1.{'mp4' if is_clip else 'png'}",
        mime="video/mp4" if is_clip else "image/png",
        width=size[0],
        height=size[1],
        bytes=1,
        sha256="0" * 64,
    )
    look = Look.objects.create(team=person.team, output=output, job=job)
    if created_at is not None:
        Look.objects.filter(id=look.id).update(created_at=created_at)
        look.refresh_from_db()
    return look


def shown_prompts(page: str) -> list[str]:
    return re.findall(r'data-title="([^"]*)"', page)


def test_search_by_prompt_is_case_blind_and_keeps_to_the_team(alice, charlie):
    make_look(alice, "A Watercolor Fox in snow")
    make_look(alice, "teal marble nails")
    make_look(charlie, "watercolor fox of another team")
    page = signed_in(alice).get("/collection/", {"q": "WATERCOLOR fox"}).content.decode()
    assert shown_prompts(page) == ["A Watercolor Fox in snow"]
    assert "1 look matches." in page
    assert 'value="WATERCOLOR fox"' in page  # the search stays in its box

    everything = signed_in(alice).get("/collection/").content.decode()
    assert sorted(shown_prompts(everything)) == ["A Watercolor Fox in snow", "teal marble nails"]
    assert "another team" not in signed_in(alice).get("/collection/", {"q": "another"}).content.decode()


def test_kind_provider_and_dates_filter_alone_and_together(alice):
    now = timezone.now()
    make_look(alice, "old local image", created_at=now - timedelta(days=20))
    make_look(alice, "recent openai image", provider="openai", created_at=now - timedelta(days=3))
    make_look(alice, "recent local clip", kind=GenerationJob.Kind.VIDEO, created_at=now - timedelta(days=2))
    make_look(alice, "today local edit", kind=GenerationJob.Kind.EDIT)
    client = signed_in(alice)

    def prompts(**query: str) -> set[str]:
        response = client.get("/collection/", query)
        assert response.status_code == 200
        return set(shown_prompts(response.content.decode()))

    assert prompts(kind="clip") == {"recent local clip"}
    assert prompts(kind="image") == {"old local image", "recent openai image", "today local edit"}
    assert prompts(provider="openai") == {"recent openai image"}
    assert prompts(period="today") == {"today local edit"}
    assert prompts(period="7d") == {"recent openai image", "recent local clip", "today local edit"}
    assert prompts(period="30d") == {"old local image", "recent openai image", "recent local clip", "today local edit"}
    ten_days_ago = (timezone.localdate() - timedelta(days=10)).isoformat()
    five_days_ago = (timezone.localdate() - timedelta(days=5)).isoformat()
    assert prompts(date_to=ten_days_ago) == {"old local image"}
    assert prompts(date_from=five_days_ago, kind="image") == {"recent openai image", "today local edit"}
    assert prompts(date_from=five_days_ago, provider="local", q="CLIP") == {"recent local clip"}


def test_a_date_range_is_read_in_the_persons_time_zone(alice):
    tokyo = ZoneInfo("Asia/Tokyo")
    # 00:30 on 3 March in Tokyo is still 2 March in UTC.
    make_look(alice, "just after midnight in Tokyo", created_at=datetime(2026, 3, 3, 0, 30, tzinfo=tokyo))
    client = signed_in(alice)
    client.cookies["tz"] = "Asia/Tokyo"
    on_the_third = client.get("/collection/", {"date_from": "2026-03-03", "date_to": "2026-03-03"}).content.decode()
    assert shown_prompts(on_the_third) == ["just after midnight in Tokyo"]
    assert shown_prompts(client.get("/collection/", {"date_to": "2026-03-02"}).content.decode()) == []


def test_bad_filters_are_ignored_with_a_note_never_an_error(alice):
    make_look(alice, "still shown")
    client = signed_in(alice)
    for query, note in [
        ({"date_from": "2026-13-45"}, "“2026-13-45” is not a date we can use (YYYY-MM-DD); the From date was ignored."),
        ({"date_to": "yesterday"}, "“yesterday” is not a date we can use (YYYY-MM-DD); the To date was ignored."),
        ({"date_to": "9999-12-31"}, "“9999-12-31” is not a date we can use"),
        ({"date_from": "0001-01-01"}, "“0001-01-01” is not a date we can use"),
        ({"provider": "midjourney"}, "There is no provider “midjourney”; the provider filter was ignored."),
        ({"kind": "sculpture"}, "“sculpture” is not a choice for kind; that filter was ignored."),
        ({"period": "forever"}, "“forever” is not a choice for when; that filter was ignored."),
        ({"page": "many"}, ""),
    ]:
        response = client.get("/collection/", query)
        assert response.status_code == 200, query
        page = response.content.decode()
        assert note in page
        assert shown_prompts(page) == ["still shown"]


def test_no_match_says_so_with_a_way_back(alice):
    make_look(alice, "a fox")
    page = signed_in(alice).get("/collection/", {"q": "unicorn"}).content.decode()
    assert "No look matches “unicorn”." in page
    assert '<a href="/collection/" data-testid="no-match-reset">Show the whole collection</a>' in page
    assert shown_prompts(page) == []


def test_the_filters_are_kept_across_pages(alice):
    for number in range(30):
        make_look(alice, f"fox {number}", created_at=timezone.now() - timedelta(minutes=number))
    make_look(alice, "a cat")
    client = signed_in(alice)
    first = client.get("/collection/", {"q": "fox", "kind": "image"}).content.decode()
    assert len(shown_prompts(first)) == 24
    older = re.search(r'<a href="([^"]+)" data-testid="older">', first).group(1).replace("&amp;", "&")
    assert older == "?q=fox&kind=image&page=2"
    second = client.get(f"/collection/{older}").content.decode()
    assert shown_prompts(second) == [f"fox {number}" for number in range(24, 30)]
    assert 'href="?q=fox&amp;kind=image&amp;page=1" data-testid="newer"' in second


def test_a_page_of_looks_is_a_fixed_number_of_queries(alice):
    client = signed_in(alice)
    make_look(alice, "one")
    with CaptureQueriesContext(connection) as few:
        assert client.get("/collection/", {"q": "o"}).status_code == 200
    for number in range(12):
        make_look(alice, f"more {number}", kind=GenerationJob.Kind.VIDEO if number % 3 else GenerationJob.Kind.IMAGE)
    with CaptureQueriesContext(connection) as many:
        assert client.get("/collection/", {"q": "o"}).status_code == 200
    assert len(many) == len(few)


def test_each_look_shows_its_date_in_the_persons_time_zone(alice):
    saved = datetime(2026, 5, 1, 22, 15, tzinfo=ZoneInfo("UTC"))
    look = make_look(alice, "a dated look", created_at=saved)
    client = signed_in(alice)
    assert "1 May 2026, 22:15 UTC" in client.get("/collection/").content.decode()
    client.cookies["tz"] = "Asia/Tokyo"
    assert "2 May 2026, 07:15 JST" in client.get("/collection/").content.decode()
    assert "2 May 2026, 07:15 JST" in client.get(f"/collection/{look.id}/").content.decode()


def test_a_thumbnail_carries_what_the_lightbox_needs(alice):
    look = make_look(alice, "a wide fox", size=(1024, 576))
    page = signed_in(alice).get("/collection/").content.decode()
    link = re.search(r"<a [^>]*data-lightbox[^>]*>", page).group(0)
    url = f"/api/v1/jobs/{look.job_id}/outputs/1"
    for attribute in (
        f'href="/collection/{look.id}/"',  # without JavaScript: the look's page
        f'data-full="{url}"',
        f'data-download="{url}"',
        'data-kind="image"',
        'data-width="1024"',
        'data-height="576"',
        'data-title="a wide fox"',
        f'data-look="/collection/{look.id}/"',
        f'data-actions="lightbox-actions-{look.id}"',
    ):
        assert attribute in link
    actions = re.search(rf'<template id="lightbox-actions-{look.id}">.*?</template>', page, re.S).group(0)
    assert f'action="/collection/{look.id}/remix/"' in actions
    assert f'action="/collection/{look.id}/delete/"' in actions and "data-confirm=" in actions
    assert "csrfmiddlewaretoken" in actions
    assert '<div class="gallery" data-gallery>' in page


def test_the_look_page_gives_the_image_its_own_width_and_height(alice):
    look = make_look(alice, "tall", size=(576, 1024))
    page = signed_in(alice).get(f"/collection/{look.id}/").content.decode()
    image = re.search(r'<img [^>]*data-testid="full-image"[^>]*>', page).group(0)
    assert 'width="576"' in image and 'height="1024"' in image


def test_the_progress_panel_knows_each_images_look_also_after_a_retry(alice):
    original = job_submit(team=alice.team, user=alice.user, spec=JobSpec(prompt="chain", count=3)).job
    job_deliver(job=original, indexes=[0])
    job_fail(job=original)
    retry, _ = job_retry(job=original, user=alice.user)
    job_deliver(job=retry, indexes=[1, 2])
    assert job_finish(job_id=retry.id, fence=Q(), status=GenerationJob.Status.SUCCEEDED)
    Look.objects.filter(job=retry, output__index=2).delete()  # a look deleted from the collection

    row = job_queryset_for_team(alice.team).get(id=retry.id)  # outputs read from the job's row
    with CaptureQueriesContext(connection) as queries:
        views = output_views(job_outputs_of(row), title=row.prompt)
    assert len(queries) == 1
    first_look = Look.objects.get(job=original)
    second_look = Look.objects.get(job=retry, output__index=1)
    assert [view.look for view in views] == [first_look, second_look, None]
    assert views[0].look_url == f"/collection/{first_look.id}/"
    assert views[2].delete_url == "" and views[2].title == "chain"
    assert output_views([]) == []
    # Given the job, the looks' ids that came with its row are enough: no query at all.
    with CaptureQueriesContext(connection) as queries:
        fast = output_views(job_outputs_of(row), title=row.prompt, job=row)
    assert len(queries) == 0
    assert [view.look for view in fast] == [first_look, second_look, None]


def test_delete_goes_back_to_the_page_it_came_from_on_this_site_only(alice, charlie):
    client = signed_in(alice)
    first, second, third = (make_look(alice, name) for name in ("one", "two", "three"))
    response = client.post(f"/collection/{first.id}/delete/", {"next": "/collection/?q=t&page=1"})
    assert response.status_code == 302 and response["Location"] == "/collection/?q=t&page=1"
    for elsewhere in ("https://evil.example/", "//evil.example/collection/", "/\\evil.example"):
        response = client.post(f"/collection/{second.id}/delete/", {"next": elsewhere})
        assert response["Location"] == "/collection/"
        second = make_look(alice, "two again")
    assert client.post(f"/collection/{third.id}/delete/")["Location"] == "/collection/"
    assert set(Look.objects.values_list("job__prompt", flat=True)) == {"two again"}

    outsider = make_look(charlie, "not yours")
    assert client.post(f"/collection/{outsider.id}/delete/", {"next": "/jobs/"}).status_code == 404
    assert Look.objects.filter(id=outsider.id).exists()


def test_search_finds_every_word_in_any_order_and_plurals_find_the_singular(alice):
    whale = make_look(alice, "a teapot shaped like a whale")
    make_look(alice, "a whale in the sea")
    client = signed_in(alice)
    for search in ("whale teapot", "TEAPOTS", "teapot whales"):
        page = client.get("/collection/", {"q": search}).content.decode()
        assert f"/collection/{whale.id}/" in page, search
        assert page.count('data-testid="look"') == 1, search
