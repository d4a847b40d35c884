"""An on-disk cache of loaded cases: decode and transform each case once, keyed by file content and loader config.

Layout of a cache folder::

    CACHEDIR.TAG            marks the folder as a cache (backup tools skip it)
    cases/ab/<sha256>.npy   one loaded case (float32 H x W x C), named by its key
    stacks/<sha256>.npy     one data set's cases as one N x H x W x C array, named by the ordered list of keys
    fingerprints.sqlite     (keyed hash of the path, size, mtime_ns, inode) -> sha256 of the file, so files
                            are not re-read; paths are stored as HMACs (they often hold patient ids)

A case's key is the sha256 of: the cache format version, the versions of the code that decodes and transforms
(tl_radiology, pydicom, scikit-image, scipy), the loader's ``get_config()``, the sha256 of every image file of the
case (every file of a series folder, with its relative name) and the case's centre if the loader reads one. So a
changed file, a changed transform parameter or an upgraded decoder gives a new key; nothing else does (not the
file's name, not the patient). File names are content hashes and files hold pixels only.

Every entry and stack ends with a 12-byte trailer, ``TLRCRC32`` and the CRC-32 of the ``.npy`` bytes before it
(``np.load`` reads the array and ignores the trailer). A fill looks at the header, the size and the trailer only
(cheap); reading an entry's pixels (``read_entry``, building a stack, the per-file reader of a large data set)
and opening a stack check the CRC, and an entry or stack that fails it (overwritten, damaged by a power cut) is
rebuilt from the image files with a warning naming the case, never used.

Entries and stacks are written to a temporary file (named with the host and process id) that is fsynced and
renamed into place, so a killed run leaves either a whole entry or none; a later fill removes temporaries of
processes of this host that are gone, and any temporary older than an hour. Before writing, the free space of the
folder is checked (``shutil.disk_usage``) and a stack is written with plain writes, not through a memory map, so a
full disk ends with one :class:`~tl_radiology.InputError` naming the folder and the space needed (exit status 2),
not a SIGBUS, and leaves no temporary file behind. Two processes may share a cache: at worst both compute the same entry, and the fingerprint index is
an SQLite database that serialises its writers (when it is busy or unusable, fingerprints are simply recomputed).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import io
import json
import os
import secrets
import shutil
import socket
import sqlite3
import struct
import threading
import time
import warnings
import zlib
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np

from .._atomic import atomic_write_text
from .._errors import InputError, TLRadiologyError
from .._progress import Progress
from .._pseudonym import pseudonym_key
from ._hashing import image_files, sha256_file
from ._loader import CaseLoader, case_label
from .._version import __version__

__all__ = ["CaseCache", "CACHE_FORMAT_VERSION", "check_same_shape"]

#: Bumped whenever the layout or the meaning of a key changes; old entries are then simply not found.
#: 2: entries and stacks carry a CRC-32 trailer.
CACHE_FORMAT_VERSION = 2

#: ``TLRCRC32`` + little-endian uint32 CRC-32 of every byte of the file before it.
_TRAILER_MAGIC = b"TLRCRC32"
_TRAILER_BYTES = len(_TRAILER_MAGIC) + 4
# Room left on the disk beyond what a write needs (the file system's own metadata, the fingerprint index).
_FREE_MARGIN_BYTES = 64 << 10
_HOST = "".join(c if c.isalnum() or c == "-" else "_" for c in socket.gethostname())[:40] or "host"

# A file modified this recently may change again within the file system's timestamp granularity without its
# mtime changing, so its fingerprint is not remembered (the "racy" case git also guards against).
_RACY_NS = 2_000_000_000
# Temporary files older than this are left over from a killed writer and are removed.
_STALE_TEMP_SECONDS = 3600
_COMMIT_EVERY = 256
_MAX_LISTED = 5

_CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by tl_radiology (decoded cases).\n"
    "# For information about cache directory tags, see https://bford.info/cachedir/\n"
)


@lru_cache(maxsize=1)
def _code_versions() -> dict[str, str]:
    """Versions of the code that turns files into arrays; an upgrade may change pixels, so it changes keys."""
    from importlib import metadata

    versions = {"tl_radiology": __version__}
    for package in ("pydicom", "scikit-image", "scipy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            versions[package] = "absent"
    return versions


class _FingerprintIndex:
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


class _CacheWriteError(InputError):
    """The cache folder cannot be written (permissions, full disk): reported once, not once per case."""


def check_same_shape(cases, shapes) -> tuple[int, ...]:
    """Return the one shape every case has, or fail naming the rows whose shape differs from the most common one.

    Raises:
        InputError: ``Cases must all have one shape to be batched: 38 cases are 64x64x3 (e.g. row 2), but row 7
            is 32x32x3; ...``.
    """
    counts = Counter(tuple(s) for s in shapes)
    if len(counts) <= 1:
        return tuple(shapes[0]) if shapes else ()
    common, num_common = counts.most_common(1)[0]
    rows = [case for (_, case) in _iter_cases(cases)]
    example = next(case_label(case) for case, s in zip(rows, shapes) if tuple(s) == common)
    odd = [(case, s) for case, s in zip(rows, shapes) if tuple(s) != common]
    listed = ", ".join(f"{case_label(case)} is {_fmt(s)}" for case, s in odd[:_MAX_LISTED])
    more = f" and {len(odd) - _MAX_LISTED} more" if len(odd) > _MAX_LISTED else ""
    raise InputError(
        f"Cases must all have one shape to be batched: {num_common} cases are {_fmt(common)} (e.g. {example}), but "
        f"{listed}{more}. Give every case one size, e.g. with Resize(...) in the loader's per_image transform."
    )


def _fmt(shape) -> str:
    return "x".join(str(int(v)) for v in shape)


#: ``.npy`` format version -> its header reader (the versions ``np.save`` writes for a float32 array).
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _iter_cases(cases):
    """``(position, row)`` for a DataFrame (rows as dicts column -> value) or a sequence of dict-like cases.

    ``itertuples`` rather than ``iterrows``: building a Series per row was a fifth of a warm fill (profile of
    benchmarks/README.md), and a dict keeps each column's own type (a Series upcasts a row to one dtype).
    """
    if hasattr(cases, "itertuples"):
        columns = list(cases.columns)
        for position, values in enumerate(cases.itertuples(index=False, name=None)):
            yield position, dict(zip(columns, values))
    else:
        yield from enumerate(cases)


def _num_cases(cases) -> int:
    return len(cases)


def _raise_collected(problems: list[TLRadiologyError], total: int) -> None:
    if len(problems) == 1:
        raise problems[0]
    kinds = {type(p) for p in problems}
    cls = kinds.pop() if len(kinds) == 1 else InputError
    listed = "; ".join(str(p).rstrip(". ") for p in problems[:_MAX_LISTED])
    more = f"; and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    message = f"{len(problems)} of {total} cases could not be loaded: {listed}{more}."
    try:
        error = cls(message)
    except TypeError:  # pragma: no cover - an error class with another constructor
        error = InputError(message)
    raise error


class CaseCache:
    """A folder of decoded, transformed cases, each stored once as ``.npy`` under a content-derived key.

    The key of a case combines the sha256 of its image files (every file of a series folder), the loader's
    config, the case's centre (if the loader reads one), the cache format version and the versions of the decoding
    code. A changed file or transform parameter therefore gives a new entry; an unchanged case is read back
    instead of decoded again. File fingerprints are remembered in ``fingerprints.sqlite`` by
    ``(path, size, mtime_ns, inode)`` so unchanged files are not re-read on every run.

    Only give it train and validation cases: a training run's cache must never hold the sealed test cases.

    Attributes:
        folder: the cache folder.
        hits: cases found in the cache (since this object was made).
        misses: cases loaded and written to the cache.
        files_hashed: image files whose bytes were read to fingerprint them (the rest came from the index).

    Args:
        folder: where the cache lives (created if needed), e.g. ``RUN_DIR/cache``. Delete the folder, or call
            :meth:`clear`, to empty it.

    Example:
        >>> cache = CaseCache("runs/a/cache")  # doctest: +SKIP
        >>> cache.fill(train_cases, loader)  # doctest: +SKIP
        >>> cache.hits, cache.misses, cache.size_bytes()  # doctest: +SKIP
        (0, 400, 19727200)
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise InputError(f"Cache folder {self.folder} is a file, expected a folder. Choose another cache folder.")
        self.hits = 0
        self.misses = 0
        self.files_hashed = 0
        self._index = _FingerprintIndex(self.folder / "fingerprints.sqlite")
        self._cleaned = False

    def __repr__(self) -> str:
        return f"CaseCache({str(self.folder)!r}, hits={self.hits}, misses={self.misses})"

    def __getstate__(self):  # a copy (e.g. in another process) opens its own database connection
        state = self.__dict__.copy()
        state["_index"] = _FingerprintIndex(self.folder / "fingerprints.sqlite")
        return state

    # ------------------------------------------------------------------------------------------------ keys
    def fingerprint(self, path) -> str:
        """The sha256 of an image file, or of a series folder (its files' relative names and sha256s).

        Unchanged files (same path, size, mtime and inode) are looked up in the index instead of re-read.

        Raises:
            OSError: the file or folder cannot be read.
        """
        path = Path(path)
        if not path.is_dir():
            return self._file_sha(path)
        digest = hashlib.sha256()
        for member in image_files(path):
            digest.update(f"{member.relative_to(path).as_posix()}\0{self._file_sha(member)}\n".encode("utf-8"))
        return digest.hexdigest()

    def _file_sha(self, path: Path) -> str:
        absolute = os.path.abspath(path)
        st = os.stat(absolute)
        sha = self._index.lookup(absolute, st)
        if sha is None:
            sha = sha256_file(absolute)
            self.files_hashed += 1
            self._index.store(absolute, st, sha)
        return sha

    def key(self, case, loader: CaseLoader) -> str:
        """The cache key (64 hex digits) of ``case`` loaded by ``loader``.

        Raises:
            ImageReadError: an image file is missing or unreadable (named with the case row and column).
        """
        _check_loader(loader)
        return self._key(case, loader, loader.get_config())

    def _key(self, case, loader: CaseLoader, loader_config: dict) -> str:
        digests = []
        for column in loader.image_columns:
            path = case[column] if column in case else None
            try:
                digests.append(self.fingerprint(path))
            except (OSError, TypeError):
                loader(case)  # raises the reader's error, named with the row and column
                raise InputError(f"{case_label(case, column)}: cannot read {path!r} to fingerprint it.") from None
        payload = {
            "cache_format": CACHE_FORMAT_VERSION,
            "code": _code_versions(),
            "loader": loader_config,
            "images": digests,
            "center": None if loader.center_columns is None else list(loader._center(case)),
        }
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    # ------------------------------------------------------------------------------------------------ entries
    def entry_path(self, key: str) -> Path:
        """Where the entry of ``key`` is (or would be) stored."""
        return self.folder / "cases" / key[:2] / f"{key}.npy"

    def read_entry(self, key: str) -> np.ndarray | None:
        """The cached array of ``key``, or ``None`` if there is none, or it is damaged (its CRC does not match)."""
        return self._read_checked(key)[0]

    def _read_checked(self, key: str) -> tuple[np.ndarray | None, str]:
        """``(array, "ok")``, ``(None, "missing")`` or ``(None, "damaged")`` (bad CRC, header or size)."""
        path = self.entry_path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None, "missing"
        except OSError:
            return None, "damaged"
        payload = _verified_payload(data)
        if payload is None:
            return None, "damaged"
        try:
            x = np.load(io.BytesIO(payload), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None, "damaged"
        if x.dtype != np.float32 or x.ndim != 3:
            return None, "damaged"
        return x, "ok"

    def _checked_or_rebuilt(self, key: str, case, loader: CaseLoader) -> np.ndarray:
        """The entry of ``key``; one that is missing or fails its CRC is loaded again and rewritten (with a
        warning naming the case when it was damaged)."""
        x, state = self._read_checked(key)
        if x is not None:
            return x
        if state == "damaged":
            warnings.warn(
                f"Case cache entry {self.entry_path(key).name} of {case_label(case)} failed its checksum (changed or "
                f"damaged on disk); it was rebuilt from the image files.", UserWarning, stacklevel=3,
            )
        x = loader(case)
        self._write_entry(key, x)
        return x

    def _entry_shape(self, key: str) -> tuple[int, ...] | None:
        """The shape of an entry from its ``.npy`` header alone (no pixels read), or None if missing or damaged.

        The header is read from the open file and the file's size checked against it, so a truncated entry (a
        power cut) counts as missing, as memory-mapping it did; mapping and unmapping every entry only to read
        its shape was 56 % of a warm fill (benchmarks/README.md).
        """
        path = self.entry_path(key)
        try:
            with open(path, "rb") as fh:
                read_header = _NPY_HEADER_READERS.get(np.lib.format.read_magic(fh))
                if read_header is None:  # np.save writes 1.0 (2.0 for huge headers) for a float32 array
                    return None
                shape, _, dtype = read_header(fh)
                data_bytes = os.fstat(fh.fileno()).st_size - fh.tell() - _TRAILER_BYTES
                if data_bytes < 0:
                    return None
                fh.seek(data_bytes, os.SEEK_CUR)
                trailer = fh.read(_TRAILER_BYTES)
        except (OSError, ValueError, EOFError):  # missing, unreadable or a damaged header
            return None
        if dtype != np.float32 or len(shape) != 3 or not trailer.startswith(_TRAILER_MAGIC):
            return None
        if data_bytes != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            return None  # truncated (or with bytes after the array): not an entry this cache wrote whole
        return tuple(int(v) for v in shape)

    def _write_entry(self, key: str, x: np.ndarray, *, remaining: int = 1) -> None:
        """Write an entry (``.npy`` + CRC trailer) atomically; ``remaining``: entries still to write, for the
        space estimate of a full disk's message."""
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(x, dtype="<f4"), allow_pickle=False)
        payload = buffer.getvalue()
        payload += _TRAILER_MAGIC + struct.pack("<I", zlib.crc32(payload))
        self._check_free_space(len(payload), len(payload) * max(int(remaining), 1))
        with self._atomic_file(self.entry_path(key)) as fh:
            fh.write(payload)

    def _check_free_space(self, needed: int, estimate: int) -> None:
        """Refuse before writing ``needed`` bytes when the disk of the cache folder has no room for them."""
        try:
            free = shutil.disk_usage(self.folder).free
        except OSError:
            return  # cannot tell: the write itself reports a full disk
        if free < needed + _FREE_MARGIN_BYTES:
            raise _CacheWriteError(self._no_space(max(needed, estimate) + _FREE_MARGIN_BYTES, free))

    def _no_space(self, needed: int | None, free: int | None) -> str:
        need = f"about {_size(needed)} free" if needed else "more free space"
        have = f", the disk has {_size(free)}" if free is not None else ""
        return (
            f"Not enough free space for the case cache in {self.folder}: writing it needs {need}{have}. Free space "
            f"on that disk, or give --out (or the cache folder) on a disk with room, and run again; nothing was "
            f"half-written."
        )

    @contextlib.contextmanager
    def _atomic_file(self, path: Path):
        """An open temporary file beside ``path``, fsynced and renamed onto it on success, removed on failure.

        The temporary is named ``.<name>.<host>.<pid>.<random>.tmp`` so a later fill can tell that its writer is
        gone (:meth:`_clean_stale_temporaries`). A full disk or another write failure becomes one
        :class:`_CacheWriteError` naming the folder.
        """
        tmp = path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "xb") as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(exc, OSError):
                raise _CacheWriteError(self._write_failure(exc)) from None
            raise

    def _write_failure(self, exc: OSError) -> str:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            free = None
            with contextlib.suppress(OSError):
                free = shutil.disk_usage(self.folder).free
            return self._no_space(None, free)
        return (
            f"Cannot write to the cache folder {self.folder}: {exc.strerror or exc}. Expected a folder you can write "
            f"to with free space; choose another cache folder, free space, or fix its permissions."
        )

    def get_or_load(self, case, loader: CaseLoader) -> np.ndarray:
        """The loaded case from the cache, loading and storing it first on a miss.

        Args:
            case: a row of a train or validation case table.
            loader: the :class:`CaseLoader` that turns it into model input.

        Returns:
            float32 ``H x W x C`` in [0, 1] (a new array).

        Raises:
            ImageReadError, InputError: as :class:`CaseLoader` raises them (named with the case row).
        """
        key = self.key(case, loader)
        x, state = self._read_checked(key)
        if x is not None:
            self.hits += 1
        else:
            x = self._checked_or_rebuilt(key, case, loader) if state == "damaged" else loader(case)
            if state != "damaged":
                self._write_entry(key, x)
            self.misses += 1
        self._index.commit()
        return x

    def fill(self, cases, loader: CaseLoader) -> list[str]:
        """Make sure every case is in the cache, loading those that are not; show progress with an ETA.

        Every case is tried: cases that fail are reported together at the end (the others are cached, so a
        rerun after fixing them is quick).

        Args:
            cases: a case table (DataFrame) of train and/or validation cases.
            loader: the :class:`CaseLoader`.

        Returns:
            The cases' keys, in row order.

        Raises:
            ImageReadError, InputError: cases that could not be loaded, each named with its row and column.

        Example:
            >>> keys = CaseCache("runs/a/cache").fill(run.cases("train"), loader)  # doctest: +SKIP
            reading and caching: 120/400 (30%) elapsed 4s, ETA 10s
        """
        keys, _ = self._fill(cases, loader)
        return keys

    def _fill(self, cases, loader: CaseLoader) -> tuple[list[str], list[tuple[int, ...]]]:
        _check_loader(loader)
        self._clean_stale_temporaries()
        total = _num_cases(cases)
        keys: list[str] = []
        shapes: list[tuple[int, ...]] = []
        config = loader.get_config()
        problems: list[TLRadiologyError] = []
        try:
            with Progress(total, "reading and caching") as bar:
                for position, case in _iter_cases(cases):
                    try:
                        key = self._key(case, loader, config)
                        shape = self._entry_shape(key)
                        if shape is not None:
                            self.hits += 1
                        else:
                            x = loader(case)
                            self._write_entry(key, x, remaining=total - position)
                            self.misses += 1
                            shape = x.shape
                    except _CacheWriteError:
                        raise  # every other case would fail the same way
                    except TLRadiologyError as exc:
                        problems.append(exc)
                        key, shape = "", ()
                    keys.append(key)
                    shapes.append(tuple(shape))
                    bar.update()
        finally:
            self._index.commit()
        if problems:
            _raise_collected(problems, total)
        return keys, shapes

    # ------------------------------------------------------------------------------------------------ stacks
    def _stack(self, keys: list[str], shape: tuple[int, ...], cases=None, loader: CaseLoader | None = None
               ) -> np.ndarray:
        """The entries of ``keys`` as one read-only memory-mapped ``N x H x W x C`` array (written once).

        Slicing it reads from the operating system's page cache, not from Python memory, so a small data set is
        fast per epoch while memory does not grow with the number of cases. The stack's CRC is checked each time
        it is opened (one sequential read); a stack that fails it is rebuilt with a warning. Entries are checked
        as they are copied in; with ``cases`` and ``loader`` a damaged one is rebuilt from its files.

        The stack is written with plain writes after a free-space check, never through a writable memory map: a
        disk that fills under a memory map kills the process with SIGBUS.
        """
        name = hashlib.sha256(
            (f"stack-format {CACHE_FORMAT_VERSION}\n" + "\n".join(keys)).encode("ascii")
        ).hexdigest()
        path = self.folder / "stacks" / f"{name}.npy"
        expected = (len(keys), *shape)
        stack, state = self._open_stack(path, expected)
        if stack is not None:
            return stack
        if state == "damaged":
            warnings.warn(f"Case cache stack {path.name} failed its checksum (changed or damaged on disk); it was "
                          "rebuilt from the cache entries.", UserWarning, stacklevel=3)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False, "shape": expected}
        head = io.BytesIO()
        np.lib.format.write_array_header_1_0(head, header)
        head = head.getvalue()
        needed = len(head) + int(np.prod(expected, dtype=np.int64)) * 4 + _TRAILER_BYTES
        self._check_free_space(needed, needed)
        rows = list(_iter_cases(cases)) if cases is not None and loader is not None else None
        with self._atomic_file(path) as fh:
            crc = zlib.crc32(head)
            fh.write(head)
            for i, key in enumerate(keys):
                if rows is not None:
                    x = self._checked_or_rebuilt(key, rows[i][1], loader)
                else:
                    x = self.read_entry(key)
                if x is None or x.shape != tuple(shape):
                    raise InputError(
                        f"Cache entry {key} disappeared or changed while building a data set (is another "
                        f"process clearing {self.folder}?). Run again."
                    )
                data = np.ascontiguousarray(x, dtype="<f4").tobytes()
                crc = zlib.crc32(data, crc)
                fh.write(data)
            fh.write(_TRAILER_MAGIC + struct.pack("<I", crc))
        stack, _ = self._open_stack(path, expected)
        if stack is None:  # pragma: no cover - just written
            raise InputError(f"Cannot read back {path}; check the disk and run again.")
        return stack

    @staticmethod
    def _open_stack(path: Path, expected: tuple[int, ...]) -> tuple[np.ndarray | None, str]:
        try:
            stack = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            return None, "missing"
        except (OSError, ValueError, EOFError):
            return None, "damaged"
        if stack.dtype != np.float32 or tuple(stack.shape) != expected or not _file_crc_ok(path):
            return None, "damaged"
        return stack, "ok"

    # ------------------------------------------------------------------------------------------------ upkeep
    def size_bytes(self) -> int:
        """Bytes the cache takes on disk (entries, stacks and the fingerprint index)."""
        total = 0
        if not self.folder.is_dir():
            return 0
        for dirpath, _, filenames in os.walk(self.folder):
            for name in filenames:
                with contextlib.suppress(OSError):
                    total += os.stat(os.path.join(dirpath, name)).st_size
        return total

    def clear(self) -> None:
        """Delete every entry, stack and fingerprint (the folder itself stays). Other processes must not be using it."""
        self._index.close()
        if self.folder.is_dir():
            for child in self.folder.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        child.unlink()
        self.hits = self.misses = self.files_hashed = 0

    def close(self) -> None:
        """Write out and close the fingerprint index (also done after every fill)."""
        self._index.close()

    def _clean_stale_temporaries(self) -> None:
        """Mark the folder as a cache and remove temporaries a killed writer left behind (once per object)."""
        if self._cleaned:
            return
        self._cleaned = True
        self.folder.mkdir(parents=True, exist_ok=True)
        tag = self.folder / "CACHEDIR.TAG"
        if not tag.exists():
            with contextlib.suppress(OSError):
                atomic_write_text(tag, _CACHEDIR_TAG)
        cutoff = time.time() - _STALE_TEMP_SECONDS
        for sub in ("cases", "stacks"):
            base = self.folder / sub
            if not base.is_dir():
                continue
            for dirpath, _, filenames in os.walk(base):
                for name in filenames:
                    if name.startswith(".") and ".tmp" in name:
                        full = os.path.join(dirpath, name)
                        with contextlib.suppress(OSError):
                            if _writer_gone(name) or os.stat(full).st_mtime < cutoff:
                                os.unlink(full)


