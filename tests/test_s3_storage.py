"""Files on a bucket: uploads, images, zips read and written on a real S3-compatible server.

The module starts the server (moto's S3 in server mode, behind the signature and expiry checks
of S3 that moto leaves out: tests/fakes/s3_server.py), creates the bucket, and runs the stack as
production would with `AWS_STORAGE_BUCKET_NAME` set: the worker, beat and a web process, each
given the bucket through its environment only. The test process itself reads the bucket through
boto3 to see what was stored; where a test needs this process's own storage on the bucket (a
very short expiry, the admin), the `settings` fixture switches it for that test alone.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.exceptions
import pytest
import requests
from botocore.config import Config
from django.conf import settings as django_settings
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Browser, Response, expect
from storages.backends.s3 import S3Storage

from accounts.models import User
from config.storage import bucket_storage
from generation.models import GeneratedOutput, GenerationJob, InputAsset
from generation.services.files import job_folder, output_download_name
from generation.services.retention import retention_sweep
from tests.browser import SLOW, PolicyWatch
from tests.conftest import Person, wait_for_finish
from tests.factories import png_bytes
from tests.fakes.s3_server import READY_LINE
from tests.helpers import signed_in
from tests.processes import ManagedProcess, free_port, start_web, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

BUCKET = "atelier-test-media"
REGION = "us-east-1"
# Dummy credentials: the fake server knows these and refuses any other.
ACCESS_KEY = "AKIAATELIERTESTS0001"
SECRET_KEY = "atelier-tests-secret-key-of-the-fake-s3"
# The signed URLs' lifetime in the processes: set through the environment, seen in every URL.
PROCESS_EXPIRY_SECONDS = 120


@dataclass
class Bucket:
    endpoint: str
    client: object  # a boto3 S3 client, with the test's own credentials

    def keys(self, prefix: str) -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)  # type: ignore[attr-defined]
        return {item["Key"] for page in pages for item in page.get("Contents", [])}

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()  # type: ignore[attr-defined]

    def object_url(self, key: str) -> str:
        return f"{self.endpoint}/{BUCKET}/{key}"


@pytest.fixture(scope="module")
def bucket(log_dir: Path) -> Iterator[Bucket]:
    port = free_port()
    server = ManagedProcess(
        "s3",
        [sys.executable, "-m", "tests.fakes.s3_server", "--port", str(port),
         "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY],
        dict(os.environ),
        log_dir,
    ).start()  # fmt: skip
    try:
        server.wait_for_log(READY_LINE)
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(signature_version="s3v4"),
        )
        client.create_bucket(Bucket=BUCKET)
        yield Bucket(endpoint=endpoint, client=client)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def media_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The local media folder the processes are given: with a bucket, nothing may land in it."""
    root = tmp_path_factory.mktemp("media-unused")
    yield root
    assert _files_in(root) == []


