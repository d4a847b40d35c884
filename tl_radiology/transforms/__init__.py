"""Transforms: images in physical units (HU for CT) -> model input, float32 in [0, 1] per channel, ``H x W x C``.

Each transform is a small callable: parameters are checked when it is built, a call returns a new float32 array
and never changes its input, and ``get_config()`` returns a JSON-able dict that ``transform_from_config``
turns back into the same transform (a saved run re-applies its exact preprocessing; the dict is also part of the
case-cache key). ``Compose`` chains them.

- ``Window(center, width)`` / ``Window.preset("lung")``: a CT window -> [0, 1]; presets in ``WINDOW_PRESETS``.
- ``MultiWindow(("lung", "mediastinum", "bone"))``: one window per channel, ``H x W`` -> ``H x W x K``.
- ``ScaleIntensity(mode)``: ``"minmax"``, ``"percentile"`` or fixed ``"range"`` -> [0, 1] for non-CT images.
- ``GrayToRGB()``: ``H x W`` -> ``H x W x 3`` by replication.
- ``StackChannels(names)``: phases or planes -> channels, with shape and geometry checks.
- ``ExtractPlanes(size, spacing_mm)``: axial/coronal/sagittal patches through a point of a volume.
- ``Resize(size, mode="stretch" | "pad")``: to a fixed size, values kept.

Example:
    >>> import numpy as np
    >>> from tl_radiology.transforms import Compose, MultiWindow, Resize
    >>> ct_slice = np.full((512, 512), 40.0, np.float32)  # soft tissue, in HU
    >>> to_rgb = Compose([MultiWindow(("lung", "mediastinum", "bone")), Resize(224)])
    >>> to_rgb(ct_slice).shape
    (224, 224, 3)
"""

from ._base import Compose, transform_from_config
from ._channels import GrayToRGB, StackChannels
from ._intensity import WINDOW_PRESETS, MultiWindow, ScaleIntensity, Window
from ._planes import ExtractPlanes
from ._resize import Resize

__all__ = [
    "Window",
    "WINDOW_PRESETS",
    "MultiWindow",
    "ScaleIntensity",
    "GrayToRGB",
    "StackChannels",
    "ExtractPlanes",
    "Resize",
    "Compose",
    "transform_from_config",
]
