"""Diabetic retinopathy grade (0-4) from colour fundus photographs: multiclass and ordinal.

Five ordered grades: accuracy and macro AUC are reported with the quadratic-weighted Cohen's kappa, which counts
grade 4 called grade 3 as a smaller error than grade 4 called grade 0. RGB images are scaled from their 8-bit
range and resized to 224 px; flips are allowed (a fundus has no left/right anatomy the grade depends on). Grades
are unbalanced, so classes are weighted.

Data here: RetinaMNIST (MedMNIST v2, Yang et al. 2023; from the DeepDRiD challenge, Liu et al., Patterns 2022)::

    tl-radiology import-medmnist ../shared/data/medmnist_retinamnist/retinamnist.npz --out data/retina
    tl-radiology run retina_grade --manifest data/retina/manifest.csv --out runs/retina
"""

from tl_radiology import Recipe

RECIPE = Recipe(
    name="retina_grade",
    description="Diabetic retinopathy grade 0-4 on colour fundus photos (RGB), multiclass with quadratic kappa",
    task="multiclass",
    ordinal=True,
    image_columns=("image",),
    expect="rgb",
    intensity="range",
    value_range=(0.0, 255.0),
    input_size=224,
    mode="finetune",
    backbone="efficientnet_lite0",
    weights="imagenet",
    adapter="replicate",
    dropout=0.3,
    finetune_learning_rate=1e-4,
    head_epochs=5,
    finetune_epochs=15,
    unfreeze=2,
    batch_size=32,
    augmentation=0.3,
    flip="horizontal_and_vertical",
    class_weighting="balanced",
    search_space={
        "dropout": [0.1, 0.3, 0.5],
        "head_learning_rate": {"min": 3e-4, "max": 3e-3, "log": True},
        "finetune_learning_rate": {"min": 3e-5, "max": 3e-4, "log": True},
    },
    max_trials=8,
)
