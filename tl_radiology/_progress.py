"""Progress lines with an ETA for long steps, and keeping TensorFlow's start-up noise out of the terminal.

Progress goes to standard error so a command's real output (tables, paths, metrics) stays clean on standard
output. ``set_quiet(True)`` (the command line's ``--quiet``) silences it.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
import time
import warnings

__all__ = ["Progress", "set_quiet", "is_quiet", "status", "quiet_tensorflow", "filter_native_stderr"]

_QUIET = False


def set_quiet(quiet: bool) -> None:
    """Silence (``True``) or restore (``False``) progress and status lines."""
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet() -> bool:
    """Whether progress and status lines are silenced."""
    return _QUIET


def status(message: str) -> None:
    """Print one status line to standard error unless quiet."""
    if not _QUIET:
        print(message, file=sys.stderr, flush=True)


def _fmt_seconds(seconds: float) -> str:
    seconds = int(round(max(seconds, 0)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    """Counts steps of a long task and prints ``desc: 12/40 (30%) elapsed 4s, ETA 10s`` at most every second.

    Args:
        total: number of steps, or ``None`` if unknown.
        desc: what is being done ("reading and caching", "trial", ...).
        min_interval: seconds between printed lines.

    Example:
        >>> with Progress(len(files), "reading") as bar:  # doctest: +SKIP
        ...     for f in files:
        ...         read(f); bar.update()
    """

    def __init__(self, total: int | None, desc: str, *, min_interval: float = 1.0):
        self.total = total
        self.desc = desc
        self.count = 0
        self.min_interval = min_interval
        self._start = time.monotonic()
        self._last = 0.0
        self._tty = sys.stderr.isatty()

    def line(self) -> str:
        elapsed = time.monotonic() - self._start
        if self.total:
            pct = 100.0 * self.count / self.total
            eta = elapsed / self.count * (self.total - self.count) if self.count else float("nan")
            eta_text = _fmt_seconds(eta) if self.count else "?"
            return (
                f"{self.desc}: {self.count}/{self.total} ({pct:.0f}%) elapsed {_fmt_seconds(elapsed)}, "
                f"ETA {eta_text}"
            )
        return f"{self.desc}: {self.count} elapsed {_fmt_seconds(elapsed)}"

    def update(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        done = self.total is not None and self.count >= self.total
        if _QUIET or (now - self._last < self.min_interval and not done):
            return
        self._last = now
        end = "\r" if self._tty and not done else "\n"
        print(self.line(), end=end, file=sys.stderr, flush=True)

    def close(self) -> None:
        if not _QUIET and self._tty and self.total is not None and self.count < self.total:
            print(file=sys.stderr, flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def quiet_tensorflow(debug: bool = False) -> None:
    """Keep TensorFlow's C++ and Python start-up logging out of the terminal unless ``debug``.

    Must run before TensorFlow is imported to silence the C++ side; later calls still quiet the Python loggers.
    """
    if debug:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    for name in ("tensorflow", "absl", "h5py", "keras_tuner"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"(tensorflow|keras|keras_tuner).*")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"keras.*")


# TensorFlow 2.21's C++ side logs through absl before Python can configure it ("oneDNN custom operations are on",
# "Could not find cuda drivers", ...); TF_CPP_MIN_LOG_LEVEL no longer silences these lines.
_NATIVE_NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\."
    rb"|[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.]+:\d+\]"
    rb"|E\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.]+:\d+\] (Unable to register|failed call to cuInit))"
)
_FILTER_STATE: dict = {}


def filter_native_stderr() -> None:
    """Drop TensorFlow's native start-up log lines from this process's standard error; keep everything else.

    Standard error (file descriptor 2) is routed through a pipe read by a thread that forwards every line except
    the C++ informational/warning lines of TensorFlow and absl. Used by the command line unless ``--debug``.
    Idempotent; the original standard error is restored at exit after the remaining lines are forwarded.
    """
    if _FILTER_STATE:
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
    except OSError:  # no usable fd 2 (embedded interpreters): leave stderr alone
        return

    def pump() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            pending = b""
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if not _NATIVE_NOISE.match(line):
                        os.write(real, line + b"\n")
            if pending and not _NATIVE_NOISE.match(pending):
                os.write(real, pending)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()
    _FILTER_STATE.update(real=real, thread=thread)

    def restore() -> None:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(real, 2)  # closes the pipe's last write end in this process: the pump sees EOF
        thread.join(timeout=2.0)

    atexit.register(restore)
