"""Recognising a DICOM file by its content and parsing it with pydicom, every failure named as an ``ImageReadError``.

A file is DICOM when it has the ``DICM`` marker at byte 128 or starts with a raw data set (old ACR-NEMA style
exports); :func:`read_dataset` also refuses empty, truncated and cut-off files and fills in the Transfer Syntax UID
of a data set written without file meta.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom import uid as dicom_uid
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from .._errors import ImageReadError
from ._common import one_line, require_file, sniff_kind

__all__ = ["DICOM_SUFFIXES", "is_dicom_file", "read_dataset"]

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


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
