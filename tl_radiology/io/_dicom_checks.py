"""Checks a DICOM data set passes before decoding: it is an image, it has pixel data, and the data matches the header.

Non-image objects (SEG, RT, PR, KO, SR, waveforms, ...) are named by their SOP class or modality; missing or cut-off
pixel data and pixel data whose length does not match Rows x Columns x samples x bits x frames are refused.
"""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset

from .._errors import ImageReadError
from ._dicom_file import _corrupt
from ._dicom_header import _num_frames, _photometric, _uid_name

__all__ = ["check_is_image", "check_pixel_length", "non_image_kind"]

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_PIXEL_TAG_BYTES = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")  # (7FE0,0010) little / big endian


#: SOP Class UIDs of DICOM objects that are not images to classify (some carry pixel data: SEG, RT Dose), by name.
NON_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "a segmentation (SEG)",
    "1.2.840.10008.5.1.4.1.1.66.5": "a surface segmentation",
    "1.2.840.10008.5.1.4.1.1.66": "raw data",
    "1.2.840.10008.5.1.4.1.1.66.1": "a spatial registration (REG)",
    "1.2.840.10008.5.1.4.1.1.66.2": "a spatial fiducials object (FID)",
    "1.2.840.10008.5.1.4.1.1.66.3": "a deformable spatial registration (REG)",
    "1.2.840.10008.5.1.4.1.1.67": "a real world value mapping (RWV)",
    "1.2.840.10008.5.1.4.1.1.481.2": "an RT dose (RTDOSE)",
    "1.2.840.10008.5.1.4.1.1.481.3": "an RT structure set (RTSTRUCT)",
    "1.2.840.10008.5.1.4.1.1.481.4": "an RT treatment record",
    "1.2.840.10008.5.1.4.1.1.481.5": "an RT plan (RTPLAN)",
    "1.2.840.10008.5.1.4.1.1.481.6": "an RT treatment record",
    "1.2.840.10008.5.1.4.1.1.481.7": "an RT treatment record",
    "1.2.840.10008.5.1.4.1.1.481.8": "an RT ion plan (RTPLAN)",
    "1.2.840.10008.5.1.4.1.1.481.9": "an RT ion treatment record",
    "1.2.840.10008.5.1.4.1.1.88.59": "a key object selection (KO)",
    "1.2.840.10008.5.1.4.1.1.104.1": "an encapsulated PDF",
    "1.2.840.10008.5.1.4.1.1.104.2": "an encapsulated CDA document",
    "1.2.840.10008.1.3.10": "a DICOMDIR (media directory)",
}
#: SOP Class UID prefixes of whole families that are not images: presentation states, structured reports,
#: waveforms (ECG, audio, haemodynamics) and further RT objects.
_NON_IMAGE_SOP_PREFIXES = {
    "1.2.840.10008.5.1.4.1.1.11.": "a presentation state (PR)",
    "1.2.840.10008.5.1.4.1.1.88.": "a structured report (SR)",
    "1.2.840.10008.5.1.4.1.1.9.": "a waveform",
    "1.2.840.10008.5.1.4.34.": "an RT object",
}
#: Modality values of non-image objects, for files without a SOP Class UID.
NON_IMAGE_MODALITIES = {
    "SEG": "a segmentation (SEG)", "RTSTRUCT": "an RT structure set (RTSTRUCT)", "RTPLAN": "an RT plan (RTPLAN)",
    "RTDOSE": "an RT dose (RTDOSE)", "RTRECORD": "an RT treatment record", "PR": "a presentation state (PR)",
    "KO": "a key object selection (KO)", "SR": "a structured report (SR)", "REG": "a spatial registration (REG)",
    "FID": "a spatial fiducials object (FID)", "RWV": "a real world value mapping (RWV)", "DOC": "a document (DOC)",
    "PLAN": "a plan (PLAN)", "ECG": "a waveform (ECG)", "HD": "a waveform (HD)", "AU": "an audio waveform (AU)",
}


