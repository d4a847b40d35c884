"""ExtractPlanes on synthetic volumes with anisotropic voxels, where the right answer is known geometrically."""

from __future__ import annotations

import numpy as np
import pytest

from tl_radiology import InputError, OptionError
from tl_radiology.io import ImageData
from tl_radiology.transforms import ExtractPlanes

AXIAL, CORONAL, SAGITTAL = 0, 1, 2


def _grid_mm(shape, spacing):
    """Voxel-centre coordinates in mm along (z, y, x)."""
    return np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing)), indexing="ij")


def _extent(mask_1d: np.ndarray) -> int:
    """Length of the run of True pixels (the object's extent along one line through it)."""
    idx = np.flatnonzero(mask_1d)
    return int(idx[-1] - idx[0] + 1) if idx.size else 0


def test_bright_voxel_lands_on_the_centre_pixel_of_all_three_planes():
    array = np.zeros((15, 40, 30), np.float32)
    array[6, 21, 13] = 1000.0
    volume = ImageData(array, {"spacing": (3.0, 0.7, 0.9)})
    for size in (9, 10):  # odd and even sizes: the point is at pixel (size // 2, size // 2)
        out = ExtractPlanes(size, spacing_mm=0.5)(volume, (6, 21, 13))
        assert out.shape == (size, size, 3) and out.dtype == np.float32
        for channel in (AXIAL, CORONAL, SAGITTAL):
            plane = out[..., channel]
            assert np.unravel_index(plane.argmax(), plane.shape) == (size // 2, size // 2)
            assert plane.max() == 1000.0


def test_a_rod_along_z_is_a_disk_axially_and_a_bar_coronally_and_sagittally():
    spacing = (2.5, 0.8, 0.8)
    shape = (24, 60, 60)
    z, y, x = _grid_mm(shape, spacing)
    cy, cx = 30 * 0.8, 30 * 0.8
    array = np.where((y - cy) ** 2 + (x - cx) ** 2 <= 5.0 ** 2, 100.0, -1000.0).astype(np.float32)  # radius 5 mm
    volume = ImageData(array, {"spacing": spacing})
    out = ExtractPlanes(41, spacing_mm=1.0)(volume, (12, 30, 30))
    inside = out > -450.0  # the edge at half way between the rod (100 HU) and air (-1000 HU)
    c = 20
    # Axial: a disk about 10 mm across, round.
    assert abs(_extent(inside[c, :, AXIAL]) - 11) <= 1 and abs(_extent(inside[:, c, AXIAL]) - 11) <= 1
    assert abs(inside[..., AXIAL].sum() - np.pi * 5.0 ** 2) < 0.15 * np.pi * 5.0 ** 2
    # Coronal and sagittal: a vertical bar, 10 mm wide, across every row (41 mm < the 57.5 mm long rod).
    for channel in (CORONAL, SAGITTAL):
        plane = inside[..., channel]
        assert plane.any(axis=1).all()  # every row crosses the rod
        widths = {_extent(row) for row in plane}
        assert widths <= {10, 11, 12}
        assert not plane[:, :14].any() and not plane[:, 27:].any()


def test_isotropic_resampling_makes_a_sphere_round_in_every_plane():
    spacing = (4.0, 0.6, 0.75)  # strongly anisotropic voxels
    shape = (16, 80, 64)
    center_idx = (8, 40, 32)
    z, y, x = _grid_mm(shape, spacing)
    centre_mm = [i * s for i, s in zip(center_idx, spacing)]
    # The radius falls half way between slice centres (4 mm apart), where linear interpolation puts the 0.5 edge
    # exactly; any other radius is found to within half a slice.
    radius = 14.0
    r2 = (z - centre_mm[0]) ** 2 + (y - centre_mm[1]) ** 2 + (x - centre_mm[2]) ** 2
    array = np.where(r2 <= radius ** 2, 1.0, 0.0).astype(np.float32)
    volume = ImageData(array, {"spacing": spacing})
    out = ExtractPlanes(41, spacing_mm=1.0)(volume, center_idx)
    c = 20
    for channel in (AXIAL, CORONAL, SAGITTAL):
        plane = out[..., channel]
        # The sphere is 28 mm across in both directions of every plane: summing the (interpolated) 0..1 profile
        # through the centre measures that in mm, at 1 mm per pixel.
        down, across = plane[:, c].sum(), plane[c, :].sum()
        assert abs(down - 28.0) < 1.0 and abs(across - 28.0) < 1.0, (channel, down, across)
        area = (plane >= 0.5).sum()
        assert abs(area - np.pi * radius ** 2) < 0.1 * np.pi * radius ** 2  # 4 mm slices make a facetted disk
    # The raw voxel grid would show the sphere's coronal section 7 slices tall and 37 columns wide.
    raw_coronal = array[:, center_idx[1], :] >= 0.5
    assert _extent(raw_coronal[:, center_idx[2]]) == 7 and _extent(raw_coronal[center_idx[0], :]) == 37


def test_points_near_the_edge_are_padded_with_the_volume_minimum_or_fill():
    array = np.full((10, 20, 20), 50.0, np.float32)
    array[0, 0, 0] = -1024.0  # air: the volume's minimum
    volume = ImageData(array, {"spacing": (1.0, 1.0, 1.0)})
    out = ExtractPlanes(9)(volume, (0, 10, 19))  # bottom slice, right edge
    axial = out[..., AXIAL]
    assert (axial[:, 5:] == -1024.0).all() and (axial[:, :5] == 50.0).all()  # columns beyond x = 19 are padding
    coronal = out[..., CORONAL]
    assert (coronal[:4] == -1024.0).all() and (coronal[4:, :5] == 50.0).all()  # slices before z = 0 too
    out = ExtractPlanes(9, fill=7.0)(volume, (0, 10, 19))
    assert (out[:, 5:, AXIAL] == 7.0).all()


def test_center_in_patient_mm_matches_the_voxel_center():
    rng = np.random.default_rng(0)
    array = rng.normal(0, 100, (12, 30, 26)).astype(np.float32)
    spacing = (2.5, 0.8, 0.7)
    origin = np.array([-100.0, -120.0, 50.0])  # (x, y, z) of voxel (0, 0, 0)
    meta = {"spacing": spacing, "image_position": origin.tolist(), "image_orientation": [1, 0, 0, 0, 1, 0]}
    volume = ImageData(array, meta)
    voxel = (5.0, 12.5, 9.0)
    point_mm = origin + [voxel[2] * 0.7, voxel[1] * 0.8, voxel[0] * 2.5]  # x, y, z
    by_voxel = ExtractPlanes(11, spacing_mm=0.9)(volume, voxel)
    by_mm = ExtractPlanes(11, spacing_mm=0.9, center_units="mm")(volume, point_mm)
    np.testing.assert_allclose(by_mm, by_voxel, atol=1e-3)

    # Slices stored in decreasing z (feet first) are placed by their positions.
    positions = [50.0 - 2.5 * k for k in range(12)]
    descending = ImageData(array, {**meta, "slice_positions": positions})
    point_mm = origin + [9.0 * 0.7, 12.5 * 0.8, -5.0 * 2.5]
    by_mm = ExtractPlanes(11, spacing_mm=0.9, center_units="mm")(descending, point_mm)
    np.testing.assert_allclose(by_mm, by_voxel, atol=1e-3)

    # A swapped orientation: columns run along +y, rows along +x, so the slice normal (row x column) is -z.
    swapped = ImageData(array, {**meta, "image_orientation": [0, 1, 0, 1, 0, 0]})
    point_mm = origin + [voxel[1] * 0.8, voxel[2] * 0.7, -voxel[0] * 2.5]
    by_mm = ExtractPlanes(11, spacing_mm=0.9, center_units="mm")(swapped, point_mm)
    np.testing.assert_allclose(by_mm, by_voxel, atol=1e-3)
    with pytest.raises(InputError, match=r"center \(x, y, z\) = \(-100, -120, 80\) mm, i\.e\. voxel \(z, y, x\) "
                                         r"\(-12, 0, 0\), lies outside the volume"):
        ExtractPlanes(11, center_units="mm")(swapped, origin + [0, 0, 30.0])


def test_uneven_slice_spacing_uses_the_slice_positions():
    positions = np.array([0.0, 1.0, 2.0, 3.0, 5.0, 7.0, 9.0, 10.0, 11.0, 12.0])  # a gap of 2 mm in the middle
    array = np.broadcast_to(positions[:, None, None], (10, 16, 16)).astype(np.float32)  # value = z in mm
    volume = ImageData(array, {"spacing": (1.0, 1.0, 1.0), "uneven_spacing": True,
                               "slice_positions": positions.tolist()})
    out = ExtractPlanes(9, spacing_mm=1.0)(volume, (4, 8, 8))  # slice 4 is at z = 5 mm
    # Along the coronal rows, z goes from 1 to 9 mm in 1 mm steps, whatever the slice spacing.
    np.testing.assert_allclose(out[:, 4, CORONAL], np.arange(1.0, 10.0), atol=1e-5)
    assert (out[..., AXIAL] == 5.0).all()


def test_extract_planes_errors_say_what_to_fix():
    volume = ImageData(np.zeros((5, 8, 8), np.float32), {"spacing": (2.0, 1.0, 1.0)})
    with pytest.raises(InputError, match=r"center voxel \(z, y, x\) \(5, 4, 4\) lies outside the volume of shape "
                                         r"5x8x8"):
        ExtractPlanes(4)(volume, (5, 4, 4))
    with pytest.raises(InputError, match=r"expects a volume as tl_radiology\.io\.ImageData .* Received ndarray; "
                                         r"wrap an array as ImageData"):
        ExtractPlanes(4)(np.zeros((5, 8, 8)), (2, 4, 4))
    with pytest.raises(InputError, match=r"the volume has no meta\['spacing'\]"):
        ExtractPlanes(4)(ImageData(np.zeros((5, 8, 8), np.float32), {}), (2, 4, 4))
    with pytest.raises(InputError, match=r"expects a Z x H x W volume\. Received shape 8x8"):
        ExtractPlanes(4)(ImageData(np.zeros((8, 8), np.float32), {"spacing": (1, 1, 1)}), (2, 4, 4))
    with pytest.raises(InputError, match=r"center_units='mm'\) needs meta\['image_position'\]"):
        ExtractPlanes(4, center_units="mm")(volume, (0.0, 0.0, 0.0))
    with pytest.raises(InputError, match=r"expected center to be 3 finite numbers\. Received: center=\(1, 2\)"):
        ExtractPlanes(4)(volume, (1, 2))
    with pytest.raises(InputError, match=r"expected spacing_mm > 0\. Received: spacing_mm=0\.0"):
        ExtractPlanes(4, spacing_mm=0)
    with pytest.raises(OptionError, match=r"Unknown center unit 'voxels'\. Did you mean 'voxel'"):
        ExtractPlanes(4, center_units="voxels")
