"""Class activation maps: Grad-CAM for any toolkit model, CAM where the head allows it, and overlays.

The maps are computed on the connected graph of ``_gradcam_graph`` (the target layer inside the nested backbone,
through to the input of the output layer).

Scores are taken *before* the output activation (the logit of the class, ``x @ kernel + bias`` of the output
``Dense`` layer), as in Selvaraju et al. (2017): the gradient of a softmax probability mixes in the other
classes, and for a sigmoid it is scaled by ``p (1 - p)``, which vanishes for confident predictions. For a binary
head (one sigmoid unit) class 1 (the positive class) uses the logit and class 0 its negation.

CAM (Zhou et al., 2016) needs no gradient: with global average pooling followed directly by one linear output
layer the class score is ``sum_k w_kc * mean(A_k)``, so ``sum_k w_kc A_k`` shows where the score comes from.
For such a head, Grad-CAM on the pooled feature map gives exactly the same map divided by the number of its
pixels; :func:`class_activation_map` is the cheaper, gradient-free route and a check of :func:`grad_cam`.

Keras is imported inside the functions, so importing ``tl_radiology.evaluation`` for its metrics stays cheap.
"""

from __future__ import annotations

import numpy as np

from .._errors import InputError
from .._options import look_up_option
from ._gradcam_graph import _Analysis, _analyse, _keras_model, _nested_backbone

# Keras and TensorFlow are deferred: imported inside the functions, so that importing
# tl_radiology.evaluation for its metrics stays cheap.

__all__ = ["grad_cam", "class_activation_map", "overlay"]

_PASS_THROUGH = ("Dropout", "Identity", "SpatialDropout1D", "GaussianDropout", "GaussianNoise", "AlphaDropout")


def _as_batch(images, keras_model):
    array = np.asarray(images, dtype=np.float32)
    single = array.ndim == 3
    if single:
        array = array[None]
    expected = tuple(keras_model.inputs[0].shape[1:])
    if array.ndim != 4 or any(e is not None and e != a for e, a in zip(expected, array.shape[1:])):
        raise InputError(
            f"Grad-CAM expects images of shape (N, {', '.join(str(e) for e in expected)}) or one image "
            f"{expected}, in [0, 1] like the model's input; received shape {np.shape(images)}."
        )
    if not np.isfinite(array).all():
        raise InputError("Grad-CAM received images with NaN or infinite values; load them with the run's CaseLoader.")
    return array, single


def _class_rows(analysis: _Analysis, probabilities: np.ndarray, class_index, n: int):
    """Per image: the logit column to use and its sign (binary class 0 is the negated logit)."""
    units = analysis.head_units
    binary = units == 1 and analysis.activation == "sigmoid"
    regression = analysis.activation == "linear"
    count = 2 if binary else units
    if class_index is None:
        if binary:
            indices = np.ones(n, dtype=np.int64)  # the positive class (classes[1])
        elif regression:
            indices = np.zeros(n, dtype=np.int64)
        else:
            indices = np.argmax(probabilities, axis=1).astype(np.int64)
    else:
        indices = np.broadcast_to(np.asarray(class_index), (n,)).astype(np.int64, copy=True)
        bad = [int(i) for i in indices if not 0 <= int(i) < count]
        if bad:
            kind = "binary head (0 = negative, 1 = positive class)" if binary else f"{units} outputs"
            raise InputError(f"class_index={class_index!r} is out of range for a {kind}; use 0..{count - 1}.")
    if binary:
        return np.zeros(n, dtype=np.int64), np.where(indices == 1, 1.0, -1.0).astype(np.float32), indices
    return indices, np.ones(n, dtype=np.float32), indices


def _finish(maps, size, normalize: bool):
    """ReLU, upsample (bilinear) to the input size and scale each map to [0, 1] by its maximum."""
    import keras

    maps = np.maximum(np.asarray(maps, dtype=np.float32), 0.0)
    up = keras.ops.convert_to_numpy(keras.ops.image.resize(maps[..., None], size, interpolation="bilinear"))[..., 0]
    up = np.maximum(up, 0.0)
    if not normalize:
        return up
    top = up.reshape(len(up), -1).max(axis=1)
    scale = np.where(top > 0, top, 1.0)
    return np.clip(up / scale[:, None, None], 0.0, 1.0).astype(np.float32)


