"""Intensity transforms: physical units in, model input (float32 in [0, 1]) out.

CT is windowed (``Window``, ``MultiWindow``): a window of Hounsfield units is mapped linearly onto [0, 1] and
everything outside it is clipped, the way a radiologist's viewer shows it. Images without calibrated units
(radiographs, PNG, MR) are scaled by ``ScaleIntensity``.
"""

from __future__ import annotations

import numbers
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from .._errors import InputError
from .._options import look_up_option
from ..config import CT_WINDOWS
from ._base import Transform, as_float_image, as_gray_plane, check_number

__all__ = ["WINDOW_PRESETS", "Window", "MultiWindow", "ScaleIntensity"]


class WindowPreset(NamedTuple):
    """A named CT window in Hounsfield units: ``center`` (level, L) and ``width`` (W)."""

    center: float
    width: float


# Typical values from Radiopaedia, "Windowing (CT)" (https://radiopaedia.org/articles/windowing-ct), written
# there as W:width L:level. Institutions and vendors differ slightly; pass Window(center, width) for your own.
# Where Radiopaedia gives a range or two settings, the comment says which value is used here and why.
WINDOW_PRESETS = MappingProxyType({name: WindowPreset(*values) for name, values in CT_WINDOWS.items()})


class Window(Transform):
    """Map a CT window to [0, 1]: ``center - width/2`` becomes 0, ``center + width/2`` becomes 1, clipped.

    The map is linear, so ``center`` itself becomes 0.5. Values below the window become 0 (black), values above it
    1 (white). (DICOM's VOI LUT function shifts the ends by half a stored value; for Hounsfield units that is
    below one grey level and is not reproduced here.) The output has the input's shape: a slice stays ``H x W``,
    a stack of phases ``H x W x C`` is windowed channel by channel with the same window.

    Named presets (values in HU, from Radiopaedia "Windowing (CT)"; see ``WINDOW_PRESETS``):

    ============ ======= ====== ===================
    preset       center  width  HU shown (0 .. 1)
    ============ ======= ====== ===================
    lung         -600    1500   -1350 .. 150
    mediastinum  50      350    -125 .. 225
    bone         400     1800   -500 .. 1300
    brain        40      80     0 .. 80
    subdural     75      215    -32.5 .. 182.5
    stroke       40      40     20 .. 60
    liver        30      150    -45 .. 105
    abdomen      50      400    -150 .. 250
    soft_tissue  50      400    alias of abdomen
    ============ ======= ====== ===================

    Args:
        center: the window's centre (level) in the image's units, Hounsfield units for CT.
        width: the window's width, > 0.

    Raises:
        InputError: ``center`` is not a finite number (a preset name given here included: use ``Window.preset``)
            or ``width`` is not a positive number.

    Example:
        >>> import numpy as np
        >>> from tl_radiology.transforms import Window
        >>> Window(40, 80)(np.array([-1000.0, 0.0, 40.0, 80.0, 1000.0]))
        array([0. , 0. , 0.5, 1. , 1. ], dtype=float32)
        >>> Window.preset("lung")
        Window(center=-600.0, width=1500.0)
    """

    def __init__(self, center: float, width: float):
        if isinstance(center, str):
            raise InputError(
                f"Window: expected center to be a number in HU. Received: center={center!r}; for a named window "
                f"use Window.preset({center!r})."
            )
        self.center = check_number(center, "center", "Window")
        self.width = check_number(width, "width", "Window", positive=True)

    @classmethod
    def preset(cls, name: str) -> "Window":
        """The window of a named preset (see ``WINDOW_PRESETS``).

        Args:
            name: a preset name such as ``"lung"``; case and ``-``/``_`` are ignored.

        Returns:
            ``Window(center, width)`` with the preset's values.

        Raises:
            OptionError: unknown name, with close matches and the list of presets.

        Example:
            >>> from tl_radiology.transforms import Window
            >>> Window.preset("brain")
            Window(center=40.0, width=80.0)
        """
        center, width = look_up_option(
            name, WINDOW_PRESETS, what="window preset", fix="Or give the numbers: Window(center, width)."
        )
        return cls(center, width)

    @property
    def low(self) -> float:
        """The value mapped to 0."""
        return self.center - self.width / 2.0

    @property
    def high(self) -> float:
        """The value mapped to 1."""
        return self.center + self.width / 2.0

    def __call__(self, x) -> np.ndarray:
        """Window ``x`` (an array in HU, or ``ImageData``); returns a new float32 array of the same shape."""
        array = as_float_image(x, who="Window")
        out = (array - np.float32(self.low)) / np.float32(self.width)  # a new array: the input is untouched
        np.clip(out, 0.0, 1.0, out=out)
        return out

    def _params(self) -> dict[str, Any]:
        return {"center": self.center, "width": self.width}


