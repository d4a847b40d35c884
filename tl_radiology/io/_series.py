"""Reading a folder of DICOM slices as one volume ordered by position."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import ImageReadError
from ._common import case_id_for, check_expect, check_frame, check_frame_choice
from ._dicom import (
    DICOM_SUFFIXES,
    _float,
    _floats,
    _has_preamble,
    _head,
    _looks_like_raw_dataset,
    non_image_kind,
    read_dataset,
    read_dicom,
)
from ._image import ImageData

__all__ = ["read_dicom_series"]

_DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory (DICOMDIR)
_ORIENTATION_TOL = 1e-4  # direction cosines written with 5-6 decimals
_SPACING_TOL = 1e-3  # mm
_SAME_POSITION_TOL = 1e-3  # mm along the normal


def _names(paths, limit: int = 5) -> str:
    names = [p.name for p in paths]
    if len(names) > limit:
        return ", ".join(names[:limit]) + f" and {len(names) - limit} more"
    return ", ".join(names)


def _candidates(folder: Path) -> tuple[list[Path], list[Path]]:
    """Split a folder's files into DICOM candidates and ignored files (see read_dicom_series for the rule)."""
    dicom, ignored = [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            head = _head(path)
        except OSError:
            ignored.append(path)
            continue
        suffix = path.suffix.lower()
        if _has_preamble(head) or suffix in DICOM_SUFFIXES or (suffix == "" and _looks_like_raw_dataset(head)):
            dicom.append(path)
        else:
            ignored.append(path)
    return dicom, ignored


def _split_by(paths, values, what: str, folder: Path, fix: str) -> None:
    """Fail naming the files whose ``values`` differ from the most common one."""
    groups: dict[Any, list[Path]] = defaultdict(list)
    for path, value in zip(paths, values):
        groups[value].append(path)
    if len(groups) <= 1:
        return
    ordered = sorted(groups.items(), key=lambda kv: -len(kv[1]))
    majority_value, majority = ordered[0]
    others = "; ".join(f"{value} in {_names(files)}" for value, files in ordered[1:])
    raise ImageReadError(
        f"{folder} mixes {what}: {len(majority)} files have {majority_value}, but {others}. Expected one series "
        f"with a single {what}; {fix}"
    )


def _group_keys(vectors, tolerance: float, decimals: int) -> list:
    """Keys that are equal for vectors within ``tolerance`` of the first one (no rounding-boundary splits)."""
    reference = vectors[0]

    def key(v):
        return tuple(round(float(x), decimals) + 0.0 for x in v) if v else None

    return [key(reference) if v and np.allclose(v, reference, atol=tolerance, rtol=0) else key(v) for v in vectors]


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
    expect = check_expect(expect)
    frame = check_frame(frame)
    folder = Path(folder)
    if not folder.exists():
        raise ImageReadError(f"{folder} does not exist; expected a folder of DICOM slices. Check the path.")
    if not folder.is_dir():
        raise ImageReadError(f"{folder} is a file; expected a folder of DICOM slices. Use read_dicom for one file.")
    if expect == "rgb":
        raise ImageReadError(
            f"{folder} is read as a grayscale volume but expect='rgb' was given. Pass expect='gray' or "
            f"expect='any' for a DICOM series."
        )
    try:
        candidates, ignored = _candidates(folder)
    except OSError as exc:
        raise ImageReadError(
            f"{folder} cannot be listed ({exc.strerror or exc}); expected a readable folder of DICOM slices. Fix its "
            f"permissions."
        ) from exc
    paths, headers = [], []
    for path in candidates:
        ds = read_dataset(path, header_only=True)
        if "Rows" not in ds and str(ds.get("SOPClassUID") or "") != _DIRECTORY_SOP_CLASS:
            # Not an image, or a slice cut off before its Rows: a full read tells them apart (and fails if cut).
            ds = read_dataset(path, header_only=False)
        if str(ds.get("SOPClassUID") or "") == _DIRECTORY_SOP_CLASS or "Rows" not in ds or non_image_kind(ds):
            # DICOMDIR, reports, and objects beside a series that are not slices of it (SEG, RT dose, PR, ...)
            ignored.append(path)
            continue
        paths.append(path)
        headers.append(ds)
    if not paths:
        raise ImageReadError(
            f"{folder} holds no DICOM image files ({len(ignored)} other files ignored). Expected a folder of DICOM "
            f"slices of one series; check the folder."
        )

    uids = [str(ds.get("SeriesInstanceUID") or "(none)") for ds in headers]
    if series_uid is not None:
        keep = [i for i, u in enumerate(uids) if u == str(series_uid)]
        if not keep:
            raise ImageReadError(
                f"{folder} has no slice of series_uid={series_uid!r}. Available: {', '.join(sorted(set(uids)))}."
            )
        ignored.extend(p for i, p in enumerate(paths) if i not in set(keep))
        paths = [paths[i] for i in keep]
        headers = [headers[i] for i in keep]
        uids = [uids[i] for i in keep]
    fix = "move each series into its own folder, or pick one with series_uid=..."
    _split_by(paths, uids, "SeriesInstanceUIDs", folder, fix)

    frames = [int(ds.get("NumberOfFrames") or 1) for ds in headers]
    multi = [p for p, n in zip(paths, frames) if n > 1]
    if multi:
        raise ImageReadError(
            f"{folder} holds multi-frame files ({_names(multi)}); a series folder must hold single-frame slices. "
            f"Read a multi-frame file with read_dicom(path) instead."
        )
    colour = [
        p
        for p, ds in zip(paths, headers)
        if int(ds.get("SamplesPerPixel") or 1) > 1
        or str(ds.get("PhotometricInterpretation") or "").upper() == "PALETTE COLOR"
    ]
    if colour:
        raise ImageReadError(
            f"{folder} holds colour slices ({_names(colour)}); a series volume must be grayscale. Read colour "
            f"images one by one with read_dicom(path, expect='rgb')."
        )
    _split_by(
        paths, [(int(ds.Rows), int(ds.Columns)) for ds in headers], "image sizes (Rows, Columns)", folder,
        "remove the files of the other size (scouts, localisers or another series).",
    )

    orientations = [_floats(ds.get("ImageOrientationPatient")) for ds in headers]
    positions = [_floats(ds.get("ImagePositionPatient")) for ds in headers]
    missing = [p for p, o, x in zip(paths, orientations, positions) if not o or len(o) != 6 or not x or len(x) != 3]
    if missing:
        raise ImageReadError(
            f"{folder}: {_names(missing)} lack Image Position/Orientation (Patient), so the slices cannot be ordered "
            f"in space. Expected CT/MR slices with geometry; export the series with its geometry tags."
        )
    _split_by(
        paths,
        _group_keys(orientations, _ORIENTATION_TOL, 4),
        "ImageOrientationPatient values",
        folder,
        "remove the slices of the other orientation (a localiser or a reformatted series).",
    )
    spacings = [_floats(ds.get("PixelSpacing")) for ds in headers]
    _split_by(
        paths,
        _group_keys(spacings, _SPACING_TOL, 3),
        "PixelSpacing values",
        folder,
        "remove the slices with the other pixel spacing (another reconstruction).",
    )

    orientation = np.asarray(orientations[0], dtype=np.float64)
    row, col = orientation[:3], orientation[3:]
    normal = np.cross(row, col)
    norm = np.linalg.norm(normal)
    if norm < 1e-6:
        raise ImageReadError(
            f"{folder}: ImageOrientationPatient {orientations[0]} has parallel row and column directions. "
            f"Expected two orthogonal unit vectors; the header is corrupt."
        )
    normal /= norm
    pos = np.asarray(positions, dtype=np.float64)
    along = pos @ normal
    order = np.argsort(along, kind="stable")
    sorted_along = along[order]
    steps = np.diff(sorted_along)
    same = [(paths[order[i]], paths[order[i + 1]]) for i in np.flatnonzero(steps < _SAME_POSITION_TOL)]
    if same:
        pairs = "; ".join(f"{a.name} and {b.name}" for a, b in same[:5])
        raise ImageReadError(
            f"{folder} has slices at the same position ({pairs}). Expected one slice per position; the folder "
            f"probably mixes acquisitions, echoes or time points: move them into separate folders."
        )

    num = len(paths)
    check_frame_choice(folder, num, frame, single_frame, unit="slices")
    first = headers[order[0]]
    pixel_spacing, xy_source = spacings[order[0]], "PixelSpacing"
    if not pixel_spacing:
        pixel_spacing, xy_source = _floats(first.get("ImagerPixelSpacing")), "ImagerPixelSpacing"
    if not pixel_spacing or len(pixel_spacing) != 2:
        pixel_spacing, xy_source = [1.0, 1.0], "default"
    if num > 1:
        step = float(np.median(steps))
        tolerance = max(0.01, 0.01 * step)
        uneven = bool(np.any(np.abs(steps - step) > tolerance))
        advance = pos[order[-1]] - pos[order[0]]
        cos_tilt = abs(float(advance @ normal)) / float(np.linalg.norm(advance))
        tilt = float(np.degrees(np.arccos(min(cos_tilt, 1.0))))
        z_source = "positions"
    else:
        # One slice: no positions to measure a step from; fall back on the header, and say so.
        z_source, step = "default", 1.0
        for keyword in ("SpacingBetweenSlices", "SliceThickness"):
            value = _float(first.get(keyword))
            if value:
                z_source, step = keyword, value
                break
        uneven, tilt = False, 0.0

    read_options = dict(expect="gray", single_frame=True, voi=voi, fill_padding=fill_padding)
    if frame is not None:
        chosen = [int(order[frame])]
    else:
        chosen = [int(i) for i in order]
    volume = None
    padding = 0
    units = set()
    for k, index in enumerate(chosen):
        image = read_dicom(paths[index], **read_options)
        if volume is None:
            first_meta = image.meta
            shape = (len(chosen),) + image.shape
            volume = np.empty(shape, dtype=np.float32)
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

    thickness = [_floats(ds.get("SliceThickness")) for ds in headers]
    thickness = [t[0] if t else None for t in thickness]
    sorted_thickness = [thickness[i] for i in order]
    meta = dict(first_meta)
    meta.update(
        kind="dicom_series",
        spacing=[step, float(pixel_spacing[0]), float(pixel_spacing[1])],
        z_spacing_source=z_source,
        xy_spacing_source=xy_source,
        slice_positions=[float(v) for v in sorted_along],
        slice_steps=[float(v) for v in steps],
        uneven_spacing=uneven,
        gantry_tilt_deg=tilt,
        num_slices=num,
        num_frames=len(chosen),
        frame=frame,
        image_position=[float(v) for v in pos[chosen[0]]],
        image_orientation=[float(v) for v in orientation],
        slice_thickness=sorted_thickness[0] if len(set(sorted_thickness)) == 1 else None,
        slice_thicknesses=sorted_thickness,
        value_range=value_range,
        padding_filled=padding,
        num_ignored_files=len(ignored),
        case_id=case_id_for(str(first.get("SeriesInstanceUID") or "files:" + ",".join(p.name for p in paths))),
    )
    array = volume[0] if frame is not None else volume
    return ImageData(array, meta)