def non_image_kind(ds: Dataset) -> str | None:
    """What a non-image DICOM object is (e.g. ``"a segmentation (SEG)"``), or ``None`` for an image."""
    file_meta = getattr(ds, "file_meta", None) or Dataset()
    sop = str(ds.get("SOPClassUID") or file_meta.get("MediaStorageSOPClassUID") or "").strip()
    if sop in NON_IMAGE_SOP_CLASSES:
        return NON_IMAGE_SOP_CLASSES[sop]
    for prefix, kind in _NON_IMAGE_SOP_PREFIXES.items():
        if sop.startswith(prefix):
            return kind
    modality = str(ds.get("Modality") or "").strip().upper()
    if not sop and modality in NON_IMAGE_MODALITIES:
        return NON_IMAGE_MODALITIES[modality]
    return None


def check_is_image(ds: Dataset, path: Path) -> None:
    """Refuse a DICOM object that is not an image (SEG, RT, PR, KO, SR, ...), naming the file and what it is."""
    kind = non_image_kind(ds)
    if kind is None:
        return
    sop = _uid_name(ds.get("SOPClassUID"))
    modality = str(ds.get("Modality") or "").strip()
    detail = ", ".join(v for v in (f"SOP class {sop!r}" if sop else "", f"Modality {modality}" if modality else "")
                       if v)
    raise ImageReadError(
        f"{path} is {kind} ({detail}), not an image. Expected a DICOM image (CT, MR, CR, DX, MG, US, ...); remove "
        f"it from the manifest or point the row at the image it belongs to."
    )


def check_pixel_length(ds: Dataset, path: Path) -> None:
    """Refuse uncompressed pixel data whose length does not match Rows x Columns x samples x bits x frames.

    A header with Rows halved would otherwise be read as twice the frames (pydicom takes the excess as frames),
    and one with a wrong Rows or Columns as a garbled image. Compressed syntaxes carry their own frame sizes and
    are checked by their decoders. One padding byte (to an even length) is allowed.
    """
    ts = ds.file_meta.get("TransferSyntaxUID")
    try:
        if ts is None or ts.is_encapsulated:
            return
    except ValueError:  # a syntax pydicom does not know: _decode names it and the tool that converts it
        return
    keyword = next((k for k in _PIXEL_KEYWORDS if k in ds), None)
    if keyword is None:
        return
    value = ds[keyword].value
    if not isinstance(value, (bytes, bytearray)):
        return
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel") or 1)
        bits = int(ds.BitsAllocated) if keyword == "PixelData" else (32 if keyword == "FloatPixelData" else 64)
    except (AttributeError, TypeError, ValueError):
        return  # the decoder names the missing attribute
    frames = _num_frames(ds)
    if _photometric(ds) == "YBR_FULL_422":
        samples = 2  # two values per pixel when chroma is subsampled
    if bits == 1:
        expected = -(-rows * columns * samples * frames // 8)
    else:
        expected = rows * columns * samples * (-(-bits // 8)) * frames
    actual = len(value)
    if actual == expected or (actual == expected + 1 and expected % 2 == 1):
        return
    frame_bytes = max(expected // max(frames, 1), 1)
    hint = ""
    if actual > expected and actual % frame_bytes == 0:
        hint = f" (enough for {actual // frame_bytes} frames, not {frames})"
    raise ImageReadError(
        f"{path}: its pixel data holds {actual} bytes{hint} but the header (Rows {rows} x Columns {columns} x "
        f"{samples} sample(s) x {bits} bits x {frames} frame(s)) needs {expected}. Expected pixel data that matches "
        f"Rows, Columns, BitsAllocated and NumberOfFrames; the header is wrong or the file damaged: export it again "
        f"from its source."
    )


def _has_pixels(ds: Dataset) -> bool:
    return any(k in ds for k in _PIXEL_KEYWORDS)


def _no_pixels(path: Path, ds: Dataset) -> ImageReadError:
    if "Rows" in ds or "Columns" in ds:
        with open(path, "rb") as fh:
            data = fh.read()
        if any(tag in data for tag in _PIXEL_TAG_BYTES):
            return _corrupt(path, "its Pixel Data element is cut off")
        return ImageReadError(
            f"{path} has image attributes (Rows, Columns) but no Pixel Data element. Expected a DICOM image with "
            f"pixels; the file is header-only or was exported without pixels, export it again with its pixels."
        )
    sop = _uid_name(ds.get("SOPClassUID")) or "unknown SOP class"
    return ImageReadError(
        f"{path} has no pixel data (it is a '{sop}' object, not an image). Expected a DICOM image (CT, MR, CR, DX, "
        f"US, ...); remove it from the manifest or folder."
    )