def _as_window(item, index: int) -> Window:
    if isinstance(item, Window):
        return item
    if isinstance(item, str):
        return Window.preset(item)
    if (
        isinstance(item, (tuple, list))
        and len(item) == 2
        and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in item)
    ):
        return Window(item[0], item[1])
    raise InputError(
        f"MultiWindow: expected window {index} to be a preset name, a Window or a (center, width) pair. "
        f"Received: {item!r}."
    )


class MultiWindow(Transform):
    """Window one gray image several times, one window per channel: ``H x W`` -> ``H x W x K``.

    The usual way to give an ImageNet backbone three meaningful channels from one CT slice, for example lung,
    mediastinum and bone windows as R, G and B.

    Args:
        windows: one entry per output channel, in order: a preset name (``"lung"``), a ``Window`` or a
            ``(center, width)`` pair in HU.

    Raises:
        InputError: ``windows`` is empty or an entry is none of the above.
        OptionError: an unknown preset name.

    Example:
        >>> import numpy as np
        >>> from tl_radiology.transforms import MultiWindow
        >>> rgb = MultiWindow(("lung", "mediastinum", "bone"))
        >>> rgb(np.array([[-600.0, 50.0, 400.0]])).round(3)
        array([[[0.5  , 0.   , 0.   ],
                [0.933, 0.5  , 0.306],
                [1.   , 1.   , 0.5  ]]], dtype=float32)
    """

    def __init__(self, windows):
        if isinstance(windows, (str, Window)) or not hasattr(windows, "__iter__"):
            raise InputError(
                f"MultiWindow: expected windows to be a list (one window per channel), e.g. "
                f"('lung', 'mediastinum', 'bone'). Received: windows={windows!r}."
            )
        items = list(windows)
        if not items:
            raise InputError("MultiWindow: expected at least one window. Received: windows=[].")
        self.windows: tuple[Window, ...] = tuple(_as_window(item, i) for i, item in enumerate(items))

    def __call__(self, x) -> np.ndarray:
        """Window ``x`` (``H x W`` or ``H x W x 1`` in HU, or ``ImageData``) into a new ``H x W x K`` array."""
        array = as_gray_plane(x, who="MultiWindow", refusal=lambda shape: (
            f"MultiWindow expects one 2-D gray image (H x W or H x W x 1). Received shape {shape}; window a volume "
            "slice by slice, or use Window for multi-channel input."
        ))
        return np.stack([window(array) for window in self.windows], axis=-1)

    def _params(self) -> dict[str, Any]:
        return {"windows": [[w.center, w.width] for w in self.windows]}


_SCALE_MODES = ("minmax", "percentile", "range")


def _check_pair(value, name: str, *, lowest=None, highest=None) -> tuple[float, float]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise InputError(f"ScaleIntensity: expected {name} to be a (low, high) pair. Received: {name}={value!r}.")
    low = check_number(value[0], name + "[0]", "ScaleIntensity")
    high = check_number(value[1], name + "[1]", "ScaleIntensity")
    if not low < high:
        raise InputError(f"ScaleIntensity: expected {name} low < high. Received: {name}={tuple(value)!r}.")
    if (lowest is not None and low < lowest) or (highest is not None and high > highest):
        raise InputError(
            f"ScaleIntensity: expected {name} within [{lowest:g}, {highest:g}]. Received: {name}={tuple(value)!r}."
        )
    return low, high


