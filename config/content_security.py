"""The Content-Security-Policy of the pages (django-csp 4 reads it from settings).

Pages load scripts, styles and fonts only from Atelier itself: no inline script, no inline
style, no eval. Images and clips come from Atelier too, but with files on S3 (or R2, MinIO) an
image's URL answers with a redirect to a signed URL on the bucket's host, and the browser checks
that host against img-src and media-src as well; so the bucket's origins are allowed there.

This module imports nothing from Django's settings: settings.py calls it while it is loading.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from csp.constants import NONE, SELF

# How botocore names a bucket in a URL: a name that is a valid host label is put in front of
# S3's host ("virtual-hosted" style); any other name goes into the path, on S3's regional host.
_HOST_LABEL_BUCKET = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")


def storage_origins(*, bucket: str, endpoint_url: str, region: str) -> list[str]:
    """The origins that signed URLs of `bucket` point at, as django-storages makes them.

    With an endpoint (R2, MinIO, an S3 endpoint of one's own) botocore signs path-style URLs on
    the endpoint itself; the virtual-hosted name is allowed too, should botocore switch. On AWS's
    own S3 the bucket is a host of its own (or, for names that cannot be one, a path on S3's
    host, which any bucket shares). tests/test_security_headers.py checks these against the URLs
    django-storages really signs.
    """
    if not bucket:
        return []
    if endpoint_url:
        parts = urlsplit(endpoint_url)
        return [f"{parts.scheme}://{parts.netloc}", f"{parts.scheme}://{bucket}.{parts.netloc}"]
    hosts = ["s3.amazonaws.com"] + ([f"s3.{region}.amazonaws.com"] if region else [])
    if _HOST_LABEL_BUCKET.fullmatch(bucket):
        return [f"https://{bucket}.{host}" for host in hosts]
    return [f"https://{host}" for host in hosts]


def page_policy(*, media_origins: list[str]) -> dict[str, list[str]]:
    """The directives, in django-csp 4's format (`CONTENT_SECURITY_POLICY["DIRECTIVES"]`)."""
    media = [SELF, *media_origins]
    return {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": media,
        "media-src": media,
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
