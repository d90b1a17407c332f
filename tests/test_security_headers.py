"""Security headers: the pages' Content-Security-Policy (and the pages at work under it in a real
browser), `Cache-Control: private, no-store` on a signed-in person's pages and files, and HSTS
in production (preload only when asked for)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone
from playwright.sync_api import Browser, BrowserContext, Response, expect
from storages.backends.s3 import S3Storage

from accounts.models import User
from config.content_security import storage_origins
from generation.models import GeneratedOutput, GenerationJob, Look, StudioTab
from generation.providers.catalog import ASPECT_RATIOS
from tests.browser import DESKTOP, PASSWORD, SLOW, PolicyWatch, log_in
from tests.conftest import wait_for_finish
from tests.factories import GenerationJobFactory, InputAssetFactory, png_bytes
from tests.processes import ROOT

PRIVATE = "private, no-store"
TEMPLATES = ROOT / "templates"
APP_CSS = ROOT / "generation" / "static" / "atelier" / "app.css"
CLIP = bytes(range(256)) * 40  # 10,240 bytes standing in for an MP4
# What a page may load and from where (no S3 bucket in the tests: everything comes from Atelier).
PAGE_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'"],
    "media-src": ["'self'"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}


def directives(header: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in header.split(";"))}


def policy_of(response) -> dict[str, list[str]]:
    return directives(response["Content-Security-Policy"])


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def stored(name: str, content: bytes) -> str:
    return default_storage.save(name, ContentFile(content))


@pytest.fixture
def finished_work(alice) -> dict[str, str]:
    """A finished image job of two images (one in the collection), a finished clip with its poster
    and an uploaded image of alice's team, with real files; the URLs that serve each."""
    images = GenerationJobFactory(
        team=alice.team, created_by=alice.user, status=GenerationJob.Status.SUCCEEDED, total_outputs=2,
        completed_outputs=2, started_at=timezone.now(), finished_at=timezone.now(),
    )  # fmt: skip
    for index in range(2):
        picture = png_bytes(colour=(40 * index, 90, 200))
        name = stored(f"teams/{alice.team.id}/jobs/{images.id}/image-{index + 1}.png", picture)
        output = GeneratedOutput.objects.create(
            job=images, index=index, file=name,
            mime="image/png", width=64, height=48, bytes=len(picture), sha256=hashlib.sha256(picture).hexdigest(),
        )  # fmt: skip
    look = Look.objects.create(team=alice.team, output=output, job=images)
    clips = GenerationJobFactory(
        team=alice.team, created_by=alice.user, kind=GenerationJob.Kind.VIDEO, status=GenerationJob.Status.SUCCEEDED,
        completed_outputs=1, started_at=timezone.now(), finished_at=timezone.now(),
    )  # fmt: skip
    GeneratedOutput.objects.create(
        job=clips, index=0, file=stored(f"teams/{alice.team.id}/jobs/{clips.id}/clip-1.mp4", CLIP),
        poster=stored(f"teams/{alice.team.id}/jobs/{clips.id}/clip-1.png", png_bytes()),
        mime="video/mp4", width=640, height=360, bytes=len(CLIP), sha256=hashlib.sha256(CLIP).hexdigest(),
    )  # fmt: skip
    asset = InputAssetFactory(team=alice.team, uploaded_by=alice.user, content=png_bytes())
    return {
        "job_page": f"/jobs/{images.id}/",
        "look_page": f"/collection/{look.id}/",
        "image": f"/api/v1/jobs/{images.id}/outputs/1",
        "clip": f"/api/v1/jobs/{clips.id}/outputs/1",
        "poster": f"/api/v1/jobs/{clips.id}/outputs/1/poster",
        "zip": f"/api/v1/jobs/{images.id}/download",
        "asset": f"/api/v1/assets/{asset.id}/content",
    }


# --- The policy ---------------------------------------------------------------------------------


