"""Lung nodule vs vessel from a CT series: axial, coronal and sagittal patches through the centre as channels.

The review's Fig. 11c: a 3-D finding seen by a 2-D network through three orthogonal planes. The series is read
as one volume (slices ordered by position), resampled to isotropic 0.7 mm voxels around the centre given in the
manifest (``center_z, center_y, center_x``, voxel indices), and the three 64 x 64 planes (45 mm) are windowed
for lung (W 1500 / L -600) and stacked as channels (axial, coronal, sagittal), then resized for the backbone. On
the axial plane a nodule and a vessel running along z are the same disk; the coronal and sagittal planes tell
them apart.

Data here: the synthetic nodule phantoms (``tl_radiology.data.make_nodule_phantoms``: one CT series folder per
case, anisotropic voxels, distractors away from the centre).
"""

from tl_radiology import Recipe

RECIPE = Recipe(
    name="lung_nodule_multiplanar",
    description="Lung nodule vs vessel: axial/coronal/sagittal planes through a centre of a CT series as channels",
    image_columns=("image",),
    center_columns=("center_z", "center_y", "center_x"),
    intensity="window",
    windows=("lung",),
    plane_size=64,
    plane_spacing_mm=0.7,
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
    augmentation=0.1,
    flip="vertical",
    search_space={
        "dropout": [0.0, 0.2, 0.4],
        "head_learning_rate": {"min": 3e-4, "max": 3e-3, "log": True},
        "unfreeze": [1, 2],
    },
    max_trials=6,
)