class ScaleIntensity(Transform):
    """Scale an image without calibrated units (radiograph, PNG, MR) linearly to [0, 1], clipped.

    Modes:

    - ``"minmax"``: the image's own minimum -> 0, maximum -> 1 (per image, all channels together, so a colour
      image keeps its colour balance).
    - ``"percentile"``: the image's ``percentiles[0]``-th percentile -> 0 and ``percentiles[1]``-th -> 1 (default
      1 and 99), so a few very dark or bright pixels (labels, markers, collimator edges) do not squeeze the rest.
    - ``"range"``: fixed ``value_range=(low, high)`` -> (0, 1), the same for every image, e.g. ``(0, 255)`` for
      8-bit PNG or ``(0, 65535)`` for 16-bit; use it when absolute intensity carries meaning.

    A constant image (or percentiles that coincide) has no range to scale: the map then becomes a threshold at
    that value (0 at or below, 1 above), so a constant image becomes all zeros. There is no division by zero.

    Args:
        mode: ``"minmax"``, ``"percentile"`` or ``"range"``.
        percentiles: ``(lower, upper)`` in [0, 100], lower < upper; only with ``mode="percentile"``.
        value_range: ``(low, high)`` with low < high; required with ``mode="range"`` and only used there.

    Raises:
        OptionError: unknown ``mode``.
        InputError: a missing, misplaced or invalid ``percentiles`` / ``value_range``.

    Example:
        >>> import numpy as np
        >>> from tl_radiology.transforms import ScaleIntensity
        >>> ScaleIntensity("range", value_range=(0, 255))(np.array([0.0, 51.0, 255.0]))
        array([0. , 0.2, 1. ], dtype=float32)
        >>> ScaleIntensity("minmax")(np.full((2, 2), 7.0))
        array([[0., 0.],
               [0., 0.]], dtype=float32)
    """

    def __init__(self, mode: str = "minmax", *, percentiles=None, value_range=None):
        self.mode = look_up_option(mode, _SCALE_MODES, what="intensity scaling mode")
        if percentiles is not None and self.mode != "percentile":
            raise InputError(
                f"ScaleIntensity: percentiles is only used with mode='percentile'. Received: mode={self.mode!r}, "
                f"percentiles={percentiles!r}; drop it or set mode='percentile'."
            )
        if value_range is not None and self.mode != "range":
            raise InputError(
                f"ScaleIntensity: value_range is only used with mode='range'. Received: mode={self.mode!r}, "
                f"value_range={value_range!r}; drop it or set mode='range'."
            )
        self.percentiles = None
        self.value_range = None
        if self.mode == "percentile":
            self.percentiles = _check_pair((1.0, 99.0) if percentiles is None else percentiles, "percentiles",
                                           lowest=0.0, highest=100.0)
        elif self.mode == "range":
            if value_range is None:
                raise InputError(
                    "ScaleIntensity: mode='range' needs value_range=(low, high), e.g. (0, 255) for 8-bit or "
                    "(0, 65535) for 16-bit images."
                )
            self.value_range = _check_pair(value_range, "value_range")

    def __call__(self, x) -> np.ndarray:
        """Scale ``x`` (any shape, or ``ImageData``); returns a new float32 array of the same shape."""
        array = as_float_image(x, who="ScaleIntensity")
        if self.mode == "minmax":
            low, high = float(array.min()), float(array.max())
        elif self.mode == "percentile":
            low, high = (float(v) for v in np.percentile(array, self.percentiles))
        else:
            low, high = self.value_range
        if high <= low:  # nothing to stretch: a threshold, the limit of the linear map as the range shrinks
            return (array > low).astype(np.float32)
        out = (array - np.float32(low)) / np.float32(high - low)
        np.clip(out, 0.0, 1.0, out=out)
        return out.astype(np.float32, copy=False)

    def _params(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "percentiles": None if self.percentiles is None else list(self.percentiles),
            "value_range": None if self.value_range is None else list(self.value_range),
        }
