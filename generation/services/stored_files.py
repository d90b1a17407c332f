"""Files in storage as retention sees them: listed under a prefix, dated, deleted in batches.

Every call is bounded by STORAGE_TIMEOUT_SECONDS (`call_bounded`): a storage that hangs raises
StepTimeout, which `storage_part` turns into an InfrastructureFault, instead of hanging the caller.
A file found gone is not an error. Any Django storage works through its own API (local files);
S3 and R2 get a faster path (`BucketFiles`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from botocore.exceptions import ClientError
from django.conf import settings
from django.core.files.storage import Storage, default_storage
from storages.backends.s3 import S3Storage

from generation.services.bounded import call_bounded

T = TypeVar("T")


@dataclass(frozen=True)
class StoredFile:
    """A file in storage; `size` and `modified` are None until asked (listing a bucket tells them)."""

    name: str
    size: int | None = None
    modified: datetime | None = None


def _bounded(fn: Callable[[], T], what: str) -> T:
    """One storage call, abandoned after STORAGE_TIMEOUT_SECONDS (StepTimeout)."""
    return call_bounded(fn, timeout=settings.STORAGE_TIMEOUT_SECONDS, what=what)


class StorageFiles:
    """Listing, dating and deleting files through Django's storage API: any storage (local files)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def folders(self, prefix: str) -> list[str]:
        try:
            folders, _ = _bounded(lambda: self.storage.listdir(prefix), "storage list")
        except FileNotFoundError:
            return []
        return folders

    def files(self, prefix: str) -> Iterator[StoredFile]:
        """Every file under `prefix`, however deep (the folder `teams/1/jobs/<id>/` included)."""
        try:
            folders, files = _bounded(lambda: self.storage.listdir(prefix), "storage list")
        except FileNotFoundError:
            return
        for name in files:
            yield StoredFile(f"{prefix}/{name}")
        for folder in folders:
            yield from self.files(f"{prefix}/{folder}")

    def measured(self, file: StoredFile) -> StoredFile | None:
        """`file` with its size and age, or None when it is gone."""
        if file.size is not None and file.modified is not None:
            return file
        try:
            modified = _bounded(lambda: self.storage.get_modified_time(file.name), "storage stat")
            size = _bounded(lambda: self.storage.size(file.name), "storage stat")
        except FileNotFoundError:
            return None
        return StoredFile(file.name, size=size, modified=modified)

    def delete(self, names: list[str]) -> None:
        for name in names:
            _bounded(partial(self.storage.delete, name), "storage delete")


class BucketFiles(StorageFiles):
    """The same on S3 (or R2), with one listing request per 1,000 files, which also tells each
    file's size and age, and one request per 1,000 deletes. Through django-storages, a sweep would
    list each job's folder on its own and ask each file's age with a request of its own."""

    def __init__(self, storage: S3Storage) -> None:
        super().__init__(storage)
        # A low-level client is safe to share between threads (every call runs on a bounded one).
        self.client = storage.connection.meta.client
        self.bucket = storage.bucket_name
        location = (storage.location or "").strip("/")
        self.root = f"{location}/" if location else ""

    def _pages(self, prefix: str, **options: Any) -> Iterator[dict]:
        options = {"Bucket": self.bucket, "Prefix": f"{self.root}{prefix}/", **options}
        while True:
            page = _bounded(partial(self.client.list_objects_v2, **options), "storage list")
            yield page
            if not page.get("IsTruncated"):
                return
            options["ContinuationToken"] = page["NextContinuationToken"]

    def folders(self, prefix: str) -> list[str]:
        start = len(f"{self.root}{prefix}/")
        return [
            entry["Prefix"][start:].rstrip("/")
            for page in self._pages(prefix, Delimiter="/")
            for entry in page.get("CommonPrefixes", ())
        ]

    def files(self, prefix: str) -> Iterator[StoredFile]:
        for page in self._pages(prefix):
            for entry in page.get("Contents", ()):
                yield StoredFile(entry["Key"][len(self.root) :], size=entry["Size"], modified=entry["LastModified"])

    def measured(self, file: StoredFile) -> StoredFile | None:
        if file.size is not None and file.modified is not None:
            return file
        try:
            head = _bounded(
                partial(self.client.head_object, Bucket=self.bucket, Key=f"{self.root}{file.name}"), "storage stat"
            )
        except ClientError as error:
            if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise
        return StoredFile(file.name, size=head["ContentLength"], modified=head["LastModified"])

    def delete(self, names: list[str]) -> None:
        for start in range(0, len(names), 1000):
            keys = [{"Key": f"{self.root}{name}"} for name in names[start : start + 1000]]
            answer = _bounded(
                partial(self.client.delete_objects, Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}),
                "storage delete",
            )
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise OSError(f"the bucket kept {len(answer['Errors'])} files, {first.get('Key')}: {first.get('Code')}")


def stored_files() -> StorageFiles:
    if isinstance(default_storage, S3Storage):
        return BucketFiles(default_storage)
    return StorageFiles(default_storage)
