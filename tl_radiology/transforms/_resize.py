"""Resizing to the backbone's input size, stretching or keeping the aspect ratio."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from skimage.transform import resize as _sk_resize

from .._errors import InputError
from .._options import look_up_option
from ._base import Transform, as_float_image, check_int, check_number, format_shape

__all__ = ["Resize"]

_MODES = ("stretch", "pad")


class Resize(Transform):
    """Resize an ``H x W`` or ``H x W x C`` image to a fixed size, keeping its values' range.

    ``"stretch"`` scales rows and columns independently to the target size. ``"pad"`` keeps the aspect ratio:
    the image is scaled until its longer side fits, then centred and padded with ``fill`` to the target size
    (an odd number of padding rows or columns puts the extra one at the bottom or right).

    Why the mode matters: image shape can leak the label. In the Hannover COVID-19 chest X-ray set every AP
    (bedside) image is exactly 640x524 while PA heights vary, so a model that sees native sizes learns the
    projection from the shape alone; every image must be resized to one fixed size. ``"pad"`` keeps the anatomy
    undistorted, but the height of its padding bands still encodes the original aspect ratio; ``"stretch"`` leaves
    no band but squashes AP and PA images by different amounts. Neither removes the cue completely: when the
    label correlates with the shape, check a model against it (e.g. compare to a centre crop).

    The resize is ``skimage.transform.resize`` with ``preserve_range=True``: values are not rescaled to [0, 1] by
    the resize itself (Hounsfield units stay Hounsfield units), a Gaussian anti-aliasing filter is applied when
    shrinking (with ``order > 0``), and the output is clipped to the input's range (higher orders would
    overshoot). Channels are resized independently with the same geometry; the last axis of a 3-D input is always
    the channel axis.

    Args:
        size: the output size: one int for a square, or ``(height, width)``.
        mode: ``"stretch"`` (default) or ``"pad"``.
        order: the spline order of the interpolation, 0 (nearest, for label maps) to 5; default 1 (linear).
        fill: the padding value in ``"pad"`` mode; ``None`` (default) uses the image's minimum (air in CT, the
            darkest background in a radiograph; 0 after windowing). Ignored by ``"stretch"``.

    Raises:
        InputError: a size that is not one or two positive ints, an order outside 0..5, a non-numeric fill.
        OptionError: unknown ``mode``.

    Example:
        >>> import numpy as np
        >>> from tl_radiology.transforms import Resize
        >>> ap = np.ones((524, 640), np.float32)  # an AP radiograph's shape in the Hannover set
        >>> out = Resize(224, mode="pad", fill=0.0)(ap)
        >>> out.shape  # 640 -> 224 wide, 524 -> 183 high, 20 rows of padding above, 21 below
        (224, 224)
        >>> float(out[:20].max()), float(out[20:203].min()), float(out[203:].max())
        (0.0, 1.0, 0.0)
    """

    def __init__(self, size, mode: str = "stretch", order: int = 1, fill: float | None = None):
        if isinstance(size, numbers.Integral) and not isinstance(size, bool):
            size = (size, size)
        if isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2:
            raise InputError(f"Resize: expected size to be an int or a (height, width) pair. Received: size={size!r}.")
        self.size = (check_int(size[0], "size[0] (height)", "Resize"), check_int(size[1], "size[1] (width)", "Resize"))
        self.mode = look_up_option(mode, _MODES, what="resize mode")
        self.order = check_int(order, "order", "Resize", minimum=0, maximum=5)
        self.fill = None if fill is None else check_number(fill, "fill", "Resize")

    def __call__(self, x) -> np.ndarray:
        """Resize ``x`` (``H x W`` or ``H x W x C``, or ``ImageData``); returns a new float32 array."""
        array = as_float_image(x, who="Resize")
        if array.ndim not in (2, 3):
            raise InputError(
                f"Resize expects H x W or H x W x C. Received shape {format_shape(array.shape)}; resize a volume "
                f"slice by slice, or use ExtractPlanes."
            )
        height, width = self.size
        if self.mode == "stretch":
            return self._resize(array, height, width)
        scale = min(height / array.shape[0], width / array.shape[1])
        inner_h = min(height, max(1, int(round(array.shape[0] * scale))))
        inner_w = min(width, max(1, int(round(array.shape[1] * scale))))
        inner = self._resize(array, inner_h, inner_w)
        fill = float(array.min()) if self.fill is None else self.fill
        out = np.full((height, width) + array.shape[2:], fill, dtype=np.float32)
        top, left = (height - inner_h) // 2, (width - inner_w) // 2
        out[top:top + inner_h, left:left + inner_w] = inner
        return out

    def _resize(self, array: np.ndarray, height: int, width: int) -> np.ndarray:
        if (height, width) == array.shape[:2]:
            return array.copy()
        shrinking = height < array.shape[0] or width < array.shape[1]
        out = _sk_resize(
            array,
            (height, width) + array.shape[2:],
            order=self.order,
            mode="edge",
            preserve_range=True,
            anti_aliasing=bool(shrinking and self.order > 0),
        )
        return np.asarray(out, dtype=np.float32)

    def _params(self) -> dict[str, Any]:
        return {"size": list(self.size), "mode": self.mode, "order": self.order, "fill": self.fill}
