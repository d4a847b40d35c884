"""Axial, coronal and sagittal patches around a point of a CT volume, as the three channels of one image."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from scipy.ndimage import map_coordinates

from .._errors import InputError
from .._options import look_up_option
from ._base import Transform, as_float_image, check_int, check_number, format_shape

__all__ = ["ExtractPlanes"]

_CENTER_UNITS = ("voxel", "mm")


def _finite_vector(value, length: int, name: str, unit: str = "") -> np.ndarray:
    try:
        vec = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        vec = np.empty(0)
    if vec.shape != (length,) or not np.isfinite(vec).all():
        raise InputError(
            f"ExtractPlanes: expected {name} to be {length} finite numbers{unit}. Received: {name}={value!r}."
        )
    return vec


def _fmt(vec) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in vec) + ")"


def _interp_extrapolate(t: float, xp: np.ndarray, fp: np.ndarray) -> float:
    """Piecewise-linear ``fp(t)`` through ``(xp, fp)`` (xp strictly increasing), extended linearly at both ends."""
    if t < xp[0]:
        return float(fp[0] + (t - xp[0]) * (fp[1] - fp[0]) / (xp[1] - xp[0]))
    if t > xp[-1]:
        return float(fp[-1] + (t - xp[-1]) * (fp[-1] - fp[-2]) / (xp[-1] - xp[-2]))
    return float(np.interp(t, xp, fp))


class ExtractPlanes(Transform):
    """Cut axial, coronal and sagittal ``size x size`` patches through a point of a volume: ``size x size x 3``.

    Called as ``extract(volume, center)``. The volume is first resampled (linear interpolation) to an isotropic
    grid of ``spacing_mm`` so a round structure stays round in every plane whatever the slice thickness; only the
    three planes through the point are interpolated (``scipy.ndimage.map_coordinates``), which gives the same
    values as resampling the whole volume and then cutting, at a fraction of the cost. There is no anti-aliasing:
    choose ``spacing_mm`` near the in-plane pixel spacing rather than much coarser.

    Conventions (array axes of the volume are ``(z, y, x)``: slice, row, column):

    - channel 0 is the axial patch (rows along y, columns along x), channel 1 the coronal patch (rows along z,
      columns along x), channel 2 the sagittal patch (rows along z, columns along y);
    - rows and columns follow increasing array index (no flip for display);
    - the point falls on pixel ``(size // 2, size // 2)`` of every patch, pixels are ``spacing_mm`` apart;
    - parts of a patch outside the volume are filled with ``fill``; by default the volume's minimum, which is air
      (or the scanner's padding value) for CT;
    - the output keeps the volume's units (HU for CT): follow it with ``Window`` (which windows the three
      channels alike) to get model input in [0, 1];
    - a point outside the volume is refused rather than giving a patch of padding.

    The volume's ``meta["spacing"]`` gives the voxel size ``(z, y, x)`` in mm, as ``tl_radiology.io``'s series
    reader writes it. When ``meta["uneven_spacing"]`` is true and ``meta["slice_positions"]`` lists one position
    per slice (numbers along the slice normal, or ``(x, y, z)`` points), those positions place the slices along z
    instead. The voxel grid is treated as rectilinear: a gantry-tilted series is sampled as stored.

    Args:
        size: the side of each patch in pixels (>= 1).
        spacing_mm: the isotropic pixel spacing of the patches in mm (> 0).
        fill: the value of pixels outside the volume; ``None`` (default) uses the volume's minimum.
        center_units: how ``center`` is given: ``"voxel"`` (default), fractional indices ``(z, y, x)`` of the
            volume's array; or ``"mm"``, a patient coordinate ``(x, y, z)`` in mm in the DICOM patient frame
            (the frame of ImagePositionPatient), which needs ``meta["image_position"]`` (of the first slice,
            index 0) and ``meta["image_orientation"]``. Slices are placed by ``meta["slice_positions"]`` when it
            is there; otherwise they are taken to follow the slice normal (row x column direction cosines) at
            ``spacing[0]`` mm steps.

    Raises:
        InputError: a size, spacing or fill that is not a valid number.
        OptionError: unknown ``center_units``.

    Example:
        >>> import numpy as np
        >>> from tl_radiology.io import ImageData
        >>> from tl_radiology.transforms import ExtractPlanes
        >>> volume = ImageData(np.zeros((20, 64, 64), np.float32), {"spacing": (2.5, 0.7, 0.7)})
        >>> ExtractPlanes(32, spacing_mm=1.0)(volume, (10, 32, 32)).shape
        (32, 32, 3)
    """

    def __init__(self, size: int, spacing_mm: float = 1.0, fill: float | None = None, center_units: str = "voxel"):
        self.size = check_int(size, "size", "ExtractPlanes", minimum=1)
        self.spacing_mm = check_number(spacing_mm, "spacing_mm", "ExtractPlanes", positive=True)
        self.fill = None if fill is None else check_number(fill, "fill", "ExtractPlanes")
        self.center_units = look_up_option(center_units, _CENTER_UNITS, what="center unit")

    def __call__(self, volume, center) -> np.ndarray:
        """Extract the three patches around ``center`` from ``volume`` (an ``ImageData`` holding ``Z x H x W``).

        Args:
            volume: ``tl_radiology.io.ImageData`` with a 3-D array and ``meta["spacing"]`` = ``(z, y, x)`` mm.
            center: three numbers: voxel indices ``(z, y, x)``, or ``(x, y, z)`` mm with ``center_units="mm"``.

        Returns:
            A new float32 array ``size x size x 3`` (axial, coronal, sagittal), in the volume's units.

        Raises:
            InputError: the volume is not a 3-D ``ImageData`` with a valid spacing, or the point is outside it.
        """
        meta = getattr(volume, "meta", None)
        if not hasattr(volume, "array") or not isinstance(meta, dict):
            raise InputError(
                f"ExtractPlanes expects a volume as tl_radiology.io.ImageData (Z x H x W with meta['spacing']). "
                f"Received {type(volume).__name__}; wrap an array as ImageData(array, {{'spacing': (z, y, x)}})."
            )
        array = as_float_image(volume, who="ExtractPlanes")
        if array.ndim != 3:
            raise InputError(
                f"ExtractPlanes expects a Z x H x W volume. Received shape {format_shape(array.shape)}; read the "
                f"series with tl_radiology.io.read_dicom_series."
            )
        if meta.get("spacing") is None:
            raise InputError(
                "ExtractPlanes needs the voxel size: the volume has no meta['spacing'] (z, y, x) in mm; read it with "
                "read_dicom_series or set it when building the ImageData."
            )
        spacing = _finite_vector(meta["spacing"], 3, "meta['spacing']", " (z, y, x) in mm")
        if (spacing <= 0).any():
            raise InputError(f"ExtractPlanes: expected meta['spacing'] > 0 mm. Received: {meta['spacing']!r}.")
        if isinstance(center, (str, bytes)) or not all(
            isinstance(c, numbers.Real) and not isinstance(c, bool) for c in np.ravel(np.asarray(center, object))
        ):
            raise InputError(f"ExtractPlanes: expected center to be 3 finite numbers. Received: center={center!r}.")
        point = _finite_vector(center, 3, "center")

        slice_mm = self._slice_coordinates(meta, array.shape[0])
        if self.center_units == "mm":
            index = self._patient_to_voxel(meta, point, array.shape[0], spacing)
        else:
            index = point
        upper = np.asarray(array.shape, dtype=np.float64) - 1
        if (index < -1e-6).any() or (index > upper + 1e-6).any():
            given = "voxel (z, y, x) " + _fmt(index)
            hint = "a voxel index (z, y, x) inside it, or center_units='mm' for a patient coordinate"
            if self.center_units == "mm":
                given = f"(x, y, z) = {_fmt(point)} mm, i.e. {given},"
                hint = "a point inside it, in the patient frame (x, y, z) mm of meta['image_position']"
            raise InputError(
                f"ExtractPlanes: center {given} lies outside the volume of shape {format_shape(array.shape)} "
                f"(slices x rows x columns); give {hint}."
            )
        index = np.clip(index, 0, upper)

        offsets = (np.arange(self.size) - self.size // 2) * self.spacing_mm  # mm from the point, centre at size//2
        z_rows = self._z_indices(index[0], offsets, spacing[0], slice_mm)
        y_rows = index[1] + offsets / spacing[1]
        x_cols = index[2] + offsets / spacing[2]
        planes = (
            (index[0], y_rows[:, None], x_cols[None, :]),  # axial: rows along y, columns along x
            (z_rows[:, None], index[1], x_cols[None, :]),  # coronal: rows along z, columns along x
            (z_rows[:, None], y_rows[None, :], index[2]),  # sagittal: rows along z, columns along y
        )
        fill = float(array.min()) if self.fill is None else self.fill
        out = np.empty((self.size, self.size, 3), dtype=np.float32)
        for channel, (z, y, x) in enumerate(planes):
            coords = np.stack(np.broadcast_arrays(z, y, x, np.empty((self.size, self.size))))[:3]
            out[..., channel] = map_coordinates(array, coords, order=1, mode="constant", cval=fill, output=np.float32)
        return out

    # -- geometry ---------------------------------------------------------------------------------------------

    @staticmethod
    def _slice_coordinates(meta: dict, num_slices: int) -> np.ndarray | None:
        """Increasing mm coordinates of the slices along z when the spacing is uneven; ``None`` when it is even."""
        positions = meta.get("slice_positions")
        if not meta.get("uneven_spacing") or positions is None or num_slices < 2:
            return None
        pos = np.asarray(positions, dtype=np.float64)
        if pos.shape not in ((num_slices,), (num_slices, 3)) or not np.isfinite(pos).all():
            raise InputError(
                f"ExtractPlanes: meta['slice_positions'] has shape {pos.shape} but the volume has {num_slices} "
                f"slices; expected one number or one (x, y, z) point per slice."
            )
        if pos.ndim == 2:  # points: distances along the stack's direction
            direction = pos[-1] - pos[0]
            length = float(np.linalg.norm(direction))
            pos = (pos - pos[0]) @ (direction / length) if length > 0 else np.zeros(num_slices)
        coords = (pos - pos[0]) if pos[-1] >= pos[0] else (pos[0] - pos)
        if not (np.diff(coords) > 0).all():
            raise InputError(
                "ExtractPlanes: meta['slice_positions'] are not strictly ordered along z; sort the slices by "
                "position (read_dicom_series does) before extracting planes."
            )
        return coords

    @staticmethod
    def _z_indices(center_z: float, offsets: np.ndarray, spacing_z: float, slice_mm: np.ndarray | None) -> np.ndarray:
        """Fractional slice indices of the points ``offsets`` mm from slice index ``center_z`` along z."""
        if slice_mm is None:
            return center_z + offsets / spacing_z
        indices = np.arange(slice_mm.size, dtype=np.float64)
        center_mm = float(np.interp(center_z, indices, slice_mm))
        # Outside the stack: an index beyond either end, which map_coordinates fills with the fill value.
        return np.interp(center_mm + offsets, slice_mm, indices, left=-1.0, right=float(slice_mm.size))

    @staticmethod
    def _patient_to_voxel(meta: dict, point: np.ndarray, num_slices: int, spacing: np.ndarray) -> np.ndarray:
        """Voxel indices ``(z, y, x)`` of a patient-frame point ``(x, y, z)`` mm, from the DICOM geometry in meta."""
        if meta.get("image_position") is None or meta.get("image_orientation") is None:
            raise InputError(
                "ExtractPlanes(center_units='mm') needs meta['image_position'] and meta['image_orientation'] to "
                "place a patient coordinate in the volume; give the center in voxels (center_units='voxel')."
            )
        origin = _finite_vector(meta["image_position"], 3, "meta['image_position']")
        orientation = _finite_vector(meta["image_orientation"], 6, "meta['image_orientation']")
        row_dir, col_dir = orientation[:3], orientation[3:]
        if np.linalg.norm(row_dir) == 0 or np.linalg.norm(col_dir) == 0:
            raise InputError(f"ExtractPlanes: meta['image_orientation'] {orientation.tolist()} has a zero vector.")
        row_dir, col_dir = row_dir / np.linalg.norm(row_dir), col_dir / np.linalg.norm(col_dir)
        normal = np.cross(row_dir, col_dir)

        # The origin (first voxel) of every slice, in the patient frame.
        positions = meta.get("slice_positions")
        pos = None if positions is None else np.asarray(positions, dtype=np.float64)
        if pos is not None and pos.shape == (num_slices, 3):
            origins = pos
        elif pos is not None and pos.shape == (num_slices,):
            origins = origin + (pos - pos[0])[:, None] * normal  # positions along the normal
        else:  # even spacing, slices in increasing order along the normal
            origins = origin + (np.arange(num_slices) * spacing[0])[:, None] * normal
        indices = np.arange(num_slices, dtype=np.float64)
        along = (origins - origins[0]) @ normal
        t = float((point - origins[0]) @ normal)
        if num_slices == 1:
            k = t / spacing[0]
            slice_origin = origins[0] + t * normal
        else:
            steps = np.diff(along)
            if not ((steps > 0).all() or (steps < 0).all()):
                raise InputError(
                    "ExtractPlanes: the slices are not strictly ordered along their normal, so a patient coordinate "
                    "cannot be placed; give the center in voxels (center_units='voxel')."
                )
            sign = 1.0 if steps[0] > 0 else -1.0
            k = _interp_extrapolate(sign * t, sign * along, indices)
            slice_origin = np.array([_interp_extrapolate(k, indices, origins[:, d]) for d in range(3)])
        offset = point - slice_origin
        return np.array([k, offset @ col_dir / spacing[1], offset @ row_dir / spacing[2]])

    def _params(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "spacing_mm": self.spacing_mm,
            "fill": self.fill,
            "center_units": self.center_units,
        }
