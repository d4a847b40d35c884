"""Two fine-tuned backbones whose probabilities are averaged and evaluated as one model.

As in the review's tuberculosis example (Lakhani & Sundaram, Radiology 2017: AlexNet and GoogLeNet fine-tuned on
chest radiographs, their probabilities averaged), here EfficientNet-Lite0 and EfficientNet-Lite2, whose
ImageNet weights install with the toolkit (ResNet50 and InceptionV3 with ``--set backbones=resnet50,inception_v3`` once their Keras files are imported). Each member is
searched and trained on its own with the same preprocessing (260 px, Lite2's size); the saved model averages their
probabilities, and the threshold, validation results and final test are those of the average.

Data here: PneumoniaMNIST (MedMNIST v2, Yang et al. 2023; Kermany et al. 2018), imported with
``tl-radiology import-medmnist``.
"""

from tl_radiology import Recipe

RECIPE = Recipe(
    name="ensemble",
    description="EfficientNet-Lite0 + Lite2 fine-tuned, probabilities averaged (the tuberculosis study's ensemble)",
    image_columns=("image",),
    expect="gray",
    intensity="percentile",
    percentiles=(0.5, 99.5),
    input_size=260,
    resize_mode="pad",
    mode="ensemble",
    backbones=("efficientnet_lite0", "efficientnet_lite2"),
    weights="imagenet",
    adapter="replicate",
    dropout=0.2,
    finetune_learning_rate=1e-4,
    head_epochs=5,
    finetune_epochs=10,
    unfreeze=2,
    batch_size=16,
    augmentation=0.2,
    flip="none",
    class_weighting="balanced",
    search_space={
        "dropout": [0.0, 0.3],
        "head_learning_rate": {"min": 3e-4, "max": 3e-3, "log": True},
    },
    max_trials=4,
)
