"""Fixed CNN features from several backbones with random forest, SVM or logistic regression (mode 1).

The classical route the review contrasts with fine-tuning: the ImageNet backbone is frozen and turns each image
into one pooled feature vector; a scikit-learn classifier learns from those. The search picks the backbone, the
classifier and its parameters on the validation cases; each backbone's features are computed once and cached.
Cheap, and suited to a few hundred cases.

Data here: PneumoniaMNIST (MedMNIST v2, Yang et al. 2023; Kermany et al. 2018)::

    tl-radiology import-medmnist ../shared/data/medmnist_pneumoniamnist/pneumoniamnist.npz --out data/pneumonia
    tl-radiology run radiomics_features --manifest data/pneumonia/manifest.csv --out runs/pneumonia-features
"""

from tl_radiology import Recipe

RECIPE = Recipe(
    name="radiomics_features",
    description="Fixed features of EfficientNet-Lite0/1/2 + random forest, SVM or logistic regression",
    image_columns=("image",),
    expect="gray",
    intensity="percentile",
    percentiles=(0.5, 99.5),
    input_size=224,
    resize_mode="pad",
    mode="features",
    backbones=("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"),
    weights="imagenet",
    adapter="replicate",
    pooling="avg",
    classifiers=("random_forest", "svm", "logistic_regression"),
    tuner="random",
    max_trials=30,
)
