"""Content hashes of image files and series folders (the seal and the leakage check share them)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["sha256_file", "image_files", "content_digest"]

_CHUNK = 1 << 20


def sha256_file(path) -> str:
    """Return the hex sha256 of one file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def image_files(path) -> list[Path]:
    """The files an image entry stands for: the file itself, or every non-hidden file under a series folder.

    Folder members are returned sorted by their path relative to the folder, so the order (and any digest built
    from it) does not depend on the file system's listing order.
    """
    path = Path(path)
    if not path.is_dir():
        return [path]
    found = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in filenames if not f.startswith("."))
    return sorted(found, key=lambda p: p.relative_to(path).as_posix())


def content_digest(path) -> str:
    """The sha256 of a file, or for a series folder a sha256 over its members' names and hashes.

    Two series folders get the same digest when they hold the same files under the same relative names, wherever
    the folders are.
    """
    path = Path(path)
    if not path.is_dir():
        return sha256_file(path)
    digest = hashlib.sha256()
    for member in image_files(path):
        digest.update(f"{member.relative_to(path).as_posix()}\0{sha256_file(member)}\n".encode("utf-8"))
    return digest.hexdigest()