def grad_cam(model, images, *, class_index=None, layer: str | None = None, backbone: str | None = None,
             normalize: bool = True, batch_size: int = 16) -> np.ndarray:
    """Grad-CAM heatmaps: where in each image the evidence for a class lies.

    For the target feature map ``A`` (``h x w x K``; by default the backbone's registered last convolutional
    layer, found inside the nested ``"backbone"`` model) and the class score ``y`` (the logit, before the
    output activation): each channel's weight is the spatial mean of ``dy/dA_k``, the map is
    ``ReLU(sum_k weight_k * A_k)``, upsampled bilinearly to the input's size and divided by its maximum. A map
    with no positive evidence anywhere is all zeros.

    Args:
        model: a model from :func:`tl_radiology.models.build_model` (or loaded from a run's ``model.keras``).
        images: ``(N, H, W, C)`` (or one ``(H, W, C)`` image) in [0, 1], as the model takes them.
        class_index: the class to explain: ``None`` = the predicted class (the positive class for a binary
            head, output 0 for regression), an int for all images, or one int per image. For a binary head
            1 is the positive class and 0 the negative class (the negated logit).
        layer: the layer whose feature map is used instead of the registered one.
        backbone: the backbone's registry name when the model was not built in this process (``model.json``).
        normalize: scale each map to [0, 1] (default); ``False`` returns the raw ReLU map (upsampled).
        batch_size: images per gradient computation.

    Returns:
        float32 ``(N, H, W)`` heatmaps in [0, 1] (``(H, W)`` for one image).

    Raises:
        InputError: images of the wrong shape or with NaN, a layer that does not exist or is not a feature map,
            a model without a Dense output layer, a class index out of range.

    Example:
        >>> model = build_model("resnet50", input_shape=(64, 64, 1), weights=None)  # doctest: +SKIP
        >>> heat = grad_cam(model, np.random.rand(2, 64, 64, 1).astype("float32"))  # doctest: +SKIP
        >>> heat.shape, float(heat.max())  # doctest: +SKIP
        ((2, 64, 64), 1.0)
    """
    import tensorflow as tf

    analysis = _analyse(model, layer, backbone)
    keras_model = _keras_model(model)
    array, single = _as_batch(images, keras_model)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer; received {batch_size!r}.")
    kernel, bias = (tf.convert_to_tensor(w) for w in _head_weights(analysis))
    maps = []
    for start in range(0, len(array), batch_size):
        x = tf.convert_to_tensor(array[start:start + batch_size])
        with tf.GradientTape() as tape:
            conv, _, head_in = analysis.model(x, training=False)
            tape.watch(conv)
            logits = tf.matmul(tf.cast(head_in, tf.float32), kernel) + bias
            probabilities = _activate(logits, analysis.activation)
            columns, signs, _ = _class_rows(analysis, probabilities.numpy(), _slice(class_index, start, len(x)),
                                            len(x))
            score = tf.gather(logits, columns, axis=1, batch_dims=1) * signs
        grads = tape.gradient(score, conv)
        if grads is None:
            raise InputError(f"The class score does not depend on layer {analysis.layer_name!r}; choose another layer.")
        weights = tf.reduce_mean(tf.cast(grads, tf.float32), axis=(1, 2))
        cam = tf.einsum("bhwk,bk->bhw", tf.cast(conv, tf.float32), weights)
        maps.append(cam.numpy())
    heat = _finish(np.concatenate(maps), array.shape[1:3], normalize)
    return heat[0] if single else heat


def _head_weights(analysis: _Analysis):
    """The output layer's kernel (K, units) and bias (units,) as float32 numpy arrays."""
    import keras

    head = analysis.head
    kernel = keras.ops.convert_to_numpy(head.kernel).astype(np.float32)
    bias = (keras.ops.convert_to_numpy(head.bias).astype(np.float32) if head.use_bias
            else np.zeros(analysis.head_units, np.float32))
    return kernel, bias


def _slice(class_index, start, count):
    if class_index is None or np.ndim(class_index) == 0:
        return class_index
    return np.asarray(class_index)[start:start + count]


def _activate(logits, activation: str):
    import tensorflow as tf

    if activation == "sigmoid":
        return tf.sigmoid(logits)
    if activation == "softmax":
        return tf.nn.softmax(logits, axis=-1)
    return logits


