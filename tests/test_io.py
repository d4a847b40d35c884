"""Readers on files the tests write themselves (pydicom, numpy, scikit-image): options, edge cases, error messages.

The real public images of ../shared/data are read in tests/test_io_shared_data.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import skimage.io
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    MPEG4HP41,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from tl_radiology import ImageReadError, InputError, OptionError
from tl_radiology.io import (
    ImageData,
    read_array,
    read_dicom,
    read_dicom_meta,
    read_dicom_series,
    read_image,
    read_raster,
)

AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def _dataset(pixels: np.ndarray, *, modality="CT", photometric="MONOCHROME2", **attrs) -> Dataset:
    """A minimal, valid single- or multi-frame image data set with ``pixels`` as its stored values."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage if modality == "CT" else SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.SeriesInstanceUID = attrs.pop("SeriesInstanceUID", generate_uid())
    ds.PatientName = "Test^Phantom"
    ds.PatientID = "PHANTOM-1"
    colour = photometric in ("RGB", "YBR_FULL")
    frames = pixels.shape[0] if (pixels.ndim == 3 and not colour) or pixels.ndim == 4 else 1
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric
    if colour:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def _write(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def _ct_slice(path, z, *, shape=(8, 8), orientation=AXIAL, series=None, value=40, **attrs) -> Path:
    pixels = np.full(shape, value + 1024, dtype=np.int16)
    ds = _dataset(
        pixels,
        RescaleSlope=1,
        RescaleIntercept=-1024,
        ImageOrientationPatient=orientation,
        ImagePositionPatient=[0.0, 0.0, float(z)],
        PixelSpacing=[0.5, 0.5],
        SliceThickness=2.0,
        SeriesInstanceUID=series or "1.2.826.0.1.3680043.8.498.1",
        **attrs,
    )
    return _write(ds, Path(path))


# ----------------------------------------------------------------------------------------------------------------
# DICOM values: modality LUT, VOI, MONOCHROME1, padding, frames


def test_rescale_gives_hounsfield_units_and_air_floor_for_padding(tmp_path):
    stored = np.array([[-2000, 0], [1024, 1064]], dtype=np.int16)  # GE-style padding, air, water, brain
    ds = _dataset(stored, RescaleSlope=1, RescaleIntercept=-1024, PixelPaddingValue=-2000)
    path = _write(ds, tmp_path / "ct.dcm")

    img = read_dicom(path)
    assert img.array.dtype == np.float32
    np.testing.assert_array_equal(img.array, [[-1024, -1024], [0, 40]])
    assert img.meta["units"] == "HU"
    assert img.meta["padding_filled"] == 1

    raw = read_dicom(path, fill_padding=False)
    np.testing.assert_array_equal(raw.array, [[-3024, -1024], [0, 40]])
    assert raw.meta["padding_filled"] == 0


def test_toshiba_style_below_air_values_become_air_without_a_padding_tag(tmp_path):
    stored = np.array([[-2048, -1000], [-1030, 30]], dtype=np.int16)
    path = _write(_dataset(stored, RescaleSlope=1, RescaleIntercept=0), tmp_path / "toshiba.dcm")
    img = read_dicom(path)
    np.testing.assert_array_equal(img.array, [[-1024, -1000], [-1024, 30]])
    assert img.meta["padding_filled"] == 2


def test_non_ct_rescale_keeps_stored_units(tmp_path):
    stored = np.arange(12, dtype=np.uint16).reshape(3, 4)
    path = _write(_dataset(stored, modality="MR", RescaleSlope=2.5, RescaleIntercept=1), tmp_path / "mr.dcm")
    img = read_dicom(path)
    np.testing.assert_allclose(img.array, stored * 2.5 + 1)
    assert img.meta["units"] == "stored"
    assert img.meta["rescale"] == [2.5, 1.0]


def test_modality_lut_sequence_is_applied(tmp_path):
    stored = np.array([[0, 1], [2, 3]], dtype=np.uint16)
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [4, 0, 16])
    item.add_new("LUTData", "US", [100, 200, 400, 800])
    item.ModalityLUTType = "US"
    ds = _dataset(stored, modality="OT", ModalityLUTSequence=Sequence([item]))
    img = read_dicom(_write(ds, tmp_path / "mlut.dcm"))
    np.testing.assert_array_equal(img.array, [[100, 200], [400, 800]])
    assert img.meta["modality_lut"] is True


