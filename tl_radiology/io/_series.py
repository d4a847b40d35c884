"""Reading a folder of DICOM slices as one volume ordered by position.

The reader runs as named steps: list the folder's DICOM files, read their headers and choose one series of image
slices, check that the slices stack (frames, colour, size) and share one geometry (orientation, spacing), order
them along the slice normal, then read and stack the pixels and describe the volume in ``meta``. The first steps
live in :mod:`._series_files` (listing and choosing) and :mod:`._series_geometry` (geometry and order); this
module reads and stacks the pixels and describes the volume.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._errors import ImageReadError
from ._common import case_id_for, check_frame_choice
from ._dicom import read_dicom
from ._dicom_header import _floats
from ._image import ImageData
from ._series_files import _check_arguments, _check_stackable, _choose_series, _list_series_files, _read_image_headers
from ._series_geometry import _check_geometry, _Layout, _order_by_position, _xy_spacing, _z_spacing

__all__ = ["read_dicom_series"]


def _stack_slices(
    folder: Path, paths: list[Path], chosen: list[int], voi: bool, fill_padding: bool
) -> tuple[np.ndarray, dict]:
    """Read the chosen slices with :func:`read_dicom` and stack them, in the order given, into one volume.

    Args:
        folder: the series folder, for messages.
        paths: the slices of the series, in file order.
        chosen: indices into ``paths``, in the order the volume's slices should have.
        voi: apply each slice's header window.
        fill_padding: set CT padding to -1024 HU.

    Returns:
        ``(volume, meta)``: the ``len(chosen) x H x W`` float32 volume, and the first slice's metadata with
        ``value_range`` over all slices and ``padding_filled`` summed over them.

    Raises:
        ImageReadError: a slice cannot be read, or slices have different value units.
    """
    volume = None
    padding = 0
    units = set()
    for k, index in enumerate(chosen):
        # Each slice carries its own rescale, so each is read on its own rather than from one shared header.
        image = read_dicom(paths[index], expect="gray", single_frame=True, voi=voi, fill_padding=fill_padding)
        if volume is None:
            first_meta = image.meta
            volume = np.empty((len(chosen),) + image.shape, dtype=np.float32)
            value_range = list(image.meta["value_range"])
        volume[k] = image.array
        padding += image.meta["padding_filled"]
        units.add(image.meta["units"])
        value_range = [
            min(value_range[0], image.meta["value_range"][0]),
            max(value_range[1], image.meta["value_range"][1]),
        ]
    if len(units) > 1:
        raise ImageReadError(
            f"{folder} mixes value units across slices ({', '.join(sorted(units))}). Expected one unit (e.g. HU "
            f"for all CT slices); check the slices' Modality and Rescale tags."
        )
    return volume, dict(first_meta, value_range=value_range, padding_filled=padding)


def _series_meta(
    slice_meta: dict, paths: list[Path], headers: list, pixel_spacing: list, layout: _Layout, chosen: list[int],
    frame: int | None,
) -> dict:
    """Describe the volume: the first read slice's metadata updated with the series' geometry and counts.

    Args:
        slice_meta: the metadata from :func:`_stack_slices` (first slice's, with the volume's value range).
        paths: the slices of the series, in file order.
        headers: their headers, in the same order.
        pixel_spacing: the Pixel Spacing of the first slice in the sorted order (may be empty).
        layout: the slices' :class:`_Layout`.
        chosen: the indices into ``paths`` that were read, in volume order.
        frame: the slice index asked for, or None.

    Returns:
        The ``meta`` dictionary :func:`read_dicom_series` documents, without ``num_ignored_files``.
    """
    first = headers[layout.order[0]]
    pixel_spacing, xy_source = _xy_spacing(first, pixel_spacing)
    step, z_source, uneven, tilt = _z_spacing(first, layout)
    thickness = [_floats(ds.get("SliceThickness")) for ds in headers]
    sorted_thickness = [thickness[i][0] if thickness[i] else None for i in layout.order]
    meta = dict(slice_meta)
    meta.update(
        kind="dicom_series",
        spacing=[step, float(pixel_spacing[0]), float(pixel_spacing[1])],
        z_spacing_source=z_source,
        xy_spacing_source=xy_source,
        slice_positions=[float(v) for v in layout.along],
        slice_steps=[float(v) for v in layout.steps],
        uneven_spacing=uneven,
        gantry_tilt_deg=tilt,
        num_slices=len(paths),
        num_frames=len(chosen),
        frame=frame,
        image_position=[float(v) for v in layout.positions[chosen[0]]],
        image_orientation=[float(v) for v in layout.orientation],
        slice_thickness=sorted_thickness[0] if len(set(sorted_thickness)) == 1 else None,
        slice_thicknesses=sorted_thickness,
    )
    # Without a Series Instance UID the file names are the only stable identity the series has.
    uid = first.get("SeriesInstanceUID") or "files:" + ",".join(p.name for p in paths)
    meta["case_id"] = case_id_for(str(uid))
    return meta


def read_dicom_series(
    folder,
    *,
    expect: str = "gray",
    frame: int | None = None,
    single_frame: bool = False,
    voi: bool = False,
    fill_padding: bool = True,
    series_uid: str | None = None,
) -> ImageData:
    """Read a folder of single-frame DICOM slices as a ``Z x H x W`` float32 volume ordered by position.

    Which files count: every non-hidden file directly in the folder (not in subfolders) that is DICOM by content
    (the ``DICM`` marker at byte 128), or that has a DICOM suffix (``.dcm``, ``.dicom``, ``.ima``; it must then
    parse as DICOM), or that has no suffix and starts like a raw DICOM data set. Anything else (``README``,
    ``.txt``, ``.json``, ``.png``...) is ignored and counted in ``meta["num_ignored_files"]``, as are DICOM files
    without image attributes (DICOMDIR, structured reports, presentation states).

    Order: slices are sorted by Image Position (Patient) projected on the slice normal (the cross product of the
    Image Orientation (Patient) row and column direction cosines), ascending; never by file name or Instance
    Number. Slice 0 is the most negative position along the normal (inferior first for ordinary axial scans).

    Geometry in ``meta``: ``spacing`` ``(z, y, x)`` in mm, where z is the median step between the sorted slice
    positions (not Slice Thickness) and y, x come from Pixel Spacing (row, column) (``z_spacing_source`` and
    ``xy_spacing_source`` say where they came from when a header lacks them); ``slice_positions`` (mm along the
    normal); ``slice_steps`` (the steps between neighbours); ``uneven_spacing`` (True when a step differs from the
    median by more than 1% and at least 0.01 mm: a single z spacing is then only approximate, use
    ``slice_positions``); ``gantry_tilt_deg`` (the angle between the slice normal and the direction in which slice
    positions advance; 0 for an untilted scan). A tilted or unevenly spaced volume is returned as acquired, not
    resampled. Each slice is read by :func:`read_dicom` with its own rescale, so values are HU for CT.

    Args:
        folder: the folder holding the slices.
        expect: ``"gray"`` (default) or ``"any"``; a series is always grayscale, ``"rgb"`` is an error.
        frame: read only the slice with this index in the sorted order (returns ``H x W``); None reads all.
        single_frame: if True, a folder with more than one slice is an error (one 2-D image was expected).
        voi: apply each slice's header window (see :func:`read_dicom`).
        fill_padding: CT padding / below-air values become -1024 HU (see :func:`read_dicom`).
        series_uid: read only the slices of this Series Instance UID when the folder holds several series.

    Returns:
        :class:`ImageData` with the volume and ``meta`` (the first slice's metadata plus ``spacing``,
        ``slice_positions``, ``slice_steps``, ``uneven_spacing``, ``gantry_tilt_deg``, ``num_slices``,
        ``num_ignored_files``; ``case_id`` is a keyed hash of the Series Instance UID).

    Raises:
        ImageReadError: no DICOM image in the folder; several Series Instance UIDs (unless ``series_uid`` picks
            one); slices of different sizes, orientations or pixel spacings; multi-frame files; slices without
            position or orientation; two slices at the same position; any unreadable slice. Each message names
            the offending files.

    Example:
        >>> vol = read_dicom_series("../shared/data/ct_head_series_ge")  # doctest: +SKIP
        >>> vol.shape, round(vol.meta["gantry_tilt_deg"], 1)  # doctest: +SKIP
        ((28, 512, 512), 18.5)
    """
    folder, frame = _check_arguments(folder, expect, frame)
    candidates, ignored = _list_series_files(folder)
    paths, headers, refused = _read_image_headers(candidates)
    paths, headers, ignored = _choose_series(folder, paths, headers, ignored + refused, series_uid)
    _check_stackable(folder, paths, headers)
    orientations, positions, spacings = _check_geometry(folder, paths, headers)
    layout = _order_by_position(folder, paths, orientations[0], positions)
    # The frame is checked against the slice count only now, so a broken folder reports its real fault first.
    check_frame_choice(folder, len(paths), frame, single_frame, unit="slices")
    chosen = [int(layout.order[frame])] if frame is not None else [int(i) for i in layout.order]
    volume, slice_meta = _stack_slices(folder, paths, chosen, voi, fill_padding)
    meta = _series_meta(slice_meta, paths, headers, spacings[layout.order[0]], layout, chosen, frame)
    meta["num_ignored_files"] = len(ignored)
    array = volume[0] if frame is not None else volume
    return ImageData(array, meta)

