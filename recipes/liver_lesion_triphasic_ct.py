"""Liver lesion classification from triphasic CT: native, arterial and delayed phases as the three channels.

The review's example of multi-phase input (Yamashita et al. 2018, citing Yasaka et al., Radiology 2018, who
classified liver masses on dynamic contrast-enhanced CT): a lesion's class is told by how it enhances over time,
so each phase becomes one channel. The phases are read as Hounsfield units, checked to lie on one grid (same
spacing, orientation and position), windowed alike (W 250 / L 60: water to enhanced vessels), resized and stacked.

Monophasic, biphasic and triphasic variants of the same study compare the phases::

    --set image_columns=arterial                 # 1 channel
    --set image_columns=native,arterial          # 2 channels
    (default)                                    # 3 channels: native, arterial, delayed

With 1 or 2 columns the model still needs the backbone's 3 channels: ``adapter="stem"`` adapts the first
convolution to the number of phases (its pretrained kernel summed for 1 phase, repeated and rescaled for 2), so
every variant keeps every pretrained weight and the comparison changes nothing but the input.

Data here: the synthetic triphasic phantoms (``tl-radiology demo`` writes them, or
``tl_radiology.data.make_triphasic_phantoms``): cyst, HCC, hemangioma, metastasis, several lesions per patient,
so the split is by patient.
"""

from tl_radiology import Recipe

RECIPE = Recipe(
    name="liver_lesion_triphasic_ct",
    description="Liver lesions on triphasic CT: native/arterial/delayed phases as channels (mono/bi/triphasic)",
    image_columns=("native", "arterial", "delayed"),
    intensity="window",
    windows=("60:250",),
    input_size=224,
    mode="finetune",
    backbone="efficientnet_lite0",
    weights="imagenet",
    adapter="stem",
    dropout=0.2,
    head_learning_rate=1e-3,
    finetune_learning_rate=1e-4,
    head_epochs=5,
    finetune_epochs=20,
    unfreeze=2,
    batch_size=16,
    augmentation=0.2,
    flip="none",
    class_weighting="balanced",
    early_stopping_patience=6,
    search_space={
        "dropout": [0.0, 0.2, 0.4],
        "head_learning_rate": {"min": 3e-4, "max": 3e-3, "log": True},
        "finetune_learning_rate": {"min": 1e-5, "max": 1e-3, "log": True},
    },
    tuner="random",
    max_trials=8,
)