def test_pages_carry_the_policy_with_no_inline_code_and_no_eval(alice, finished_work):
    anonymous = Client()
    assert policy_of(anonymous.get("/accounts/login/")) == PAGE_POLICY
    person = signed_in(alice.user)
    tab_page = person.get("/studio/", follow=True)
    for response in (tab_page, person.get(finished_work["job_page"]), person.get("/credits/")):
        assert response.status_code == 200
        assert policy_of(response) == PAGE_POLICY


def test_the_api_docs_page_serves_its_script_as_a_file_and_alone_allows_data_images(anonymous):
    docs = Client().get("/api/docs/")
    assert docs.status_code == 200
    policy = policy_of(docs)
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "data:"]  # Swagger UI's stylesheet draws its icons so
    page = docs.content.decode()
    assert not re.search(r"<style|<script(?![^>]*\ssrc=)", page)
    script = re.search(r'<script src="([^"]*script=[^"]*)"', page)[1].replace("&amp;", "&")
    start = Client().get(script)
    assert start.status_code == 200 and start["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle" in start.content


def test_no_template_holds_inline_script_style_or_code_for_htmx_to_evaluate():
    """The policy would refuse them in the browser; this names the template at once."""
    refused = {
        "a style attribute": r"\sstyle=",
        "a <style> block": r"<style",
        "an inline <script>": r"<script(?![^>]*\ssrc=)",
        "an event handler attribute": r"\son[a-z]+=",
        "hx-on": r"\shx-on",
        "a javascript: URL": r"javascript:",
        "an htmx event filter": r"hx-trigger=\"[^\"]*\[",
        "js: values": r"hx-(vals|vars)=['\"]\s*(js|javascript):",
    }
    found = [
        f"{template.relative_to(ROOT)}: {what}"
        for template in sorted(TEMPLATES.rglob("*.html"))
        for what, pattern in refused.items()
        if re.search(pattern, template.read_text())
    ]
    assert found == []


def test_every_aspect_ratio_shapes_a_clip_placeholder_in_the_stylesheet():
    css = APP_CSS.read_text()
    for ratio in ASPECT_RATIOS:
        width, height = ratio.split(":")
        assert ratio == "1:1" or f'.pending[data-ratio="{ratio}"] {{ aspect-ratio: {width} / {height}; }}' in css


@pytest.mark.parametrize(
    ("bucket", "endpoint_url", "region"),
    [
        ("atelier-media", "", ""),
        ("atelier-media", "", "eu-west-3"),
        ("Atelier_Media", "", "eu-west-3"),  # not a host name: a path on S3's regional host
        ("atelier.media", "", ""),
        ("atelier-media", "https://0123abcd.r2.cloudflarestorage.com", "auto"),
        ("atelier-media", "http://127.0.0.1:9000", ""),
        ("atelier-media", "https://minio.example.com:9000/", "us-east-1"),
    ],
)
def test_the_policy_allows_the_host_of_every_url_the_bucket_signs(monkeypatch, bucket, endpoint_url, region):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATEST")  # signing is local: nothing is sent
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    storage = S3Storage(
        bucket_name=bucket, endpoint_url=endpoint_url or None, region_name=region or None, querystring_auth=True
    )
    signed = urlsplit(storage.url("teams/1/jobs/x/image-1.png"))
    assert f"{signed.scheme}://{signed.netloc}" in storage_origins(
        bucket=bucket, endpoint_url=endpoint_url, region=region
    )


# --- Cache-Control ----------------------------------------------------------------------------


def test_a_signed_in_persons_pages_are_kept_by_no_cache(alice, finished_work):
    person = signed_in(alice.user)
    tab_page = person.get("/studio/", follow=True)
    tab = StudioTab.objects.get(user=alice.user)
    pages = [
        person.get(path)
        for path in ("/jobs/", finished_work["job_page"], "/collection/", finished_work["look_page"], "/credits/")
    ]
    for response in [tab_page, *pages]:
        assert response.status_code == 200
        assert response["Cache-Control"] == PRIVATE
    # The progress poll too: app.js sends the ETag itself, since the browser keeps no copy.
    GenerationJobFactory(team=alice.team, created_by=alice.user, tab=tab)
    poll = person.get(f"/studio/{tab.id}/progress/")
    assert (poll.status_code, poll["Cache-Control"]) == (200, PRIVATE)
    unchanged = person.get(f"/studio/{tab.id}/progress/", headers={"If-None-Match": poll["ETag"]})
    assert (unchanged.status_code, unchanged["Cache-Control"]) == (304, PRIVATE)
    assert (alice.client.get("/api/v1/jobs")["Cache-Control"]) == PRIVATE  # the API's answers to a key too


def test_anonymous_answers_are_left_as_their_views_make_them(db):
    anonymous = Client()
    assert "Cache-Control" not in anonymous.get("/healthz")
    assert "Cache-Control" not in anonymous.get("/api/schema/")
    # The login page is Django's: never cached, by its own decorator.
    assert "no-store" in anonymous.get("/accounts/login/")["Cache-Control"]


def test_private_images_clips_and_downloads_are_kept_by_no_cache_whoever_asks(alice, finished_work):
    person = signed_in(alice.user)
    for client in (alice.client, person):  # an API key, a browser's session
        for what in ("image", "clip", "poster", "zip", "asset"):
            response = client.get(finished_work[what])
            assert (what, response.status_code, response["Cache-Control"]) == (what, 200, PRIVATE)
        part = client.get(finished_work["clip"], headers={"Range": "bytes=100-199"})
        assert (part.status_code, part["Cache-Control"]) == (206, PRIVATE)
        assert b"".join(part.streaming_content) == CLIP[100:200]


def test_files_on_s3_are_signed_to_be_kept_by_no_cache_either(alice, finished_work, settings, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATEST")  # signing is local: nothing is sent
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    options = {"bucket_name": "atelier-media", "region_name": "eu-west-3", "querystring_auth": True}
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options},
    }
    response = alice.client.get(finished_work["image"])
    assert (response.status_code, response["Cache-Control"]) == (302, PRIVATE)
    signed = urlsplit(response["Location"])
    assert "response-cache-control=private%2C%20no-store" in signed.query  # what the bucket answers with
    assert f"{signed.scheme}://{signed.netloc}" in storage_origins(
        bucket="atelier-media", endpoint_url="", region="eu-west-3"
    )


