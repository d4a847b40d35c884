"""The weights on this machine and how files are brought in: ``weights status`` (one row per backbone) and
:func:`import_weights` (a Keras or PyTorch file checked against the backbone, then copied into Keras' cache).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .._atomic import atomic_path
from .._errors import InputError
from ._registry import BackboneSpec, get_backbone, list_backbones
from ._keras_files import _TORCH_SUFFIXES, _file_hashes, _published_hash_ok, _read_provenance, keras_cache_dir
from ._packages import _blank_backbone, _converted_model, convert_state_dict_weights, package_weights_file
from ._strict_load import _is_legacy_h5, load_weights_checked
from ._weights import _is_imagenet, _resolve_file, weights_label

__all__ = ["weights_status", "import_weights"]

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
    if target.exists() and legacy and target.is_file() and _file_hashes(target)["sha256"] == source_sha:
        return _import_result(spec, source, target, converted=False, replaced=False, unchanged=True)
    replaced = _may_replace(target, overwrite, f"a different {spec.name} weights file", "it")
    target.parent.mkdir(parents=True, exist_ok=True)
    if legacy:
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
    else:
        import h5py  # deferred: h5py and Keras; `weights status` must stay light
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
    if (target.exists() and provenance.get("source_sha256") == source_sha
            and _published_hash_ok(spec, target) is not False):
        return _import_result(spec, source, target, converted=True, replaced=False, unchanged=True)
    replaced = _may_replace(target, overwrite, f"{spec.name} weights converted from another file", "them")
    convert_state_dict_weights(spec, source, origin=f"file {source.name}")
    return _import_result(spec, source, target, converted=True, replaced=replaced, unchanged=False)


def _may_replace(target: Path, overwrite: bool, holds: str, pronoun: str) -> bool:
    """Whether an import replaces a file already at ``target``; without ``overwrite`` that is refused."""
    if not target.exists():
        return False
    if not overwrite:
        raise InputError(
            f"{target} already holds {holds}. Pass overwrite=True (command line: --overwrite) to replace {pronoun}, "
            f"or keep {pronoun}."
        )
    return True


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
