"""Every registered backbone, built at its minimum size through build_model with 1, 3 and 4 input channels.

Checks what the registry promises: the pooled feature dimension, a feature map of at least 1x1 at the minimum size
(and Keras refusing one pixel less), layer groups that each match a layer by name and cover the backbone in order,
and the Grad-CAM layer. Random weights (weights=None), so nothing is downloaded. About 3-4 s per backbone.
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
from keras.src.utils.naming import to_snake_case

from tl_radiology.backbones import get_backbone, list_backbones
from tl_radiology.models import build_model

pytestmark = pytest.mark.slow


def _check_groups(spec, base):
    layers = [layer for layer in base.layers if not isinstance(layer, keras.layers.InputLayer)]
    matched = {group: 0 for group in spec.group_names}
    for layer in layers:
        group = spec.match_group(layer.name)
        if group is None:
            # Only layers Keras names automatically (conv2d_12, re_lu_3, ...) may be left to the neighbour rule.
            base_name = re.sub(r"_\d+$", "", layer.name)
            assert base_name == to_snake_case(type(layer).__name__), (
                f"{spec.name}: layer {layer.name!r} has a Keras-given name but no group pattern matches it"
            )
        else:
            matched[group] += 1
    assert all(matched.values()), f"{spec.name}: groups matching no layer: {[g for g, n in matched.items() if not n]}"
    groups = spec.assign_layer_groups(base)
    assert list(groups) == list(spec.group_names)
    position = {id(layer): index for index, group in enumerate(groups) for layer in groups[group]}
    order = [position[id(layer)] for layer in layers]  # every layer but the input belongs to a group ...
    assert order == sorted(order), f"{spec.name}: layer groups are not contiguous in build order"  # ... in order
    assert order[0] == 0 and order[-1] == len(groups) - 1


@pytest.mark.parametrize("name", list_backbones())
def test_backbone_builds_at_its_minimum_size_with_1_3_and_4_channels(name):
    spec = get_backbone(name)
    size = spec.min_size
    with pytest.raises(ValueError):  # one pixel less is refused by Keras itself: the minimum is not too strict
        spec.constructor(include_top=False, weights=None, input_shape=(size - 1, size - 1, 3))

    gray = build_model(name, input_shape=(size, size, 1), adapter="replicate")
    assert gray.output.shape == (None, 1)
    assert gray.get_layer("pool").output.shape == (None, spec.feature_dim)
    feature_map = gray.get_layer("backbone").output.shape
    assert feature_map[-1] == spec.feature_dim and min(feature_map[1:3]) >= 1
    prediction = np.asarray(gray(np.random.default_rng(0).uniform(0, 1, (1, size, size, 1)).astype("float32")))
    assert prediction.shape == (1, 1) and np.isfinite(prediction).all() and 0 <= prediction[0, 0] <= 1
    keras.backend.clear_session()

    rgb = build_model(name, input_shape=(size, size, 3), task="multiclass", num_classes=3)
    assert rgb.output.shape == (None, 3)
    base = rgb.get_layer("backbone")
    assert base.input.shape == (None, size, size, 3) and base.output.shape[-1] == spec.feature_dim
    _check_groups(spec, base)
    grad_cam_layer = spec.find_last_conv_layer(base)
    assert len(grad_cam_layer.output.shape) == 4 and grad_cam_layer.output.shape[-1] == spec.feature_dim
    keras.backend.clear_session()

    four = build_model(name, input_shape=(size, size, 4), adapter="stem", task="regression")
    assert four.output.shape == (None, 1)
    assert four.get_layer("backbone").input.shape == (None, size, size, 4)
    assert four.get_layer("pool").output.shape == (None, spec.feature_dim)
    keras.backend.clear_session()
