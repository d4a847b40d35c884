"""Readers: DICOM files and series, raster images and arrays -> float32 pixels in physical units + metadata.

Every reader returns an :class:`ImageData` (``array`` float32, ``meta`` dict without patient identifiers) and fails
with ``ImageReadError`` (an ``InputError``, hence a ``ValueError``) naming the file, what was expected and the fix.
:func:`read_image` picks the reader from the path; :func:`read_dicom_meta` reads a DICOM header only.

Example:
    >>> from tl_radiology.io import read_image
    >>> ct = read_image("../shared/data/dicom_samples_pydicom_data/CT_small.dcm")  # doctest: +SKIP
    >>> ct.meta["units"]  # doctest: +SKIP
    'HU'
"""

from ._dicom import read_dicom, read_dicom_meta
from ._dispatch import read_image
from ._image import ImageData
from ._raster import read_array, read_raster
from ._series import read_dicom_series

__all__ = [
    "ImageData",
    "read_image",
    "read_dicom",
    "read_dicom_meta",
    "read_dicom_series",
    "read_raster",
    "read_array",
]