def _verified_payload(data: bytes) -> bytes | None:
    """The ``.npy`` bytes of a file this cache wrote, or ``None`` when its trailer or CRC does not match."""
    if len(data) < _TRAILER_BYTES or data[-_TRAILER_BYTES:-4] != _TRAILER_MAGIC:
        return None
    payload = data[:-_TRAILER_BYTES]
    (crc,) = struct.unpack("<I", data[-4:])
    return payload if zlib.crc32(payload) == crc else None


def _file_crc_ok(path: Path, block: int = 16 << 20) -> bool:
    """Whether a stack file's CRC trailer matches its bytes (read once, in 16 MiB blocks)."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size - _TRAILER_BYTES
            if size < 0:
                return False
            crc, left = 0, size
            while left > 0:
                chunk = fh.read(min(block, left))
                if not chunk:
                    return False
                crc = zlib.crc32(chunk, crc)
                left -= len(chunk)
            trailer = fh.read(_TRAILER_BYTES)
    except OSError:
        return False
    return trailer[:-4] == _TRAILER_MAGIC and struct.unpack("<I", trailer[-4:])[0] == crc


def _writer_gone(name: str) -> bool:
    """Whether a temporary ``.<name>.<host>.<pid>.<random>.tmp`` was left by a process of this host that is gone."""
    parts = name.split(".")
    if len(parts) < 5 or parts[-1] != "tmp" or parts[-4] != _HOST:
        return False
    try:
        pid = int(parts[-3])
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, owned by another user
        return False
    return False


def _size(num_bytes: int | None) -> str:
    value = float(num_bytes or 0)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover


def _check_loader(loader) -> None:
    if not isinstance(loader, CaseLoader):
        raise InputError(
            f"Expected loader to be a tl_radiology.data.CaseLoader. Received: {type(loader).__name__}; build one "
            f"with CaseLoader(image_columns, per_image=...)."
        )
