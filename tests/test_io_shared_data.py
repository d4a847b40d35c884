"""Readers on every real image of ../shared/data: values a radiologist would check, not only shapes.

Data sets: pydicom / pydicom-data test files (MIT; NEMA WG04, GDCM, Clunie), the dcm_qa_ct GE head CT (BSD-2, Chris
Rorden / Aliza Medical Imaging), TCIA COVID-19-NY-SBU (CC BY 4.0, doi:10.7937/TCIA.BBAG-2923), NIH ChestX-ray14
(one DX file), Hannover COVID-19 image repository (CC BY 3.0). See each folder's PROVENANCE.md.
"""

from __future__ import annotations

import csv
import random
import shutil

import numpy as np
import pydicom
import pytest

from tl_radiology import ImageReadError
from tl_radiology.io import read_dicom, read_dicom_meta, read_dicom_series, read_image, read_raster

pytestmark = pytest.mark.shared_data

SAMPLES = "dicom_samples_pydicom_data"
COVID_CT = "ct_chest_covid19_ny_sbu_axial"
HEAD_CT = "ct_head_series_ge"
NIH_DX = "cxr_dx_nih_chestxray14_dicom"
HANNOVER = "cxr_covid19_hannover_png"


def _median(a, rows, cols):
    return float(np.median(a[rows[0] : rows[1], cols[0] : cols[1]]))


def _stored(path):
    """The stored values as pydicom decodes them (no modality LUT), as a reference to compare with."""
    return pydicom.dcmread(path).pixel_array


def _every_dicom(shared_data):
    files = sorted(shared_data.glob(f"{SAMPLES}/*.dcm")) + sorted(shared_data.glob(f"{COVID_CT}/*.dcm"))
    return files + sorted(shared_data.glob(f"{NIH_DX}/*.dcm")) + sorted(shared_data.glob(f"{HEAD_CT}/*.dcm"))


def test_every_dicom_file_in_shared_data_reads(shared_data):
    """Every DICOM file decodes (no file skipped: every decoder they need is installed) to finite float32."""
    files = _every_dicom(shared_data)
    assert len(files) == 12 + 20 + 1 + 28
    for path in files:
        header = read_dicom_meta(path)
        img = read_dicom(path)
        assert img.array.dtype == np.float32 and np.isfinite(img.array).all(), path.name
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        header_shape = (ds.Rows, ds.Columns)
        frames = header["num_frames"]
        colour = header["samples_per_pixel"] == 3 or header["photometric"] == "PALETTE COLOR"
        expected = ((frames,) if frames > 1 else ()) + header_shape + ((3,) if colour else ())
        assert img.shape == expected, path.name
        lo, hi = img.meta["value_range"]
        assert lo <= img.array.min() and img.array.max() <= hi, path.name
        assert img.meta["case_id"] == header["case_id"] and img.meta["case_id"].startswith("C-")
        assert img.array.std() > 0, f"{path.name} decoded to a constant image"


def test_ct_small_is_in_hounsfield_units(shared_data):
    path = shared_data / SAMPLES / "CT_small.dcm"
    img = read_dicom(path)
    assert img.meta["units"] == "HU" and img.meta["rescale"] == [1.0, -1024.0]
    np.testing.assert_array_equal(img.array, _stored(path).astype(np.float32) - 1024)
    assert -900 < _median(img.array, (0, 40), (0, 30)) < -700  # lung next to the spine
    assert -100 < _median(img.array, (80, 120), (0, 128)) < 100  # paraspinal muscle
    assert img.array.max() > 1000  # cortical bone
    assert img.meta["pixel_spacing"] == pytest.approx([0.661468, 0.661468])