def _files_in(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


@pytest.fixture(scope="module")
def stack(make_stack, bucket: Bucket, media_root: Path):  # type: ignore[no-untyped-def]
    return make_stack(
        AWS_STORAGE_BUCKET_NAME=BUCKET,
        AWS_S3_ENDPOINT_URL=bucket.endpoint,
        AWS_S3_REGION_NAME=REGION,
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_QUERYSTRING_EXPIRE=str(PROCESS_EXPIRY_SECONDS),
        MEDIA_ROOT=str(media_root),
        LOCAL_PROVIDER_LATENCY_MS="100",
    )


@pytest.fixture(scope="module")
def web(stack, log_dir: Path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A web process (gunicorn, as in the Procfile) with the stack's environment: its base URL."""
    process, base_url = start_web(stack.env, log_dir)
    yield base_url
    process.stop()


@pytest.fixture(scope="module", autouse=True)
def _the_bucket_stays_in_this_module() -> Iterator[None]:
    """The processes got the bucket through their environment and this process through the
    `settings` fixture, test by test: after the module, this process stores files locally again.
    (`settings` puts STORAGES back, and Django's setting_changed handler drops the storages it
    built, `default_storage` included, which is a lazy object built once per process.)"""
    names = ("AWS_STORAGE_BUCKET_NAME", "AWS_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    before = {name: os.environ.get(name) for name in names}
    yield
    assert not isinstance(default_storage, S3Storage)
    assert {name: os.environ.get(name) for name in names} == before


@pytest.fixture
def bucket_here(settings, monkeypatch, bucket: Bucket):  # type: ignore[no-untyped-def]
    """Puts this process's default storage on the bucket for one test, as config/settings.py
    does for the processes (the same `bucket_storage`), with the expiry the test asks for."""

    def use(*, querystring_expire: int = PROCESS_EXPIRY_SECONDS) -> None:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)  # boto3 reads them, as in the processes
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        settings.STORAGES = {
            **settings.STORAGES,
            "default": bucket_storage(
                bucket=BUCKET, endpoint_url=bucket.endpoint, region=REGION, querystring_expire=querystring_expire
            ),
        }
        assert isinstance(default_storage, S3Storage)

    return use


# --- helpers ------------------------------------------------------------------------------------


def api(person: Person, method: str, url: str, **options: object) -> requests.Response:
    """A request to the web process with the person's API key; redirects are not followed."""
    return requests.request(
        method,
        url,
        headers={"Authorization": f"Bearer {person.api_key}"},
        allow_redirects=False,
        timeout=30,
        **options,  # type: ignore[arg-type]
    )


def upload(web: str, person: Person, content: bytes) -> requests.Response:
    return api(person, "POST", f"{web}/api/v1/assets", files={"file": ("reference.png", content, "image/png")})


def finished_job(
    web: str, person: Person, prompt: str, *, count: int, references: tuple[str, ...] = ()
) -> GenerationJob:
    body: dict[str, object] = {"prompt": prompt, "count": count}
    if references:
        body["inputs"] = {"references": [{"asset_id": asset_id} for asset_id in references]}
    answer = api(person, "POST", f"{web}/api/v1/jobs", json=body)
    assert answer.status_code == 202, answer.text
    job = wait_for_finish(answer.json()["id"], timeout=60)
    assert job.status == GenerationJob.Status.SUCCEEDED, job.error_message
    return job


def signed_location(answer: requests.Response, bucket: Bucket, key: str | None) -> str:
    """The signed URL a redirect of the web process points at, checked to be the object's."""
    assert key
    assert answer.status_code == 302, answer.text
    assert answer.headers["Cache-Control"] == "private, no-store"
    location = answer.headers["Location"]
    assert location.startswith(bucket.object_url(key) + "?")
    return location


def unsigned(url: str) -> str:
    return url.split("?", 1)[0]


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


# --- uploads ------------------------------------------------------------------------------------


def test_an_upload_is_stored_once_in_the_bucket_and_read_back_through_a_signed_url(web, bucket, alice, media_root):
    picture = png_bytes(80, 60, (20, 120, 200))

    first = upload(web, alice, picture)
    again = upload(web, alice, picture)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]  # the same file again is the same asset
    asset = InputAsset.objects.get(id=first.json()["id"])
    assert bucket.keys(f"teams/{alice.team.id}/") == {asset.file.name}  # stored once
    assert bucket.read(asset.file.name) == picture

    signed = signed_location(api(alice, "GET", first.json()["url"]), bucket, asset.file.name)
    assert requests.get(signed, timeout=10).content == picture
    assert requests.get(unsigned(signed), timeout=10).status_code == 403  # not public
    assert _files_in(media_root) == []


# --- a job: images and zip ----------------------------------------------------------------------


def test_a_job_stores_its_images_and_zip_in_the_bucket_and_downloads_are_signed_urls(web, bucket, alice, media_root):
    reference = upload(web, alice, png_bytes(64, 64, (240, 200, 10))).json()["id"]

    job = finished_job(web, alice, "Golden roses, at dusk", count=3, references=(reference,))

    outputs = list(GeneratedOutput.objects.filter(job=job).order_by("index"))
    assert [output.index for output in outputs] == [0, 1, 2]
    assert job.archive.name
    # The images and the zip, nothing else (no preview or pending file left behind).
    assert bucket.keys(f"{job_folder(job)}/") == {*(output.file.name for output in outputs), job.archive.name}
    assert [sha256(bucket.read(output.file.name)) for output in outputs] == [output.sha256 for output in outputs]
    assert _files_in(media_root) == []

    second = outputs[1]
    redirect = api(alice, "GET", f"{web}/api/v1/jobs/{job.id}/outputs/2")
    signed = signed_location(redirect, bucket, second.file.name)
    assert redirect.content == b""  # the web process sends no byte of the image
    assert parse_qs(urlsplit(signed).query)["X-Amz-Expires"] == [str(PROCESS_EXPIRY_SECONDS)]
    image = requests.get(signed, timeout=10)
    assert image.status_code == 200
    assert sha256(image.content) == second.sha256
    assert image.headers["Content-Disposition"] == 'inline; filename="golden-roses-at-dusk-2.png"'
    assert image.headers["Cache-Control"] == "private, no-store"  # the bucket answers as we asked it to

    signed_zip = signed_location(api(alice, "GET", f"{web}/api/v1/jobs/{job.id}/download"), bucket, job.archive.name)
    download = requests.get(signed_zip, timeout=10)
    assert download.status_code == 200
    assert download.headers["Content-Disposition"] == 'attachment; filename="golden-roses-at-dusk.zip"'
    archive = zipfile.ZipFile(io.BytesIO(download.content))
    assert archive.namelist() == [f"golden-roses-at-dusk-{number}.png" for number in (1, 2, 3)]
    assert [sha256(archive.read(entry)) for entry in archive.namelist()] == [output.sha256 for output in outputs]

    for key in (second.file.name, job.archive.name):
        assert requests.get(bucket.object_url(key), timeout=10).status_code == 403  # no image is public


def test_a_one_image_jobs_zip_is_built_on_its_first_download_and_stored_in_the_bucket(web, bucket, alice):
    job = finished_job(web, alice, "A single lighthouse", count=1)
    assert not job.archive  # one image: no zip is stored when the job ends
    output = GeneratedOutput.objects.get(job=job)

    download = api(alice, "GET", f"{web}/api/v1/jobs/{job.id}/download")

    job.refresh_from_db()
    assert job.archive.name  # built, stored and recorded by the download
    assert bucket.keys(f"{job_folder(job)}/") == {output.file.name, job.archive.name}
    signed = signed_location(download, bucket, job.archive.name)
    assert download.content == b""  # the web process sends no byte of the zip
    archive = zipfile.ZipFile(io.BytesIO(requests.get(signed, timeout=10).content))
    name = output_download_name(prompt=job.prompt, index=0, mime=output.mime)
    assert archive.namelist() == [name]
    assert sha256(archive.read(name)) == output.sha256


def test_a_clip_and_its_poster_live_in_the_bucket_and_the_bucket_serves_the_ranges_a_player_seeks(web, bucket, alice):
    body = {"prompt": "Paper lanterns drifting", "kind": "video", "params": {"duration_seconds": 2}}
    submitted = api(alice, "POST", f"{web}/api/v1/jobs", json=body)
    assert submitted.status_code == 202, submitted.text
    job = wait_for_finish(submitted.json()["id"], timeout=60)
    assert job.status == GenerationJob.Status.SUCCEEDED, job.error_message
    clip = GeneratedOutput.objects.get(job=job)
    assert bucket.keys(f"{job_folder(job)}/") == {clip.file.name, clip.poster.name}

    signed_clip = signed_location(api(alice, "GET", f"{web}/api/v1/jobs/{job.id}/outputs/1"), bucket, clip.file.name)
    # The web process takes no Range: the player seeks on the signed URL, which the bucket serves.
    part = requests.get(signed_clip, headers={"Range": "bytes=100-199"}, timeout=10)
    assert part.status_code == 206
    assert part.content == bucket.read(clip.file.name)[100:200]
    poster = api(alice, "GET", f"{web}/api/v1/jobs/{job.id}/outputs/1/poster")
    assert (
        requests.get(signed_location(poster, bucket, clip.poster.name), timeout=10).content[:8] == b"\x89PNG\r\n\x1a\n"
    )


# --- deleting -----------------------------------------------------------------------------------


def test_deleting_a_look_keeps_the_image_its_job_still_shows(web, bucket, alice, charlie):
    job = finished_job(web, alice, "Harbour lights", count=1)
    output = GeneratedOutput.objects.get(job=job)
    look_id = str(output.look.id)

    assert api(charlie, "DELETE", f"{web}/api/v1/looks/{look_id}").status_code == 404  # another team's
    assert api(alice, "DELETE", f"{web}/api/v1/looks/{look_id}").status_code == 204

    assert api(alice, "GET", f"{web}/api/v1/looks/{look_id}").status_code == 404
    assert bucket.keys(f"{job_folder(job)}/") == {output.file.name}  # the job keeps its image
    signed = signed_location(api(alice, "GET", f"{web}/api/v1/jobs/{job.id}/outputs/1"), bucket, output.file.name)
    assert sha256(requests.get(signed, timeout=10).content) == output.sha256


# --- retention -----------------------------------------------------------------------------------


def test_a_retention_sweep_of_the_bucket_removes_an_orphan_an_old_zip_and_an_unused_upload_only(
    web, bucket, bucket_here, alice
):
    reference = upload(web, alice, png_bytes(64, 64, (90, 30, 160))).json()["id"]
    unused = upload(web, alice, png_bytes(64, 64, (10, 160, 90))).json()["id"]
    job = finished_job(web, alice, "Lighthouse in a storm", count=2, references=(reference,))
    outputs = list(GeneratedOutput.objects.filter(job=job).order_by("index"))
    zip_name = job.archive.name
    # An attempt that died between storing its image and recording it leaves a file no row names.
    orphan = f"{job_folder(job)}/image-3-0dead0ff.png"
    bucket.client.put_object(Bucket=BUCKET, Key=orphan, Body=png_bytes(8, 8))  # type: ignore[attr-defined]
    # The job finished, and both uploads were made, long before the day the sweep runs as of.
    long_ago = timezone.now() - timedelta(days=40)
    GenerationJob.objects.filter(id=job.id).update(created_at=long_ago, finished_at=long_ago)
    InputAsset.objects.filter(id__in=[reference, unused]).update(created_at=long_ago)
    kept_upload = InputAsset.objects.get(id=reference).file.name
    gone_upload = InputAsset.objects.get(id=unused).file.name
    bucket_here()

    sweep = retention_sweep(now=timezone.now() + timedelta(days=2))  # past every grace period

    assert sweep.error == ""
    assert sweep.removed["zips"] == 1 and sweep.removed["uploads"] == 1 and sweep.removed["orphans"] >= 1
    team_files = bucket.keys(f"teams/{alice.team.id}/")
    assert {orphan, zip_name, gone_upload}.isdisjoint(team_files)
    assert {*(output.file.name for output in outputs), kept_upload} == team_files  # what rows name stays
    assert not InputAsset.objects.filter(id=unused).exists()


def test_a_zip_retention_removed_is_built_again_stored_in_the_bucket_and_served_as_a_signed_url(
    web, bucket, bucket_here, alice
):
    job = finished_job(web, alice, "Harbour in the fog", count=2)
    outputs = list(GeneratedOutput.objects.filter(job=job).order_by("index"))
    first_zip = job.archive.name
    long_ago = timezone.now() - timedelta(days=40)
    GenerationJob.objects.filter(id=job.id).update(created_at=long_ago, finished_at=long_ago)
    bucket_here()
    assert retention_sweep().removed["zips"] == 1
    assert bucket.keys(f"{job_folder(job)}/") == {output.file.name for output in outputs}  # the zip is gone

    download = api(alice, "GET", f"{web}/api/v1/jobs/{job.id}/download")

    rebuilt = GenerationJob.objects.get(id=job.id).archive.name
    assert rebuilt and rebuilt != first_zip  # built again, stored and recorded by the download
    assert bucket.keys(f"{job_folder(job)}/") == {*(output.file.name for output in outputs), rebuilt}
    signed = signed_location(download, bucket, rebuilt)
    assert download.content == b""  # the web process sends no byte of the zip: the bucket does
    served = requests.get(signed, timeout=10)
    assert served.headers["Content-Disposition"] == 'attachment; filename="harbour-in-the-fog.zip"'
    archive = zipfile.ZipFile(io.BytesIO(served.content))
    assert archive.namelist() == ["harbour-in-the-fog-1.png", "harbour-in-the-fog-2.png"]
    assert [sha256(archive.read(entry)) for entry in archive.namelist()] == [output.sha256 for output in outputs]

    # The next downloads, the team's and the operator's, are served the stored zip: none builds another.
    signed_location(api(alice, "GET", f"{web}/api/v1/jobs/{job.id}/download"), bucket, rebuilt)
    User.objects.create_superuser(email="ops@example.com", password="operator-password")
    operator = Client()
    operator.login(email="ops@example.com", password="operator-password")
    by_operator = operator.get(f"/admin/generation/generationjob/{job.id}/download/")
    assert by_operator.status_code == 302 and by_operator["Location"].startswith(bucket.object_url(rebuilt) + "?")
    assert GenerationJob.objects.get(id=job.id).archive.name == rebuilt
    assert bucket.keys(f"{job_folder(job)}/") == {*(output.file.name for output in outputs), rebuilt}

    # Retention counts from the job's finish: the rebuilt zip goes with the next sweep.
    assert retention_sweep().removed["zips"] == 1
    assert bucket.keys(f"{job_folder(job)}/") == {output.file.name for output in outputs}


# --- expiry -------------------------------------------------------------------------------------


def test_a_downloaded_signed_url_expires(web, bucket, bucket_here, alice):
    """The processes cannot sign for less than a minute (AWS_QUERYSTRING_EXPIRE has a minimum
    of 60): this process signs with the same storage and a lifetime of 3 seconds instead."""
    job = finished_job(web, alice, "A fleeting moment", count=1)
    output = GeneratedOutput.objects.get(job=job)
    bucket_here(querystring_expire=3)

    redirect = alice.client.get(f"/api/v1/jobs/{job.id}/outputs/1")

    assert redirect.status_code == 302
    signed = redirect["Location"]
    assert signed.startswith(bucket.object_url(output.file.name) + "?")
    assert parse_qs(urlsplit(signed).query)["X-Amz-Expires"] == ["3"]
    assert requests.get(signed, timeout=10).status_code == 200  # at once: valid

    def refusal() -> tuple[int, str] | None:
        answer = requests.get(signed, timeout=10)  # (a Response is falsy when refused: hence the tuple)
        return (answer.status_code, answer.text) if answer.status_code != 200 else None

    refused: tuple[int, str] = wait_until(refusal, timeout=30, interval=0.5, message="the signed URL to expire")  # type: ignore[assignment]
    status, body = refused
    assert status == 403
    assert "<Message>Request has expired</Message>" in body
    # A fresh redirect signs a fresh URL: the page that asks again gets its image.
    again = alice.client.get(f"/api/v1/jobs/{job.id}/outputs/1")
    assert requests.get(again["Location"], timeout=10).status_code == 200


def test_the_fake_bucket_refuses_what_s3_refuses(bucket):
    """What the tests above rely on: the server checks signatures and expiry as S3 does."""
    key = "checks/probe.txt"
    bucket.client.put_object(Bucket=BUCKET, Key=key, Body=b"probe")  # type: ignore[attr-defined]
    signed = bucket.client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=60)  # type: ignore[attr-defined]
    assert requests.get(signed, timeout=10).content == b"probe"

    tampered = signed.replace(key, "checks/other.txt")
    assert "SignatureDoesNotMatch" in requests.get(tampered, timeout=10).text
    longer = signed.replace("X-Amz-Expires=60", "X-Amz-Expires=600")
    assert "SignatureDoesNotMatch" in requests.get(longer, timeout=10).text  # a lifetime cannot be stretched
    assert requests.get(unsigned(signed), timeout=10).status_code == 403

    version_2 = boto3.client(
        "s3", endpoint_url=bucket.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    ).generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key})  # fmt: skip
    assert "Signature=" in version_2 and "X-Amz-Signature" not in version_2  # botocore's default here
    assert requests.get(version_2, timeout=10).status_code == 400  # refused, as by R2

    stranger = boto3.client(
        "s3", endpoint_url=bucket.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key="not-the-secret",
    )  # fmt: skip
    with pytest.raises(botocore.exceptions.ClientError, match="SignatureDoesNotMatch"):
        stranger.get_object(Bucket=BUCKET, Key=key)
    bucket.client.delete_object(Bucket=BUCKET, Key=key)  # type: ignore[attr-defined]


