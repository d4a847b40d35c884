"""Strict loading of a weights file into a backbone: every variable must receive a value of its shape from the
file, and Keras' long loading errors are turned into one clause naming the variable and the shapes.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from .._errors import InputError
from .._options import listed
from ._registry import get_backbone

__all__ = ["load_weights_checked"]

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
        shown = listed(missing, 3, sep=", ")
        raise InputError(
            f"Weights file {path} does not fit backbone {spec.name}: {len(missing)} of its {len(floats)} variables "
            f"are not in the file ({shown}). {fit}"
        )


def _is_legacy_h5(path: Path) -> bool:
    """Whether a file is in Keras' published (legacy) layout, which Keras loads from a ``*_notop.h5`` name."""
    import h5py  # deferred: h5py; listing backbones must stay light

    with h5py.File(path, "r") as fh:
        return "layer_names" in fh.attrs or ("model_weights" in fh and "layer_names" in fh["model_weights"].attrs)