def class_activation_map(model, images, *, class_index=None, backbone: str | None = None,
                         normalize: bool = True) -> np.ndarray:
    """CAM: ``ReLU(sum_k w_kc A_k)`` from the backbone's feature map and the output layer's weights.

    Only for heads where it is exact: the backbone's output feature map, global average pooling, then (through
    dropout only) the Dense output layer, as ``build_model(..., pooling="avg", dense_units=0)`` makes. Then the
    class logit is ``sum_k w_kc * mean(A_k) + b_c`` and the map says where it comes from. Grad-CAM on the same
    feature map gives the same map divided by its number of pixels.

    Args:
        model: a model from :func:`tl_radiology.models.build_model`.
        images: ``(N, H, W, C)`` (or one ``(H, W, C)``) in [0, 1].
        class_index: as for :func:`grad_cam`.
        backbone: the backbone's registry name when the model was not built in this process (not needed for CAM
            itself; used to find the nested backbone's output layer).
        normalize: scale each map to [0, 1] (default).

    Returns:
        float32 ``(N, H, W)`` maps in [0, 1] (``(H, W)`` for one image).

    Raises:
        InputError: the head is not global average pooling + one Dense layer (a hidden Dense layer, max pooling),
            or the inputs are bad (as :func:`grad_cam`).

    Example:
        >>> cam = class_activation_map(model, images)  # doctest: +SKIP
    """
    import keras

    keras_model = _keras_model(model)
    base = _nested_backbone(keras_model)
    if base is None:
        raise InputError(f"CAM needs a model with a nested 'backbone' layer (from build_model); {keras_model.name!r} "
                         "has none. Use grad_cam(model, images, layer=...).")
    output_layer = base.layers[-1].name
    analysis = _analyse(model, output_layer, backbone)
    others = [name for name in analysis.after_backbone if name not in _PASS_THROUGH]
    if not analysis.chain or others != ["GlobalAveragePooling2D"]:
        between = " -> ".join(analysis.after_backbone) or "nothing"
        raise InputError(
            f"CAM needs global average pooling then the Dense output layer directly after the backbone; model "
            f"{keras_model.name!r} has {between} before its output layer {analysis.head.name!r}. Use grad_cam(), "
            "which works for any head."
        )
    array, single = _as_batch(images, keras_model)
    features = []
    for start in range(0, len(array), 16):
        _, feature_map, _ = analysis.model(array[start:start + 16], training=False)
        features.append(keras.ops.convert_to_numpy(feature_map).astype(np.float32))
    feature_map = np.concatenate(features)
    kernel, bias = _head_weights(analysis)
    logits = feature_map.mean(axis=(1, 2)) @ kernel + bias
    probabilities = np.asarray(_activate(logits, analysis.activation))
    columns, signs, _ = _class_rows(analysis, probabilities, class_index, len(array))
    weights = kernel.T[columns] * signs[:, None]  # (N, K)
    cam = np.einsum("bhwk,bk->bhw", feature_map, weights)
    heat = _finish(cam, array.shape[1:3], normalize)
    return heat[0] if single else heat


def overlay(image, heatmap, *, alpha: float = 0.4, colormap: str = "jet", channel: int | None = None) -> np.ndarray:
    """Blend a heatmap (coloured with a matplotlib colormap) over an image; return uint8 RGB.

    Args:
        image: ``H x W`` or ``H x W x C`` in [0, 1] (the model input). One channel is shown in gray, three as
            RGB; other counts show their mean, unless ``channel`` picks one (e.g. the arterial phase).
        heatmap: ``H x W`` in [0, 1] (from :func:`grad_cam`); a heatmap of another size is resized.
        alpha: the heatmap's opacity where it is 1 (the image shows through where the heatmap is low).
        colormap: a matplotlib colormap name.
        channel: the channel to show in gray instead of the default.

    Returns:
        uint8 array ``H x W x 3``.

    Raises:
        InputError: bad shapes, values outside [0, 1], an unknown colormap or channel, alpha outside [0, 1].

    Example:
        >>> rgb = overlay(np.zeros((64, 64, 1)), np.eye(64))
        >>> rgb.shape, rgb.dtype
        ((64, 64, 3), dtype('uint8'))
    """
    from matplotlib import colormaps  # deferred: Matplotlib, only for the colour map

    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise InputError(f"overlay expects an image H x W or H x W x C; received shape {np.shape(image)}.")
    if not np.isfinite(img).all() or img.min() < -1e-4 or img.max() > 1 + 1e-4:
        raise InputError("overlay expects image values in [0, 1] (the model input); scale or window the image first.")
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise InputError(f"overlay expects a heatmap H x W; received shape {np.shape(heatmap)}.")
    if not np.isfinite(heat).all() or heat.min() < -1e-4 or heat.max() > 1 + 1e-4:
        raise InputError("overlay expects heatmap values in [0, 1], as grad_cam returns them.")
    if not (isinstance(alpha, (int, float)) and 0 <= alpha <= 1):
        raise InputError(f"alpha must be a number in [0, 1]; received {alpha!r}.")
    if heat.shape != img.shape[:2]:
        from skimage.transform import resize  # deferred: scikit-image, only when the sizes differ

        heat = resize(heat, img.shape[:2], order=1, mode="edge", anti_aliasing=False).astype(np.float32)
    if channel is not None:
        if not isinstance(channel, int) or not 0 <= channel < img.shape[2]:
            raise InputError(f"channel must be 0..{img.shape[2] - 1} for an image of {img.shape[2]} channels; "
                             f"received {channel!r}.")
        base = np.repeat(img[..., channel:channel + 1], 3, axis=2)
    elif img.shape[2] == 3:
        base = img
    else:
        base = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)
    cmap = look_up_option(colormap, colormaps, what="colormap")
    colour = np.asarray(cmap(np.clip(heat, 0, 1)))[..., :3].astype(np.float32)
    weight = alpha * np.clip(heat, 0, 1)[..., None]
    blended = (1 - weight) * np.clip(base, 0, 1) + weight * colour
    return np.clip(np.rint(blended * 255), 0, 255).astype(np.uint8)
