"""Small things operators and browsers ask for: the favicon, at its SVG address and at /favicon.ico."""

from __future__ import annotations

from django.templatetags.static import static
from django.test import Client


def test_the_favicon_is_served_as_svg_and_favicon_ico_leads_to_it(db):  # noqa: ARG001
    client = Client()
    icon = client.get(static("atelier/favicon.svg"))
    assert icon.status_code == 200
    assert icon["Content-Type"].startswith("image/svg+xml")
    body = b"".join(icon.streaming_content) if icon.streaming else icon.content
    assert body.startswith(b"<svg") and b'viewBox="0 0 16 16"' in body  # drawn on the 16 px grid it is shown at

    asked = client.get("/favicon.ico")
    assert asked.status_code == 301
    assert asked["Location"] == static("atelier/favicon.svg")
    assert client.head("/favicon.ico").status_code == 301
    assert client.post("/favicon.ico").status_code == 405


def test_every_page_links_the_icon(alice):
    client = Client()
    client.force_login(alice.user)
    assert (
        f'<link rel="icon" href="{static("atelier/favicon.svg")}" type="image/svg+xml">'
        in client.get("/credits/").content.decode()
    )
