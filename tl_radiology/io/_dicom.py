"""Reading one DICOM file: pixels in physical units plus non-identifying metadata.

The pixel pipeline follows the DICOM grayscale pipeline with pydicom's own functions:
stored values -> modality LUT (``apply_modality_lut``: Rescale Slope/Intercept, or a Modality LUT Sequence; HU for
CT) -> optional VOI LUT / window (``apply_voi_lut``, off by default) -> MONOCHROME1 inversion. Colour goes through
``apply_color_lut`` (PALETTE COLOR) or ``convert_color_space`` (YBR_FULL, YBR_FULL_422); JPEG 2000 YBR_RCT/YBR_ICT
come out of the decoder as RGB already. Compressed transfer syntaxes are decoded by pydicom's decoder plugins
(pylibjpeg with pylibjpeg-libjpeg / pylibjpeg-openjpeg, pydicom's own RLE decoder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom import uid as dicom_uid
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, convert_color_space, get_decoder

from .._errors import ImageReadError
from ._common import (
    base_meta,
    case_id_for,
    check_expect,
    check_frame,
    check_frame_choice,
    colour_mismatch,
    file_sha256,
    one_line,
    require_file,
    sniff_kind,
)
from ._image import ImageData

__all__ = ["read_dicom", "read_dicom_meta", "DICOM_SUFFIXES", "is_dicom_file", "read_dataset"]

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")

# Bottom of the CT scale. Nothing in a patient is less dense than air (-1000 HU); values below -1024 HU are the
# scanner's padding outside the reconstruction circle (Toshiba writes -2048, GE stores -2000 + intercept -1024 =
# -3024 HU and names it in Pixel Padding Value).
AIR_FLOOR_HU = -1024.0

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_PIXEL_TAG_BYTES = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")  # (7FE0,0010) little / big endian
_GRAY = ("MONOCHROME1", "MONOCHROME2")
_NON_HU_RESCALE_TYPES = ("US", "OD", "MGML", "Z_EFF", "ED", "EDW", "HU_MOD", "PCT")

# Attribute -> the functional group sequence that carries it in enhanced (multi-frame) IODs.
_FUNCTIONAL_GROUP = {
    "PixelSpacing": "PixelMeasuresSequence",
    "SliceThickness": "PixelMeasuresSequence",
    "SpacingBetweenSlices": "PixelMeasuresSequence",
    "ImagePositionPatient": "PlanePositionSequence",
    "ImageOrientationPatient": "PlaneOrientationSequence",
    "WindowCenter": "FrameVOILUTSequence",
    "WindowWidth": "FrameVOILUTSequence",
    "VOILUTFunction": "FrameVOILUTSequence",
    "RescaleSlope": "PixelValueTransformationSequence",
    "RescaleIntercept": "PixelValueTransformationSequence",
    "RescaleType": "PixelValueTransformationSequence",
}


# ----------------------------------------------------------------------------------------------------------------
# Recognising and parsing a DICOM file


def _head(path: Path, size: int = 512) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(size)


def _has_preamble(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


def _looks_like_raw_dataset(head: bytes) -> bool:
    # A DICOM data set written without the 128-byte preamble (old ACR-NEMA style exports) starts with a tag of
    # group 0x0002 (file meta) or 0x0008 (identification), little or big endian.
    return len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")


def is_dicom_file(path) -> bool:
    """Whether ``path`` is a DICOM file by content: the ``DICM`` marker at byte 128, or a raw data set start."""
    try:
        head = _head(Path(path))
    except OSError:
        return False
    return _has_preamble(head) or _looks_like_raw_dataset(head)


def _not_dicom(path: Path, head: bytes) -> ImageReadError:
    kind = sniff_kind(head)
    looks = f"; its content looks like {kind}" if kind else ""
    return ImageReadError(
        f"{path} is not a DICOM file (no 'DICM' marker at byte 128 and no DICOM data set at its start{looks}). "
        f"Expected a DICOM file; check the file, or give it the suffix of its real format."
    )


def _corrupt(path: Path, reason: str) -> ImageReadError:
    return ImageReadError(
        f"{path} is truncated or corrupt: {reason}. Expected a complete DICOM file; copy it again from its source "
        f"(and compare its size with the original)."
    )


def read_dataset(path, *, header_only: bool) -> Dataset:
    """Parse a DICOM file with pydicom, turning every failure into an :class:`ImageReadError` naming the file.

    Args:
        path: the file.
        header_only: stop before the pixel data (``stop_before_pixels``), for metadata and series sorting.

    Returns:
        The pydicom ``Dataset`` with a Transfer Syntax UID in its ``file_meta``.
    """
    path = require_file(path, "a DICOM file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path} is empty (0 bytes); expected a DICOM file. Copy it again from its source.")
    try:
        head = _head(path)
    except OSError as exc:
        raise ImageReadError(
            f"{path} cannot be read ({exc.strerror or exc}); expected a readable DICOM file. Check the disk and the "
            f"file's permissions."
        ) from exc
    preamble = _has_preamble(head)
    if not preamble and not _looks_like_raw_dataset(head):
        raise _not_dicom(path, head)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=header_only, force=not preamble)
    except InvalidDicomError:
        raise _not_dicom(path, head) from None
    except Exception as exc:  # pydicom raises EOFError, OSError, ValueError, struct.error... on damaged files
        raise _corrupt(path, f"pydicom could not parse it ({one_line(exc)[:200]})") from exc
    if len(ds) == 0:
        raise _corrupt(path, "it has a DICOM header but no readable data element after it")
    if not preamble and not any(k in ds for k in ("SOPClassUID", "Modality", "Rows")):
        raise _not_dicom(path, head)
    last = ds.get_item(max(ds.keys()))
    if (
        isinstance(last, RawDataElement)
        and isinstance(last.value, (bytes, bytearray))
        and last.length != 0xFFFFFFFF
        and len(last.value) < last.length
    ):
        raise _corrupt(
            path,
            f"its last element {last.tag} holds {len(last.value)} of its {last.length} bytes (the file ends early)",
        )
    if not header_only and isinstance(last, RawDataElement) and last.length != 0xFFFFFFFF:
        # pydicom stops silently when the file ends inside an element's 8-12 byte header: a few bytes are left.
        leftover = path.stat().st_size - (last.value_tell + last.length)
        if 0 < leftover < 12:
            raise _corrupt(path, f"it ends with {leftover} bytes of an incomplete element after {last.tag}")
    if "TransferSyntaxUID" not in ds.file_meta:
        # No file meta (raw data set): pydicom worked out the encoding while reading it.
        implicit, little = ds.original_encoding
        if implicit:
            ds.file_meta.TransferSyntaxUID = dicom_uid.ImplicitVRLittleEndian
        elif little:
            ds.file_meta.TransferSyntaxUID = dicom_uid.ExplicitVRLittleEndian
        else:
            ds.file_meta.TransferSyntaxUID = dicom_uid.ExplicitVRBigEndian
    return ds


# ----------------------------------------------------------------------------------------------------------------
# Objects that are not images, and pixel data that does not match its header

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


# ----------------------------------------------------------------------------------------------------------------
# Header values (top level or enhanced multi-frame functional groups)


def _element_value(item: Dataset, keyword: str):
    if keyword not in item:
        return None
    value = item[keyword].value
    if value is None or value == "" or (hasattr(value, "__len__") and not isinstance(value, str) and len(value) == 0):
        return None
    return value


def frame_value(ds: Dataset, keyword: str, frame: int = 0):
    """A header value for one frame: per-frame functional group, then shared functional group, then top level."""
    group = _FUNCTIONAL_GROUP.get(keyword)
    if group:
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        if per_frame and frame < len(per_frame):
            seq = per_frame[frame].get(group)
            if seq:
                value = _element_value(seq[0], keyword)
                if value is not None:
                    return value
        shared = ds.get("SharedFunctionalGroupsSequence")
        if shared:
            seq = shared[0].get(group)
            if seq:
                value = _element_value(seq[0], keyword)
                if value is not None:
                    return value
    return _element_value(ds, keyword)


def _floats(value) -> list[float] | None:
    if value is None:
        return None
    try:
        values = list(value) if not isinstance(value, (str, bytes)) and hasattr(value, "__iter__") else [value]
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


def _float(value) -> float | None:
    values = _floats(value)
    return values[0] if values else None


def _num_frames(ds: Dataset) -> int:
    try:
        return max(int(ds.get("NumberOfFrames") or 1), 1)
    except (TypeError, ValueError):
        return 1


def _photometric(ds: Dataset) -> str:
    return str(ds.get("PhotometricInterpretation") or "").strip().upper()


def _is_colour(ds: Dataset) -> bool:
    return int(ds.get("SamplesPerPixel") or 1) > 1 or _photometric(ds) == "PALETTE COLOR"


def _rescale(ds: Dataset, frame: int) -> tuple[float, float] | None:
    slope = _float(frame_value(ds, "RescaleSlope", frame))
    intercept = _float(frame_value(ds, "RescaleIntercept", frame))
    if slope is None or intercept is None:
        return None
    return slope, intercept


def _units(ds: Dataset, frame: int) -> str:
    if _is_colour(ds):
        return "stored"
    has_lut = bool(ds.get("ModalityLUTSequence")) or _rescale(ds, frame) is not None
    rescale_type = str(frame_value(ds, "RescaleType", frame) or "").strip().upper()
    # Rescale Type is optional for CT (then HU) and often free text ("Houndsfield Unit"); only the standard's other
    # defined terms (US = unspecified, OD, MGML, ...) mean that the rescaled values are not Hounsfield units.
    if has_lut and str(ds.get("Modality") or "").upper() == "CT" and rescale_type not in _NON_HU_RESCALE_TYPES:
        return "HU"
    return "stored"


def _uid_name(value) -> str | None:
    if value is None:
        return None
    value = dicom_uid.UID(str(value))
    return value.name if value.name else str(value)


def header_meta(ds: Dataset, path: Path, frame: int | None) -> dict[str, Any]:
    """Non-identifying metadata from a DICOM header (no patient names, ids, dates, accession or institution)."""
    index = frame or 0
    meta = base_meta("dicom")
    modality = str(ds.get("Modality") or "").strip()
    meta["modality"] = modality or None
    meta["units"] = _units(ds, index)
    meta["pixel_spacing"] = _floats(frame_value(ds, "PixelSpacing", index))
    imager = _floats(ds.get("ImagerPixelSpacing"))
    if imager:
        meta["imager_pixel_spacing"] = imager
    meta["slice_thickness"] = _float(frame_value(ds, "SliceThickness", index))
    spacing_between = _float(frame_value(ds, "SpacingBetweenSlices", index))
    if spacing_between is not None:
        meta["spacing_between_slices"] = spacing_between
    meta["image_position"] = _floats(frame_value(ds, "ImagePositionPatient", index))
    meta["image_orientation"] = _floats(frame_value(ds, "ImageOrientationPatient", index))
    meta["photometric"] = _photometric(ds) or None
    meta["samples_per_pixel"] = int(ds.get("SamplesPerPixel") or 1)
    meta["num_frames"] = _num_frames(ds)
    meta["frame"] = frame
    center = _float(frame_value(ds, "WindowCenter", index))
    width = _float(frame_value(ds, "WindowWidth", index))
    meta["window"] = [center, width] if center is not None and width is not None else None
    rescale = _rescale(ds, index)
    meta["rescale"] = list(rescale) if rescale else None
    rescale_type = frame_value(ds, "RescaleType", index)
    if rescale_type:
        meta["rescale_type"] = str(rescale_type)
    meta["modality_lut"] = bool(ds.get("ModalityLUTSequence"))
    meta["bits_stored"] = int(ds["BitsStored"].value) if ds.get("BitsStored") is not None else None
    meta["transfer_syntax"] = _uid_name(ds.file_meta.get("TransferSyntaxUID"))
    meta["sop_class"] = _uid_name(ds.get("SOPClassUID"))
    manufacturer = str(ds.get("Manufacturer") or "").strip()
    meta["manufacturer"] = manufacturer or None
    sop_instance = str(ds.get("SOPInstanceUID") or "").strip()
    # The SOP Instance UID names the image, not the patient; hashed with the secret key it is a stable case id.
    meta["case_id"] = case_id_for(sop_instance if sop_instance else "sha256:" + file_sha256(path))
    return meta


# ----------------------------------------------------------------------------------------------------------------
# Decoding


_VIDEO = set(dicom_uid.MPEGTransferSyntaxes)
_PLUGIN_PACKAGES = (
    (set(dicom_uid.JPEGLSTransferSyntaxes), "pylibjpeg with pylibjpeg-libjpeg (or pyjpegls)"),
    (set(dicom_uid.JPEGTransferSyntaxes), "pylibjpeg with pylibjpeg-libjpeg (or pillow for 8-bit baseline)"),
    (set(dicom_uid.JPEG2000TransferSyntaxes), "pylibjpeg with pylibjpeg-openjpeg"),
    (set(dicom_uid.RLETransferSyntaxes), "numpy (pydicom decodes RLE itself; pylibjpeg-rle is faster)"),
)


def _syntax_label(ts) -> str:
    ts = dicom_uid.UID(str(ts))
    return f"'{ts.name}' ({ts})" if ts.name and ts.name != str(ts) else f"'{ts}'"


def _no_decoder(path: Path, ts) -> ImageReadError:
    label = _syntax_label(ts)
    if str(ts) in _VIDEO:
        fix = (
            "pydicom decodes no video syntax: extract the encapsulated stream and decode it with a video decoder "
            "such as PyAV (pip install av) or ffmpeg, or export still frames from the modality"
        )
    else:
        fix = (
            f"pydicom {pydicom.__version__} has no decoder for it: convert the file to an uncompressed syntax "
            "first (DCMTK: dcmconv +te IN OUT, or GDCM: gdcmconv --raw IN OUT)"
        )
    return ImageReadError(f"{path} uses transfer syntax {label}, which no installed decoder reads. To read it, {fix}.")


def _missing_plugin(path: Path, ts, missing: list[str]) -> ImageReadError:
    packages = next((pkgs for uids, pkgs in _PLUGIN_PACKAGES if str(ts) in uids), None)
    wanted = f"pip install {packages}" if packages else "install one of: " + "; ".join(missing)
    return ImageReadError(
        f"{path} uses transfer syntax {_syntax_label(ts)} but none of its decoders is installed "
        f"({'; '.join(missing) or 'no plugin available'}). Install a decoder: {wanted}."
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


def _decode(ds: Dataset, path: Path, frame: int | None) -> tuple[np.ndarray, dict]:
    ts = ds.file_meta.TransferSyntaxUID
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise _no_decoder(path, ts) from None
    if not decoder.is_available:
        raise _missing_plugin(path, ts, list(decoder.missing_dependencies))
    try:
        return decoder.as_array(ds, index=frame, raw=True)
    except Exception as exc:  # plugins raise RuntimeError/ValueError/OSError with their own messages
        reason = one_line(exc)
        if "less than expected" in reason or "truncated" in reason.lower():
            detail = f"its pixel data is shorter than Rows x Columns x frames needs ({reason[:200]})"
            raise _corrupt(path, detail) from exc
        raise ImageReadError(
            f"{path}: the pixel data ({_syntax_label(ts)}) could not be decoded: {reason[:300]}. Expected a valid "
            f"image; the file may be truncated or corrupt: copy it again, or convert it with DCMTK/GDCM."
        ) from exc


# ----------------------------------------------------------------------------------------------------------------
# Grayscale pipeline


def _lut_view(ds: Dataset, frame: int) -> Dataset:
    """A flat data set with what the LUT functions read, for one frame (functional groups flattened)."""
    view = Dataset()
    view.file_meta = ds.file_meta  # the endianness of OW LUT data
    for keyword in ("PhotometricInterpretation", "BitsStored", "BitsAllocated", "PixelRepresentation"):
        if keyword in ds:
            setattr(view, keyword, ds[keyword].value)
    for keyword in ("ModalityLUTSequence", "VOILUTSequence"):
        if ds.get(keyword):
            setattr(view, keyword, ds[keyword].value)
    for keyword in ("RescaleSlope", "RescaleIntercept", "RescaleType", "WindowCenter", "WindowWidth", "VOILUTFunction"):
        value = frame_value(ds, keyword, frame)
        if value is not None:
            setattr(view, keyword, value)
    return view


def _stored_range(view: Dataset) -> tuple[float, float]:
    bits = int(view.get("BitsStored") or view.get("BitsAllocated") or 16)
    if int(view.get("PixelRepresentation") or 0) == 0:
        return 0.0, float(2**bits - 1)
    return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)


def _modality_range(view: Dataset) -> tuple[float, float]:
    # The same output range pydicom's apply_windowing assumes for the modality LUT's output.
    lo, hi = _stored_range(view)
    if view.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(view.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    if "RescaleSlope" in view and "RescaleIntercept" in view:
        slope, intercept = float(view.RescaleSlope), float(view.RescaleIntercept)
        a, b = lo * slope + intercept, hi * slope + intercept
        return min(a, b), max(a, b)
    return lo, hi


def _padding_mask(stored: np.ndarray, ds: Dataset) -> np.ndarray | None:
    value = ds.get("PixelPaddingValue")
    if value is None or not np.issubdtype(stored.dtype, np.integer):
        return None
    limit = ds.get("PixelPaddingRangeLimit")
    if limit is None:
        mask = stored == int(value)
    else:
        lo, hi = sorted((int(value), int(limit)))
        mask = (stored >= lo) & (stored <= hi)
    return mask if mask.any() else None


def _apply_voi(x: np.ndarray, view: Dataset, path: Path) -> tuple[np.ndarray, float, float, dict]:
    lut = view.get("VOILUTSequence")
    has_lut = bool(lut) and "LUTDescriptor" in lut[0] and "LUTData" in lut[0]
    has_window = "WindowCenter" in view and "WindowWidth" in view
    if not (has_lut or has_window):
        raise ImageReadError(
            f"{path}: voi=True but the header has no VOI LUT Sequence and no Window Center/Width. Pass voi=False "
            f"(values stay in physical units) and window with transforms.Window instead."
        )
    if has_lut:
        # A VOI LUT is indexed by integer modality values.
        y = apply_voi_lut(np.rint(x).astype(np.int64), view, index=0, prefer_lut=True)
        lo, hi = 0.0, float(2 ** int(lut[0].LUTDescriptor[2]) - 1)
        info = {"type": "lut"}
    else:
        lo, hi = _modality_range(view)
        try:
            y = apply_voi_lut(x, view, index=0, prefer_lut=True)
        except ValueError as exc:
            raise ImageReadError(
                f"{path}: the header window cannot be applied ({one_line(exc)}). Pass voi=False and window with "
                f"transforms.Window instead."
            ) from exc
        info = {
            "type": "window",
            "center": _float(view.WindowCenter),
            "width": _float(view.WindowWidth),
            "function": str(view.get("VOILUTFunction") or "LINEAR"),
        }
    return np.asarray(y, dtype=np.float32), lo, hi, info


def _gray_pipeline(stored, ds, view, path, *, units, voi, fill_padding):
    """stored values -> modality LUT -> (CT air floor) -> optional VOI -> MONOCHROME1 inversion, as float32."""
    pad_mask = _padding_mask(stored, ds) if fill_padding else None
    identity = True
    if "RescaleSlope" in view and "RescaleIntercept" in view:
        identity = float(view.RescaleSlope) == 1.0 and float(view.RescaleIntercept) == 0.0
    if view.get("ModalityLUTSequence") or not identity:
        x = apply_modality_lut(stored, view)
    else:
        x = stored  # identity rescale: skip pydicom's float64 pass
    x = np.asarray(x, dtype=np.float32)
    if x is stored or np.shares_memory(x, stored):
        x = x.copy()
    lo, hi = _modality_range(view)
    filled = 0
    if units == "HU" and fill_padding:
        low = x < AIR_FLOOR_HU
        if pad_mask is not None:
            low |= pad_mask
        filled = int(np.count_nonzero(low))
        if filled:
            x[low] = AIR_FLOOR_HU
        lo, hi = max(lo, AIR_FLOOR_HU), max(hi, AIR_FLOOR_HU)
    voi_info = None
    if voi:
        x, lo, hi, voi_info = _apply_voi(x, view, path)
    inverted = str(view.get("PhotometricInterpretation") or "").upper() == "MONOCHROME1"
    if inverted:
        # MONOCHROME1: the lowest value is displayed white. Mirror the values inside the nominal output range so
        # larger means brighter, as in MONOCHROME2; the range (and so any later scaling) stays the same.
        np.subtract(lo + hi, x, out=x)
    if fill_padding and units != "HU" and pad_mask is not None and not pad_mask.all():
        # Padding outside the image area becomes the darkest real value.
        x[pad_mask] = x[~pad_mask].min()
        filled = int(np.count_nonzero(pad_mask))
    return x, {"value_range": [lo, hi], "voi": voi_info, "inverted": inverted, "padding_filled": filled}


def _per_frame_lut(ds: Dataset) -> bool:
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not per_frame:
        return False
    groups = ("PixelValueTransformationSequence", "FrameVOILUTSequence")
    return any(item.get(group) for item in per_frame for group in groups)


def _gray(arr, ds, path, frame, *, units, voi, fill_padding):
    if arr.ndim == 3 and _per_frame_lut(ds):
        out = np.empty(arr.shape, dtype=np.float32)
        infos = []
        for i in range(arr.shape[0]):
            out[i], info = _gray_pipeline(
                arr[i], ds, _lut_view(ds, i), path, units=units, voi=voi, fill_padding=fill_padding
            )
            infos.append(info)
        info = dict(infos[0])
        info["value_range"] = [min(i["value_range"][0] for i in infos), max(i["value_range"][1] for i in infos)]
        info["padding_filled"] = sum(i["padding_filled"] for i in infos)
        return out, info
    return _gray_pipeline(arr, ds, _lut_view(ds, frame or 0), path, units=units, voi=voi, fill_padding=fill_padding)


# ----------------------------------------------------------------------------------------------------------------
# Colour


def _colour(arr, props, ds, path):
    original = _photometric(ds)
    if original == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        if rgb.shape[-1] == 4:  # alpha palette: keep the colour
            rgb = rgb[..., :3]
        depth = int(ds.RedPaletteColorLookupTableDescriptor[2])
        return np.asarray(rgb, dtype=np.float32), [0.0, float(2**depth - 1)]
    current = str(props.get("photometric_interpretation") or original).upper()
    if current in ("YBR_FULL", "YBR_FULL_422"):
        if arr.dtype != np.uint8:
            raise ImageReadError(
                f"{path}: {current} colour with {arr.dtype} samples cannot be converted to RGB (pydicom converts "
                f"8-bit YCbCr only). Expected 8-bit YCbCr; convert the file to RGB with DCMTK or GDCM."
            )
        arr = convert_color_space(arr, current, "RGB", per_frame=arr.ndim == 4)
    elif current != "RGB":
        raise ImageReadError(
            f"{path}: photometric interpretation {current} is not supported. Expected MONOCHROME1, MONOCHROME2, "
            f"RGB, YBR_FULL(_422), YBR_RCT/ICT (JPEG 2000) or PALETTE COLOR; convert the file to RGB first."
        )
    bits = int(ds.get("BitsStored") or 8)
    return np.asarray(arr, dtype=np.float32), [0.0, float(2**bits - 1)]


# ----------------------------------------------------------------------------------------------------------------
# Public readers


def read_dicom(
    path,
    *,
    frame: int | None = None,
    single_frame: bool = False,
    expect: str = "any",
    voi: bool = False,
    fill_padding: bool = True,
) -> ImageData:
    """Read one DICOM file as float32 pixels in physical units plus non-identifying metadata.

    Values: the modality LUT is applied (Rescale Slope/Intercept, or a Modality LUT Sequence), so CT comes out in
    Hounsfield units (``meta["units"] == "HU"``) and other modalities as stored values after the modality LUT
    (``"stored"``). Enhanced multi-frame files take rescale, window and geometry from their functional groups.

    MONOCHROME1 (e.g. many CR files, where the lowest value is shown white) is inverted so that larger always
    means brighter: ``v -> lo + hi - v`` with ``[lo, hi]`` the nominal value range of the output (from Bits Stored
    and the rescale, given in ``meta["value_range"]``); ``meta["inverted"]`` is then True. The inversion uses the
    header's range, not the image's minimum and maximum, so it does not depend on the image content.

    Padding: CT values below -1024 HU are not tissue (air is -1000 HU) but the scanner's fill outside the
    reconstruction circle: Toshiba writes -2048 HU, GE stores -2000 with intercept -1024 (-3024 HU) and names it in
    Pixel Padding Value. With ``fill_padding=True`` (default) those pixels, and any pixel equal to Pixel Padding
    Value (or inside Pixel Padding Range Limit), become -1024 HU; in other modalities padding pixels become the
    darkest real value. ``meta["padding_filled"]`` counts them. ``fill_padding=False`` keeps the scanner's values.

    Colour: PALETTE COLOR through its palette (``apply_color_lut``), YBR_FULL / YBR_FULL_422 through
    ``convert_color_space``; JPEG 2000 YBR_RCT / YBR_ICT are returned as RGB by the decoder. Colour arrays are
    ``H x W x 3`` (``F x H x W x 3`` for multi-frame colour) on their stored scale (``meta["value_range"]``).

    Args:
        path: the DICOM file (with or without the 128-byte preamble).
        frame: 0-based index of the frame to read from a multi-frame file (only that frame is decoded). ``None``
            reads all frames: ``F x H x W`` for a multi-frame file, ``H x W`` for a single-frame one.
        single_frame: if True, a multi-frame file read without ``frame`` is an error (the data pipeline uses this
            to reject cine loops and enhanced stacks where one image per case is expected).
        expect: ``"gray"``, ``"rgb"`` or ``"any"``: the colour kind accepted; a mismatch is an error naming the
            file and its photometric interpretation. Checked from the header before any decoding.
        voi: apply the header's VOI LUT or window (``apply_voi_lut``, first window). Off by default; when on, the
            values are display values in ``meta["value_range"]``, ``meta["units"]`` becomes ``"VOI"`` and
            ``meta["voi"]`` says what was applied. A grayscale header without a window is then an error; colour
            images have no VOI stage and are returned unchanged.
        fill_padding: replace padding / below-air CT values as described above.

    Returns:
        :class:`ImageData` with ``array`` float32 and ``meta`` holding ``modality``, ``units``, ``pixel_spacing``
        (row, column mm), ``slice_thickness``, ``image_position``, ``image_orientation``, ``photometric`` (as in
        the file), ``num_frames``, ``frame``, ``window`` (header center, width or None), ``value_range``,
        ``rescale``, ``inverted``, ``voi``, ``padding_filled``, ``transfer_syntax``, ``sop_class``,
        ``manufacturer`` and ``case_id`` (a keyed hash of the SOP Instance UID). Never patient names, ids, birth
        dates, accession numbers or institution names.

    Raises:
        ImageReadError: missing, empty, truncated or non-DICOM file; no pixel data; a transfer syntax without an
            installed decoder (named, with the package that decodes it); colour where gray is expected (or the
            reverse); several frames where one is expected; a frame index out of range.

    Example:
        >>> img = read_dicom("../shared/data/dicom_samples_pydicom_data/CT_small.dcm")  # doctest: +SKIP
        >>> img.shape, img.meta["units"]  # doctest: +SKIP
        ((128, 128), 'HU')
    """
    expect = check_expect(expect)
    frame = check_frame(frame)
    ds = read_dataset(path, header_only=False)
    path = Path(path)
    if _has_pixels(ds):
        check_is_image(ds, path)
    if not _has_pixels(ds):
        raise _no_pixels(path, ds)
    check_pixel_length(ds, path)
    num_frames = _num_frames(ds)
    check_frame_choice(path, num_frames, frame, single_frame)
    photometric = _photometric(ds)
    colour = _is_colour(ds)
    colour_mismatch(
        path, expect, colour, f"PhotometricInterpretation {photometric}, {int(ds.get('SamplesPerPixel') or 1)} "
        f"sample(s) per pixel"
    )
    if not colour and photometric not in _GRAY:
        raise ImageReadError(
            f"{path}: photometric interpretation {photometric or '(missing)'} with 1 sample per pixel is not "
            f"supported. Expected MONOCHROME1 or MONOCHROME2; fix the header or convert the file."
        )
    meta = header_meta(ds, path, frame)
    arr, props = _decode(ds, path, frame)
    if colour:
        array, value_range = _colour(arr, props, ds, path)
        meta.update(value_range=value_range, inverted=False, voi=None, padding_filled=0)
    else:
        array, info = _gray(
            arr, ds, path, frame, units=meta["units"], voi=bool(voi), fill_padding=bool(fill_padding)
        )
        meta.update(info)
        if voi:
            meta["units"] = "VOI"
    if frame is None and num_frames > 1:
        positions = [_floats(frame_value(ds, "ImagePositionPatient", i)) for i in range(num_frames)]
        if any(p is not None for p in positions):
            meta["frame_positions"] = positions
    return ImageData(array, meta)


def read_dicom_meta(path) -> dict[str, Any]:
    """Read only a DICOM file's header (``stop_before_pixels``) and return the metadata :func:`read_dicom` gives.

    Cheap: the pixel data is neither read nor decoded, so a manifest can be checked (modality, frames, colour,
    geometry) without decoding images. Keys that depend on decoding (``value_range``, ``inverted``,
    ``padding_filled``) are absent; ``units`` is what :func:`read_dicom` returns with ``voi=False``. Whether the
    pixel data is present and decodable is only checked by :func:`read_dicom`.

    Args:
        path: the DICOM file.

    Returns:
        The metadata dict (never patient names, ids, birth dates, accession numbers or institution names).

    Raises:
        ImageReadError: missing, empty, truncated or non-DICOM file.

    Example:
        >>> meta = read_dicom_meta("../shared/data/dicom_samples_pydicom_data/emri_small.dcm")  # doctest: +SKIP
        >>> meta["num_frames"], meta["modality"]  # doctest: +SKIP
        (10, 'MR')
    """
    ds = read_dataset(path, header_only=True)
    return header_meta(ds, Path(path), None)
