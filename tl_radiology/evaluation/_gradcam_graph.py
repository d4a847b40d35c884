"""The graph Grad-CAM and CAM follow: a toolkit model re-run so that it also returns its target layer's output.

The toolkit's networks (``tl_radiology.models.build_model``) hold their backbone as a nested model layer named
``"backbone"``. The convolutional layer Grad-CAM looks at lies *inside* that nested model, so a plain
``keras.Model(model.inputs, [model.get_layer("backbone").get_layer(name).output, model.output])`` is
disconnected (the inner layer's output belongs to the nested model's own graph). Instead the outer graph is
re-run with ``keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=...)``: the
layers (and their weights) are shared, and the call of the backbone is replaced by a call of a sub-model of the
backbone that returns the target layer's output as well. The result is one connected model from the image to
(target feature map, backbone output, input of the output layer), with the facts about the head that the maps
need (:class:`_Analysis`), cached per model and layer.

Keras is imported inside the functions, so importing ``tl_radiology.evaluation`` for its metrics stays cheap.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any

from .._errors import InputError, OptionError
from ..backbones import get_backbone
from ._runfiles import backbone_name

# Keras (and the models part, which imports TensorFlow) are deferred: imported inside the functions, so
# that importing tl_radiology.evaluation for its metrics stays cheap.

__all__ = ["explain_target"]

# One analysed graph per (model, target layer); building it re-runs the whole graph, which costs seconds for
# large backbones, and `explain` asks for many images of one model.
_ANALYSIS_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@dataclasses.dataclass(eq=False)
class _Analysis:
    """The connected gradient model and the facts about the head that Grad-CAM and CAM need."""

    model: Any  # image -> (target feature map, backbone output, input of the output layer)
    layer_name: str
    target_inside_backbone: bool
    head: Any  # the Dense output layer
    head_units: int
    activation: str
    after_backbone: list  # class names of the layers between backbone and head
    chain: bool  # those layers follow one another in a single chain from the backbone to the head


def _keras_model(model):
    """Accept a ``keras.Model`` or an object holding one (a trained-model wrapper with ``.model``)."""
    import keras

    if isinstance(model, keras.Model):
        return model
    inner = getattr(model, "model", None) or getattr(model, "keras_model", None)
    if isinstance(inner, keras.Model):
        return inner
    raise InputError(
        f"Grad-CAM needs a Keras model (from build_model or a saved run's model.keras). Received: "
        f"{type(model).__name__}. A scikit-learn classifier on fixed features has no gradient to follow."
    )


def _backbone_name(model, backbone):
    """The registry name of the model's backbone: given, or from the build record (``model_info``)."""
    if backbone is not None:
        return backbone
    recorded = backbone_name(getattr(model, "training_config", None))  # a TrainedModel loaded from a run
    if recorded is not None:
        return recorded
    for attribute in ("backbone", "info"):
        value = getattr(model, attribute, None)
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and isinstance(value.get("backbone"), str):
            return value["backbone"]
    from ..models import model_info  # deferred: the models part imports TensorFlow

    try:
        return model_info(_keras_model(model))["backbone"]
    except InputError:
        return None


def explain_target(model, *, layer: str | None = None, backbone: str | None = None) -> str:
    """The name of the layer whose feature map Grad-CAM uses for ``model``.

    Args:
        model: a model from :func:`tl_radiology.models.build_model` (or loaded from a run).
        layer: a layer name to use instead (looked up inside the nested backbone first, then in the model).
        backbone: the backbone's registry name, when the model was not built in this process (it is in the run's
            ``model.json``); its record's ``last_conv_layer`` is the default target.

    Returns:
        The layer name.

    Raises:
        InputError: the layer does not exist, or the backbone cannot be told and no layer was given.

    Example:
        >>> explain_target(build_model("vgg16", input_shape=(64, 64, 1)))  # doctest: +SKIP
        'block5_conv3'
    """
    keras_model = _keras_model(model)
    base = _nested_backbone(keras_model)
    if layer is not None:
        _find_layer(keras_model, base, layer)
        return layer
    name = _backbone_name(model, backbone)
    if base is None:
        raise InputError(
            f"Model {keras_model.name!r} has no nested layer named 'backbone' (models from build_model have one). "
            "Pass layer='name of the last convolutional layer' to grad_cam."
        )
    if name is None:
        raise InputError(
            f"Cannot tell which backbone model {keras_model.name!r} uses (it was not built in this process). Pass "
            "backbone='<registry name>' (model.json's 'backbone') or layer='<layer name>' to grad_cam."
        )
    try:
        spec = get_backbone(name)
    except OptionError:
        raise InputError(
            f"Backbone {name!r} of model {keras_model.name!r} is not registered in this process: it was registered "
            f"by the recipe file the run was started with. Give that file (tl-radiology explain RUN_DIR --recipe "
            f"FILE.py; in Python, load_recipe('FILE.py') first), or name the layer to explain with --layer NAME."
        ) from None
    return spec.find_last_conv_layer(base).name