# --- Production: HSTS, static files, the deploy check -------------------------------------------

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "s" * 20 + "-production-secret-with-enough-entropy-0123456789",
    "ALLOWED_HOSTS": "testserver",
}
# Asks the production settings' web stack (through Django's test client, over HTTPS as the proxy
# reports it) for the login page and the hashed stylesheet, and prints their headers.
ASK = """
import json, django
django.setup()
from django.core.management import call_command
from django.templatetags.static import static
from django.test import Client
call_command("collectstatic", interactive=False, verbosity=0)
client = Client(headers={"X-Forwarded-Proto": "https"})
paths = {"page": "/accounts/login/", "static": static("atelier/app.css")}
answers = {name: client.get(path) for name, path in paths.items()}
print(json.dumps({name: {"status": answer.status_code, **answer.headers} for name, answer in answers.items()}))
"""


def run_production(args: list[str], var_dir: Path, **env: str) -> subprocess.CompletedProcess:
    base = {key: value for key, value in os.environ.items() if key not in ("DJANGO_ALLOW_ASYNC_UNSAFE",)}
    environment = (
        base | PRODUCTION | {"DJANGO_SETTINGS_MODULE": "config.settings", "ATELIER_VAR_DIR": str(var_dir)} | env
    )
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("setting", "hsts"),
    [
        ({}, "max-age=31536000; includeSubDomains"),
        ({"SECURE_HSTS_PRELOAD": "true"}, "max-age=31536000; includeSubDomains; preload"),
    ],
)
def test_production_sends_hsts_with_preload_only_when_asked_and_static_files_keep_long_caching(tmp_path, setting, hsts):
    result = run_production(["-c", ASK], tmp_path, **setting)
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert answers["page"]["status"] == 200
    assert answers["page"]["Strict-Transport-Security"] == hsts
    assert directives(answers["page"]["Content-Security-Policy"]) == PAGE_POLICY
    assert answers["static"]["status"] == 200
    assert answers["static"]["Cache-Control"] == "max-age=315360000, public, immutable"
    assert "Content-Security-Policy" not in answers["static"]


