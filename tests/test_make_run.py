"""`make run` from a fresh clone: it installs itself, serves the API and runs a job on the embedded
defaults (SQLite, Celery's filesystem transport, local files, the local provider), with no server."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import requests

from tests.processes import ROOT, free_port, wait_until

EMBEDDED_OVERRIDES = ("DATABASE_URL", "CELERY_BROKER_URL", "ATELIER_VAR_DIR", "MEDIA_ROOT", "DJANGO_SETTINGS_MODULE",
                      "VIRTUAL_ENV", "TEST_REDIS_URL", "LOCAL_PROVIDER_LATENCY_MS",
                      "PROMETHEUS_MULTIPROC_DIR")  # fmt: skip


def make_run(clone: Path, port: int, log_path: Path) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if key not in EMBEDDED_OVERRIDES}
    env["LOCAL_PROVIDER_LATENCY_MS"] = "200"
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            ["make", "run", f"PORT={port}"], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # so the whole tree (honcho, gunicorn, celery) can be stopped together
        )  # fmt: skip


def wait_serving(process: subprocess.Popen, base_url: str, log_path: Path) -> None:
    def serving() -> bool:
        assert process.poll() is None, log_path.read_text()
        try:
            return requests.get(f"{base_url}/healthz", timeout=5).status_code == 200
        except requests.RequestException:  # not listening yet, or still booting
            return False

    wait_until(serving, timeout=300, interval=0.5, message="make run to serve")


def stop(process: subprocess.Popen, port: int) -> None:
    """Stop the whole tree and wait until nothing listens on the port: `make` itself exits at
    once, while gunicorn's workers finish their shutdown (a second run must not find the first
    one's web process still answering)."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def port_free() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) != 0

    wait_until(port_free, timeout=60, interval=0.2, message="the web process of make run to stop")


def demo_state(clone: Path) -> tuple:
    """What a second `make run` must leave alone: the demo's password hash, its team's balances
    and ledger, the API keys and the operator's password hash."""
    with closing(sqlite3.connect(clone / "var" / "atelier.sqlite3")) as db:
        return (
            db.execute("SELECT password FROM accounts_user WHERE email = 'demo@atelier.local'").fetchone(),
            db.execute("SELECT available, held FROM credits_creditaccount").fetchall(),
            db.execute("SELECT count(*) FROM credits_ledgerentry").fetchone(),
            db.execute("SELECT count(*) FROM accounts_apikey").fetchone(),
            db.execute("SELECT password FROM accounts_user WHERE email = 'operator@atelier.local'").fetchone(),
        )


def admin_session(base_url: str, email: str, password: str) -> requests.Session:
    browser = requests.Session()
    form = browser.get(f"{base_url}/admin/login/", timeout=5)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    browser.post(
        f"{base_url}/admin/login/?next=/admin/",
        data={"username": email, "password": password, "csrfmiddlewaretoken": token, "next": "/admin/"},
        headers={"Referer": f"{base_url}/admin/login/"},
        timeout=10,
    )
    return browser


def test_make_run_from_a_fresh_clone_serves_the_api_and_runs_a_job(tmp_path: Path, capsys):
    clone = tmp_path / "atelier"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    port = free_port()
    log_path = tmp_path / "make-run.log"
    started = time.monotonic()
    process = make_run(clone, port, log_path)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_serving(process, base_url, log_path)
        ready_seconds = time.monotonic() - started
        output = log_path.read_text()
        assert f"http://127.0.0.1:{port}/" in output
        assert "Log in as demo@atelier.local / atelier-demo-1" in output
        assert "(listening on 127.0.0.1)" in output and f"Listening at: http://127.0.0.1:{port}" in output
        api_key = re.search(r"API key for the Demo team: (atl_\S+)", output).group(1)
        operator_email, operator_password, admin_url = re.search(
            r"Operator: (\S+) / (\S+)\s+admin: (\S+)", output
        ).groups()
        assert admin_url == f"{base_url}/admin/"
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
        arrival = browser.get(f"{base_url}/activity/", params={"arrival": "1"}, timeout=10)  # the page's first poll
        assert "1 generation finished while you were away (2 images)" in arrival.text
        # The printed operator logs in to the admin and sees the job's page (its images, its zip).
        operator = admin_session(base_url, operator_email, operator_password)
        assert "Site administration" in operator.get(admin_url, timeout=5).text
        job_page = operator.get(f"{admin_url}generation/generationjob/{job['id']}/change/", timeout=5)
        assert job_page.status_code == 200 and "Job: first light" in job_page.text
        zip_file = operator.get(f"{admin_url}generation/generationjob/{job['id']}/download/", timeout=10)
        assert zip_file.status_code == 200 and zip_file.content.startswith(b"PK")
        with capsys.disabled():
            print(f"\n[figure] make run from a fresh clone: serving after {ready_seconds:.0f}s (install included)")
    finally:
        stop(process, port)

    # A second `make run` changes nothing: the browser stays logged in, and the balance, the
    # ledger and the keys are as the first run and the job left them.
    before = demo_state(clone)
    again_log = tmp_path / "make-run-again.log"
    process = make_run(clone, port, again_log)
    try:
        wait_serving(process, base_url, again_log)
        output = again_log.read_text()
        assert f"API key for the Demo team: {api_key}" in output  # the first run's key, from var/demo-login.txt
        assert demo_state(clone) == before
        assert before[1] == [(498, 0)]
        assert "498 credits" in browser.get(f"{base_url}/studio/", timeout=10).text  # still logged in
    finally:
        stop(process, port)
