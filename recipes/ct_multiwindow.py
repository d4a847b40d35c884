"""One CT slice seen through three windows (lung, mediastinum, bone) as the R, G and B channels.

Instead of copying one gray image three times, each channel shows the slice through another window, so the
ImageNet backbone's three input channels carry three views of the Hounsfield units (W 1500 / L -600,
W 350 / L 50, W 1800 / L 400; Radiopaedia's values).

Data: any CT manifest with one image column ``image`` (a DICOM slice, or a series folder with ``frame``). On the
synthetic triphasic phantoms, one phase::

    tl-radiology run ct_multiwindow --manifest phantoms/manifest.csv --out runs/mw --set image_columns=arterial
"""

from tl_radiology import Recipe

RECIPE = Recipe(
    name="ct_multiwindow",
    description="One CT slice through lung, mediastinum and bone windows as RGB, EfficientNet-Lite0 fine-tuned",
    image_columns=("image",),
    expect="gray",
    intensity="window",
    windows=("lung", "mediastinum", "bone"),
    input_size=224,
    mode="finetune",
    backbone="efficientnet_lite0",
    weights="imagenet",
    adapter="replicate",
    dropout=0.2,
    finetune_learning_rate=1e-4,
    head_epochs=5,
    finetune_epochs=15,
    unfreeze=2,
    batch_size=16,
    augmentation=0.2,
    search_space={
        "dropout": [0.0, 0.2, 0.4],
        "head_learning_rate": {"min": 3e-4, "max": 3e-3, "log": True},
    },
    max_trials=6,
)
