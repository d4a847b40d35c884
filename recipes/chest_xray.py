"""Chest radiograph classification (e.g. pneumonia vs normal) from DICOM or PNG, EfficientNet-Lite fine-tuned.

Radiographs are grayscale: each image is scaled to [0, 1] between its 0.5th and 99.5th percentiles (robust to
burned-in markers, and the same for 8-bit PNG and 12/16-bit DICOM; MONOCHROME1 is inverted by the reader), padded
to a square (no distortion) at 224 px, and copied into the three channels the ImageNet backbone expects
(``adapter="replicate"``, inside the model). EfficientNet-Lite0, whose ImageNet weights install with the toolkit
(DenseNet121, as in CheXNet, with ``--set backbone=densenet121`` once its Keras file is imported); the head is
trained first, then the whole network at a low learning rate with BatchNorm kept frozen. No flips: left and right are anatomy in a chest film. Pneumonia is the commoner class in
PneumoniaMNIST, so classes are weighted.

Data here: PneumoniaMNIST (MedMNIST v2, Yang et al., Sci Data 2023; derived from Kermany et al., Cell 2018)::

    tl-radiology import-medmnist ../shared/data/medmnist_pneumoniamnist/pneumoniamnist.npz --out data/pneumonia
    tl-radiology run chest_xray --manifest data/pneumonia/manifest.csv --out runs/pneumonia
"""

from tl_radiology import Recipe

RECIPE = Recipe(
    name="chest_xray",
    description="Chest radiographs from DICOM or PNG (gray -> 3 channels), EfficientNet-Lite0 fine-tuned",
    image_columns=("image",),
    expect="gray",
    intensity="percentile",
    percentiles=(0.5, 99.5),
    input_size=224,
    resize_mode="pad",
    mode="finetune",
    backbone="efficientnet_lite0",
    weights="imagenet",
    adapter="replicate",
    dropout=0.2,
    head_learning_rate=1e-3,
    finetune_learning_rate=1e-4,
    head_epochs=5,
    finetune_epochs=15,
    unfreeze="all",
    batch_size=32,
    augmentation=0.3,
    flip="none",
    class_weighting="balanced",
    early_stopping_patience=5,
    search_space={
        "dropout": [0.0, 0.2, 0.5],
        "head_learning_rate": {"min": 1e-4, "max": 1e-2, "log": True},
        "finetune_learning_rate": {"min": 1e-5, "max": 1e-3, "log": True},
        "unfreeze": [1, 2, "all"],
    },
    tuner="bayesian",
    max_trials=12,
    threshold_method="youden",
)
