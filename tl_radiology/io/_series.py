"""Reading a folder of DICOM slices as one volume ordered by position.

The reader runs as named steps: list the folder's DICOM files, read their headers and choose one series of image
slices, check that the slices stack (frames, colour, size) and share one geometry (orientation, spacing), order
them along the slice normal, then read and stack the pixels and describe the volume in ``meta``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import ImageReadError
from ._common import case_id_for, check_expect, check_frame, check_frame_choice
from ._dicom import read_dicom
from ._dicom_checks import non_image_kind
from ._dicom_file import DICOM_SUFFIXES, _has_preamble, _head, _looks_like_raw_dataset, read_dataset
from ._dicom_header import _float, _floats
from ._image import ImageData

__all__ = ["read_dicom_series"]

_DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory (DICOMDIR)
_ORIENTATION_TOL = 1e-4  # direction cosines written with 5-6 decimals
_SPACING_TOL = 1e-3  # mm
_SAME_POSITION_TOL = 1e-3  # mm along the normal


@dataclass(frozen=True)
class _Layout:
    """Where the chosen slices lie in space, measured once and shared by the spacing, stacking and meta steps."""

    orientation: np.ndarray  # the six direction cosines every slice shares (row, then column)
    normal: np.ndarray  # unit slice normal: row x column
    positions: np.ndarray  # N x 3 Image Position (Patient), in file order
    order: np.ndarray  # file indices sorted by position along the normal
    along: np.ndarray  # the sorted positions along the normal (mm)
    steps: np.ndarray  # the steps between sorted neighbours (mm)


def _names(paths, limit: int = 5) -> str:
    """Name up to ``limit`` files, then count the rest, so a message stays one readable line."""
    names = [p.name for p in paths]
    if len(names) > limit:
        return ", ".join(names[:limit]) + f" and {len(names) - limit} more"
    return ", ".join(names)


def _check_arguments(folder, expect: str, frame: int | None) -> tuple[Path, int | None]:
    """Check the reader's arguments and that ``folder`` is a folder, before anything is read.

    Args:
        folder: the folder given to :func:`read_dicom_series`.
        expect: ``"gray"``, ``"any"`` or ``"rgb"`` (the last is refused: a series is read as grayscale).
        frame: the slice index to read, or None.

    Returns:
        The folder as a :class:`~pathlib.Path` and the checked frame index.

    Raises:
        ImageReadError: the folder does not exist, is a file, or ``expect="rgb"``.
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
    return folder, frame


def _list_series_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """Split a folder's files into DICOM candidates and ignored files, by name and first bytes only.

    The rule is the one :func:`read_dicom_series` documents: non-hidden files directly in the folder that carry
    the ``DICM`` marker, a DICOM suffix, or no suffix and the start of a raw data set. A file that cannot be
    opened is ignored rather than fatal, since folders often hold stray unreadable files beside a series.

    Args:
        folder: the series folder.

    Returns:
        ``(candidates, ignored)``, each sorted by file name.

    Raises:
        ImageReadError: the folder itself cannot be listed.
    """
    dicom, ignored = [], []
    try:
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
    except OSError as exc:
        raise ImageReadError(
            f"{folder} cannot be listed ({exc.strerror or exc}); expected a readable folder of DICOM slices. Fix its "
            f"permissions."
        ) from exc
    return dicom, ignored


def _read_image_headers(candidates: list[Path]) -> tuple[list[Path], list, list[Path]]:
    """Read the candidates' headers and set aside the DICOM objects that are not image slices.

    Args:
        candidates: the DICOM candidates from :func:`_list_series_files`.

    Returns:
        ``(paths, headers, refused)``: the image slices with their headers, and the other DICOM objects.

    Raises:
        ImageReadError: a candidate is not DICOM, or a slice is cut off (from :func:`read_dataset`).
    """
    paths, headers, refused = [], [], []
    for path in candidates:
        ds = read_dataset(path, header_only=True)
        if "Rows" not in ds and str(ds.get("SOPClassUID") or "") != _DIRECTORY_SOP_CLASS:
            # Not an image, or a slice cut off before its Rows: a full read tells them apart (and fails if cut).
            ds = read_dataset(path, header_only=False)
        if str(ds.get("SOPClassUID") or "") == _DIRECTORY_SOP_CLASS or "Rows" not in ds or non_image_kind(ds):
            # DICOMDIR, reports, and objects beside a series that are not slices of it (SEG, RT dose, PR, ...)
            refused.append(path)
            continue
        paths.append(path)
        headers.append(ds)
    return paths, headers, refused


