"""The case cache's files: the CRC-32 trailer, reading entries and stacks back checked, and writing them safely.

Every entry and stack ends with ``TLRCRC32`` and the CRC-32 of the ``.npy`` bytes before it. Files are written to
a temporary (named with the host and process id) that is fsynced and renamed into place, after a free-space
check; a full disk or an unwritable folder becomes one :class:`_CacheWriteError` naming the folder.
Temporaries of writers that are gone are removed by :func:`clean_stale_temporaries`.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
import shutil
import socket
import struct
import time
import zlib
from pathlib import Path

import numpy as np

from .._atomic import atomic_write_text
from .._errors import InputError

#: ``TLRCRC32`` + little-endian uint32 CRC-32 of every byte of the file before it.
_TRAILER_MAGIC = b"TLRCRC32"
_TRAILER_BYTES = len(_TRAILER_MAGIC) + 4
# Room left on the disk beyond what a write needs (the file system's own metadata, the fingerprint index).
_FREE_MARGIN_BYTES = 64 << 10
_HOST = "".join(c if c.isalnum() or c == "-" else "_" for c in socket.gethostname())[:40] or "host"
# Temporary files older than this are left over from a killed writer and are removed.
_STALE_TEMP_SECONDS = 3600

_CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by tl_radiology (decoded cases).\n"
    "# For information about cache directory tags, see https://bford.info/cachedir/\n"
)


#: ``.npy`` format version -> its header reader (the versions ``np.save`` writes for a float32 array).
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class _CacheWriteError(InputError):
    """The cache folder cannot be written (permissions, full disk): reported once, not once per case."""


def with_trailer(payload: bytes) -> bytes:
    """``payload`` followed by the ``TLRCRC32`` trailer holding its CRC-32."""
    return payload + _TRAILER_MAGIC + struct.pack("<I", zlib.crc32(payload))


def read_entry_file(path: Path) -> tuple[np.ndarray | None, str]:
    """An entry file read back checked: ``(array, "ok")``, ``(None, "missing")`` or ``(None, "damaged")`` (bad CRC,
    header or size)."""
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


def entry_file_shape(path: Path) -> tuple[int, ...] | None:
    """The shape of an entry from its ``.npy`` header alone (no pixels read), or None if missing or damaged.

    The header is read from the open file and the file's size checked against it, so a truncated entry (a
    power cut) counts as missing, as memory-mapping it did; mapping and unmapping every entry only to read
    its shape was 56 % of a warm fill (benchmarks/README.md).
    """
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


def open_stack_file(path: Path, expected: tuple[int, ...]) -> tuple[np.ndarray | None, str]:
    """A stack memory-mapped read-only and CRC-checked: ``(stack, "ok")``, ``(None, "missing")`` or
    ``(None, "damaged")``."""
    try:
        stack = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError, EOFError):
        return None, "damaged"
    if stack.dtype != np.float32 or tuple(stack.shape) != expected or not _file_crc_ok(path):
        return None, "damaged"
    return stack, "ok"


def check_free_space(folder: Path, needed: int, estimate: int) -> None:
    """Refuse before writing ``needed`` bytes when the disk of ``folder`` has no room for them."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # cannot tell: the write itself reports a full disk
    if free < needed + _FREE_MARGIN_BYTES:
        raise _CacheWriteError(no_space(folder, max(needed, estimate) + _FREE_MARGIN_BYTES, free))


def no_space(folder: Path, needed: int | None, free: int | None) -> str:
    """The message for a disk without room for the cache in ``folder``."""
    need = f"about {_size(needed)} free" if needed else "more free space"
    have = f", the disk has {_size(free)}" if free is not None else ""
    return (
        f"Not enough free space for the case cache in {folder}: writing it needs {need}{have}. Free space "
        f"on that disk, or give --out (or the cache folder) on a disk with room, and run again; nothing was "
        f"half-written."
    )


@contextlib.contextmanager
def atomic_file(path: Path, folder: Path):
    """An open temporary file beside ``path``, fsynced and renamed onto it on success, removed on failure.

    The temporary is named ``.<name>.<host>.<pid>.<random>.tmp`` so a later fill can tell that its writer is
    gone (:func:`clean_stale_temporaries`). A full disk or another write failure becomes one
    :class:`_CacheWriteError` naming ``folder``.
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
            raise _CacheWriteError(write_failure(folder, exc)) from None
        raise


def write_failure(folder: Path, exc: OSError) -> str:
    """The message for a failed write to the cache in ``folder`` (a full disk, or no permission)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        free = None
        with contextlib.suppress(OSError):
            free = shutil.disk_usage(folder).free
        return no_space(folder, None, free)
    return (
        f"Cannot write to the cache folder {folder}: {exc.strerror or exc}. Expected a folder you can write "
        f"to with free space; choose another cache folder, free space, or fix its permissions."
    )


def clean_stale_temporaries(folder: Path) -> None:
    """Mark ``folder`` as a cache (``CACHEDIR.TAG``) and remove temporaries a killed writer left behind."""
    folder.mkdir(parents=True, exist_ok=True)
    tag = folder / "CACHEDIR.TAG"
    if not tag.exists():
        with contextlib.suppress(OSError):
            atomic_write_text(tag, _CACHEDIR_TAG)
    cutoff = time.time() - _STALE_TEMP_SECONDS
    for sub in ("cases", "stacks"):
        base = folder / sub
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