def test_voi_is_off_by_default_and_changes_units_when_on(tmp_path):
    stored = np.array([[0, 1044], [1064, 2048]], dtype=np.int16)  # -1024, 20, 40, 1024 HU
    ds = _dataset(stored, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=40, WindowWidth=80)
    path = _write(ds, tmp_path / "ct.dcm")
    plain = read_dicom(path)
    assert plain.meta["units"] == "HU" and plain.meta["window"] == [40.0, 80.0] and plain.meta["voi"] is None

    shown = read_dicom(path, voi=True)
    lo, hi = shown.meta["value_range"]
    assert shown.meta["units"] == "VOI"
    assert shown.meta["voi"]["type"] == "window"
    assert shown.array[0, 0] == lo and shown.array[1, 1] == hi  # below / above the window
    assert lo < shown.array[0, 1] < shown.array[1, 0] < hi  # 20 HU and 40 HU inside it, in order


def test_voi_without_a_window_in_the_header_is_an_error(tmp_path):
    path = _write(_dataset(np.zeros((2, 2), np.uint16), modality="OT"), tmp_path / "nowin.dcm")
    with pytest.raises(ImageReadError, match=r"nowin\.dcm: voi=True but the header has no VOI LUT .*voi=False"):
        read_dicom(path, voi=True)


def test_monochrome1_is_inverted_within_its_bit_range(tmp_path):
    stored = np.array([[0, 100], [900, 1023]], dtype=np.uint16)
    ds = _dataset(stored, modality="CR", photometric="MONOCHROME1")
    ds.BitsStored, ds.HighBit = 10, 9
    img = read_dicom(_write(ds, tmp_path / "cr.dcm"))
    np.testing.assert_array_equal(img.array, 1023 - stored)
    assert img.meta["inverted"] is True and img.meta["value_range"] == [0.0, 1023.0]
    assert img.meta["photometric"] == "MONOCHROME1"


def test_multiframe_all_frames_one_frame_and_single_frame_rejection(tmp_path):
    frames = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    path = _write(_dataset(frames, modality="MR"), tmp_path / "cine.dcm")
    all_frames = read_dicom(path)
    assert all_frames.shape == (3, 4, 5) and all_frames.meta["num_frames"] == 3
    second = read_dicom(path, frame=1)
    np.testing.assert_array_equal(second.array, frames[1])
    assert second.meta["frame"] == 1
    with pytest.raises(ImageReadError, match=r"cine\.dcm has 3 frames but a single 2-D image was expected.*frame=i"):
        read_dicom(path, single_frame=True)
    with pytest.raises(ImageReadError, match=r"frame=3 is out of range, the file has 3 frames \(valid: 0\.\.2\)"):
        read_dicom(path, frame=3)
    with pytest.raises(ImageReadError, match="Expected frame to be a 0-based frame index"):
        read_dicom(path, frame=1.5)


def test_enhanced_multiframe_takes_rescale_and_geometry_from_functional_groups(tmp_path):
    frames = np.full((2, 3, 3), 1000, dtype=np.uint16)
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [0.7, 0.7]
    measures.SliceThickness = 1.5
    shared.PixelMeasuresSequence = Sequence([measures])
    orientation = Dataset()
    orientation.ImageOrientationPatient = AXIAL
    shared.PlaneOrientationSequence = Sequence([orientation])
    per_frame = []
    for i, intercept in enumerate((-1024, -1000)):
        item = Dataset()
        transform = Dataset()
        transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = 1, intercept, "HU"
        item.PixelValueTransformationSequence = Sequence([transform])
        position = Dataset()
        position.ImagePositionPatient = [0, 0, 10.0 * i]
        item.PlanePositionSequence = Sequence([position])
        per_frame.append(item)
    ds = _dataset(
        frames,
        SharedFunctionalGroupsSequence=Sequence([shared]),
        PerFrameFunctionalGroupsSequence=Sequence(per_frame),
    )
    img = read_dicom(_write(ds, tmp_path / "enhanced.dcm"))
    np.testing.assert_array_equal(img.array[0], np.full((3, 3), -24.0))
    np.testing.assert_array_equal(img.array[1], np.full((3, 3), 0.0))
    assert img.meta["units"] == "HU"
    assert img.meta["pixel_spacing"] == [0.7, 0.7] and img.meta["slice_thickness"] == 1.5
    assert img.meta["frame_positions"] == [[0.0, 0.0, 0.0], [0.0, 0.0, 10.0]]
    one = read_dicom(tmp_path / "enhanced.dcm", frame=1)
    assert one.meta["image_position"] == [0.0, 0.0, 10.0]
    np.testing.assert_array_equal(one.array, np.zeros((3, 3)))