def test_the_deploy_check_stays_clean_with_preload_turned_on(tmp_path):
    result = run_production(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], tmp_path, SECURE_HSTS_PRELOAD="true"
    )
    assert result.returncode == 0, result.stderr
    assert "no issues (0 silenced)" in result.stdout  # nothing left to silence with preload on


def test_preload_without_subdomains_or_a_years_max_age_stops_the_start(tmp_path):
    for wrong in ({"SECURE_HSTS_INCLUDE_SUBDOMAINS": "false"}, {"SECURE_HSTS_SECONDS": "3600"}):
        result = run_production(["manage.py", "check"], tmp_path, SECURE_HSTS_PRELOAD="true", **wrong)
        assert result.returncode != 0
        assert "SECURE_HSTS_PRELOAD needs" in result.stderr


def test_with_files_on_a_bucket_images_and_clips_may_also_come_from_its_host(tmp_path):
    show = (
        "import django, json; django.setup(); from django.conf import settings;"
        " print(json.dumps(settings.CONTENT_SECURITY_POLICY))"
    )
    bucket = {
        "AWS_STORAGE_BUCKET_NAME": "atelier-media",
        "AWS_S3_ENDPOINT_URL": "https://0123abcd.r2.cloudflarestorage.com",
    }
    result = run_production(["-c", show], tmp_path, **bucket)
    assert result.returncode == 0, result.stderr
    policy = json.loads(result.stdout.strip().splitlines()[-1])["DIRECTIVES"]
    hosts = ["https://0123abcd.r2.cloudflarestorage.com", "https://atelier-media.0123abcd.r2.cloudflarestorage.com"]
    assert policy["img-src"] == policy["media-src"] == ["'self'", *hosts]
    assert policy["script-src"] == policy["connect-src"] == ["'self'"]  # the bucket serves files, nothing more


def test_report_only_sends_the_same_policy_without_enforcing_it(tmp_path):
    result = run_production(["-c", ASK], tmp_path, CSP_REPORT_ONLY="true")
    assert result.returncode == 0, result.stderr
    page = json.loads(result.stdout.strip().splitlines()[-1])["page"]
    assert "Content-Security-Policy" not in page
    assert directives(page["Content-Security-Policy-Report-Only"]) == PAGE_POLICY


# --- In the browser -------------------------------------------------------------------------------


@pytest.fixture
def context(browser: Browser, live_server) -> BrowserContext:
    context = browser.new_context(base_url=live_server.url, viewport=DESKTOP)
    context.set_default_timeout(SLOW)
    yield context
    context.close()


