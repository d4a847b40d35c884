"""Issue 11 items 11 and 12: pixel data that does not match its header, and DICOM objects that are not images, are
refused with one line naming the file (real files written with pydicom)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from tl_radiology import ImageReadError
from tl_radiology.data import CaseLoader
from tl_radiology.io import read_dicom, read_dicom_series, read_image


def _dicom(path: Path, pixels: np.ndarray, *, sop_class=CTImageStorage, modality="CT", **attrs) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.SeriesInstanceUID = attrs.pop("SeriesInstanceUID", generate_uid())
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.BitsAllocated = ds.BitsStored = pixels.dtype.itemsize * 8
    ds.HighBit, ds.PixelRepresentation = ds.BitsStored - 1, 0
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _image(shape=(64, 64)) -> np.ndarray:
    return (np.arange(np.prod(shape)) % 4096).astype(np.uint16).reshape(shape)


# ------------------------------------------------------------------------------------------ item 11: pixel length
def test_a_halved_rows_header_is_refused_not_read_as_two_frames(tmp_path):
    path = _dicom(tmp_path / "halved.dcm", _image(), Rows=32)
    with pytest.raises(ImageReadError, match=r"halved\.dcm: its pixel data holds 8192 bytes \(enough for 2 frames, "
                                             r"not 1\) but the header \(Rows 32 x Columns 64 .* needs 4096"):
        read_dicom(path)
    with pytest.raises(ImageReadError, match=r"halved\.dcm: its pixel data"):
        read_image(path, single_frame=False)


def test_a_wrong_columns_value_is_refused_naming_the_file(tmp_path):
    path = _dicom(tmp_path / "cols.dcm", _image(), Columns=60)
    with pytest.raises(ImageReadError, match=r"cols\.dcm: its pixel data holds 8192 bytes but the header .*needs 7680"):
        read_dicom(path)


def test_matching_pixel_data_with_an_even_length_pad_is_read(tmp_path):
    pixels = (np.arange(15) % 200).astype(np.uint8).reshape(3, 5)  # 15 bytes: pydicom pads to 16
    image = read_dicom(_dicom(tmp_path / "odd.dcm", pixels))
    np.testing.assert_array_equal(image.array, pixels.astype(np.float32))


def test_the_loader_names_the_row_and_the_file_of_a_bad_header(tmp_path):
    path = _dicom(tmp_path / "halved.dcm", _image(), Rows=32)
    case = pd.Series({"case_id": "C-1", "row": 7, "image": str(path)})
    with pytest.raises(ImageReadError, match=r"row 7.*halved\.dcm: its pixel data holds 8192 bytes"):
        CaseLoader(("image",))(case)


# ------------------------------------------------------------------------------------------ item 12: not images
SEG = "1.2.840.10008.5.1.4.1.1.66.4"
RTDOSE = "1.2.840.10008.5.1.4.1.1.481.2"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"
KO = "1.2.840.10008.5.1.4.1.1.88.59"


@pytest.mark.parametrize("sop_class, modality, kind", [
    (SEG, "SEG", r"a segmentation \(SEG\) \(SOP class 'Segmentation Storage', Modality SEG\)"),
    (RTDOSE, "RTDOSE", r"an RT dose \(RTDOSE\)"),
    (GSPS, "PR", r"a presentation state \(PR\)"),
    (KO, "KO", r"a key object selection \(KO\)"),
])
def test_non_image_objects_with_pixels_are_refused_in_one_line(tmp_path, sop_class, modality, kind):
    pixels = np.zeros((2, 8, 8), np.uint8) if modality == "SEG" else np.zeros((8, 8), np.uint16)
    path = _dicom(tmp_path / f"{modality.lower()}.dcm", pixels, sop_class=sop_class, modality=modality)
    with pytest.raises(ImageReadError, match=rf"{modality.lower()}\.dcm is {kind}.*, not an image\. Expected a "
                                             r"DICOM image .*remove it from the manifest"):
        read_image(path, single_frame=False)


def test_a_seg_without_a_sop_class_is_known_by_its_modality(tmp_path):
    path = _dicom(tmp_path / "seg.dcm", np.zeros((8, 8), np.uint8), modality="SEG")
    from pydicom import dcmread

    ds = dcmread(path)
    del ds.SOPClassUID
    del ds.file_meta.MediaStorageSOPClassUID
    ds.save_as(path, enforce_file_format=False)
    with pytest.raises(ImageReadError, match=r"seg\.dcm is a segmentation \(SEG\) \(Modality SEG\), not an image"):
        read_dicom(path)


def test_a_seg_beside_a_series_is_left_out_of_the_volume(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    series = generate_uid()
    for z in range(3):
        _dicom(folder / f"slice{z}.dcm", np.full((8, 8), 100 + z, np.uint16), SeriesInstanceUID=series,
               ImageOrientationPatient=[1, 0, 0, 0, 1, 0], ImagePositionPatient=[0, 0, float(z)],
               PixelSpacing=[1, 1], SliceThickness=1)
    _dicom(folder / "seg.dcm", np.zeros((3, 8, 8), np.uint8), sop_class=SEG, modality="SEG", SeriesInstanceUID=series)
    volume = read_dicom_series(folder)
    assert volume.shape == (3, 8, 8)
    np.testing.assert_array_equal(volume.array[:, 0, 0], [100, 101, 102])


def test_the_loader_refuses_a_seg_row_naming_the_row_and_file_with_exit_status_2(tmp_path):
    path = _dicom(tmp_path / "mask.dcm", np.zeros((2, 8, 8), np.uint8), sop_class=SEG, modality="SEG")
    case = pd.Series({"case_id": "C-1", "row": 4, "image": str(path)})
    with pytest.raises(ImageReadError, match=r"row 4.*mask\.dcm is a segmentation \(SEG\)") as caught:
        CaseLoader(("image",))(case)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)
