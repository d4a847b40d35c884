"""The preprocessing layer that puts a backbone's input convention inside the model.

The toolkit's model input is float32 in [0, 1] per channel (see ``docs/ARCHITECTURE.md``). ImageNet backbones
expect 0..255 pixel values in their own convention; :class:`BackbonePreprocess` does both steps as one
per-channel affine map, so a saved model takes the toolkit's [0, 1] input directly.
"""

from __future__ import annotations

import numpy as np

import keras
from keras import ops

from .._errors import InputError
from .._options import look_up_option
from ..backbones import PREPROCESS_MODES

__all__ = ["BackbonePreprocess", "preprocess_constants", "spread_channels"]

# The ImageNet constants of keras.applications.imagenet_utils.preprocess_input.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
_TORCH_STD_RGB = (0.229, 0.224, 0.225)


def spread_channels(values, num_channels: int) -> np.ndarray:
    """Carry three per-channel values (in the backbone's channel order) over to ``num_channels`` channels.

    The rule of the stem adapter, used for preprocessing constants and first-convolution kernels alike:
    3 channels keep their values, 1 channel gets their mean, N channels repeat them cyclically (channel ``i`` takes
    value ``i % 3``).

    Args:
        values: a sequence of three numbers.
        num_channels: the number of input channels.

    Returns:
        A float64 array of length ``num_channels``.

    Example:
        >>> spread_channels([1.0, 2.0, 3.0], 4).tolist()
        [1.0, 2.0, 3.0, 1.0]
    """
    values = np.asarray(values, dtype=np.float64)
    if num_channels == 3:
        return values.copy()
    if num_channels == 1:
        return np.array([values.mean()])
    return values[np.arange(num_channels) % 3]


def preprocess_constants(mode: str, num_channels: int = 3):
    """Per-channel ``scale``, ``offset`` and channel reversal that map [0, 1] inputs to a backbone's convention.

    ``y = x * scale + offset`` (after reversing the channels when ``reverse``) equals Keras'
    ``preprocess_input(255 * x, mode=mode)`` for 3 channels. For other channel counts (stem-adapted backbones)
    the three per-channel constants are carried over with :func:`spread_channels`: their mean for 1 channel,
    repeated cyclically for N channels, in the backbone's channel order (BGR for ``caffe``); channels are then
    not reversed. For per-channel conventions (``caffe``, ``torch``) a 1-channel stem therefore sees the mean
    convention, not exactly what each RGB channel would have seen.

    Args:
        mode: ``"caffe"``, ``"tf"``, ``"torch"``, ``"lite"`` or ``"none"`` (then only ``x * 255``).
        num_channels: channels the layer receives.

    Returns:
        ``(scale, offset, reverse)``: two float32 arrays of length ``num_channels`` and a bool.

    Example:
        >>> scale, offset, reverse = preprocess_constants("tf", 1)
        >>> scale.tolist(), offset.tolist(), reverse
        ([2.0], [-1.0], False)
    """
    mode = look_up_option(mode, PREPROCESS_MODES, what="preprocess mode")
    if not isinstance(num_channels, (int, np.integer)) or num_channels < 1:
        raise InputError(f"Expected num_channels to be a positive integer; received {num_channels!r}.")
    if mode == "caffe":
        scale, offset = [255.0] * 3, [-m for m in _CAFFE_MEAN_BGR]
    elif mode == "tf":
        scale, offset = [2.0] * 3, [-1.0] * 3  # 255 x / 127.5 - 1
    elif mode == "torch":
        scale = [1.0 / s for s in _TORCH_STD_RGB]  # (255 x / 255 - mean) / std
        offset = [-m / s for m, s in zip(_TORCH_MEAN_RGB, _TORCH_STD_RGB)]
    elif mode == "lite":
        scale, offset = [255.0 / 128.0] * 3, [-127.0 / 128.0] * 3  # (255 x - 127) / 128, EfficientNet-Lite
    else:
        scale, offset = [255.0] * 3, [0.0] * 3
    reverse = mode == "caffe" and num_channels == 3
    return (
        spread_channels(scale, num_channels).astype(np.float32),
        spread_channels(offset, num_channels).astype(np.float32),
        reverse,
    )


@keras.saving.register_keras_serializable(package="tl_radiology")
class BackbonePreprocess(keras.layers.Layer):
    """Map the toolkit's [0, 1] input to a backbone's input convention (``x * 255`` then its ``preprocess_input``).

    Args:
        mode: ``"caffe"`` (RGB -> BGR, minus the ImageNet mean), ``"tf"`` ([-1, 1]), ``"torch"`` (ImageNet
            mean / std), ``"lite"`` ((x - 127) / 128) or ``"none"`` (0..255 for backbones that preprocess inside).
        num_channels: number of channels it receives (3, or the stem's channel count; see
            :func:`preprocess_constants` for other counts).

    Example:
        >>> layer = BackbonePreprocess("caffe")
        >>> y = layer(np.ones((1, 4, 4, 3), "float32"))  # doctest: +SKIP
    """

    def __init__(self, mode: str = "none", num_channels: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.mode = look_up_option(mode, PREPROCESS_MODES, what="preprocess mode")
        self.num_channels = int(num_channels)
        self._scale, self._offset, self._reverse = preprocess_constants(self.mode, self.num_channels)

    def build(self, input_shape):
        if input_shape[-1] is not None and int(input_shape[-1]) != self.num_channels:
            raise InputError(
                f"BackbonePreprocess was set up for {self.num_channels} channels; received input with "
                f"{input_shape[-1]}. Build it with num_channels={input_shape[-1]}."
            )
        self.built = True

    def call(self, inputs):
        x = ops.flip(inputs, axis=-1) if self._reverse else inputs
        scale = ops.convert_to_tensor(self._scale, dtype=x.dtype)
        offset = ops.convert_to_tensor(self._offset, dtype=x.dtype)
        return x * scale + offset

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode, "num_channels": self.num_channels})
        return config