# --- the admin ----------------------------------------------------------------------------------


def test_the_operators_admin_hands_out_signed_urls_too(web, bucket, bucket_here, alice):
    job = finished_job(web, alice, "Storm over the harbour", count=2)
    first = GeneratedOutput.objects.get(job=job, index=0)
    User.objects.create_superuser(email="ops@example.com", password="operator-password")
    operator = Client()
    operator.login(email="ops@example.com", password="operator-password")
    bucket_here()

    page = operator.get(reverse("admin:generation_generationjob_change", args=[job.id]))
    assert page.status_code == 200
    thumbnail = reverse("admin:generation_generationjob_output", kwargs={"object_id": job.id, "number": 1})
    assert thumbnail in page.content.decode()

    image = operator.get(thumbnail)
    assert image.status_code == 302
    assert sha256(requests.get(image["Location"], timeout=10).content) == first.sha256
    archive = operator.get(f"/admin/generation/generationjob/{job.id}/download/")
    assert archive.status_code == 302
    assert archive["Location"].startswith(bucket.object_url(job.archive.name) + "?")
    assert len(zipfile.ZipFile(io.BytesIO(requests.get(archive["Location"], timeout=10).content)).namelist()) == 2


# --- pages, in a browser --------------------------------------------------------------------------


def test_pages_show_images_from_the_bucket_under_the_content_security_policy(web, bucket, alice, browser: Browser):
    job = finished_job(web, alice, "Lanterns on the river", count=2)
    outputs = list(GeneratedOutput.objects.filter(job=job).order_by("index"))
    context = browser.new_context(base_url=web)
    context.set_default_timeout(SLOW)
    watch = PolicyWatch(context)
    from_bucket: list[str] = []

    def note(response: Response) -> None:
        if response.url.startswith(f"{bucket.endpoint}/") and response.status == 200:
            from_bucket.append(unsigned(response.url))

    context.on("response", note)
    try:
        # Signed in through a session of the database the web process reads (its password
        # hashers are production's, not the tests' fast one, so its login form would refuse).
        session = signed_in(alice).cookies[django_settings.SESSION_COOKIE_NAME].value
        context.add_cookies([{"name": django_settings.SESSION_COOKIE_NAME, "value": session, "url": web}])
        page = context.new_page()
        answer = page.goto(f"/jobs/{job.id}/")
        assert answer is not None
        policy = answer.headers["content-security-policy"]
        assert f"img-src 'self' {bucket.endpoint}" in policy  # the bucket's host, from AWS_S3_ENDPOINT_URL
        thumbnails = page.get_by_test_id("thumb")
        expect(thumbnails).to_have_count(2, timeout=SLOW)
        for index in range(2):
            thumbnail = thumbnails.nth(index)
            thumbnail.scroll_into_view_if_needed()
            # Loaded: the browser followed the redirect to the signed URL and got the picture.
            expect(thumbnail).to_have_js_property("naturalWidth", outputs[index].width, timeout=SLOW)

        page.goto(f"/collection/{outputs[0].look.id}/")
        full = page.get_by_test_id("full-image")
        expect(full).to_have_js_property("naturalWidth", outputs[0].width, timeout=SLOW)
        page.wait_for_load_state()
    finally:
        context.close()

    assert {bucket.object_url(output.file.name) for output in outputs} <= set(from_bucket)
    assert watch.refusals == []  # the policy lets the bucket's host serve images, and nothing more
