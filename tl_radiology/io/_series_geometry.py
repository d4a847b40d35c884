"""Where the slices of a DICOM series lie in space: one orientation and pixel spacing, order, step and tilt.

The geometry steps of :func:`~tl_radiology.io.read_dicom_series`: check that every slice has a position and that
all share one orientation and pixel spacing, sort them along the slice normal, and measure the spacing between
them and the gantry tilt from their positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._errors import ImageReadError
from ._dicom_header import _float, _floats
from ._series_files import _names, _split_by

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


def _group_keys(vectors, tolerance: float, decimals: int) -> list:
    """Keys that are equal for vectors within ``tolerance`` of the first one (no rounding-boundary splits)."""
    reference = vectors[0]

    def key(v):
        return tuple(round(float(x), decimals) + 0.0 for x in v) if v else None

    return [key(reference) if v and np.allclose(v, reference, atol=tolerance, rtol=0) else key(v) for v in vectors]


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
