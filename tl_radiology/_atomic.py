"""Atomic writes and the run-directory lock.

A result is written to a temporary file in the same folder and moved into place with ``os.replace`` only when it
is complete, so a failure or a kill never leaves a half-written file under its final name. Savers that want a path
(``keras.Model.save``, ``Figure.savefig``, ``joblib.dump``) use :func:`atomic_path`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from ._errors import RunDirBusyError, RunDirError

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_directory",
    "append_line",
    "RunLock",
    "ensure_writable_dir",
]


def _umask_mode(default: int = 0o666) -> int:
    # mkstemp creates files 0600; results should get the permissions a plain open() would give them.
    umask = os.umask(0)
    os.umask(umask)
    return default & ~umask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path`` (same suffix); on success move it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.

    Example:
        >>> with atomic_path(run / "model.keras") as tmp:  # doctest: +SKIP
        ...     model.save(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            if tmp.is_dir():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()
        raise


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically and return the path."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj):
    # numpy scalars and arrays, paths and sets appear in results; write them as plain JSON.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (Path, os.PathLike)):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


@contextlib.contextmanager
def atomic_directory(path):
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` (an old one is removed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, _umask_mode(0o777))
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def append_line(path, line: str) -> None:
    """Append one line to a log file and flush it to disk (``audit.log`` must survive a kill)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line.rstrip("\n") + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def ensure_writable_dir(path, *, option: str = "--out") -> Path:
    """Create ``path`` if needed and check a file can be written in it; fail naming the option otherwise."""
    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{option} {path} is a file, expected a folder. Choose a folder path for {option}.")
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-test.", delete=True)
        probe.close()
    except RunDirError:
        raise
    except OSError as exc:
        raise RunDirError(
            f"Cannot write to {option} {path}: {exc.strerror or exc}. Expected a folder you can write to; "
            f"choose another {option} or fix its permissions."
        ) from None
    return path


class RunLock:
    """An exclusive lock on a run directory, so two commands never write to it at once.

    The lock is an ``fcntl.flock`` on ``RUN_DIR/.lock``; the kernel releases it when the holder exits, even after
    SIGKILL, so a killed command never leaves the directory locked. The file records who holds it, for the
    message the second command prints.

    The lock is re-entrant within one process: ``tl-radiology run`` holds it and calls functions (finalising on
    validation, sealing) that take it again; a nested acquisition counts instead of refusing itself (a second
    ``flock`` on another descriptor of the same file would block even in the same process).

    Example:
        >>> with RunLock(run_dir, "search"):  # doctest: +SKIP
        ...     ...
    """

    _held: dict = {}  # resolved run directory -> [outermost RunLock, nesting depth], for this process
    _guard = threading.Lock()

    def __init__(self, run_dir, command: str):
        self.run_dir = Path(run_dir)
        self.command = command
        self._fh = None
        self._nested_key = None

    def acquire(self) -> "RunLock":
        import fcntl  # deferred: POSIX only; on Windows the module's closing check says so first

        ensure_writable_dir(self.run_dir)
        key = os.path.realpath(self.run_dir)
        with RunLock._guard:
            held = RunLock._held.get(key)
            if held is not None and held[0]._fh is not None:
                held[1] += 1
                self._nested_key = key
                return self
        lock_path = self.run_dir / ".lock"
        fh = open(lock_path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                fh.close()
                raise
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise RunDirBusyError(
                f"Run directory {self.run_dir} is in use by another process ({holder}). Wait for it to finish, "
                "or give this command another --out folder."
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(
            f"pid {os.getpid()} on {socket.gethostname()}, command '{self.command}', "
            f"since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}"
        )
        fh.flush()
        self._fh = fh
        with RunLock._guard:
            RunLock._held[key] = [self, 0]
        return self

    def release(self) -> None:
        if self._nested_key is not None:
            with RunLock._guard:
                held = RunLock._held.get(self._nested_key)
                if held is not None:
                    held[1] -= 1
            self._nested_key = None
            return
        if self._fh is not None:
            with RunLock._guard:
                RunLock._held.pop(os.path.realpath(self.run_dir), None)
            import fcntl  # deferred: POSIX only (see acquire)

            with contextlib.suppress(OSError):
                self._fh.seek(0)
                self._fh.truncate()
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


if sys.platform == "win32":  # pragma: no cover - fcntl is POSIX; say so instead of failing obscurely.
    raise ImportError("tl_radiology needs a POSIX system (Linux or macOS) for its run-directory lock.")
