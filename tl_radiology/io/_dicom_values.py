"""DICOM stored values to output values: the grayscale pipeline (modality and VOI LUTs, MONOCHROME1) and colour.

Grayscale: stored values -> modality LUT (``apply_modality_lut``: Rescale Slope/Intercept, or a Modality LUT
Sequence; HU for CT) -> CT air floor / padding fill -> optional VOI LUT / window (``apply_voi_lut``) -> MONOCHROME1
inversion, per frame when an enhanced multi-frame file carries per-frame LUTs. Colour goes through
``apply_color_lut`` (PALETTE COLOR) or ``convert_color_space`` (YBR_FULL, YBR_FULL_422).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, convert_color_space

from .._errors import ImageReadError
from ._common import one_line
from ._dicom_header import _float, _photometric, frame_value

# Bottom of the CT scale. Nothing in a patient is less dense than air (-1000 HU); values below -1024 HU are the
# scanner's padding outside the reconstruction circle (Toshiba writes -2048, GE stores -2000 + intercept -1024 =
# -3024 HU and names it in Pixel Padding Value).
AIR_FLOOR_HU = -1024.0


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
