"""Grad-CAM on every registered backbone: the registry's target layer, reached inside the nested backbone.

Random weights (weights=None), one image, binary head. The input is the smallest size whose target feature map is
at least 2 x 2: the registry's minimum size gives a 1 x 1 map for most backbones, and a 1 x 1 map upsamples to a
constant heatmap, which would test nothing. About 2-8 s per backbone (building the network dominates).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tl_radiology.backbones import get_backbone, list_backbones
from tl_radiology.evaluation import explain_target, grad_cam
from tl_radiology.models import build_model

pytestmark = pytest.mark.slow


def _size(spec) -> int:
    # Inception-style backbones (valid padding, minimum 75) reach a 2 x 2 final map at 107 pixels; the others
    # (stride 32) at 64; backbones whose minimum already gives more (Xception at 71) keep their minimum.
    return {75: 107}.get(spec.min_size, max(spec.min_size, 64))


@pytest.mark.parametrize("name", list_backbones())
def test_grad_cam_gives_an_input_sized_heatmap_from_the_registered_layer(name):
    spec = get_backbone(name)
    size = _size(spec)
    model = build_model(name, input_shape=(size, size, 1), weights=None)
    layer = explain_target(model)
    assert layer == spec.find_last_conv_layer(model.get_layer("backbone")).name
    feature_map = model.get_layer("backbone").get_layer(layer).output.shape
    assert min(feature_map[1:3]) >= 2, f"{name}: target map {feature_map} at {size} px"
    image = np.random.default_rng(0).uniform(0, 1, (1, size, size, 1)).astype("float32")
    # Random weights give evidence of either sign; the positive class gets one sign, the negative the other.
    heatmaps = [grad_cam(model, image, class_index=c) for c in (1, 0)]
    for heat in heatmaps:
        assert heat.shape == (1, size, size) and heat.dtype == np.float32
        assert np.isfinite(heat).all() and heat.min() >= 0.0 and heat.max() <= 1.0
    assert any(float(h.max()) == pytest.approx(1.0) and float(h.std()) > 0.01 for h in heatmaps), (
        f"{name}: both heatmaps are constant"
    )
    keras.backend.clear_session()
