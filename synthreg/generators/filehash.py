"""A part file's own hashes, taken by the process that wrote it (see ``engine.FileHash``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FileHash", "hash_bytes", "hash_file"]


@dataclass(frozen=True)
class FileHash:
    """md5 (what DVC records) and sha256 (what the manifest records) of a part's bytes, taken by
    the worker that wrote it; ``size`` and ``mtime_ns`` tell whether the file is still those bytes."""

    md5: str
    sha256: str
    size: int
    mtime_ns: int

    def matches(self, path: Path) -> bool:
        """Whether ``path`` still has this size and modification time (else hash it again)."""
        try:
            info = path.stat()
        except OSError:
            return False
        return info.st_size == self.size and info.st_mtime_ns == self.mtime_ns


def hash_bytes(path: Path) -> tuple[str, str]:
    """md5 and sha256 of a file just written, in one read (from the page cache)."""
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            md5.update(chunk)
            sha256.update(chunk)
    return md5.hexdigest(), sha256.hexdigest()


def hash_file(path: Path) -> FileHash:
    """``path``'s hashes with the size and modification time they describe (a rename keeps both)."""
    info = path.stat()
    md5, sha256 = hash_bytes(path)
    return FileHash(md5, sha256, info.st_size, info.st_mtime_ns)
