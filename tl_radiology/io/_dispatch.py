"""``read_image``: one entry point that picks the reader from what the path is."""

from __future__ import annotations

from pathlib import Path

from .._errors import ImageReadError
from ._common import require_exists
from ._dicom import read_dicom
from ._dicom_file import DICOM_SUFFIXES, is_dicom_file
from ._image import ImageData
from ._raster import RASTER_SUFFIXES, read_array, read_raster
from ._series import read_dicom_series

__all__ = ["read_image"]

_SUPPORTED = (
    "a folder of DICOM slices, a DICOM file (.dcm/.dicom/.ima, or any file with the DICM marker), "
    "PNG/JPEG/TIFF (.png .jpg .jpeg .tif .tiff) or a NumPy array (.npy)"
)


def read_image(
    path,
    *,
    expect: str = "any",
    frame: int | None = None,
    single_frame: bool = False,
    voi: bool = False,
    fill_padding: bool = True,
    series_uid: str | None = None,
) -> ImageData:
    """Read any supported image: a DICOM series folder, a DICOM file, a raster image or a ``.npy`` array.

    Dispatch: a folder -> :func:`read_dicom_series`; a DICOM file, recognised by the ``DICM`` marker at byte 128
    whatever its name, by a ``.dcm``/``.dicom``/``.ima`` suffix, or (for a file without a known suffix) by a raw
    DICOM data set at its start -> :func:`read_dicom`; ``.npy`` -> :func:`read_array`; ``.png``, ``.jpg``,
    ``.jpeg``, ``.tif``, ``.tiff`` -> :func:`read_raster`. Anything else is an error listing these kinds.

    Options are the readers' own. ``expect``, ``frame`` and ``single_frame`` apply to every kind; ``voi``,
    ``fill_padding`` (DICOM) and ``series_uid`` (folders) are ignored for raster and array files, which have no
    header to take a window or padding value from.

    Args:
        path: a file or folder.
        expect: ``"gray"``, ``"rgb"`` or ``"any"``.
        frame: 0-based frame (multi-frame DICOM, multi-page TIFF, stack, or sorted slice of a series).
        single_frame: reject multi-frame input read without ``frame``.
        voi: apply the DICOM header window / VOI LUT (changes the units; see :func:`read_dicom`).
        fill_padding: replace CT padding and below-air values with -1024 HU (see :func:`read_dicom`).
        series_uid: choose one series in a folder holding several.

    Returns:
        :class:`ImageData`: float32 ``array`` in physical units (HU for CT) and non-identifying ``meta``.

    Raises:
        ImageReadError: the path does not exist, is of an unsupported kind, or the reader refuses it (the message
            names the file, what was expected and the fix).

    Example:
        >>> img = read_image("../shared/data/dicom_samples_pydicom_data/MR_small.dcm", expect="gray")  # doctest: +SKIP
        >>> img.shape  # doctest: +SKIP
        (64, 64)
    """
    path = Path(path)
    require_exists(path, _SUPPORTED)
    dicom_options = dict(expect=expect, frame=frame, single_frame=single_frame, voi=voi, fill_padding=fill_padding)
    if path.is_dir():
        return read_dicom_series(path, series_uid=series_uid, **dicom_options)
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return read_dicom(path, **dicom_options)
    if suffix == ".npy":
        return read_array(path, expect=expect, frame=frame, single_frame=single_frame)
    if suffix in RASTER_SUFFIXES:
        return read_raster(path, expect=expect, frame=frame, single_frame=single_frame)
    if is_dicom_file(path):
        return read_dicom(path, **dicom_options)
    kind = f"'{path.suffix}'" if path.suffix else "without a suffix"
    raise ImageReadError(
        f"{path}: unsupported file kind ({kind}, and not DICOM by content). Supported: {_SUPPORTED}. Convert the "
        f"image to one of these."
    )
