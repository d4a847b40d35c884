"""Building and compiling the transfer-learning network: adapter -> preprocessing -> backbone -> head."""

from __future__ import annotations

import contextlib
import copy
import math
import weakref

import keras

from .._version import __version__
from .._errors import InputError
from .._options import look_up_option
from ..config import OPTIMIZERS, POOLINGS, PRECISIONS
from ..backbones import build_backbone, check_input_shape, get_backbone, weights_identity
from ._adapters import ADAPTERS, apply_adapter, build_stem_backbone
from ._heads import TaskSpec
from ._layers import BackbonePreprocess

__all__ = ["build_model", "compile_model", "model_info", "unfreeze_layer_groups", "dtype_policy_scope", "OPTIMIZERS",
           "PRECISIONS"]


# What each model was built from. Kept beside the model rather than on it: Keras tracks attributes set on
# models, and the record is written to model.json by whoever saves the model (it does not travel in .keras).
_INFO: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _check_number(name, value, *, low, high=None, integer=False, high_open=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if ok:
        ok = value >= low and (high is None or (value < high if high_open else value <= high))
    if not ok:
        upper = "" if high is None else (f" and < {high}" if high_open else f" and <= {high}")
        kind = "an integer" if integer else "a number"
        raise InputError(f"Expected {name} to be {kind} >= {low}{upper}; received {value!r}.")
    return value


# Over 100 lines through its docstring (the public reference of every layer and option); the body is about 75.
def build_model(
    backbone,
    *,
    input_shape,
    task="binary",
    num_classes=None,
    adapter="replicate",
    weights=None,
    pooling="avg",
    dropout=0.0,
    dense_units=0,
    l2=0.0,
    precision="float32",
    name=None,
):
    """Build the full network: [0, 1] C-channel image in, task prediction out.

    Layers, in order: ``image`` (input) -> ``adapter`` (replicate / projection; absent for ``stem``) ->
    ``preprocess`` (``x * 255`` and the backbone's convention, :class:`BackbonePreprocess`) -> ``backbone`` (the
    registered backbone as a nested model, called with ``training=False`` when pretrained) -> ``pool`` ->
    ``dense`` (optional, ReLU) -> ``dropout`` (optional) -> ``predictions``.

    The backbone is trainable as built, except that with pretrained weights its BatchNormalization layers are
    frozen (Keras 3 then runs them in inference mode; ``training=False`` alone is overridden by ``fit``). With
    ``weights=None`` BatchNorm trains normally. Unfreeze by layer group with :func:`unfreeze_layer_groups`.

    ``precision="mixed_bfloat16"`` builds the backbone's layers under Keras' ``mixed_bfloat16`` dtype policy: they
    compute in bfloat16 while their variables stay float32 (so training updates and saved weights are float32),
    and BatchNormalization normalises in float32 as Keras does. The layers around the backbone stay float32: the
    input, the adapter and the preprocessing (the [0, 1] image is mapped to the backbone's convention before it is
    rounded to bfloat16), the pooling (pooled features are averaged in float32) and the head, whose output and
    activation (sigmoid / softmax) and therefore the loss are float32. Keras' global dtype policy is set only while
    the backbone is built and restored afterwards; each layer keeps its own policy, which ``model.keras`` saves
    and loading restores. Measured on a CPU with native bfloat16 (avx512_bf16): inference 1.3-2.0x faster,
    training steps 1.1-1.25x, outputs within about 1-2 % of float32. A CPU without native bfloat16 (no
    avx512_bf16 or AMX; check with ``grep -o avx512_bf16 /proc/cpuinfo``) emulates it and may be slower.
    ``precision="float32"`` changes nothing: the model is built under Keras' global policy as before (float32
    unless the caller set another with ``keras.config.set_dtype_policy``; :func:`model_info` records the one used).

    Args:
        backbone: registry name (see ``tl_radiology.backbones.list_backbones``).
        input_shape: ``(H, W, C)`` of the toolkit's model input (float32 in [0, 1]); C = 1 for gray images,
            3 for phases / windows / planes, N for anything else.
        task: ``"binary"``, ``"multiclass"``, ``"multilabel"``, ``"regression"``, or a :class:`TaskSpec`.
        num_classes: classes (multiclass), labels (multilabel) or targets (regression); see :class:`TaskSpec`.
        adapter: ``"replicate"`` (C must be 1 or 3), ``"projection"`` (learned 1x1 convolution C -> 3) or
            ``"stem"`` (first convolution adapted to C channels).
        weights: ``"imagenet"`` (from Keras' cache, never downloaded), a weights file, or ``None`` (random).
        pooling: ``"avg"`` or ``"max"`` global pooling of the last feature map.
        dropout: dropout rate before the output layer (0 = none).
        dense_units: units of a hidden ReLU layer after pooling (0 = none).
        l2: L2 weight decay on the head's kernels (0 = none).
        precision: ``"float32"`` (default) or ``"mixed_bfloat16"`` (the backbone computes in bfloat16; see above).
        name: the model's name; default ``"<backbone>_<task>"``.

    Returns:
        A ``keras.Model``, not compiled (see :func:`compile_model`); :func:`model_info` gives its record.

    Raises:
        OptionError: unknown backbone, task, adapter, pooling or precision name.
        InputError: bad sizes or options, an input smaller than the backbone's minimum, a weights file that does
            not fit.
        WeightsNotAvailableError: ``"imagenet"`` asked for but not in Keras' cache.

    Example:
        >>> model = build_model("densenet121", input_shape=(224, 224, 1), task="binary",
        ...                     adapter="replicate", weights=None)  # doctest: +SKIP
        >>> model.output.shape  # doctest: +SKIP
        (None, 1)
    """
    spec = get_backbone(backbone)
    if isinstance(task, TaskSpec):
        if num_classes is not None and num_classes != task.num_classes:
            raise InputError(
                f"num_classes={num_classes} disagrees with the TaskSpec's num_classes={task.num_classes}; give one."
            )
        task_spec = task
    else:
        task_spec = TaskSpec(task, num_classes)
    adapter = look_up_option(adapter, ADAPTERS, what="adapter")
    pooling = look_up_option(pooling, POOLINGS, what="pooling")
    precision = look_up_option(precision, PRECISIONS, what="precision")
    _check_number("dropout", dropout, low=0.0, high=1.0, high_open=True)
    _check_number("dense_units", dense_units, low=0, integer=True)
    _check_number("l2", l2, low=0.0)
    shape = check_input_shape(spec, input_shape)
    height, width, channels = shape
    if adapter == "replicate" and channels not in (1, 3):
        apply_adapter(None, adapter, channels)  # raises the message that suggests the other adapters
    identity = weights_identity(weights, spec.name)  # fails early, before any building, if weights are missing

    inputs = keras.Input(shape=shape, name="image")
    if adapter == "stem":
        with _backbone_policy(precision):
            base, mode = build_stem_backbone(spec.name, shape, weights)
        x, preprocess_channels = inputs, channels
    else:
        x = apply_adapter(inputs, adapter, channels)
        with _backbone_policy(precision):
            base = build_backbone(spec.name, (height, width, 3), weights)
        mode = spec.preprocess
        preprocess_channels = 3
    x = BackbonePreprocess(mode, preprocess_channels, name="preprocess")(x)
    base.name = "backbone"
    pretrained = weights is not None
    if pretrained:
        # Keep BatchNorm in inference mode, so fine-tuning does not overwrite the pretrained statistics with
        # those of small radiology batches. training=False alone is not enough in Keras 3: fit's training=True
        # overrides it inside a functional model (keras-team/keras#20285); a non-trainable BatchNormalization
        # layer always runs in inference mode.
        _freeze_batchnorm(base)
        x = base(x, training=False)
    else:
        # Random initialisation: nothing pretrained to protect, BatchNorm learns its statistics from the data.
        x = base(x)
    x = (keras.layers.GlobalAveragePooling2D if pooling == "avg" else keras.layers.GlobalMaxPooling2D)(name="pool")(x)
    regularizer = keras.regularizers.L2(l2) if l2 else None
    if dense_units:
        x = keras.layers.Dense(int(dense_units), activation="relu", kernel_regularizer=regularizer, name="dense")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(
        task_spec.units, activation=task_spec.activation, kernel_regularizer=regularizer, dtype="float32",
        name="predictions",
    )(x)
    model = keras.Model(inputs, outputs, name=name or f"{spec.name}_{task_spec.task}")
    _INFO[model] = {
        "backbone": spec.name,
        "adapter": adapter,
        "input_shape": list(shape),
        "preprocess": mode,
        "task": task_spec.to_dict(),
        "num_classes": task_spec.num_classes,
        "pooling": pooling,
        "dropout": float(dropout),
        "dense_units": int(dense_units),
        "l2": float(l2),
        "feature_dim": spec.feature_dim,
        "weights": identity,
        "batchnorm": "frozen" if pretrained else "trained",
        # What the backbone was built with: "float32" leaves Keras' global policy alone, so a caller who set one
        # (as the Keras guide does) gets, and is told, that policy.
        "precision": base.dtype_policy.name,
        "tl_radiology_version": __version__,
    }
    return model


@contextlib.contextmanager
def _backbone_policy(precision: str):
    """Build the backbone under ``precision``'s dtype policy ("float32": under the global one, untouched)."""
    if precision == "float32":
        yield
        return
    with dtype_policy_scope(precision):
        yield


@contextlib.contextmanager
def dtype_policy_scope(policy):
    """Make ``policy`` Keras' global dtype policy for the layers created inside; restore the previous one after.

    keras.applications constructors take no dtype argument: their layers take the global policy when they are
    created and keep it (each layer's config saves it) once the previous policy is restored, even if building
    fails. Keras keeps the global policy per thread.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _leaf_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def _freeze_batchnorm(backbone) -> None:
    for layer in _leaf_layers(backbone):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def unfreeze_layer_groups(model, num_groups, *, backbone=None, train_batchnorm=None) -> list[str]:
    """Make the last ``num_groups`` layer groups of a model's backbone trainable and the others frozen.

    Groups are the registry's (:meth:`BackboneSpec.assign_layer_groups`), counted from the output side, so
    ``num_groups=1`` unfreezes the top block (``block5`` of VGG16, ``conv5`` of ResNet50). BatchNormalization
    layers stay frozen (inference mode) unless ``train_batchnorm``; setting ``backbone.trainable = True`` directly
    would unfreeze them too. Recompile the model afterwards.

    Args:
        model: a model from :func:`build_model` (its backbone is the layer named ``"backbone"``).
        num_groups: how many groups to unfreeze from the top: 0 freezes the whole backbone, ``"all"`` unfreezes
            every group.
        backbone: the backbone's registry name; default: from :func:`model_info`.
        train_batchnorm: let BatchNormalization layers train (and update their statistics); default ``False``
            for models built with pretrained weights, ``True`` for ``weights=None``.

    Returns:
        The names of the unfrozen groups, in order.

    Raises:
        InputError: ``num_groups`` outside 0..number of groups.

    Example:
        >>> unfreeze_layer_groups(model, 1)  # doctest: +SKIP
        ['conv5']
    """
    info = _INFO.get(model) if _is_weakrefable(model) else None
    spec = get_backbone(backbone or (info or {}).get("backbone") or _missing_backbone(model))
    if train_batchnorm is None:
        train_batchnorm = bool(info) and info.get("batchnorm") == "trained"
    base = model.get_layer("backbone")
    groups = spec.assign_layer_groups(base)
    names = list(groups)
    if num_groups == "all":
        num_groups = len(names)
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) or not 0 <= num_groups <= len(names):
        raise InputError(
            f"Expected num_groups to be an integer from 0 to {len(names)} or 'all' for {spec.name} (groups: "
            f"{', '.join(names)}); received {num_groups!r}."
        )
    unfrozen = names[len(names) - num_groups:]
    base.trainable = True
    for group, layers in groups.items():
        for layer in layers:
            layer.trainable = group in unfrozen
    if not train_batchnorm:
        _freeze_batchnorm(base)
    return unfrozen


def _is_weakrefable(obj) -> bool:
    try:
        weakref.ref(obj)
    except TypeError:
        return False
    return True


def _missing_backbone(model):
    raise InputError(
        f"Cannot tell which backbone model {getattr(model, 'name', model)!r} uses; pass backbone='name'."
    )


def model_info(model) -> dict:
    """The JSON-able record of what a model was built from (for ``model.json``; it is not stored in ``.keras``).

    Returns:
        A copy of ``{"backbone", "adapter", "input_shape", "preprocess", "task": {...}, "num_classes", "pooling",
        "dropout", "dense_units", "l2", "feature_dim", "weights": {...}, "batchnorm", "precision",
        "tl_radiology_version"}``; ``weights`` is :func:`tl_radiology.backbones.weights_identity` of the starting
        weights, ``precision`` ``"float32"`` or ``"mixed_bfloat16"``.

    Raises:
        InputError: the model was not built by :func:`build_model` in this process (e.g. loaded from a file).

    Example:
        >>> model_info(model)["weights"]["source"]  # doctest: +SKIP
        'imagenet'
    """
    try:
        return copy.deepcopy(_INFO[model])
    except (KeyError, TypeError):
        raise InputError(
            f"No build record for model {getattr(model, 'name', model)!r}: it was not built by build_model in this "
            "process. Read the record saved beside it (model.json) instead."
        ) from None


def _make_optimizer(optimizer, learning_rate, momentum, nesterov, weight_decay):
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return optimizer
    name = look_up_option(optimizer, OPTIMIZERS, what="optimizer")
    _check_number("learning_rate", learning_rate, low=0.0)
    if learning_rate <= 0:
        raise InputError(f"Expected learning_rate > 0; received {learning_rate!r}.")
    kwargs = {"learning_rate": float(learning_rate)}
    if weight_decay is not None:
        kwargs["weight_decay"] = float(_check_number("weight_decay", weight_decay, low=0.0))
    if name == "sgd":
        return keras.optimizers.SGD(momentum=float(momentum), nesterov=bool(nesterov), **kwargs)
    if name == "adam":
        return keras.optimizers.Adam(**kwargs)
    if name == "adamw":
        return keras.optimizers.AdamW(**kwargs)
    return keras.optimizers.RMSprop(**kwargs)


def compile_model(
    model,
    task_spec=None,
    optimizer="adam",
    learning_rate=1e-3,
    *,
    momentum=0.9,
    nesterov=False,
    weight_decay=None,
    label_smoothing=0.0,
):
    """Compile a model with its task's loss and metrics and an optimizer chosen by name.

    Recompile after changing any layer's ``trainable`` (Keras fixes the trainable set at compile time).

    Args:
        model: a model from :func:`build_model` (or any model whose output fits ``task_spec``).
        task_spec: a :class:`TaskSpec`; default: the one the model was built with.
        optimizer: ``"sgd"`` (with ``momentum``, ``nesterov``), ``"adam"``, ``"adamw"``, ``"rmsprop"``, or a
            Keras optimizer instance (then ``learning_rate`` and the others are ignored).
        learning_rate: the optimizer's learning rate.
        momentum: SGD momentum (default 0.9).
        nesterov: SGD Nesterov momentum.
        weight_decay: decoupled weight decay for the optimizer (AdamW's default when ``None``).
        label_smoothing: for classification losses.

    Returns:
        The same model, compiled.

    Example:
        >>> compile_model(model, optimizer="sgd", learning_rate=1e-4, nesterov=True)  # doctest: +SKIP
    """
    if task_spec is None:
        if _is_weakrefable(model) and model in _INFO:
            task_spec = TaskSpec(**_INFO[model]["task"])
        else:
            raise InputError(
                f"compile_model needs task_spec for model {getattr(model, 'name', model)!r}, which was not built by "
                "build_model in this process; pass TaskSpec(task, num_classes)."
            )
    elif not isinstance(task_spec, TaskSpec):
        task_spec = TaskSpec(task_spec)
    units = model.output.shape[-1] if hasattr(model, "output") else None
    if units is not None and units != task_spec.units:
        raise InputError(
            f"The model outputs {units} values but task {task_spec.task!r} with num_classes="
            f"{task_spec.num_classes} needs {task_spec.units}. Build the model with the same task."
        )
    model.compile(
        optimizer=_make_optimizer(optimizer, learning_rate, momentum, nesterov, weight_decay),
        loss=task_spec.make_loss(label_smoothing=label_smoothing),
        metrics=task_spec.make_metrics(),
    )
    return model
