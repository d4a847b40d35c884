"""Reading one DICOM file: pixels in physical units plus non-identifying metadata.

The pixel pipeline follows the DICOM grayscale pipeline with pydicom's own functions:
stored values -> modality LUT (``apply_modality_lut``: Rescale Slope/Intercept, or a Modality LUT Sequence; HU for
CT) -> optional VOI LUT / window (``apply_voi_lut``, off by default) -> MONOCHROME1 inversion. Colour goes through
``apply_color_lut`` (PALETTE COLOR) or ``convert_color_space`` (YBR_FULL, YBR_FULL_422); JPEG 2000 YBR_RCT/YBR_ICT
come out of the decoder as RGB already. Compressed transfer syntaxes are decoded by pydicom's decoder plugins
(pylibjpeg with pylibjpeg-libjpeg / pylibjpeg-openjpeg, pydicom's own RLE decoder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._errors import ImageReadError
from ._common import check_expect, check_frame, check_frame_choice, colour_mismatch
from ._dicom_checks import _has_pixels, _no_pixels, check_is_image, check_pixel_length
from ._dicom_decode import _decode
from ._dicom_file import read_dataset
from ._dicom_header import _floats, _is_colour, _num_frames, _photometric, frame_value, header_meta
from ._dicom_values import _colour, _gray
from ._image import ImageData

__all__ = ["read_dicom", "read_dicom_meta"]

_GRAY = ("MONOCHROME1", "MONOCHROME2")


# Over 100 lines only through its docstring (the reader's whole contract); the body is about 45 lines of steps.
def read_dicom(
    path,
    *,
    frame: int | None = None,
    single_frame: bool = False,
    expect: str = "any",
    voi: bool = False,
    fill_padding: bool = True,
) -> ImageData:
    """Read one DICOM file as float32 pixels in physical units plus non-identifying metadata.

    Values: the modality LUT is applied (Rescale Slope/Intercept, or a Modality LUT Sequence), so CT comes out in
    Hounsfield units (``meta["units"] == "HU"``) and other modalities as stored values after the modality LUT
    (``"stored"``). Enhanced multi-frame files take rescale, window and geometry from their functional groups.

    MONOCHROME1 (e.g. many CR files, where the lowest value is shown white) is inverted so that larger always
    means brighter: ``v -> lo + hi - v`` with ``[lo, hi]`` the nominal value range of the output (from Bits Stored
    and the rescale, given in ``meta["value_range"]``); ``meta["inverted"]`` is then True. The inversion uses the
    header's range, not the image's minimum and maximum, so it does not depend on the image content.

    Padding: CT values below -1024 HU are not tissue (air is -1000 HU) but the scanner's fill outside the
    reconstruction circle: Toshiba writes -2048 HU, GE stores -2000 with intercept -1024 (-3024 HU) and names it in
    Pixel Padding Value. With ``fill_padding=True`` (default) those pixels, and any pixel equal to Pixel Padding
    Value (or inside Pixel Padding Range Limit), become -1024 HU; in other modalities padding pixels become the
    darkest real value. ``meta["padding_filled"]`` counts them. ``fill_padding=False`` keeps the scanner's values.

    Colour: PALETTE COLOR through its palette (``apply_color_lut``), YBR_FULL / YBR_FULL_422 through
    ``convert_color_space``; JPEG 2000 YBR_RCT / YBR_ICT are returned as RGB by the decoder. Colour arrays are
    ``H x W x 3`` (``F x H x W x 3`` for multi-frame colour) on their stored scale (``meta["value_range"]``).

    Args:
        path: the DICOM file (with or without the 128-byte preamble).
        frame: 0-based index of the frame to read from a multi-frame file (only that frame is decoded). ``None``
            reads all frames: ``F x H x W`` for a multi-frame file, ``H x W`` for a single-frame one.
        single_frame: if True, a multi-frame file read without ``frame`` is an error (the data pipeline uses this
            to reject cine loops and enhanced stacks where one image per case is expected).
        expect: ``"gray"``, ``"rgb"`` or ``"any"``: the colour kind accepted; a mismatch is an error naming the
            file and its photometric interpretation. Checked from the header before any decoding.
        voi: apply the header's VOI LUT or window (``apply_voi_lut``, first window). Off by default; when on, the
            values are display values in ``meta["value_range"]``, ``meta["units"]`` becomes ``"VOI"`` and
            ``meta["voi"]`` says what was applied. A grayscale header without a window is then an error; colour
            images have no VOI stage and are returned unchanged.
        fill_padding: replace padding / below-air CT values as described above.

    Returns:
        :class:`ImageData` with ``array`` float32 and ``meta`` holding ``modality``, ``units``, ``pixel_spacing``
        (row, column mm), ``slice_thickness``, ``image_position``, ``image_orientation``, ``photometric`` (as in
        the file), ``num_frames``, ``frame``, ``window`` (header center, width or None), ``value_range``,
        ``rescale``, ``inverted``, ``voi``, ``padding_filled``, ``transfer_syntax``, ``sop_class``,
        ``manufacturer`` and ``case_id`` (a keyed hash of the SOP Instance UID). Never patient names, ids, birth
        dates, accession numbers or institution names.

    Raises:
        ImageReadError: missing, empty, truncated or non-DICOM file; no pixel data; a transfer syntax without an
            installed decoder (named, with the package that decodes it); colour where gray is expected (or the
            reverse); several frames where one is expected; a frame index out of range.

    Example:
        >>> img = read_dicom("../shared/data/dicom_samples_pydicom_data/CT_small.dcm")  # doctest: +SKIP
        >>> img.shape, img.meta["units"]  # doctest: +SKIP
        ((128, 128), 'HU')
    """
    expect = check_expect(expect)
    frame = check_frame(frame)
    ds = read_dataset(path, header_only=False)
    path = Path(path)
    if _has_pixels(ds):
        check_is_image(ds, path)
    if not _has_pixels(ds):
        raise _no_pixels(path, ds)
    check_pixel_length(ds, path)
    num_frames = _num_frames(ds)
    check_frame_choice(path, num_frames, frame, single_frame)
    photometric = _photometric(ds)
    colour = _is_colour(ds)
    colour_mismatch(
        path, expect, colour, f"PhotometricInterpretation {photometric}, {int(ds.get('SamplesPerPixel') or 1)} "
        f"sample(s) per pixel"
    )
    if not colour and photometric not in _GRAY:
        raise ImageReadError(
            f"{path}: photometric interpretation {photometric or '(missing)'} with 1 sample per pixel is not "
            f"supported. Expected MONOCHROME1 or MONOCHROME2; fix the header or convert the file."
        )
    meta = header_meta(ds, path, frame)
    arr, props = _decode(ds, path, frame)
    if colour:
        array, value_range = _colour(arr, props, ds, path)
        meta.update(value_range=value_range, inverted=False, voi=None, padding_filled=0)
    else:
        array, info = _gray(
            arr, ds, path, frame, units=meta["units"], voi=bool(voi), fill_padding=bool(fill_padding)
        )
        meta.update(info)
        if voi:
            meta["units"] = "VOI"
    if frame is None and num_frames > 1:
        positions = [_floats(frame_value(ds, "ImagePositionPatient", i)) for i in range(num_frames)]
        if any(p is not None for p in positions):
            meta["frame_positions"] = positions
    return ImageData(array, meta)


def read_dicom_meta(path) -> dict[str, Any]:
    """Read only a DICOM file's header (``stop_before_pixels``) and return the metadata :func:`read_dicom` gives.

    Cheap: the pixel data is neither read nor decoded, so a manifest can be checked (modality, frames, colour,
    geometry) without decoding images. Keys that depend on decoding (``value_range``, ``inverted``,
    ``padding_filled``) are absent; ``units`` is what :func:`read_dicom` returns with ``voi=False``. Whether the
    pixel data is present and decodable is only checked by :func:`read_dicom`.

    Args:
        path: the DICOM file.

    Returns:
        The metadata dict (never patient names, ids, birth dates, accession numbers or institution names).

    Raises:
        ImageReadError: missing, empty, truncated or non-DICOM file.

    Example:
        >>> meta = read_dicom_meta("../shared/data/dicom_samples_pydicom_data/emri_small.dcm")  # doctest: +SKIP
        >>> meta["num_frames"], meta["modality"]  # doctest: +SKIP
        (10, 'MR')
    """
    ds = read_dataset(path, header_only=True)
    return header_meta(ds, Path(path), None)
