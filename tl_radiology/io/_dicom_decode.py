"""Decoding a DICOM file's pixel data with pydicom's decoder plugins, naming the decoder or package that is missing.

Compressed transfer syntaxes are decoded by pylibjpeg with pylibjpeg-libjpeg / pylibjpeg-openjpeg and pydicom's own
RLE decoder; video syntaxes and syntaxes without a decoder are refused with the tool that converts them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom import uid as dicom_uid
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder

from .._errors import ImageReadError
from ._common import one_line
from ._dicom_file import _corrupt

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
