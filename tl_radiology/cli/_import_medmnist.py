"""``tl-radiology import-medmnist``: a MedMNIST .npz file -> PNG images + manifest.csv (official split kept)."""

from __future__ import annotations

from pathlib import Path

HELP = "write a MedMNIST .npz file as PNG images and a manifest with the official split"

DESCRIPTION = """\
Write every image of a 2-D MedMNIST file (e.g. pneumoniamnist.npz, retinamnist.npz) as an 8-bit PNG (gray or RGB,
lossless, byte-for-byte reproducible) under DIR/<split>/, and DIR/manifest.csv with patient_id, label, image and
split (the official split). Labels are MedMNIST's own class names when the file is named after its data set
(pneumoniamnist.npz: normal / pneumonia; retinamnist.npz: grades 0-4), else the npz's integers.
MedMNIST has no patient ids: each image is its own patient.
Data: MedMNIST v2 (Yang et al., Scientific Data 2023), CC BY 4.0; cite it and the source data set.
"""


# The prebuilt recipe written for each MedMNIST file (docs/guides/walkthrough.md); other files: RECIPE.
_RECIPES = {"pneumoniamnist": "chest_xray", "retinamnist": "retina_grade"}


def add_arguments(p, common) -> None:
    """The ``import-medmnist`` command's arguments (its parser is made from HELP, DESCRIPTION and EPILOG)."""
    p.add_argument("npz", metavar="FILE.npz", help="the MedMNIST file")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to create (new or empty)")
    p.add_argument("--force", action="store_true", help="replace DIR if it exists and is not empty")


def run(args) -> int:
    """Run ``import-medmnist`` with parsed arguments; returns the exit status."""
    import pandas as pd  # deferred: pandas; --help must stay light

    from tl_radiology.data import import_medmnist  # deferred: --help must not import the parts

    path = import_medmnist(args.npz, args.out, overwrite=args.force)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    label_cols = [c for c in frame.columns if c == "label" or c.startswith("label_")]
    if label_cols == ["label"]:
        table = pd.crosstab(frame["split"], frame["label"], margins=True, margins_name="all")
    else:
        table = frame.groupby("split")[label_cols].apply(lambda g: (g == "1").sum())
    table = table.reindex([s for s in ("train", "val", "test", "all") if s in table.index])
    print(f"Wrote {len(frame)} PNG images and {path}")
    print(table.to_string())
    print("MedMNIST has no patient ids: each image is its own patient (patient-level grouping is not possible).")
    recipe = _RECIPES.get(Path(args.npz).stem.lower(), "RECIPE")
    print(f"Next: tl-radiology run {recipe} --manifest {path} --out runs/{Path(args.out).name}   (split, search, "
          "final model; the official split is honoured)")
    return 0
