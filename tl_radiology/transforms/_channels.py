"""Channel transforms: gray to three channels, and phases or planes stacked as channels."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._errors import InputError
from ._base import Transform, as_float_image, as_gray_plane, check_number, format_shape

__all__ = ["GrayToRGB", "StackChannels"]


class GrayToRGB(Transform):
    """Replicate a gray image into three identical channels: ``H x W`` or ``H x W x 1`` -> ``H x W x 3``.

    ImageNet weights expect three channels; copying the gray image into each is the simplest way to feed them
    (the model's input adapter can do the same, or learn a projection). An image that already has three channels
    is returned as a float32 copy.

    Raises:
        InputError: (when called) the image is not 2-D and has a channel count other than 1 or 3.

    Example:
        >>> import numpy as np
        >>> from tl_radiology.transforms import GrayToRGB
        >>> GrayToRGB()(np.zeros((4, 5))).shape
        (4, 5, 3)
    """

    def __call__(self, x) -> np.ndarray:
        """Return a new float32 ``H x W x 3`` array."""
        array = as_float_image(x, who="GrayToRGB")
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3 or array.shape[-1] not in (1, 3):
            raise InputError(
                f"GrayToRGB expects H x W, H x W x 1 or H x W x 3. Received shape {format_shape(array.shape)}; "
                f"pick or combine channels first (e.g. a MultiWindow for CT)."
            )
        if array.shape[-1] == 3:
            return array.copy()
        return np.repeat(array, 3, axis=-1)

    def _params(self) -> dict[str, Any]:
        return {}


def _get_meta(item) -> dict | None:
    meta = getattr(item, "meta", None)
    return meta if isinstance(meta, dict) else None


def _vector(value, length: int, what: str, name: str) -> np.ndarray:
    try:
        vec = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        vec = np.empty(0)
    if vec.size != length or not np.isfinite(vec).all():
        raise InputError(
            f"StackChannels: {name} has meta[{what!r}]={value!r}; expected {length} finite numbers "
            f"(as tl_radiology.io writes it)."
        )
    return vec


def _fmt(vec) -> str:
    return "(" + ", ".join(f"{v:g}" for v in vec) + ")"


class StackChannels(Transform):
    """Stack several 2-D images (CT phases, views, planes) as the channels of one ``H x W x N`` image.

    Triphasic CT as three channels (native, arterial, delayed) is the classic case. The images must already be
    on one pixel grid: the shapes are checked, and when the images are ``tl_radiology.io.ImageData`` their
    geometry is checked too (same pixel spacing, same orientation, image positions within ``atol_mm``), naming the
    images that disagree and by how much. A check whose metadata only some images carry fails rather than being
    skipped; pass the plain arrays (``image.array``) to stack without it.

    Args:
        names: one name per image (e.g. ``("native", "arterial", "delayed")``), used in error messages and to
            check the count of images; default ``None``: any count, named ``image 0``, ``image 1``, ...
        atol_mm: the largest allowed distance in mm between the images' ``image_position`` (>= 0).
        check_geometry: set ``False`` for images that are not meant to share a plane, such as axial, coronal and
            sagittal reformats, whose orientations differ by design; shapes are still checked.

    Raises:
        InputError: names that are empty or repeated, or a negative ``atol_mm``.

    Example:
        >>> import numpy as np
        >>> from tl_radiology.transforms import StackChannels
        >>> stack = StackChannels(names=("native", "arterial", "delayed"))
        >>> stack([np.zeros((64, 64)), np.ones((64, 64)), np.ones((64, 64))]).shape
        (64, 64, 3)
    """

    def __init__(self, names=None, atol_mm: float = 1.0, check_geometry: bool = True):
        if names is not None:
            if isinstance(names, (str, bytes)) or not hasattr(names, "__iter__"):
                raise InputError(f"StackChannels: expected names to be a list of strings. Received: names={names!r}.")
            names = list(names)
            bad = [n for n in names if not isinstance(n, str) or not n.strip()]
            if bad or not names:
                raise InputError(
                    f"StackChannels: expected names to be non-empty strings, one per image. Received: names={names!r}."
                )
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise InputError(f"StackChannels: names must be unique. Received {repeated} more than once.")
            names = tuple(names)
        self.names = names
        self.atol_mm = check_number(atol_mm, "atol_mm", "StackChannels")
        if self.atol_mm < 0:
            raise InputError(f"StackChannels: expected atol_mm >= 0. Received: atol_mm={atol_mm!r}.")
        if not isinstance(check_geometry, bool):
            raise InputError(
                f"StackChannels: expected check_geometry to be True or False. "
                f"Received: check_geometry={check_geometry!r}."
            )
        self.check_geometry = check_geometry

    def __call__(self, images) -> np.ndarray:
        """Stack ``images`` (a list of 2-D arrays or ``ImageData``) into a new float32 ``H x W x N`` array.

        Raises:
            InputError: a wrong number of images, an image that is not 2-D, shapes that differ, or (for
                ``ImageData``) geometry that differs.
        """
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = list(images)  # N x H x W: N images
        elif isinstance(images, np.ndarray) or hasattr(images, "array") or not isinstance(images, (list, tuple)):
            shape = getattr(images, "shape", None)
            raise InputError(
                f"StackChannels expects a list of 2-D images, one per channel. Received a single "
                f"{type(images).__name__}" + (f" of shape {format_shape(shape)}" if shape is not None else "")
                + "; wrap the images in a list (use GrayToRGB to replicate one image)."
            )
        images = list(images)
        if self.names is not None and len(images) != len(self.names):
            raise InputError(
                f"StackChannels(names={list(self.names)}) received {len(images)} image(s); pass one image per name, "
                f"in that order."
            )
        if not images:
            raise InputError("StackChannels received an empty list; pass at least one image.")
        if self.names:
            label = [f"image {n!r}" for n in self.names]
        else:
            label = [f"image {i}" for i in range(len(images))]

        arrays = []
        for name, item in zip(label, images):
            arrays.append(as_gray_plane(item, who=f"StackChannels ({name})", refusal=lambda shape: (
                f"StackChannels: {name} has shape {shape}; it stacks 2-D gray images (H x W), so pick one slice, "
                "frame or channel first."
            )))
        for name, array in zip(label[1:], arrays[1:]):
            if array.shape != arrays[0].shape:
                raise InputError(
                    f"StackChannels: {name} is {format_shape(array.shape)} but {label[0]} is "
                    f"{format_shape(arrays[0].shape)}; resample or register the images first (Resize, or a "
                    f"registration tool) so they share one pixel grid."
                )
        if self.check_geometry:
            self._check_geometry(label, images)
        return np.stack(arrays, axis=-1)  # a new array, float32 like its parts

    def _check_geometry(self, names, images) -> None:
        metas = [_get_meta(item) for item in images]
        for key in ("pixel_spacing", "image_orientation", "image_position"):
            have = [m is not None and m.get(key) is not None for m in metas]
            if not any(have):
                continue
            if not all(have):
                with_key = names[have.index(True)]
                without = names[have.index(False)]
                raise InputError(
                    f"StackChannels: {with_key} has {key} but {without} has none, so their "
                    f"alignment cannot be checked; pass plain arrays (image.array) to stack without the check."
                )
            length = {"pixel_spacing": 2, "image_orientation": 6, "image_position": 3}[key]
            vectors = [_vector(m[key], length, key, n) for m, n in zip(metas, names)]
            ref, ref_name = vectors[0], names[0]
            for vec, name in zip(vectors[1:], names[1:]):
                if key == "pixel_spacing":
                    diff = float(np.max(np.abs(vec - ref)))
                    if not np.allclose(vec, ref, rtol=1e-3, atol=1e-4):
                        raise InputError(
                            f"StackChannels: {name} has pixel spacing {_fmt(vec)} mm but {ref_name} has "
                            f"{_fmt(ref)} mm (differs by {diff:.4g} mm); resample the images to one grid first."
                        )
                elif key == "image_orientation":
                    angle = max(_angle_deg(vec[:3], ref[:3]), _angle_deg(vec[3:], ref[3:]))
                    if angle > 0.1:
                        raise InputError(
                            f"StackChannels: {name} is oriented {_fmt(vec)} but {ref_name} is "
                            f"{_fmt(ref)} (direction cosines {angle:.3g} degrees apart); stack images of one plane, "
                            f"or pass check_geometry=False for planes such as axial/coronal/sagittal reformats."
                        )
                else:
                    distance = float(np.linalg.norm(vec - ref))
                    if distance > self.atol_mm:
                        raise InputError(
                            f"StackChannels: {name} is {distance:.3g} mm away from {ref_name} "
                            f"(image_position {_fmt(vec)} vs {_fmt(ref)}, atol_mm={self.atol_mm:g}); register the "
                            f"images or pick the matching slices."
                        )

    def _params(self) -> dict[str, Any]:
        return {
            "names": None if self.names is None else list(self.names),
            "atol_mm": self.atol_mm,
            "check_geometry": self.check_geometry,
        }


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 180.0
    cos = float(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))
    return math.degrees(math.acos(cos))
