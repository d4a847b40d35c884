"""Helpers shared by the readers: option checks, frame selection, colour checks and pseudonymous case ids."""

from __future__ import annotations

import hashlib
import operator
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import ImageReadError
from .._options import look_up_option
from .._pseudonym import pseudonymize

EXPECT_KINDS = ("gray", "rgb", "any")

# The decoders' own warnings (pydicom on odd headers, PIL/imageio/tifffile on odd files) would add raw lines to
# stderr between a command's progress and its one-line result. What matters in them is checked by the readers and
# reported as errors naming the file (pixel data length, frames, colour, truncation), so they are not shown. A
# filter by the warning's module rather than catch_warnings(): readers run in tf.data threads, and
# catch_warnings is not thread-safe. Warnings that other libraries or the user's code raise are untouched.
warnings.filterwarnings("ignore", module=r"(pydicom|PIL|imageio|tifffile)(\.|$)")

# Keys every reader puts in ``meta`` (None where a file has no such information), so consumers can index them.
BASE_META_KEYS = (
    "kind",
    "modality",
    "units",
    "pixel_spacing",
    "slice_thickness",
    "image_position",
    "image_orientation",
    "photometric",
    "num_frames",
    "frame",
    "window",
    "value_range",
    "case_id",
)


def base_meta(kind: str) -> dict[str, Any]:
    """A meta dict with every common key present (None) and ``kind`` set."""
    meta: dict[str, Any] = dict.fromkeys(BASE_META_KEYS)
    meta["kind"] = kind
    return meta


def check_expect(expect) -> str:
    """Return the canonical ``expect`` option ("gray", "rgb" or "any"), or fail naming the choices."""
    return look_up_option(
        expect, EXPECT_KINDS, what="expect option", fix="Use expect='gray', expect='rgb' or expect='any'."
    )


def check_frame(frame) -> int | None:
    """Return ``frame`` as a non-negative int (or None), or fail saying what a frame index is."""
    if frame is None:
        return None
    if isinstance(frame, bool):
        raise ImageReadError(f"Expected frame to be a 0-based frame index (int) or None. Received: frame={frame!r}.")
    try:
        index = operator.index(frame)
    except TypeError:
        raise ImageReadError(
            f"Expected frame to be a 0-based frame index (int) or None. Received: frame={frame!r} of type "
            f"{type(frame).__name__}."
        ) from None
    if index < 0:
        raise ImageReadError(f"Expected frame to be a 0-based frame index >= 0. Received: frame={index}.")
    return index


def check_frame_choice(path, num_frames: int, frame: int | None, single_frame: bool, *, unit: str = "frames") -> None:
    """Fail if ``frame`` is out of range, or if one frame is expected from a multi-frame source and none was chosen."""
    if frame is not None and frame >= num_frames:
        raise ImageReadError(
            f"{path}: frame={frame} is out of range, the file has {num_frames} {unit} (valid: 0..{num_frames - 1}). "
            f"Choose a frame index in that range."
        )
    if single_frame and frame is None and num_frames > 1:
        raise ImageReadError(
            f"{path} has {num_frames} {unit} but a single 2-D image was expected. Choose one with frame=i "
            f"(0..{num_frames - 1}), or pass single_frame=False to read all {unit} as an F x H x W array."
        )


def colour_mismatch(path, expect: str, is_colour: bool, detail: str) -> None:
    """Fail if a colour image arrives where gray is expected, or a gray one where RGB is expected."""
    if expect == "gray" and is_colour:
        raise ImageReadError(
            f"{path} is a colour image ({detail}) but a grayscale image was expected. Use a grayscale file, or "
            f"pass expect='rgb' or expect='any' to accept colour."
        )
    if expect == "rgb" and not is_colour:
        raise ImageReadError(
            f"{path} is a grayscale image ({detail}) but an RGB image was expected. Pass expect='gray' or "
            f"expect='any', and turn gray into 3 channels with transforms.GrayToRGB if the model needs it."
        )


def require_exists(path: Path, what: str) -> None:
    """Fail if ``path`` does not exist, naming it, what was expected and the folder a relative path starts from."""
    if not path.exists():
        raise ImageReadError(
            f"{path} does not exist; expected {what}. Check the path (a relative path is resolved from the "
            f"current folder, {Path.cwd()})."
        )


def require_file(path, what: str = "an image file") -> Path:
    """Return ``path`` as a Path if it is an existing file, else fail naming it."""
    path = Path(path)
    require_exists(path, what)
    if path.is_dir():
        raise ImageReadError(
            f"{path} is a folder; expected {what}. Use read_image or read_dicom_series for a folder of DICOM "
            f"slices."
        )
    if not os.access(path, os.R_OK):
        raise ImageReadError(
            f"{path} cannot be read (permission denied); expected a readable file. Fix its permissions or copy it "
            f"somewhere you can read."
        )
    return path


def file_sha256(path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def case_id_for(key: str) -> str:
    """Pseudonymous case id (``C-...``) of a stable, non-identifying key (a UID or a content hash)."""
    return pseudonymize(key, prefix="C")


def dtype_range(dtype: np.dtype) -> list[float] | None:
    """The nominal value range of an integer or boolean dtype; None for floating point."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return [0.0, 1.0]
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return [float(info.min), float(info.max)]
    return None


def collapse_gray_channels(array: np.ndarray) -> np.ndarray | None:
    """Return the first channel if all colour channels of ``array`` (last axis) are identical, else None."""
    first = array[..., 0]
    for c in range(1, array.shape[-1]):
        if not np.array_equal(first, array[..., c]):
            return None
    return first


def one_line(text) -> str:
    """Collapse whitespace so a library's message fits in our one-line errors."""
    return " ".join(str(text).split())


def sniff_kind(head: bytes) -> str | None:
    """Name the format a file's first bytes belong to (for messages about misnamed files), or None."""
    signatures = (
        (b"\x89PNG\r\n\x1a\n", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"II*\x00", "a TIFF image"),
        (b"MM\x00*", "a TIFF image"),
        (b"\x93NUMPY", "a NumPy .npy array"),
        (b"PK\x03\x04", "a ZIP archive (or .npz)"),
        (b"\x1f\x8b", "a gzip archive"),
        (b"%PDF", "a PDF document"),
        (b"GIF8", "a GIF image"),
    )
    for magic, name in signatures:
        if head.startswith(magic):
            return name
    sample = head[:512]
    if sample and all(32 <= b < 127 or b in (9, 10, 13) for b in sample):
        return "a text file"
    return None
