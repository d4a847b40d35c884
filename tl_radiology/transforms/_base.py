"""What every transform shares: the config round trip, input checks, and ``Compose``.

A transform is a small callable. Its constructor checks the parameters, ``__call__`` returns a new float32 array
and never changes its input, and ``get_config()`` returns a JSON-able dict whose ``"class"`` entry names the
transform. That dict is part of the on-disk case-cache key and of a run's ``recipe.json``, so it holds exactly the
constructor's arguments in a canonical form (floats as floats, sequences as lists): two transforms that compute
the same thing have the same config, and ``transform_from_config`` rebuilds the transform from it.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Mapping

import numpy as np

from .._errors import InputError
from .._options import look_up_option

__all__ = ["Transform", "Compose", "transform_from_config"]

# Every Transform subclass, by class name, so a saved config can be rebuilt (filled by __init_subclass__).
_REGISTRY: dict[str, type] = {}


class Transform:
    """Base of the toolkit's transforms: a config round trip and a readable ``repr``.

    Subclasses return their canonical constructor arguments from ``_params()`` and implement ``__call__``. They
    register themselves when defined, which is what ``transform_from_config`` looks up: the toolkit's transforms
    by class name (``"Window"``), others by module and name (``"my_lab.transforms.Denoise"``).
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # The toolkit's own transforms are saved by bare class name; a user's subclass by module and name, so a
        # class of the same name elsewhere never replaces one of ours when a saved recipe is rebuilt.
        own = cls.__module__.startswith(__name__.rpartition(".")[0] + ".")
        cls._config_name = cls.__name__ if own else f"{cls.__module__}.{cls.__qualname__}"
        if not cls.__name__.startswith("_"):
            _REGISTRY[cls._config_name] = cls

    def _params(self) -> dict[str, Any]:  # pragma: no cover - every concrete subclass overrides it
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """The transform as a JSON-able dict: ``{"class": <class name>, <constructor arguments>...}``.

        Returns:
            A new dict; ``transform_from_config(t.get_config())`` computes exactly what ``t`` computes.
        """
        return {"class": type(self)._config_name, **self._params()}

    @classmethod
    def _from_params(cls, params: dict[str, Any]):
        return cls(**params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(repr(self.get_config()))


def transform_from_config(config: Mapping[str, Any]) -> Transform:
    """Rebuild a transform (a ``Compose`` included) from what its ``get_config()`` returned.

    Args:
        config: a dict with a ``"class"`` entry naming a transform and the constructor arguments, as written by
            ``get_config()`` (possibly after a JSON round trip, which turns tuples into lists).

    Returns:
        A new transform equal to the one that wrote the config.

    Raises:
        InputError: the config is not a dict with a ``"class"`` entry, or its arguments are rejected.
        OptionError: the class name is not a known transform (with close matches).

    Example:
        >>> from tl_radiology.transforms import transform_from_config
        >>> w = transform_from_config({"class": "Window", "center": 40.0, "width": 80.0})
        >>> w
        Window(center=40.0, width=80.0)
    """
    if not isinstance(config, Mapping) or "class" not in config:
        raise InputError(
            f"Expected a transform config: a dict with a 'class' entry, as written by get_config(). "
            f"Received: {config!r}."
        )
    cls = look_up_option(config["class"], _REGISTRY, what="transform class")
    params = {k: v for k, v in config.items() if k != "class"}
    try:
        return cls._from_params(params)
    except TypeError as exc:  # an unknown or missing argument: say which config it came from
        raise InputError(
            f"The config of {config['class']} does not match its arguments ({exc}). Received: {dict(config)!r}; "
            f"write it with {config['class']}(...).get_config()."
        ) from None


# ----------------------------------------------------------------------------------------------------------------
# Input and parameter checks shared by the transforms.


def as_float_image(x, *, who: str) -> np.ndarray:
    """``x`` (an array, array-like or ``ImageData``) as a float32 array, refusing non-numeric or non-finite values.

    The result may be ``x`` itself when it already is a float32 array: callers must not write into it.
    """
    array = getattr(x, "array", x)  # ImageData carries its pixels in .array
    try:
        array = np.asarray(array)
    except Exception as exc:  # ragged lists and the like
        raise InputError(f"{who} expects an image array. Received {type(x).__name__} ({exc}).") from None
    if array.dtype.kind not in "biuf":
        raise InputError(
            f"{who} expects a numeric image array. Received an array of dtype {array.dtype}; "
            f"read the image with tl_radiology.io first."
        )
    if array.size == 0:
        raise InputError(f"{who} expects a non-empty image. Received shape {array.shape}.")
    array = array.astype(np.float32, copy=False)
    finite = np.isfinite(array)
    if not finite.all():
        raise InputError(
            f"{who} received an image with {int(array.size - finite.sum())} NaN/inf values; "
            f"replace or mask them before transforming (for example with numpy.nan_to_num)."
        )
    return array


def as_gray_plane(x, *, who: str, refusal) -> np.ndarray:
    """``x`` as one 2-D float32 gray image (an ``H x W x 1`` image loses its channel axis), as :func:`as_float_image`.

    Any other shape is refused with ``InputError(refusal(shape))``, ``shape`` formatted as ``'64x60x3'``, so each
    transform says in its own words what to do instead.
    """
    array = as_float_image(x, who=who)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise InputError(refusal(format_shape(array.shape)))
    return array


def check_number(value, name: str, who: str, *, positive: bool = False) -> float:
    """``value`` as a finite float (strictly positive if asked), or an InputError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(float(value)):
        raise InputError(f"{who}: expected {name} to be a finite number. Received: {name}={value!r}.")
    value = float(value)
    if positive and value <= 0:
        raise InputError(f"{who}: expected {name} > 0. Received: {name}={value!r}.")
    return value


def check_int(value, name: str, who: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int in [minimum, maximum], or an InputError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{who}: expected {name} to be an integer. Received: {name}={value!r}.")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise InputError(f"{who}: expected {name} to be {bound}. Received: {name}={value!r}.")
    return value


def format_shape(shape) -> str:
    """``(64, 60)`` -> ``'64x60'``, the way radiologists say image sizes."""
    return "x".join(str(int(s)) for s in shape)


# ----------------------------------------------------------------------------------------------------------------


class Compose(Transform):
    """Apply transforms one after the other.

    Extra positional and keyword arguments of a call go to the first transform, so a pipeline can start with
    ``ExtractPlanes`` (called as ``extract(volume, center)``) or ``StackChannels`` (called with a list of images).

    Args:
        transforms: the steps, in order. Each must have ``get_config()`` (every transform of this package has),
            because the pipeline's config is part of the case-cache key and of the saved recipe; a plain function
            has no config, so apply it outside the ``Compose``.

    Raises:
        InputError: ``transforms`` is empty or a step is not a transform.

    Example:
        >>> import numpy as np
        >>> from tl_radiology.transforms import Compose, GrayToRGB, Resize, Window
        >>> hu_slice = np.full((512, 512), -1000.0, np.float32)  # air
        >>> pipeline = Compose([Window.preset("lung"), Resize(224), GrayToRGB()])
        >>> pipeline(hu_slice).shape
        (224, 224, 3)
    """

    def __init__(self, transforms):
        if isinstance(transforms, (str, bytes)) or not hasattr(transforms, "__iter__"):
            raise InputError(
                f"Compose: expected transforms to be a list of transforms. Received: transforms={transforms!r}."
            )
        steps = list(transforms)
        if not steps:
            raise InputError("Compose: expected at least one transform. Received: transforms=[].")
        for i, step in enumerate(steps):
            if not callable(step) or not callable(getattr(step, "get_config", None)):
                raise InputError(
                    f"Compose: step {i} ({step!r}) is not a transform with get_config(); the pipeline's config is "
                    f"part of the cache key, so apply plain functions outside the Compose."
                )
        self.transforms: tuple[Callable, ...] = tuple(steps)

    def __call__(self, x, *args, **kwargs) -> np.ndarray:
        first, *rest = self.transforms
        x = first(x, *args, **kwargs)
        for step in rest:
            x = step(x)
        return x

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, index):
        return self.transforms[index]

    def _params(self) -> dict[str, Any]:
        return {"transforms": [step.get_config() for step in self.transforms]}

    @classmethod
    def _from_params(cls, params: dict[str, Any]):
        configs = params.pop("transforms", None)
        if params:
            raise TypeError(f"unexpected argument(s) {sorted(params)}")
        if not isinstance(configs, list):
            raise InputError(
                f"Compose config: expected 'transforms' to be a list of transform configs. Received: {configs!r}."
            )
        return cls([transform_from_config(c) for c in configs])

    def __repr__(self) -> str:
        inner = "".join(f"\n    {step!r}," for step in self.transforms)
        return f"Compose([{inner}\n])"
