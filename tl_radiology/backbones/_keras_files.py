"""Keras' weights cache folder and what is known of a file in it: its hashes, its published hash check and
the ``.source.json`` provenance a converted file carries.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

from ._registry import BackboneSpec

__all__ = ["keras_cache_dir"]

_WEIGHTS_SUFFIXES = (".h5", ".hdf5")
_TORCH_SUFFIXES = (".pth", ".pt")

_WEIGHTS_SUFFIXES = (".h5", ".hdf5")
_TORCH_SUFFIXES = (".pth", ".pt")


def keras_cache_dir() -> Path:
    """The folder where Keras looks for downloaded application weights.

    Keras' own rule (``keras.utils.get_file`` with ``cache_subdir="models"``): ``$KERAS_HOME`` as it was when
    Keras was imported, else ``~/.keras``; when that folder is not writable, ``/tmp/.keras``; then ``models``.

    Returns:
        The ``models`` folder (it may not exist yet).
    """
    if "keras" in sys.modules:  # Keras fixed its folder when it was imported: ask it
        try:
            from keras.src.backend.config import keras_home  # deferred: asked only once Keras is loaded

            base = keras_home()
        except ImportError:  # pragma: no cover - older or reorganised Keras
            base = _keras_home_rule()
    else:  # the same rule, without importing Keras (and TensorFlow) to list weights files
        base = _keras_home_rule()
    base = os.path.expanduser(base)
    if not os.access(base, os.W_OK):
        base = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    return Path(base) / "models"


def _keras_home_rule() -> str:
    home = os.path.expanduser("~")
    return os.environ.get("KERAS_HOME") or os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras")


# ------------------------------------------------------------------------------------------------ hashing

_HASH_CACHE: dict[tuple, dict[str, str]] = {}


def _file_hashes(path: Path) -> dict[str, str]:
    """md5 (Keras publishes md5 for most files) and sha256 of a file, cached by path, size and mtime."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASH_CACHE:
        md5, sha256 = hashlib.md5(), hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                md5.update(chunk)
                sha256.update(chunk)
        _HASH_CACHE[key] = {"md5": md5.hexdigest(), "sha256": sha256.hexdigest()}
    return _HASH_CACHE[key]


def _published_hash_ok(spec: BackboneSpec, path: Path) -> bool | None:
    """Whether the file is byte-identical to Keras' published one; ``None`` when Keras publishes no hash.

    For a backbone whose weights come from a pip package: whether the file is the one converted from that
    package's state dict (its provenance record names the package file's sha256 and the converted file's).
    """
    if spec.weights_package:
        provenance = _read_provenance(spec)
        if provenance is None:
            return None
        return (provenance.get("source_sha256") == spec.weights_package_sha256
                and provenance.get("sha256") == _file_hashes(path)["sha256"])
    if not spec.weights_hash:
        return None
    hashes = _file_hashes(path)
    algorithm = "sha256" if len(spec.weights_hash) == 64 else "md5"
    return hashes[algorithm] == spec.weights_hash.lower()


# ------------------------------------------------------------------------------------------------ provenance

def _provenance_path(spec: BackboneSpec) -> Path:
    return keras_cache_dir() / spec.weights_file.replace(".weights.h5", ".source.json")


def _read_provenance(spec: BackboneSpec) -> dict | None:
    try:
        return json.loads(_provenance_path(spec).read_text())
    except (OSError, ValueError):
        return None
