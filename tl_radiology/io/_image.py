"""The value every reader returns: pixels in physical units plus non-identifying metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ImageData"]


@dataclass(frozen=True)
class ImageData:
    """An image or volume read from disk.

    Attributes:
        array: float32 pixels in physical units (Hounsfield units for CT). ``H x W`` for a gray image,
            ``H x W x 3`` for colour, ``F x H x W`` for all frames of a multi-frame file, ``Z x H x W`` for a
            series volume.
        meta: non-identifying metadata (modality, units, pixel_spacing, image_position, image_orientation,
            photometric, num_frames, window, case_id, and for volumes spacing, slice_positions, gantry_tilt_deg,
            uneven_spacing). Never patient names, ids or birth dates.

    Example:
        >>> img = ImageData(np.zeros((4, 4), np.float32), {"modality": "CT", "units": "HU"})
        >>> img.shape
        (4, 4)
    """

    array: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)