# ----------------------------------------------------------------------------------------------------------------
# Colour


def test_rgb_where_gray_is_expected_names_the_file_and_photometric(tmp_path):
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    path = _write(_dataset(rgb, modality="OT", photometric="RGB"), tmp_path / "colour.dcm")
    img = read_dicom(path)
    assert img.shape == (4, 5, 3) and img.array[0, 0].tolist() == [200, 0, 0]
    expected = r"colour\.dcm is a colour image \(PhotometricInterpretation RGB.*expect='rgb'"
    with pytest.raises(ImageReadError, match=expected):
        read_dicom(path, expect="gray")
    gray = _write(_dataset(np.zeros((2, 2), np.uint8), modality="OT"), tmp_path / "gray.dcm")
    with pytest.raises(ImageReadError, match=r"gray\.dcm is a grayscale image \(PhotometricInterpretation MONOCHROME2"):
        read_dicom(gray, expect="rgb")


def test_ybr_full_is_converted_to_rgb(tmp_path):
    # Pure red in YCbCr (ITU-R BT.601 full range): Y=76, Cb=85, Cr=255.
    ybr = np.zeros((2, 2, 3), dtype=np.uint8)
    ybr[...] = (76, 85, 255)
    img = read_dicom(_write(_dataset(ybr, modality="OT", photometric="YBR_FULL"), tmp_path / "ybr.dcm"))
    r, g, b = img.array[0, 0]
    assert r > 250 and g < 5 and b < 5


def test_unknown_expect_option_suggests_the_right_name(tmp_path):
    path = _write(_dataset(np.zeros((2, 2), np.uint8), modality="OT"), tmp_path / "g.dcm")
    with pytest.raises(OptionError, match=r"Unknown expect option 'grey'\. Did you mean 'gray'\?"):
        read_dicom(path, expect="grey")


# ----------------------------------------------------------------------------------------------------------------
# Compressed transfer syntaxes: decode what the real encoders wrote, compare with the uncompressed original


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless], ids=["rle", "jpeg2000-lossless"])
def test_lossless_compressed_twin_decodes_to_identical_values(tmp_path, syntax):
    stored = (np.arange(32 * 32, dtype=np.int32).reshape(32, 32) * 7 % 3000).astype(np.int16)
    ds = _dataset(stored, RescaleSlope=1, RescaleIntercept=-1024)
    plain = _write(ds, tmp_path / "plain.dcm")
    ds.compress(syntax)
    packed = _write(ds, tmp_path / "packed.dcm")
    assert pydicom.dcmread(packed).file_meta.TransferSyntaxUID == syntax
    a, b = read_dicom(plain), read_dicom(packed)
    np.testing.assert_array_equal(a.array, b.array)
    assert b.meta["transfer_syntax"] == syntax.name


def test_pydicom_bundled_compressed_twins_match_the_uncompressed_file():
    data = pytest.importorskip("pydicom.data")
    names = ["MR_small.dcm", "MR_small_jp2klossless.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm"]
    try:
        paths = [Path(data.get_testdata_file(n)) for n in names]
    except Exception as exc:  # pragma: no cover - a pydicom build without its test files
        pytest.skip(f"pydicom's bundled test files are not installed here: {exc}")
    reference = read_dicom(paths[0]).array
    for path in paths[1:]:
        np.testing.assert_array_equal(read_dicom(path).array, reference, err_msg=path.name)


# ----------------------------------------------------------------------------------------------------------------
# Broken and unusual files


def _ct_small_bytes() -> bytes:
    # A small real CT written by the test (not a copy of ../shared): 16x16, rescaled to HU.
    stored = (np.arange(256, dtype=np.int16).reshape(16, 16) * 8).astype(np.int16)
    ds = _dataset(stored, RescaleSlope=1, RescaleIntercept=-1024)
    from io import BytesIO

    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("keep", [0.5, 0.97], ids=["half", "last-bytes-missing"])
