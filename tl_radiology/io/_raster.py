"""Reading raster images (PNG, JPEG, TIFF) with scikit-image, and NumPy ``.npy`` arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._errors import ImageReadError
from ._common import (
    base_meta,
    case_id_for,
    check_expect,
    check_frame,
    check_frame_choice,
    collapse_gray_channels,
    colour_mismatch,
    dtype_range,
    file_sha256,
    one_line,
    require_file,
    sniff_kind,
)
from ._image import ImageData

__all__ = ["read_raster", "read_array", "RASTER_SUFFIXES"]

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def _layout(array: np.ndarray, path: Path, what: str, *, alpha_channel: bool) -> tuple[np.ndarray, bool, bool]:
    """Normalise a decoded array to gray ``(F x) H x W`` or colour ``(F x) H x W x 3``.

    ``alpha_channel``: whether a last axis of 2 or 4 is gray+alpha / RGBA (raster decoders), rather than the width
    of a stack (arrays, where a 4-wide last axis is far more likely a small volume than RGBA).
    Returns the array (a view where possible), whether it is colour, and whether an alpha channel was dropped.
    """
    gray_sizes, colour_sizes = ((1, 2), (3, 4)) if alpha_channel else ((1,), (3,))
    if array.ndim == 2:
        return array, False, False
    if array.ndim == 3 and array.shape[-1] in gray_sizes:  # gray (+ alpha)
        return array[..., 0], False, array.shape[-1] == 2
    if array.ndim in (3, 4) and array.shape[-1] in colour_sizes:
        alpha = array.shape[-1] == 4
        return (array[..., :3] if alpha else array), True, alpha
    if array.ndim == 3:  # pages / frames of gray images
        return array, False, False
    raise ImageReadError(
        f"{path} holds an array of shape {tuple(array.shape)}; expected {what}: H x W (gray), H x W x 3 (RGB) or "
        f"F x H x W (a stack of gray images). Save the image in one of these layouts."
    )


def _finish(array, path, what, *, alpha_channel, kind, expect, frame, single_frame, extra=None):
    """Lay out a decoded, checked array (see :func:`_layout`), check it against the options and describe it."""
    source_dtype = array.dtype
    array, colour, alpha = _layout(array, path, what, alpha_channel=alpha_channel)
    num_frames = array.shape[0] if (array.ndim == 3 and not colour) or array.ndim == 4 else 1
    check_frame_choice(path, num_frames, frame, single_frame)
    collapsed = False
    if colour and expect == "gray":
        # A "grayscale" picture saved as RGB with three identical channels is gray: keep one channel, losslessly.
        gray = collapse_gray_channels(array)
        if gray is not None:
            array, colour, collapsed = gray, False, True
    colour_mismatch(path, expect, colour, f"{'RGB' if colour else 'gray'}, {source_dtype} samples")
    if frame is not None and num_frames > 1:
        array = array[frame]
    meta = base_meta(kind)
    meta.update(
        units="raw",
        photometric="RGB" if colour else "MONOCHROME2",
        num_frames=num_frames,
        frame=frame,
        value_range=dtype_range(source_dtype),
        dtype=str(source_dtype),
        alpha_dropped=alpha,
        channels_collapsed=collapsed,
        case_id=case_id_for("sha256:" + file_sha256(path)),
    )
    if extra:
        meta.update(extra)
    return ImageData(np.asarray(array, dtype=np.float32), meta)


def read_raster(path, *, expect: str = "any", frame: int | None = None, single_frame: bool = False) -> ImageData:
    """Read a PNG, JPEG or TIFF image (8- or 16-bit) with ``skimage.io.imread`` as float32 raw values.

    Values are the file's own (0..255 for 8-bit, 0..65535 for 16-bit; ``meta["value_range"]`` from the dtype),
    ``meta["units"] == "raw"``. Gray stays ``H x W``; RGB is ``H x W x 3``; an alpha channel is dropped
    (``meta["alpha_dropped"]``); a multi-page TIFF is ``F x H x W``. With ``expect="gray"`` an RGB file whose three
    channels are identical (a gray picture saved as RGB) is returned as ``H x W`` (``meta["channels_collapsed"]``);
    one with different channels is an error. ``case_id`` is a keyed hash of the file's bytes.

    Args:
        path: the image file.
        expect: ``"gray"``, ``"rgb"`` or ``"any"``.
        frame: 0-based page of a multi-page TIFF; None reads all pages.
        single_frame: if True, a multi-page file read without ``frame`` is an error.

    Returns:
        :class:`ImageData` (``meta``: ``units``, ``photometric``, ``num_frames``, ``value_range``, ``dtype``,
        ``case_id``; DICOM-only keys such as ``pixel_spacing`` are None).

    Raises:
        ImageReadError: missing, truncated or undecodable file; colour where gray is expected (or the reverse);
            several pages where one is expected; NaN or inf in a floating-point TIFF.

    Example:
        >>> img = read_raster("../shared/data/cxr_covid19_hannover_png/png/<image_id>.png")  # doctest: +SKIP
        >>> img.array.dtype, img.meta["value_range"]  # doctest: +SKIP
        (dtype('float32'), [0.0, 255.0])
    """
    import skimage.io  # scikit-image imports lazily; keep `import tl_radiology.io` light

    expect = check_expect(expect)
    frame = check_frame(frame)
    path = require_file(path, "a PNG, JPEG or TIFF image")
    if path.stat().st_size == 0:
        # imageio's own message for an empty file suggests installing plugins, which would not help.
        raise ImageReadError(f"{path} is empty (0 bytes); expected a PNG, JPEG or TIFF image. Copy or export it "
                             f"again from its source.")
    try:
        array = skimage.io.imread(path)
    except Exception as exc:  # imageio/pillow/tifffile raise OSError, ValueError, SyntaxError...
        with open(path, "rb") as fh:
            kind = sniff_kind(fh.read(512))
        looks = f" (its content looks like {kind})" if kind else ""
        raise ImageReadError(
            f"{path} could not be read as a {path.suffix.lstrip('.').upper() or 'raster'} image{looks}: "
            f"{one_line(exc)[:200]}. Expected a complete PNG, JPEG or TIFF file; check or re-export it."
        ) from exc
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        raise ImageReadError(
            f"{path} decodes to {array.dtype} values; expected integer or floating-point pixels. Re-save it as an "
            f"8- or 16-bit PNG or TIFF."
        )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ImageReadError(
            f"{path} contains {bad} NaN or infinite values; expected finite numbers. Replace them before saving."
        )
    return _finish(array, path, "a raster image", alpha_channel=True, kind="raster", expect=expect, frame=frame,
                   single_frame=single_frame, extra={"format": path.suffix.lower().lstrip(".")})


def read_array(path, *, expect: str = "any", frame: int | None = None, single_frame: bool = False) -> ImageData:
    """Read a NumPy ``.npy`` file (``np.load(allow_pickle=False)``) as a float32 image, rejecting NaN and inf.

    Layouts: ``H x W`` (gray), ``H x W x 3`` (RGB; ``H x W x 1`` is gray), ``F x H x W`` (a stack of gray images,
    e.g. a volume; any other last axis, so ``Z x H x 4`` is a stack, never RGBA), ``F x H x W x 3``. Values are
    kept as they are (``meta["units"] == "raw"``); ``meta["value_range"]`` is the dtype's range for integer
    arrays, None for float arrays. Pickled object arrays are refused (loading them could run code). ``case_id`` is a
    keyed hash of the file's bytes.

    Args:
        path: the ``.npy`` file.
        expect: ``"gray"``, ``"rgb"`` or ``"any"``.
        frame: 0-based index along the first axis of a stack; None reads all.
        single_frame: if True, a stack read without ``frame`` is an error.

    Returns:
        :class:`ImageData` with the float32 array.

    Raises:
        ImageReadError: missing or unreadable file, an ``.npz`` archive, a pickled or non-numeric array, NaN or inf
            values (the message gives their count), an unsupported shape, a colour/gray or frame mismatch.

    Example:
        >>> np.save("/tmp/x.npy", np.eye(4))  # doctest: +SKIP
        >>> read_array("/tmp/x.npy").shape  # doctest: +SKIP
        (4, 4)
    """
    expect = check_expect(expect)
    frame = check_frame(frame)
    path = require_file(path, "a .npy array file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise ImageReadError(
                f"{path} holds a pickled object array; expected a numeric array. Save it with "
                f"np.save(path, array.astype(np.float32)) (pickles are refused: loading them can run code)."
            ) from exc
        raise ImageReadError(
            f"{path} is not a readable .npy file ({one_line(exc)[:200]}). Expected an array saved with np.save."
        ) from exc
    except (OSError, EOFError) as exc:
        raise ImageReadError(
            f"{path} could not be read as .npy ({one_line(exc)[:200]}); it is truncated or not an array file. "
            f"Expected an array saved with np.save; save it again."
        ) from exc
    if not isinstance(loaded, np.ndarray):
        loaded.close()
        raise ImageReadError(
            f"{path} is an .npz archive; expected one .npy array. Extract the array with np.load(path)[key] and "
            f"np.save it, or use import_medmnist for MedMNIST archives."
        )
    if loaded.dtype.kind not in "biuf":
        raise ImageReadError(
            f"{path} holds {loaded.dtype} values; expected integer, boolean or floating-point numbers. Convert the "
            f"array with .astype(np.float32) and save it again."
        )
    if loaded.dtype.kind == "f":
        finite = np.isfinite(loaded)
        if not finite.all():
            nan = int(np.count_nonzero(np.isnan(loaded)))
            inf = int(loaded.size - np.count_nonzero(finite) - nan)
            raise ImageReadError(
                f"{path} contains {nan} NaN and {inf} infinite values; expected finite numbers. Replace them (e.g. "
                f"np.nan_to_num) and save the array again."
            )
    return _finish(loaded, path, "an image array", alpha_channel=False, kind="array", expect=expect, frame=frame,
                   single_frame=single_frame)