def _covid_rows(shared_data):
    with open(shared_data / COVID_CT / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_covid_ct_slices_air_padding_and_header_values(shared_data):
    rows = _covid_rows(shared_data)
    assert len(rows) == 20
    for row in rows:
        path = shared_data / COVID_CT / row["file"]
        raw = read_dicom(path, fill_padding=False)
        # The provenance table's HU range, measured independently of this reader.
        assert raw.array.min() == float(row["hu_min"]) and raw.array.max() == float(row["hu_max"]), row["file"]
        assert raw.meta["units"] == "HU"
        assert raw.meta["pixel_spacing"][0] == pytest.approx(float(row["pixel_spacing_mm"]))
        assert raw.meta["slice_thickness"] == pytest.approx(float(row["slice_thickness_mm"]))
        # Air in front of the chest, inside the scan circle: about -1000 HU on every scanner.
        assert -1050 < _median(raw.array, (8, 16), (252, 260)) < -900, row["file"]

        img = read_dicom(path)
        # Outside the scan circle: GE pads -3024 HU (stored -2000, Pixel Padding Value), Toshiba -2048 HU.
        # With fill_padding (default) both become -1024 HU, the bottom of the CT scale.
        assert raw.array[0, 0] in (-3024.0, -2048.0, -1024.0)
        assert img.array[0, 0] == -1024.0 and img.array.min() == -1024.0
        assert img.meta["padding_filled"] == int(np.count_nonzero(raw.array < -1024))
        inside = raw.array >= -1024
        np.testing.assert_array_equal(img.array[inside], raw.array[inside])  # real values untouched


def test_monochrome1_chest_cr_is_inverted(shared_data):
    """RG1 (chest PA, JPEG 2000 lossy): after inversion the lung fields are darker than the mediastinum."""
    path = shared_data / SAMPLES / "RG1_J2KI.dcm"
    img = read_dicom(path)
    stored = _stored(path)
    assert img.meta["photometric"] == "MONOCHROME1" and img.meta["inverted"] is True
    np.testing.assert_array_equal(img.array, 32767.0 - stored)  # 15 bits stored
    lung_right = _median(img.array, (500, 1000), (400, 700))
    lung_left = _median(img.array, (500, 1000), (1150, 1450))
    mediastinum = _median(img.array, (500, 1000), (850, 1000))
    assert lung_right < mediastinum and lung_left < mediastinum
    # ... and the raw stored values had it the other way round.
    assert _median(stored, (500, 1000), (400, 700)) > _median(stored, (500, 1000), (850, 1000))


def test_monochrome1_tibia_cr_is_inverted_and_lossless(shared_data):
    """RG3 (tibia AP, JPEG 2000 lossless, 10 bits): bone brighter than the open-field background."""
    path = shared_data / SAMPLES / "RG3_J2KR.dcm"
    img = read_dicom(path)
    stored = _stored(path)
    assert stored.max() <= 1023 and np.issubdtype(stored.dtype, np.integer)  # 10-bit lossless samples
    np.testing.assert_array_equal(img.array, 1023.0 - stored)
    background = _median(img.array, (300, 900), (470, 540))  # direct exposure beside the leg
    bone = _median(img.array, (300, 900), (780, 880))
    assert background < 100 < 500 < bone
    assert _median(stored, (300, 900), (470, 540)) > _median(stored, (300, 900), (780, 880))


def test_jpeg2000_lossless_mr_keeps_its_12_bits(shared_data):
    path = shared_data / SAMPLES / "MR2_J2KR.dcm"
    img = read_dicom(path)
    stored = _stored(path)
    assert stored.max() <= 4095 and (stored >= 0).all()  # 12 bits stored
    slope, intercept = img.meta["rescale"]
    np.testing.assert_allclose(img.array, stored * slope + intercept, rtol=1e-6)
    assert len(np.unique(stored)) > 500  # a real 12-bit image, not an 8-bit one


def test_colour_files_come_out_as_rgb(shared_data):
    # PALETTE COLOR (RLE ultrasound): a 16-bit palette; the top banner is blue.
    palette = read_dicom(shared_data / SAMPLES / "OBXXXX1A_rle.dcm")
    assert palette.shape == (600, 800, 3) and palette.meta["value_range"] == [0.0, 65535.0]
    banner = palette.array[5:15, 100:300].reshape(-1, 3).mean(axis=0)
    assert banner[2] > banner[1] > banner[0]

    # YBR_RCT JPEG 2000 lossless: the decoder returns RGB; 8-bit, grey-scale anatomy with coloured overlays.
    us = read_dicom(shared_data / SAMPLES / "US1_J2KR.dcm", expect="rgb")
    assert us.shape == (480, 640, 3) and us.array.max() <= 255
    assert np.median(np.abs(us.array[..., 0] - us.array[..., 1])) == 0  # mostly gray pixels: R == G
    assert (np.abs(us.array[..., 0] - us.array[..., 2]) > 30).mean() > 0.01  # and some colour

    # YBR_FULL_422 JPEG baseline, 30 frames: after conversion the (gray) ultrasound has R ~ G ~ B; read as YCbCr
    # the chroma channels would sit near 128 and differ from Y by about 120.
    path = shared_data / SAMPLES / "examples_ybr_color.dcm"
    frame = read_dicom(path, frame=3)
    assert frame.shape == (240, 320, 3)
    assert np.median(np.abs(frame.array[..., 0] - frame.array[..., 1])) < 5
    np.testing.assert_array_equal(frame.array, pydicom.dcmread(path).pixel_array[3])
    expected = r"examples_ybr_color\.dcm is a colour image \(PhotometricInterpretation YBR_FULL_422"
    with pytest.raises(ImageReadError, match=expected):
        read_dicom(path, expect="gray")


def test_multiframe_files(shared_data):
    path = shared_data / SAMPLES / "emri_small.dcm"
    frames = read_dicom(path)
    assert frames.shape == (10, 64, 64) and frames.meta["num_frames"] == 10
    fourth = read_dicom(path, frame=3)
    assert fourth.shape == (64, 64)
    np.testing.assert_array_equal(fourth.array, frames.array[3])
    assert not np.array_equal(frames.array[3], frames.array[4])
    expected = r"emri_small\.dcm has 10 frames but a single 2-D image was expected.*0\.\.9"
    with pytest.raises(ImageReadError, match=expected):
        read_image(path, single_frame=True)

    # Enhanced CT: rescale, spacing and window live in the shared functional groups, positions per frame.
    ect = read_dicom(shared_data / SAMPLES / "eCT_Supplemental.dcm")
    assert ect.shape == (2, 512, 512)
    assert ect.meta["rescale"] == [1.0, -1024.0] and ect.meta["rescale_type"] == "US"
    assert ect.meta["units"] == "stored"  # a perfusion map (rCBF), not Hounsfield units
    assert ect.meta["pixel_spacing"] == pytest.approx([0.388672, 0.388672])
    assert ect.meta["window"] == [49.0, 102.0]
    assert [p[2] for p in ect.meta["frame_positions"]] == [-159.0, -149.0]


def test_other_dicom_samples_have_plausible_values(shared_data):
    dx = read_image(next((shared_data / NIH_DX).glob("*.dcm")), expect="gray", single_frame=True)
    assert dx.shape == (1024, 1024) and dx.meta["modality"] == "DX" and dx.meta["value_range"] == [0.0, 255.0]
    lungs = min(_median(dx.array, (300, 600), (250, 400)), _median(dx.array, (300, 600), (650, 800)))
    assert lungs + 60 < _median(dx.array, (300, 600), (480, 550))  # lungs darker than the mediastinum

    jpeg_ll = read_dicom(shared_data / SAMPLES / "JPGLosslessP14SV1_1s_1f_8b.dcm")
    assert jpeg_ll.meta["value_range"] == [0.0, 255.0]
    np.testing.assert_array_equal(jpeg_ll.array, np.round(jpeg_ll.array))  # integers: lossless 8-bit samples

    overlay = read_dicom(shared_data / SAMPLES / "MR-SIEMENS-DICOM-WithOverlays.dcm", voi=True)
    assert overlay.meta["units"] == "VOI" and overlay.meta["voi"]["center"] == 450.0
    mr = read_dicom(shared_data / SAMPLES / "MR_small.dcm")
    assert mr.meta["units"] == "stored" and mr.meta["modality"] == "MR"


def test_head_ct_series_geometry_and_values(shared_data):
    vol = read_dicom_series(shared_data / HEAD_CT)
    meta = vol.meta
    assert vol.shape == (28, 512, 512) and meta["num_slices"] == 28
    assert meta["units"] == "HU"
    assert meta["gantry_tilt_deg"] == pytest.approx(18.5, abs=0.01)
    steps = np.array(meta["slice_steps"])
    assert meta["uneven_spacing"] is True
    np.testing.assert_allclose(steps[:13], 4.0, atol=0.01)  # 4 mm slices, perpendicular to the tilted plane
    assert steps[13] == pytest.approx(1.08, abs=0.01)  # the jump between the two thickness blocks
    np.testing.assert_allclose(steps[14:], 7.0, atol=0.01)
    assert meta["spacing"][0] == pytest.approx(4.0, abs=0.01)  # median step from positions, not SliceThickness
    assert meta["spacing"][1:] == pytest.approx([0.4882812, 0.4882812])
    assert meta["slice_thicknesses"][:14] == [4.0] * 14 and meta["slice_thicknesses"][14:] == [7.0] * 14
    assert meta["num_ignored_files"] == 2  # SHA256SUMS and PROVENANCE.md
    # In file order 01..28 the positions ascend, so the volume must hold 01.dcm first and 28.dcm last.
    np.testing.assert_array_equal(vol.array[0], read_dicom(shared_data / HEAD_CT / "01.dcm").array)
    np.testing.assert_array_equal(vol.array[-1], read_dicom(shared_data / HEAD_CT / "28.dcm").array)
    for z in (0, 14, 27):  # air in front of the head, inside the scan circle
        assert -1050 < _median(vol.array[z], (10, 30), (252, 260)) < -950
    # Padding outside the scan circle (stored -1500, the Pixel Padding Value) -> -1024 HU, the bottom of the scale.
    assert vol.array[14, :10, :10].max() == -1024.0 and meta["padding_filled"] > 0
    assert read_dicom_series(shared_data / HEAD_CT, frame=14, fill_padding=False).array[0, 0] == -1500.0
    for z in (12, 14, 16):  # gray / white matter in the middle of mid-brain slices (above the ventricles)
        assert 20 <= _median(vol.array[z], (206, 306), (206, 306)) <= 45


def test_head_ct_series_order_does_not_depend_on_file_names(shared_data, tmp_path):
    source = sorted((shared_data / HEAD_CT).glob("*.dcm"))
    names = [f"img{n:04d}.dcm" for n in random.Random(7).sample(range(1000), len(source))]
    for path, name in zip(source, names):
        shutil.copy(path, tmp_path / name)
    (tmp_path / "README.txt").write_text("scrambled copy\n")
    reference = read_dicom_series(shared_data / HEAD_CT)
    scrambled = read_image(tmp_path)
    np.testing.assert_array_equal(scrambled.array, reference.array)
    assert scrambled.meta["slice_positions"] == reference.meta["slice_positions"]
    assert scrambled.meta["case_id"] == reference.meta["case_id"]


def test_every_hannover_png_reads(shared_data):
    with open(shared_data / HANNOVER / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    pngs = sorted((shared_data / HANNOVER / "png").glob("*.png"))
    assert len(pngs) == len(rows) == 60
    ids = set()
    for row in rows:
        img = read_raster(shared_data / HANNOVER / row["file"], expect="gray", single_frame=True)
        assert img.shape == (int(row["height"]), int(row["width"]))  # the provenance table's own measurement
        assert img.meta["value_range"] == [0.0, 255.0] and img.meta["photometric"] == "MONOCHROME2"
        assert 20 < img.array.mean() < 235 and img.array.std() > 10  # a radiograph, not a blank frame
        ids.add(img.meta["case_id"])
    assert len(ids) == 60