def test_truncated_dicom_is_reported_as_truncated(tmp_path, keep):
    data = _ct_small_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ImageReadError, match=r"cut\.dcm is truncated or corrupt: .*copy it again"):
        read_dicom(path)


def test_truncated_compressed_dicom_is_reported(tmp_path):
    stored = (np.arange(64 * 64, dtype=np.int32).reshape(64, 64) % 4000).astype(np.uint16)
    ds = _dataset(stored, modality="MR")
    ds.compress(JPEG2000Lossless)
    full = _write(ds, tmp_path / "full.dcm").read_bytes()
    cut = tmp_path / "cut_j2k.dcm"
    cut.write_bytes(full[: int(len(full) * 0.7)])
    with pytest.warns(UserWarning):  # pydicom warns that the file ended inside the pixel data
        with pytest.raises(ImageReadError, match=r"cut_j2k\.dcm is truncated or corrupt"):
            read_dicom(cut)


def test_text_file_named_dcm_is_not_dicom(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("Scan of the week: see the report.\n" * 5)
    with pytest.raises(ImageReadError, match=r"notes\.dcm is not a DICOM file .*looks like a text file"):
        read_dicom(path)


def test_png_named_dcm_is_not_dicom_and_the_message_says_png(tmp_path):
    path = tmp_path / "image.dcm"
    skimage.io.imsave(tmp_path / "x.png", np.zeros((4, 4), np.uint8), check_contrast=False)
    shutil.copy(tmp_path / "x.png", path)
    with pytest.raises(ImageReadError, match=r"image\.dcm is not a DICOM file .*looks like a PNG image"):
        read_image(path)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.dcm").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.dcm is empty \(0 bytes\)"):
        read_dicom(tmp_path / "empty.dcm")
    with pytest.raises(ImageReadError, match=r"nothere\.dcm does not exist"):
        read_dicom(tmp_path / "nothere.dcm")
    with pytest.raises(ImageReadError, match=r"nothere\.png does not exist; expected a folder of DICOM slices"):
        read_image(tmp_path / "nothere.png")


def test_dicom_without_pixel_data(tmp_path):
    ds = _dataset(np.zeros((4, 4), np.uint16), modality="OT")
    del ds.PixelData
    expected = r"headeronly\.dcm has image attributes \(Rows, Columns\) but no Pixel Data"
    with pytest.raises(ImageReadError, match=expected):
        read_dicom(_write(ds, tmp_path / "headeronly.dcm"))
    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation"):
        delattr(ds, keyword)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    with pytest.raises(ImageReadError, match=r"report\.dcm has no pixel data \(it is a 'Basic Text SR Storage'"):
        read_dicom(_write(ds, tmp_path / "report.dcm"))


def test_transfer_syntax_without_any_decoder_names_syntax_and_package(tmp_path):
    # H.264 video in DICOM (endoscopy, ultrasound clips): pydicom has no decoder for any MPEG syntax.
    ds = _dataset(np.zeros((4, 4), np.uint8), modality="ES")
    ds.file_meta.TransferSyntaxUID = MPEG4HP41
    ds.PixelData = encapsulate([b"\x00\x00\x00\x01" + b"\x67" * 60])
    ds["PixelData"].VR = "OB"
    path = _write(ds, tmp_path / "clip.dcm")
    with pytest.raises(ImageReadError, match=r"clip\.dcm uses transfer syntax 'MPEG-4 AVC/H\.264 .*PyAV"):
        read_dicom(path)
    # JPEG XL (2024): pydicom 3.0 does not know the syntax at all. Write the H.264 file, then swap the UID (same
    # length) in its file meta, since pydicom refuses to write a syntax it does not know.
    data = path.read_bytes().replace(b"1.2.840.10008.1.2.4.102", b"1.2.840.10008.1.2.4.110")
    jxl = tmp_path / "jxl.dcm"
    jxl.write_bytes(data)
    expected = r"jxl\.dcm uses transfer syntax '1\.2\.840\.10008\.1\.2\.4\.110'.*gdcmconv"
    with pytest.raises(ImageReadError, match=expected):
        read_dicom(jxl)


