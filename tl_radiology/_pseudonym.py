"""Pseudonymous ids: a keyed hash (HMAC-SHA256) of a patient or case identifier.

Outputs (run directories, logs, reports, cache file names) carry these ids, never the identifiers from the input.
The key is secret and lives outside the run directory, so a shared run directory cannot be reversed by hashing
candidate identifiers. It is read, in order, from:

1. the environment variable ``TL_RADIOLOGY_PSEUDONYM_KEY`` (any text; use the same value on every machine that
   must produce the same ids), or
2. the file ``$TL_RADIOLOGY_HOME/pseudonym.key`` (default ``~/.config/tl_radiology/pseudonym.key``), created with
   32 random bytes and mode 0600 on first use.

The same key gives the same pseudonym for the same identifier, so a patient keeps one id across runs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

__all__ = ["pseudonymize", "pseudonym_key", "config_home"]

_ENV_KEY = "TL_RADIOLOGY_PSEUDONYM_KEY"


def config_home() -> Path:
    """The toolkit's per-user folder: ``$TL_RADIOLOGY_HOME`` or ``~/.config/tl_radiology``."""
    env = os.environ.get("TL_RADIOLOGY_HOME")
    return Path(env).expanduser() if env else Path.home() / ".config" / "tl_radiology"


def pseudonym_key() -> bytes:
    """Return the secret key for pseudonyms, creating the key file on first use."""
    env = os.environ.get(_ENV_KEY)
    if env:
        return env.encode("utf-8")
    path = config_home() / "pseudonym.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key.encode("ascii"))
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
    return path.read_bytes().strip()


def pseudonymize(identifier, *, prefix: str = "P", key: bytes | None = None, length: int = 12) -> str:
    """Return a stable pseudonymous id for ``identifier``, such as ``P-3F9A0C61B2D4``.

    Args:
        identifier: the patient id, case id or any value to hide (converted with ``str``).
        prefix: a short tag telling what the id stands for (``P`` patient, ``C`` case).
        key: the secret key; default :func:`pseudonym_key`.
        length: number of hex digits kept (12 hex digits = 48 bits, ample for a study's patients).

    Returns:
        ``f"{prefix}-{hex}"`` in upper case.
    """
    key = pseudonym_key() if key is None else key
    digest = hmac.new(key, str(identifier).encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{prefix}-{digest[:length].upper()}"
