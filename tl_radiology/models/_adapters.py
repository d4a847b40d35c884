"""Input adapters: how C-channel radiology inputs meet backbones pretrained on 3-channel photographs.

- ``replicate``: a gray image copied into the three channels (3-channel inputs pass unchanged). Nothing learned;
  the pretrained first convolution sees what it always saw when the photograph was gray.
- ``projection``: a learned 1x1 convolution from C channels to 3, starting from a plain mapping (gray copied to
  all three, 3 channels unchanged, N channels averaged cyclically), trained with the head.
- ``stem``: the backbone itself takes C channels; its first convolution's pretrained kernel is adapted
  (:func:`adapt_input_conv`: summed over RGB for 1 channel, repeated cyclically and rescaled by 3/N for N).
  Costs nothing at run time and keeps every pretrained weight in use.
"""

from __future__ import annotations

import numpy as np

import keras

from .._errors import InputError
from ..backbones import build_backbone, get_backbone
from ..config import ADAPTERS
from ._layers import spread_channels

__all__ = ["ADAPTERS", "adapt_input_conv", "apply_adapter", "build_stem_backbone", "transfer_adapted_weights"]



def adapt_input_conv(kernel, num_channels: int) -> np.ndarray:
    """Adapt a first-convolution kernel trained on 3 input channels to ``num_channels`` input channels.

    The idea of timm's ``adapt_input_conv``, written for Keras' channels-last kernels ``(kh, kw, 3, filters)``:

    - 1 channel: the kernel summed over its three input channels, so a gray image gives exactly the response the
      original kernel gives to that image replicated into RGB;
    - 3 channels: unchanged (a copy);
    - N channels: the three input-channel slices repeated cyclically to N (channel ``i`` takes slice ``i % 3``)
      and scaled by 3/N, so the response keeps its magnitude.

    Args:
        kernel: array ``(kh, kw, 3, filters)``.
        num_channels: the new number of input channels (>= 1).

    Returns:
        A new float array ``(kh, kw, num_channels, filters)``; the input is not modified.

    Raises:
        InputError: the kernel is not 4-D with 3 input channels, or ``num_channels`` < 1.

    Example:
        >>> adapt_input_conv(np.ones((3, 3, 3, 8)), 1).shape
        (3, 3, 1, 8)
    """
    kernel = np.asarray(kernel)
    if kernel.ndim != 4 or kernel.shape[2] != 3:
        raise InputError(
            f"adapt_input_conv expects a kernel (kh, kw, 3, filters); received shape {kernel.shape}."
        )
    if not isinstance(num_channels, (int, np.integer)) or num_channels < 1:
        raise InputError(f"adapt_input_conv expects num_channels >= 1; received {num_channels!r}.")
    if num_channels == 3:
        return kernel.copy()
    if num_channels == 1:
        return kernel.sum(axis=2, keepdims=True)
    return kernel[:, :, np.arange(num_channels) % 3, :] * (3.0 / num_channels)


def _projection_init(num_channels: int) -> np.ndarray:
    """Kernel (1, 1, C, 3) of the projection adapter at the start: a plain mapping of the inputs to 3 channels."""
    kernel = np.zeros((1, 1, num_channels, 3), dtype=np.float32)
    if num_channels < 3:
        for out in range(3):  # 1 channel: replicate; 2 channels: (c0, c1, c0)
            kernel[0, 0, out % num_channels, out] = 1.0
    else:
        for out in range(3):  # each output averages the inputs assigned to it cyclically (identity for 3)
            inputs = np.arange(out, num_channels, 3)
            kernel[0, 0, inputs, out] = 1.0 / len(inputs)
    return kernel


def apply_adapter(inputs, adapter: str, num_channels: int):
    """Add the ``replicate`` or ``projection`` adapter (a layer named ``"adapter"``) and return 3-channel output."""
    if adapter == "replicate":
        if num_channels == 1:
            return keras.layers.Concatenate(axis=-1, name="adapter")([inputs, inputs, inputs])
        if num_channels == 3:
            return keras.layers.Identity(name="adapter")(inputs)
        raise InputError(
            f"adapter='replicate' copies 1 gray channel to 3 (or passes 3 through); received {num_channels} "
            "channels. Use adapter='projection' (a learned 1x1 convolution to 3 channels) or adapter='stem' "
            "(the first convolution adapted to the channels)."
        )
    if adapter == "projection":
        layer = keras.layers.Conv2D(3, 1, use_bias=True, name="adapter")
        outputs = layer(inputs)
        layer.kernel.assign(_projection_init(num_channels))
        return outputs
    raise InputError(f"apply_adapter handles 'replicate' and 'projection'; received {adapter!r}.")