def test_dicom_without_preamble_is_read_by_content(tmp_path):
    stored = np.arange(16, dtype=np.uint16).reshape(4, 4)
    ds = _dataset(stored, modality="OT")
    ds.preamble = None
    del ds.file_meta
    path = tmp_path / "IM0001"  # no suffix, no preamble: old PACS exports look like this
    pydicom.dcmwrite(path, ds, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert path.read_bytes()[128:132] != b"DICM"
    img = read_image(path)
    np.testing.assert_array_equal(img.array, stored)
    assert img.meta["transfer_syntax"] == "Implicit VR Little Endian"


def test_unsupported_kind_lists_what_is_supported(tmp_path):
    path = tmp_path / "scan.gif"
    path.write_bytes(b"GIF89a" + b"\x00" * 40)
    with pytest.raises(ImageReadError, match=r"scan\.gif: unsupported file kind \('\.gif'.*Supported: .*\.npy"):
        read_image(path)
    assert issubclass(ImageReadError, InputError) and issubclass(ImageReadError, ValueError)


# ----------------------------------------------------------------------------------------------------------------
# Metadata never carries patient identifiers


def test_no_patient_identifier_reaches_meta(tmp_path):
    secrets = {
        "PatientName": "Zyxwort^Quilliam",
        "PatientID": "MRN-88731-QX",
        "PatientBirthDate": "19440612",
        "AccessionNumber": "ACC-5531907",
        "InstitutionName": "Saint Elsewhere Infirmary",
    }
    series = generate_uid()
    for i in range(2):
        ds = _dataset(
            np.full((4, 4), 1000, np.int16),
            RescaleSlope=1,
            RescaleIntercept=-1024,
            ImageOrientationPatient=AXIAL,
            ImagePositionPatient=[0, 0, float(i)],
            PixelSpacing=[1, 1],
            SeriesInstanceUID=series,
            Manufacturer="ACME",
        )
        for keyword, value in secrets.items():
            setattr(ds, keyword, value)
        _write(ds, tmp_path / f"s{i}.dcm")
    metas = [
        read_dicom(tmp_path / "s0.dcm").meta,
        read_dicom_meta(tmp_path / "s0.dcm"),
        read_dicom_series(tmp_path).meta,
    ]
    for meta in metas:
        text = json.dumps(meta, default=str)
        for keyword, value in secrets.items():
            assert value not in text, f"{keyword} leaked into meta"
            assert value.split("^")[0] not in text
        assert meta["case_id"].startswith("C-") and meta["manufacturer"] == "ACME"


def test_case_id_is_stable_and_pseudonymous(tmp_path):
    ds = _dataset(np.zeros((2, 2), np.uint8), modality="OT")
    path = _write(ds, tmp_path / "a.dcm")
    first, second = read_dicom(path).meta["case_id"], read_dicom_meta(path)["case_id"]
    assert first == second and first.startswith("C-") and str(ds.SOPInstanceUID) not in first


# ----------------------------------------------------------------------------------------------------------------
# Series written by the test: ordering, errors naming the files


def test_series_is_ordered_by_position_not_by_name_and_ignores_other_files(tmp_path):
    for name, z, value in [("c.dcm", 0.0, 10), ("a.dcm", 5.0, 20), ("b.dcm", 2.5, 30)]:
        _ct_slice(tmp_path / name, z, value=value, InstanceNumber={"a.dcm": 1, "b.dcm": 2, "c.dcm": 3}[name])
    (tmp_path / "README").write_text("three slices\n")
    (tmp_path / "notes.txt").write_text("x")
    vol = read_dicom_series(tmp_path)
    assert vol.shape == (3, 8, 8)
    assert vol.array[:, 0, 0].tolist() == [10.0, 30.0, 20.0]  # z = 0, 2.5, 5
    assert vol.meta["slice_positions"] == [0.0, 2.5, 5.0]
    assert vol.meta["spacing"] == [2.5, 0.5, 0.5] and vol.meta["uneven_spacing"] is False
    assert vol.meta["gantry_tilt_deg"] == pytest.approx(0.0, abs=1e-6)
    assert vol.meta["num_ignored_files"] == 2
    middle = read_image(tmp_path, frame=1)
    assert middle.shape == (8, 8) and middle.array[0, 0] == 30.0
    with pytest.raises(ImageReadError, match=r"has 3 slices but a single 2-D image was expected"):
        read_image(tmp_path, single_frame=True)


def test_series_with_mixed_shapes_names_the_odd_file(tmp_path):
    _ct_slice(tmp_path / "s1.dcm", 0)
    _ct_slice(tmp_path / "s2.dcm", 1)
    _ct_slice(tmp_path / "scout.dcm", 2, shape=(6, 8))
    expected = r"mixes image sizes \(Rows, Columns\): 2 files have \(8, 8\), but \(6, 8\) in scout\.dcm"
    with pytest.raises(ImageReadError, match=expected):
        read_dicom_series(tmp_path)


def test_series_with_mixed_orientations_names_the_odd_file(tmp_path):
    _ct_slice(tmp_path / "ax1.dcm", 0)
    _ct_slice(tmp_path / "ax2.dcm", 1)
    _ct_slice(tmp_path / "cor.dcm", 2, orientation=[1, 0, 0, 0, 0, -1])
    with pytest.raises(ImageReadError, match=r"mixes ImageOrientationPatient values: .* in cor\.dcm.*localiser"):
        read_dicom_series(tmp_path)


def test_series_with_two_series_uids_names_them_and_series_uid_picks_one(tmp_path):
    _ct_slice(tmp_path / "a1.dcm", 0, series="1.2.3.1")
    _ct_slice(tmp_path / "a2.dcm", 1, series="1.2.3.1")
    _ct_slice(tmp_path / "b1.dcm", 0, series="1.2.3.2", value=99)
    expected = r"mixes SeriesInstanceUIDs: 2 files have 1\.2\.3\.1, but 1\.2\.3\.2 in b1\.dcm.*series_uid"
    with pytest.raises(ImageReadError, match=expected):
        read_dicom_series(tmp_path)
    only_b = read_dicom_series(tmp_path, series_uid="1.2.3.2")
    assert only_b.shape == (1, 8, 8) and only_b.array.max() == 99
    assert only_b.meta["z_spacing_source"] == "SliceThickness" and only_b.meta["spacing"][0] == 2.0
    with pytest.raises(ImageReadError, match=r"no slice of series_uid='9\.9'\. Available: 1\.2\.3\.1, 1\.2\.3\.2"):
        read_dicom_series(tmp_path, series_uid="9.9")


def test_series_with_two_slices_at_one_position(tmp_path):
    _ct_slice(tmp_path / "echo1.dcm", 0)
    _ct_slice(tmp_path / "echo2.dcm", 0)
    _ct_slice(tmp_path / "next.dcm", 3)
    with pytest.raises(ImageReadError, match=r"slices at the same position \(echo1\.dcm and echo2\.dcm\)"):
        read_dicom_series(tmp_path)


def test_series_reports_tilt_and_uneven_spacing(tmp_path):
    # Slices advance along y as well as z: a 30 degree gantry tilt; steps 2, 2, 5 mm along the normal.
    tilt = np.radians(30)
    for i, d in enumerate([0.0, 2.0, 4.0, 9.0]):
        path = _ct_slice(tmp_path / f"t{i}.dcm", 0)
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [0.0, d * np.tan(tilt), d]
        ds.save_as(path)
    vol = read_dicom_series(tmp_path)
    assert vol.meta["gantry_tilt_deg"] == pytest.approx(30.0, abs=1e-4)
    assert vol.meta["uneven_spacing"] is True
    assert vol.meta["slice_steps"] == pytest.approx([2.0, 2.0, 5.0])
    assert vol.meta["spacing"][0] == pytest.approx(2.0)


def test_series_folder_without_dicom(tmp_path):
    (tmp_path / "README.md").write_text("nothing here")
    with pytest.raises(ImageReadError, match=r"holds no DICOM image files \(1 other files ignored\)"):
        read_dicom_series(tmp_path)
    with pytest.raises(ImageReadError, match="is read as a grayscale volume but expect='rgb'"):
        read_dicom_series(tmp_path, expect="rgb")


# ----------------------------------------------------------------------------------------------------------------
# Raster images and arrays


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_raster_round_trip_is_exact(tmp_path, suffix):
    values = (np.arange(40 * 30, dtype=np.uint32).reshape(40, 30) * 53 % 65536).astype(np.uint16)
    path = tmp_path / f"img16{suffix}"
    skimage.io.imsave(path, values, check_contrast=False)
    img = read_raster(path)
    assert img.shape == (40, 30) and img.array.dtype == np.float32
    np.testing.assert_array_equal(img.array, values.astype(np.float32))
    assert img.meta["value_range"] == [0.0, 65535.0] and img.meta["units"] == "raw"
    assert read_image(path).meta["case_id"] == img.meta["case_id"]


def test_rgba_png_loses_alpha_and_gray_stays_2d(tmp_path):
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 255
    skimage.io.imsave(tmp_path / "rgba.png", rgba, check_contrast=False)
    img = read_raster(tmp_path / "rgba.png")
    assert img.shape == (5, 6, 3) and img.array[0, 0].tolist() == [10, 20, 30] and img.meta["alpha_dropped"]
    skimage.io.imsave(tmp_path / "gray.png", np.full((5, 6), 7, np.uint8), check_contrast=False)
    gray = read_raster(tmp_path / "gray.png")
    assert gray.shape == (5, 6) and gray.meta["photometric"] == "MONOCHROME2"


def test_rgb_raster_with_identical_channels_becomes_gray_only_when_gray_is_expected(tmp_path):
    gray = np.arange(30, dtype=np.uint8).reshape(5, 6)
    skimage.io.imsave(tmp_path / "g3.png", np.stack([gray] * 3, axis=-1), check_contrast=False)
    assert read_raster(tmp_path / "g3.png").shape == (5, 6, 3)
    img = read_raster(tmp_path / "g3.png", expect="gray")
    np.testing.assert_array_equal(img.array, gray)
    assert img.meta["channels_collapsed"] is True
    colour = np.stack([gray, gray, 255 - gray], axis=-1)
    skimage.io.imsave(tmp_path / "c.png", colour, check_contrast=False)
    with pytest.raises(ImageReadError, match=r"c\.png is a colour image \(RGB, uint8 samples\) but a grayscale"):
        read_raster(tmp_path / "c.png", expect="gray")


def test_truncated_png_is_an_error(tmp_path):
    skimage.io.imsave(tmp_path / "ok.png", np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.png could not be read as a PNG image.*re-export"):
        read_raster(tmp_path / "cut.png")


def test_npy_values_shapes_and_nan(tmp_path):
    volume = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    np.save(tmp_path / "vol.npy", volume)
    img = read_array(tmp_path / "vol.npy")
    np.testing.assert_array_equal(img.array, volume)
    assert img.meta["num_frames"] == 2 and img.meta["value_range"] == [-32768.0, 32767.0]
    np.testing.assert_array_equal(read_image(tmp_path / "vol.npy", frame=1).array, volume[1])
    with pytest.raises(ImageReadError, match=r"vol\.npy has 2 frames but a single 2-D image was expected"):
        read_array(tmp_path / "vol.npy", single_frame=True)

    bad = np.ones((4, 4), np.float32)
    bad[1, 2], bad[0, 0] = np.nan, np.inf
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(ImageReadError, match=r"bad\.npy contains 1 NaN and 1 infinite values; expected finite"):
        read_image(tmp_path / "bad.npy")

    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ImageReadError, match=r"obj\.npy holds a pickled object array"):
        read_array(tmp_path / "obj.npy")
    np.save(tmp_path / "line.npy", np.zeros(5))
    with pytest.raises(ImageReadError, match=r"line\.npy holds an array of shape \(5,\); expected an image array"):
        read_array(tmp_path / "line.npy")


def test_imagedata_is_frozen_and_reading_does_not_touch_the_file(tmp_path):
    values = np.eye(3, dtype=np.float32)
    np.save(tmp_path / "eye.npy", values)
    before = (tmp_path / "eye.npy").read_bytes()
    img = read_array(tmp_path / "eye.npy")
    img.array[0, 0] = 5  # the returned array is the caller's own copy
    assert (tmp_path / "eye.npy").read_bytes() == before
    np.testing.assert_array_equal(read_array(tmp_path / "eye.npy").array, values)
    with pytest.raises(AttributeError):
        img.meta = {}  # type: ignore[misc]
    assert isinstance(img, ImageData)
