"""`make run` from a fresh clone: it installs itself, serves the API and runs a job on the embedded
defaults (SQLite, Celery's filesystem transport, local files, the local provider), with no server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import requests

from tests.processes import ROOT, free_port, wait_until

EMBEDDED_OVERRIDES = ("DATABASE_URL", "CELERY_BROKER_URL", "ATELIER_VAR_DIR", "MEDIA_ROOT", "DJANGO_SETTINGS_MODULE",
                      "VIRTUAL_ENV", "TEST_REDIS_URL", "LOCAL_PROVIDER_LATENCY_MS",
                      "PROMETHEUS_MULTIPROC_DIR")  # fmt: skip


def test_make_run_from_a_fresh_clone_serves_the_api_and_runs_a_job(tmp_path: Path, capsys):
    clone = tmp_path / "atelier"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    env = {key: value for key, value in os.environ.items() if key not in EMBEDDED_OVERRIDES}
    env["LOCAL_PROVIDER_LATENCY_MS"] = "200"
    port = free_port()
    log_path = tmp_path / "make-run.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["make", "run", f"PORT={port}"], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # so the whole tree (honcho, gunicorn, celery) can be stopped together
        )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:

        def serving() -> bool:
            assert process.poll() is None, log_path.read_text()
            try:
                return requests.get(f"{base_url}/healthz", timeout=5).status_code == 200
            except requests.RequestException:  # not listening yet, or still booting
                return False

        wait_until(serving, timeout=300, interval=0.5, message="make run to serve")
        ready_seconds = time.monotonic() - started
        output = log_path.read_text()
        assert f"http://127.0.0.1:{port}/" in output
        assert "Log in as demo@atelier.local" in output
        api_key = re.search(r"API key for the Demo team: (atl_\S+)", output).group(1)
        headers = {"Authorization": f"Bearer {api_key}"}

        login_page = requests.get(f"{base_url}/accounts/login/", timeout=5)
        assert login_page.status_code == 200 and "Log in" in login_page.text

        created = requests.post(
            f"{base_url}/api/v1/jobs", json={"prompt": "first light", "count": 2}, headers=headers, timeout=10
        )
        assert created.status_code == 202, created.text
        job_url = created.headers["Location"]

        def finished() -> dict | None:
            body = requests.get(job_url, headers=headers, timeout=5).json()
            return body if body["status"] in ("succeeded", "failed", "canceled") else None

        job = wait_until(finished, timeout=60, interval=0.3, message="the job to finish")
        assert job["status"] == "succeeded"
        assert [output["index"] for output in job["outputs"]] == [1, 2]
        image = requests.get(job["outputs"][0]["url"], headers=headers, timeout=5)
        assert image.content.startswith(b"\x89PNG")
        assert (clone / "var" / "atelier.sqlite3").exists()  # the embedded database, not PostgreSQL
        credits = requests.get(f"{base_url}/api/v1/credits", headers=headers, timeout=5).json()
        assert (credits["available"], credits["held"]) == (498, 0)  # the demo's 500, minus two images

        # The printed login works in a browser session, which starts in the Demo team.
        browser = requests.Session()
        login_form = browser.get(f"{base_url}/accounts/login/", timeout=5)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_form.text).group(1)
        studio = browser.post(
            f"{base_url}/accounts/login/",
            data={"username": "demo@atelier.local", "password": "atelier-demo-1", "csrfmiddlewaretoken": token},
            headers={"Referer": f"{base_url}/accounts/login/"},
            timeout=10,
        )
        assert "/studio/" in studio.url
        assert "498 credits" in studio.text
        assert "1 generation finished while you were away (2 images)" in studio.text
        with capsys.disabled():
            print(f"\n[figure] make run from a fresh clone: serving after {ready_seconds:.0f}s (install included)")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