def loaded_images(page, selector: str) -> int:
    """How many of the images `selector` finds were allowed to load and decoded."""
    return page.eval_on_selector_all(selector, "images => images.filter(i => i.complete && i.naturalWidth > 0).length")


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_the_pages_work_under_the_policy_with_nothing_refused(make_stack, alice, context):
    make_stack(LOCAL_PROVIDER_LATENCY_MS="700")
    watch = PolicyWatch(context)
    page = log_in(context, alice.user.email)
    # The estimate follows the form (htmx, on events app.js passes on); a change of kind redraws
    # the settings (htmx swaps a partial in) and they ask for their own estimate.
    page.get_by_test_id("prompt").fill("a paper crane on a windowsill")
    expect(page.get_by_test_id("estimate")).to_contain_text("a paper crane")
    page.get_by_test_id("kind").select_option("video")
    expect(page.get_by_test_id("model")).to_have_value("atelier-motion-1")
    expect(page.get_by_test_id("estimate")).to_contain_text("clip")
    page.get_by_test_id("kind").select_option("image")
    expect(page.get_by_test_id("model")).to_have_value("atelier-sketch-1")
    page.get_by_test_id("count").select_option("2")
    expect(page.get_by_test_id("estimate")).to_contain_text("2 images")
    page.get_by_test_id("generate").click()
    # The progress panel polls itself (htmx) until the job is done; its images load.
    expect(page.get_by_test_id("status")).to_have_text("Succeeded")
    expect(page.get_by_test_id("counter")).to_have_text("2 of 2")
    job = wait_for_finish(GenerationJob.objects.get(prompt__startswith="a paper crane").id)
    assert job.status == GenerationJob.Status.SUCCEEDED
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=thumb]')].every(i => i.complete)")
    assert loaded_images(page, "[data-testid=thumb]") == 2
    page.goto(f"/jobs/{job.id}/")
    expect(page.get_by_test_id("status")).to_have_text("Succeeded")
    page.goto("/collection/")
    expect(page.get_by_test_id("look")).to_have_count(2)
    page.get_by_test_id("look").first.locator("a").first.click()  # the lightbox opens over the collection
    page.wait_for_function("() => document.querySelector('[data-testid=lightbox-image]').complete")
    assert loaded_images(page, "[data-testid=lightbox-image]") == 1
    page.get_by_test_id("lightbox-open").click()  # and leads to the look's page
    expect(page.get_by_test_id("full-image")).to_be_visible()
    page.wait_for_function("() => document.querySelector('[data-testid=full-image]').complete")
    assert loaded_images(page, "[data-testid=full-image]") == 1
    page.goto("/credits/")
    expect(page.get_by_test_id("balance")).to_contain_text("credits")
    page.wait_for_load_state("networkidle")
    assert watch.refusals == []


@pytest.mark.django_db(transaction=True)
def test_a_poll_that_finds_nothing_new_is_a_304_that_leaves_the_panel_as_it_is(alice, context):
    watch = PolicyWatch(context)
    page = log_in(context, alice.user.email)
    tab = StudioTab.objects.get(user=alice.user)
    # A job some worker is running (its lease runs on): the panel polls, and nothing changes.
    job = GenerationJobFactory(
        team=alice.team, created_by=alice.user, tab=tab, total_outputs=2, status=GenerationJob.Status.RUNNING,
        started_at=timezone.now(), lease_owner="elsewhere", lease_expires_at=timezone.now() + timedelta(hours=1),
    )  # fmt: skip
    polls: list[Response] = []
    page.on("response", lambda response: polls.append(response) if "/progress/" in response.url else None)
    page.reload()
    expect(page.get_by_test_id("counter")).to_have_text("0 of 2")
    not_modified = page.wait_for_event(
        "response", lambda response: "/progress/" in response.url and response.status == 304
    )
    assert not_modified.request.headers["if-none-match"] == polls[0].headers["etag"]
    expect(page.get_by_test_id("counter")).to_have_text("0 of 2")  # not emptied by the 304
    expect(page.get_by_test_id("elapsed")).to_be_visible()
    GenerationJob.objects.filter(id=job.id).update(completed_outputs=1)
    expect(page.get_by_test_id("counter")).to_have_text("1 of 2")  # the next poll brings the change
    assert watch.refusals == []


@pytest.mark.django_db(transaction=True)
def test_the_admin_and_the_api_docs_work_under_the_policy(alice, context):
    User.objects.create_superuser("operator@example.com", PASSWORD)
    GenerationJobFactory(team=alice.team, created_by=alice.user, prompt="a job to look at")
    watch = PolicyWatch(context)
    page = context.new_page()
    page.goto("/admin/login/")
    page.get_by_label("Email").fill("operator@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    page.goto("/admin/generation/generationjob/")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    # The admin's scripts work: ticking a row counts it and offers its actions.
    page.locator("input.action-select").first.check()
    expect(page.locator(".action-counter")).to_contain_text("1 of 1 selected")
    page.goto("/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Atelier API")
    expect(page.locator(".opblock").first).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert watch.refusals == []