def _nested_backbone(keras_model):
    import keras

    try:
        base = keras_model.get_layer("backbone")
    except ValueError:
        return None
    return base if isinstance(base, keras.Model) else None


def _find_layer(keras_model, base, name):
    if base is not None:
        try:
            return base.get_layer(name), True
        except ValueError:
            pass
    try:
        return keras_model.get_layer(name), False
    except ValueError:
        pass
    inside = f" or inside its backbone ({len(base.layers)} layers)" if base is not None else ""
    raise InputError(
        f"Layer {name!r} not found in model {keras_model.name!r}{inside}. Give the name of a convolutional layer "
        "(see model.get_layer('backbone').summary()), or leave layer=None for the backbone's registered one."
    )


def _output_layer(keras_model):
    import keras

    try:
        return keras_model.get_layer("predictions")
    except ValueError:
        layers = [layer for layer in keras_model.layers if not isinstance(layer, keras.layers.InputLayer)]
        return layers[-1]


def _analyse(model, layer: str | None, backbone: str | None) -> _Analysis:
    import keras

    keras_model = _keras_model(model)
    target_name = explain_target(model, layer=layer, backbone=backbone)
    cache = _ANALYSIS_CACHE.setdefault(keras_model, {})
    if target_name in cache:
        return cache[target_name]
    base = _nested_backbone(keras_model)
    target, inside = _find_layer(keras_model, base, target_name)
    if len(target.output.shape) != 4:
        raise InputError(
            f"Layer {target_name!r} outputs shape {tuple(target.output.shape)}; Grad-CAM needs a feature map "
            "(batch, height, width, channels). Choose a convolutional layer."
        )
    head = _output_layer(keras_model)
    if not isinstance(head, keras.layers.Dense):
        raise InputError(
            f"The output layer {head.name!r} of model {keras_model.name!r} is a {type(head).__name__}; Grad-CAM "
            "here needs a Dense output layer (as build_model makes) to take the class score before its activation."
        )
    if len(keras_model.outputs) != 1:
        raise InputError(f"Grad-CAM needs a model with one output; {keras_model.name!r} has {len(keras_model.outputs)}.")
    inner = None
    if inside:
        inner = keras.Model(base.inputs, [target.output, base.outputs[0]], name="backbone_with_target")
    captured: dict = {"after": [], "chain": True, "last": None}

    def call(layer_obj, *args, **kwargs):
        if inner is not None and layer_obj is base:
            conv, out = inner(*args, **kwargs)
            captured["conv"], captured["features"] = conv, out
            captured["last"] = out
            return out
        if layer_obj is head:
            captured["head_in"] = args[0]
            if "features" in captured and args[0] is not captured["last"]:
                captured["chain"] = False
        elif "features" in captured and "head_in" not in captured:
            captured["after"].append(layer_obj)
            if not args or args[0] is not captured["last"]:
                captured["chain"] = False
        out = layer_obj(*args, **kwargs)
        if "features" in captured:
            captured["last"] = out
        if inner is None and layer_obj is target:
            captured["conv"] = out
            captured["features"] = out
            captured["last"] = out
        return out

    clone = keras.models.clone_model(keras_model, clone_function=lambda layer_obj: layer_obj, call_function=call)
    if "conv" not in captured or "head_in" not in captured:
        raise InputError(
            f"Could not follow model {keras_model.name!r} from its input through layer {target_name!r} to its output "
            f"layer {head.name!r}; the layer is not on the path to the output."
        )
    inputs = clone.inputs[0] if len(clone.inputs) == 1 else clone.inputs
    gradient_model = keras.Model(inputs, [captured["conv"], captured["features"], captured["head_in"]],
                                 name="grad_cam")
    analysis = _Analysis(
        gradient_model, target_name, inside, head, int(head.units),
        getattr(head.activation, "__name__", str(head.activation)),
        [type(layer_obj).__name__ for layer_obj in captured["after"]], captured["chain"],
    )
    cache[target_name] = analysis
    return analysis
