"""Where images, clips, uploads and zips live with a bucket: S3, R2 or another S3-compatible store.

This module imports nothing from Django's settings: settings.py calls it while it is loading, and
tests/test_s3_storage.py calls it for the very storage production gets, with a shorter expiry.
"""

from __future__ import annotations

from typing import Any


def bucket_storage(*, bucket: str, endpoint_url: str, region: str, querystring_expire: int) -> dict[str, Any]:
    """`STORAGES["default"]` for files in `bucket` through django-storages.

    No object is public: none is written with an ACL (the bucket's own policy decides, private
    by default; R2 has no ACLs at all), and every read goes through a URL signed for
    `querystring_expire` seconds that the API, the pages and the admin hand out by redirect.
    The credentials come from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`),
    read by boto3 itself.
    """
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint_url or None,
            "region_name": region or None,
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": querystring_expire,
            # Left to itself, botocore presigns with Signature Version 2 when the region is
            # us-east-1 or unset; R2 refuses those URLs, and so does S3 for buckets made since 2020.
            "signature_version": "s3v4",
            # Every name is new (a random part): a name found taken is an error (files.py
            # `_save_exactly`), never a silent rename or an overwrite.
            "file_overwrite": False,
        },
    }