def _weighted_leaf_layers(model) -> list:
    """Layers holding weights, in build order, looking inside nested models (ConvNeXt's stem is a Sequential)."""
    leaves = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            leaves.extend(_weighted_leaf_layers(layer))
        elif layer.weights:
            leaves.append(layer)
    return leaves


def _first_conv(layers):
    for layer in layers:
        if isinstance(layer, keras.layers.Conv2D):
            return layer
    raise InputError("The backbone has no Conv2D layer to adapt; adapter='stem' needs one (use 'projection').")


def _adapt_normalization(weights, num_channels: int):
    """Carry a Normalization layer's per-channel mean/variance over to ``num_channels`` channels.

    Its per-channel affine map (scale 1/std, offset -mean/std) is spread like the preprocessing constants
    (mean for 1 channel, cyclic for N) and turned back into a mean and a variance.
    """
    mean, variance = (np.asarray(w, dtype=np.float64) for w in weights[:2])
    scale = 1.0 / np.maximum(np.sqrt(variance), keras.backend.epsilon())
    offset = -mean * scale
    new_scale = spread_channels(scale, num_channels)
    new_offset = spread_channels(offset, num_channels)
    new_mean = -new_offset / new_scale
    new_variance = (1.0 / new_scale) ** 2
    dtype = np.asarray(weights[0]).dtype
    return [new_mean.astype(dtype), new_variance.astype(dtype)] + list(weights[2:])


def transfer_adapted_weights(source, target, num_channels: int) -> None:
    """Copy a 3-channel backbone's weights into the same backbone built for ``num_channels`` input channels.

    The first convolution (found by structure: the first ``Conv2D`` in build order) gets
    :func:`adapt_input_conv`; a per-channel ``Normalization`` before it (EfficientNet) is spread the same way;
    every other weight is copied unchanged.

    Args:
        source: the backbone built with 3 input channels and its weights.
        target: the same backbone built with ``num_channels`` input channels.
        num_channels: the target's input channels.

    Raises:
        RuntimeError: the two models do not have the same weighted layers (not the same architecture).
    """
    source_layers = _weighted_leaf_layers(source)
    target_layers = _weighted_leaf_layers(target)
    if len(source_layers) != len(target_layers):
        raise RuntimeError(
            f"Cannot adapt {source.name}: {len(source_layers)} weighted layers with 3 channels but "
            f"{len(target_layers)} with {num_channels}; the two builds differ."
        )
    first = _first_conv(target_layers)
    if first.kernel.shape[2] != num_channels:
        raise RuntimeError(
            f"The first convolution {first.name} of {target.name} takes {first.kernel.shape[2]} channels, "
            f"expected {num_channels}."
        )
    for src, dst in zip(source_layers, target_layers):
        if type(src) is not type(dst):
            raise RuntimeError(f"Layer mismatch while adapting {source.name}: {src.name} vs {dst.name}.")
        weights = src.get_weights()
        if dst is first:
            weights[0] = adapt_input_conv(weights[0], num_channels).astype(weights[0].dtype)
        elif isinstance(dst, keras.layers.Normalization) and weights[0].shape != dst.get_weights()[0].shape:
            weights = _adapt_normalization(weights, num_channels)
        dst.set_weights(weights)
        if hasattr(dst, "finalize_state"):  # Normalization reads its statistics from tensors made here
            dst.finalize_state()


def build_stem_backbone(backbone, input_shape, weights=None):
    """Build a backbone taking ``C`` input channels, its pretrained weights adapted (the ``stem`` adapter).

    For ``C == 3`` this is :func:`build_backbone`. Otherwise the backbone is built for C channels; with weights,
    a 3-channel build loads them and :func:`transfer_adapted_weights` copies them over (``weights=None``: the
    C-channel backbone keeps its random initialisation). Backbones that preprocess inside with fixed constants
    (``builtin_preprocess`` ``"tf"``/``"torch"``) are built without it, since Keras changes or drops that
    preprocessing for C != 3; the returned mode says which convention the input must then be given in.

    Args:
        backbone: registry name.
        input_shape: ``(H, W, C)``.
        weights: ``"imagenet"``, a weights file of the 3-channel backbone, or ``None``.

    Returns:
        ``(model, preprocess_mode)``: the C-channel backbone and the convention its input must be in.
    """
    spec = get_backbone(backbone)
    height, width, channels = input_shape
    if channels == 3:
        return build_backbone(spec.name, input_shape, weights), spec.preprocess
    if spec.builtin_preprocess in ("tf", "torch"):
        include_preprocessing, mode = False, spec.builtin_preprocess
    else:
        include_preprocessing, mode = True, spec.preprocess
    target = build_backbone(spec.name, input_shape, None, include_preprocessing=include_preprocessing)
    if weights is not None:
        source = build_backbone(spec.name, (height, width, 3), weights, include_preprocessing=include_preprocessing)
        transfer_adapted_weights(source, target, channels)
        del source
    return target, mode
