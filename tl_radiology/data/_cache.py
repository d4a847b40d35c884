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
not a SIGBUS, and leaves no temporary file behind. Two processes may share a cache: at worst both compute the same
entry, and the fingerprint index is an SQLite database that serialises its writers (when it is busy or unusable,
fingerprints are simply recomputed).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import struct
import warnings
import zlib
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np

from .._errors import InputError, TLRadiologyError
from .._progress import Progress
from .._version import __version__
from ._cache_files import (
    _TRAILER_BYTES,
    _TRAILER_MAGIC,
    _CacheWriteError,
    atomic_file,
    check_free_space,
    clean_stale_temporaries,
    entry_file_shape,
    open_stack_file,
    read_entry_file,
    with_trailer,
)
from ._cache_index import FingerprintIndex
from ._cases import _iter_cases, _num_cases, _raise_collected
from ._hashing import image_files, sha256_file
from ._loader import CaseLoader, case_label

__all__ = ["CaseCache", "CACHE_FORMAT_VERSION"]

#: Bumped whenever the layout or the meaning of a key changes; old entries are then simply not found.
#: 2: entries and stacks carry a CRC-32 trailer.
CACHE_FORMAT_VERSION = 2


@lru_cache(maxsize=1)
def _code_versions() -> dict[str, str]:
    """Versions of the code that turns files into arrays; an upgrade may change pixels, so it changes keys."""
    versions = {"tl_radiology": __version__}
    for package in ("pydicom", "scikit-image", "scipy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            versions[package] = "absent"
    return versions


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
        self._index = FingerprintIndex(self.folder / "fingerprints.sqlite")
        self._cleaned = False

    def __repr__(self) -> str:
        return f"CaseCache({str(self.folder)!r}, hits={self.hits}, misses={self.misses})"

    def __getstate__(self):  # a copy (e.g. in another process) opens its own database connection
        state = self.__dict__.copy()
        state["_index"] = FingerprintIndex(self.folder / "fingerprints.sqlite")
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
        return read_entry_file(self.entry_path(key))

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
        """The shape of an entry from its ``.npy`` header alone (no pixels read), or None if missing or damaged."""
        return entry_file_shape(self.entry_path(key))

    def _write_entry(self, key: str, x: np.ndarray, *, remaining: int = 1) -> None:
        """Write an entry (``.npy`` + CRC trailer) atomically; ``remaining``: entries still to write, for the
        space estimate of a full disk's message."""
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(x, dtype="<f4"), allow_pickle=False)
        payload = with_trailer(buffer.getvalue())
        check_free_space(self.folder, len(payload), len(payload) * max(int(remaining), 1))
        with atomic_file(self.entry_path(key), self.folder) as fh:
            fh.write(payload)

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
        stack, state = open_stack_file(path, expected)
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
        check_free_space(self.folder, needed, needed)
        rows = list(_iter_cases(cases)) if cases is not None and loader is not None else None
        with atomic_file(path, self.folder) as fh:
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
        stack, _ = open_stack_file(path, expected)
        if stack is None:  # pragma: no cover - just written
            raise InputError(f"Cannot read back {path}; check the disk and run again.")
        return stack

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
        clean_stale_temporaries(self.folder)


def _check_loader(loader) -> None:
    if not isinstance(loader, CaseLoader):
        raise InputError(
            f"Expected loader to be a tl_radiology.data.CaseLoader. Received: {type(loader).__name__}; build one "
            f"with CaseLoader(image_columns, per_image=...)."
        )
