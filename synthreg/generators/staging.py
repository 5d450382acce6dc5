"""Parts written by cluster workers to an object store, for a cluster that shares no folder with
the client (``generate(..., stage=PartStage(...))``).

A task writes its part to a temporary file on its own machine, hashes it, and uploads it to
``<url>/tables/<table>/part-NNNNN.parquet``: a fixed key, and an S3 PUT is all or nothing, so a
retried task replaces the object with the same bytes and no reader sees half a part. The client
then downloads every part into its staging folder, checking each file's sha256 against the one
the worker took (a mismatch is an error, not a silent copy); with a DVC ``remote`` it copies the
checked parts there inside the object store (``promote``: ``dvc push`` then finds them and does
not upload them again); and it deletes the staged objects, also when anything failed. A table's
group constraints are applied to its staged parts before that (``group_rules.enforce(...,
stage=)``): the tasks keep their pieces under ``<url>/groups/`` and stage the rewritten parts
under ``<url>/rewritten/`` (:meth:`PartStage.within`), which are then the ones fetched.
Credentials come from the environment of each process (pyarrow's S3 client reads
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, as dvc-s3 does); only the URL and the endpoint
travel with the tasks.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

__all__ = [
    "STAGING_PREFIX",
    "PartStage",
    "StagingError",
    "cached_filesystem",
    "s3_region",
    "scratch_root",
    "staged_runs",
]

#: Under the S3 remote: ``<remote>/synthreg-staging/<staging id>/tables/<table>/part-N.parquet``.
STAGING_PREFIX = "synthreg-staging"

_CHUNK = 8 << 20
_DOWNLOADS = 8


class StagingError(RuntimeError):
    """A staged part that is missing or is not the bytes its worker wrote."""


@dataclass(frozen=True)
class PartStage:
    """Where cluster tasks put their parts: ``s3://bucket/prefix`` and the S3 endpoint
    (``http://host:port``; None for AWS itself)."""

    url: str
    endpoint: str | None = None
    #: the bucket's AWS region when there is no endpoint (pyarrow does not follow redirects)
    region: str | None = None
    #: the DVC remote (``s3://bucket/prefix``, same endpoint) that :meth:`promote` copies checked
    #: parts into, so that ``dvc push`` finds them there instead of uploading them again
    remote: str | None = None

    def __post_init__(self) -> None:
        parsed = urlparse(self.url)
        if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
            raise ValueError(f"a part stage is s3://bucket/prefix, not {self.url!r}")

    @property
    def root(self) -> str:
        """The stage's prefix as pyarrow's S3 filesystem names it: ``bucket/prefix``."""
        return _bucket_path(self.url)

    def key(self, table: str, name: str) -> str:
        """The object of part file ``name`` of ``table`` (bucket/prefix/tables/table/name)."""
        return f"{self.root}/tables/{table}/{name}"

    def filesystem(self) -> Any:
        """pyarrow's S3 filesystem for the stage's endpoint. Where pyarrow has it (21 and later),
        its output streams open lazily (``allow_delayed_open``): an object smaller than one
        upload part is then one PUT, not a multipart upload's three requests (the group rules'
        pieces are many and small)."""
        import pyarrow.fs as pafs

        options: dict[str, Any] = {}
        if self.endpoint is None:
            options["region"] = self.region
        else:
            scheme, _, host = self.endpoint.rpartition("://")
            options.update(endpoint_override=host.split("/")[0], scheme=scheme or "https")
        options = {k: v for k, v in options.items() if v is not None}
        try:
            return pafs.S3FileSystem(**options, allow_delayed_open=True)
        except TypeError:  # an older pyarrow: every object a multipart upload, as before
            return pafs.S3FileSystem(**options)

    def within(self, name: str) -> PartStage:
        """The stage under ``<url>/<name>`` (same endpoint and remote): what :meth:`clear` of this
        one deletes too."""
        return dataclasses.replace(self, url=f"{self.url.rstrip('/')}/{name}")

    def upload(self, local: Path, table: str) -> None:
        """Put ``local`` (named like the part) at its key."""
        self.put(local, self.key(table, local.name))

    def put(self, local: Path, key: str) -> None:
        """Put the file ``local`` at ``key`` (``bucket/path``). A failed copy raises; the object may
        then hold part of the file (pyarrow completes the upload on the way out), so nothing
        must read a key whose put raised: the stage is cleared. A worker killed mid-upload can
        leave an unfinished multipart upload, which a bucket lifecycle rule should abort."""
        fs = cached_filesystem(self)
        with open(local, "rb") as source, fs.open_output_stream(key) as out:
            for chunk in iter(lambda: source.read(_CHUNK), b""):
                out.write(chunk)

    def download(self, parts: list[tuple[str, Path, str, int | None]]) -> None:
        """Fetch each ``(table, local path, sha256, mtime_ns)`` to its local path, a few at a time,
        checking the bytes: ``StagingError`` if a part is missing or differs. A checked file gets
        the worker's modification time (``mtime_ns``, when given): it is the file the worker wrote
        and observed, so facts the worker sent about it (``validators.fused``) still apply."""
        fs = self.filesystem()
        with ThreadPoolExecutor(max_workers=_DOWNLOADS, thread_name_prefix="synthreg-fetch") as pool:
            list(pool.map(lambda p: self._fetch(fs, *p), parts))

    def _fetch(self, fs: Any, table: str, local: Path, sha256: str, mtime_ns: int | None) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = local.with_name(f".{local.name}.download")
        try:
            with open(partial, "wb") as out:
                _copy_checked(fs, self.key(table, local.name), out.write, sha256)
        except StagingError:
            partial.unlink(missing_ok=True)
            raise
        if mtime_ns is not None:
            os.utime(partial, ns=(mtime_ns, mtime_ns))
        partial.replace(local)

    def read_checked(self, key: str, sha256: str) -> Any:
        """The object ``key`` (``bucket/path``) in memory (a pyarrow buffer of its size, read at
        once), checked like a download: ``StagingError`` if it cannot be read or is not the
        bytes of that sha256."""
        try:
            with cached_filesystem(self).open_input_file(key) as source:
                data = source.read_buffer()
        except OSError as exc:
            raise StagingError(f"staged part s3://{key} could not be read: {exc}") from exc
        _check(key, hashlib.sha256(memoryview(data)).hexdigest(), sha256)
        return data

    def promote(self, parts: list[tuple[str, str, str]]) -> int:
        """Copy each staged ``(table, part name, md5)`` to its object in the DVC remote
        (``<remote>/files/md5/<2>/<30>``, DVC's layout), inside the object store (no bytes
        through this machine), unless an object of that md5 is already there. Call it once the
        parts were downloaded and checked. Returns how many were copied."""
        if self.remote is None:
            return 0
        import pyarrow.fs as pafs

        fs = self.filesystem()
        root = _bucket_path(self.remote)

        def copy(table: str, name: str, md5: str) -> int:
            dest = f"{root}/files/md5/{md5[:2]}/{md5[2:]}"
            if fs.get_file_info(dest).type != pafs.FileType.NotFound:
                return 0
            fs.copy_file(self.key(table, name), dest)
            return 1

        with ThreadPoolExecutor(max_workers=_DOWNLOADS, thread_name_prefix="synthreg-promote") as pool:
            return sum(pool.map(lambda p: copy(*p), parts))

    def parts(self) -> int:
        """How many objects are staged: parts, and under ``within`` stages the group rules'
        pieces and rewritten parts."""
        import pyarrow.fs as pafs

        found = self.filesystem().get_file_info(
            pafs.FileSelector(self.root, recursive=True, allow_not_found=True)
        )
        return sum(1 for info in found if info.type == pafs.FileType.File)

    def clear(self) -> None:
        """Delete every staged object (nothing if there are none). pyarrow then leaves an empty
        marker object for the parent prefix (``.../synthreg-staging/``): zero bytes, no data."""
        import pyarrow.fs as pafs

        fs = self.filesystem()
        info = fs.get_file_info(self.root)
        if info.type != pafs.FileType.NotFound:
            fs.delete_dir(self.root)


def _copy_checked(fs: Any, key: str, write: Any, sha256: str) -> None:
    """Stream the object ``key`` to ``write``, hashing it: ``StagingError`` if it cannot be read
    or its sha256 is not ``sha256`` (what was written by then is the caller's to discard)."""
    digest = hashlib.sha256()
    try:
        with fs.open_input_stream(key) as source:
            for chunk in iter(lambda: source.read(_CHUNK), b""):
                digest.update(chunk)
                write(chunk)
    except OSError as exc:
        raise StagingError(f"staged part s3://{key} could not be read: {exc}") from exc
    _check(key, digest.hexdigest(), sha256)


def _check(key: str, found: str, sha256: str) -> None:
    if found != sha256:
        raise StagingError(
            f"staged part s3://{key} is not what its worker wrote "
            f"(sha256 {found[:16]}..., expected {sha256[:16]}...)"
        )


def scratch_root() -> str | None:
    """Where a task makes files before uploading them: its Dask worker's own directory (Dask
    removes a dead worker's, so a task killed mid-write leaves nothing), else the system's temp."""
    try:
        from distributed import get_worker

        return str(get_worker().local_directory)
    except (ImportError, ValueError):
        return None


def cached_filesystem(stage: PartStage) -> Any:
    """``stage.filesystem()``, made once per process, endpoint and region: a task that reads and
    writes many objects, or many tasks on one worker, share one S3 client."""
    return _filesystem(stage.endpoint, stage.region)


@functools.lru_cache(maxsize=8)
def _filesystem(endpoint: str | None, region: str | None) -> Any:
    return PartStage("s3://any/stage", endpoint, region).filesystem()


def _bucket_path(url: str) -> str:
    """``s3://bucket/prefix/`` as pyarrow's S3 filesystem names it: ``bucket/prefix``."""
    parsed = urlparse(url)
    return f"{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")


def staged_runs(remote: str, endpoint: str | None, region: str | None = None) -> dict[str, PartStage]:
    """The stages under ``<remote>/synthreg-staging/``, by staging id (empty when none)."""
    import pyarrow.fs as pafs

    base = PartStage(f"{remote.rstrip('/')}/{STAGING_PREFIX}", endpoint, region)
    found = base.filesystem().get_file_info(pafs.FileSelector(base.root, allow_not_found=True))
    return {
        info.base_name: PartStage(f"{base.url}/{info.base_name}", endpoint, region)
        for info in found
        if info.type == pafs.FileType.Directory
    }


def s3_region(url: str, endpoint: str | None) -> str | None:
    """The bucket's region on AWS itself (pyarrow does not follow S3's redirects); None with an
    endpoint, or when it cannot be found out."""
    if endpoint is not None:
        return None
    import pyarrow.fs as pafs

    try:
        return str(pafs.resolve_s3_region(url.removeprefix("s3://").split("/")[0]))
    except OSError:
        return None
