"""DICOM header values: per-frame lookup through enhanced multi-frame functional groups, and non-identifying metadata.

:func:`frame_value` reads an attribute for one frame (per-frame group, shared group, then top level);
:func:`header_meta` builds the ``meta`` dict the DICOM readers return (never patient names, ids, dates, accession
numbers or institution names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydicom import uid as dicom_uid
from pydicom.dataset import Dataset

from ._common import base_meta, case_id_for, file_sha256

__all__ = ["frame_value", "header_meta"]

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
