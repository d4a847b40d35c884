"""The case cache's fingerprint index: (path, size, mtime_ns, inode) -> sha256 of a file, in SQLite.

Unchanged image files are looked up here instead of re-read on every fill; paths are stored as HMACs under the
pseudonym key, and any SQLite failure turns the index off (fingerprints are then recomputed).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import sqlite3
import threading
import time
from pathlib import Path

from .._pseudonym import pseudonym_key

__all__ = ["FingerprintIndex"]

# A file modified this recently may change again within the file system's timestamp granularity without its
# mtime changing, so its fingerprint is not remembered (the "racy" case git also guards against).
_RACY_NS = 2_000_000_000
_COMMIT_EVERY = 256


class FingerprintIndex:
    """(absolute path, size, mtime_ns, inode) -> sha256 of the file's bytes, in an SQLite database.

    The path is stored as an HMAC-SHA256 under the pseudonym key (:mod:`tl_radiology._pseudonym`): folder and file
    names often carry medical record numbers, and a cache folder inside a run directory may be shared.

    Any SQLite failure (a locked database past the timeout, a damaged file, a read-only folder) turns the index
    off for this process: fingerprints are then computed from the bytes every time, which is slower but right.
    """

    def __init__(self, path: Path):
        self.path = path
        self._conn = None
        self._disabled = False
        self._pending = 0
        self._lock = threading.Lock()
        self._key: bytes | None = None

    def _path_id(self, path: str) -> str:
        if self._key is None:
            self._key = pseudonym_key()
        return hmac.new(self._key, path.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()

    def _connect(self):
        if self._conn is None and not self._disabled:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS files_v1 (path_id TEXT PRIMARY KEY, size INTEGER NOT NULL, "
                    "mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, sha256 TEXT NOT NULL)"
                )
                conn.commit()
                self._conn = conn
            except sqlite3.Error:
                self._disabled = True
        return self._conn

    def lookup(self, path: str, st: os.stat_result) -> str | None:
        with self._lock:
            conn = self._connect()
            if conn is None:
                return None
            try:
                found = conn.execute(
                    "SELECT sha256 FROM files_v1 WHERE path_id = ? AND size = ? AND mtime_ns = ? AND inode = ?",
                    (self._path_id(path), st.st_size, st.st_mtime_ns, st.st_ino),
                ).fetchone()
            except sqlite3.Error:
                self._disable()
                return None
            return found[0] if found else None

    def store(self, path: str, st: os.stat_result, sha: str) -> None:
        if time.time_ns() - st.st_mtime_ns < _RACY_NS:
            return
        with self._lock:
            conn = self._connect()
            if conn is None:
                return
            try:
                conn.execute(
                    "INSERT OR REPLACE INTO files_v1 (path_id, size, mtime_ns, inode, sha256) VALUES (?, ?, ?, ?, ?)",
                    (self._path_id(path), st.st_size, st.st_mtime_ns, st.st_ino, sha),
                )
                self._pending += 1
                if self._pending >= _COMMIT_EVERY:
                    conn.commit()
                    self._pending = 0
            except sqlite3.Error:
                self._disable()

    def commit(self) -> None:
        with self._lock:
            if self._conn is not None and self._pending:
                try:
                    self._conn.commit()
                except sqlite3.Error:
                    self._disable()
                self._pending = 0

    def close(self) -> None:
        self.commit()
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None

    def _disable(self) -> None:
        self._disabled = True
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