def _choose_series(
    folder: Path, paths: list[Path], headers: list, ignored: list[Path], series_uid: str | None
) -> tuple[list[Path], list, list[Path]]:
    """Keep the slices of one series: the one ``series_uid`` names, or the only one in the folder.

    Args:
        folder: the series folder, for messages.
        paths: the image slices found.
        headers: their headers, in the same order.
        ignored: the files set aside so far.
        series_uid: the Series Instance UID to keep, or None to require a single series.

    Returns:
        ``(paths, headers, ignored)`` with the slices of other series moved to ``ignored``.

    Raises:
        ImageReadError: no image slice at all; no slice of ``series_uid``; several series and no ``series_uid``.
    """
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
        kept = set(keep)
        ignored = ignored + [p for i, p in enumerate(paths) if i not in kept]
        paths, headers, uids = [paths[i] for i in keep], [headers[i] for i in keep], [uids[i] for i in keep]
    fix = "move each series into its own folder, or pick one with series_uid=..."
    _split_by(paths, uids, "SeriesInstanceUIDs", folder, fix)
    return paths, headers, ignored


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


def _check_stackable(folder: Path, paths: list[Path], headers: list) -> None:
    """Check that the slices can share one array: single-frame, grayscale and of one size.

    Args:
        folder: the series folder, for messages.
        paths: the slices of the chosen series.
        headers: their headers, in the same order.

    Raises:
        ImageReadError: a multi-frame or colour slice, or slices of different sizes.
    """
    multi = [p for p, ds in zip(paths, headers) if int(ds.get("NumberOfFrames") or 1) > 1]
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


def _check_geometry(folder: Path, paths: list[Path], headers: list) -> tuple[list, list, list]:
    """Check that every slice has a position and that all share one orientation and one pixel spacing.

    Orientations and spacings are compared within a tolerance of the first slice, because scanners write the
    same value with different rounding from slice to slice.

    Args:
        folder: the series folder, for messages.
        paths: the slices of the chosen series.
        headers: their headers, in the same order.

    Returns:
        ``(orientations, positions, spacings)`` as lists of floats per slice, in file order (a spacing may be
        empty when the header lacks Pixel Spacing).

    Raises:
        ImageReadError: a slice without position or orientation, or slices of different orientation or spacing.
    """
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
    return orientations, positions, spacings


def _order_by_position(folder: Path, paths: list[Path], orientation: list, positions: list) -> _Layout:
    """Sort the slices by position along the slice normal and refuse two slices at one position.

    File names and Instance Numbers are not trusted for the order: exporters renumber and rename freely, while
    the position along the normal is what places a slice in the volume.

    Args:
        folder: the series folder, for messages.
        paths: the slices of the chosen series.
        orientation: the six direction cosines the slices share.
        positions: each slice's Image Position (Patient), in file order.

    Returns:
        The :class:`_Layout` of the slices.

    Raises:
        ImageReadError: row and column directions are parallel, or two slices lie at the same position.
    """
    cosines = np.asarray(orientation, dtype=np.float64)
    normal = np.cross(cosines[:3], cosines[3:])
    norm = np.linalg.norm(normal)
    if norm < 1e-6:
        raise ImageReadError(
            f"{folder}: ImageOrientationPatient {orientation} has parallel row and column directions. "
            f"Expected two orthogonal unit vectors; the header is corrupt."
        )
    normal /= norm
    pos = np.asarray(positions, dtype=np.float64)
    along = pos @ normal
    # A stable sort keeps equal positions in file order, so the same-position message names them predictably.
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
    return _Layout(cosines, normal, pos, order, sorted_along, steps)


def _xy_spacing(first, pixel_spacing: list) -> tuple[list, str]:
    """The in-plane spacing ``(row, column)`` in mm and the tag it came from (``"default"`` when none)."""
    source = "PixelSpacing"
    if not pixel_spacing:
        # Projection images store the detector's spacing instead; better than no spacing at all.
        pixel_spacing, source = _floats(first.get("ImagerPixelSpacing")), "ImagerPixelSpacing"
    if not pixel_spacing or len(pixel_spacing) != 2:
        pixel_spacing, source = [1.0, 1.0], "default"
    return pixel_spacing, source


def _z_spacing(first, layout: _Layout) -> tuple[float, str, bool, float]:
    """Measure the slice step from the sorted positions, with its evenness and the gantry tilt.

    The median step is used, not Slice Thickness: slices may overlap or leave gaps, and only the positions say
    where they are.

    Args:
        first: the header of the first slice in the sorted order.
        layout: the slices' :class:`_Layout`.

    Returns:
        ``(step, source, uneven, tilt_deg)``: the step in mm, where it came from (``"positions"``, a header tag,
        or ``"default"``), whether some step differs from the median by more than 1% and 0.01 mm, and the angle
        between the slice normal and the direction in which the slices advance.
    """
    steps, order, pos = layout.steps, layout.order, layout.positions
    if len(order) > 1:
        step = float(np.median(steps))
        tolerance = max(0.01, 0.01 * step)
        uneven = bool(np.any(np.abs(steps - step) > tolerance))
        advance = pos[order[-1]] - pos[order[0]]
        cos_tilt = abs(float(advance @ layout.normal)) / float(np.linalg.norm(advance))
        tilt = float(np.degrees(np.arccos(min(cos_tilt, 1.0))))
        return step, "positions", uneven, tilt
    # One slice: no positions to measure a step from; fall back on the header, and say so.
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = _float(first.get(keyword))
        if value:
            return value, keyword, False, 0.0
    return 1.0, "default", False, 0.0


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

