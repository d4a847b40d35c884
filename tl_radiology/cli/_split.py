"""``tl-radiology split``: validate a manifest, split it by patient, check for leakage, seal the test set."""

from __future__ import annotations

import warnings

from tl_radiology._progress import status

HELP = "split a manifest by patient into train/val/test and seal the test set"

DESCRIPTION = """\
Validate MANIFEST (CSV: patient_id, label, image columns; paths relative to the CSV's folder), split it into
train / val / test by patient (stratified by label, seeded; a `split` column in the manifest is honoured unless
--resplit), check for leakage (a patient in two splits is an error; byte- or pixel-identical images across splits
are reported) and write DIR/splits.csv, DIR/split.json, DIR/test.lock (the seal) and DIR/audit.log.
Running it again with the same inputs changes nothing; a different split is refused unless --force (re-seals).
"""

EPILOG = """\
example:
  tl-radiology import-medmnist ../shared/data/medmnist_pneumoniamnist/pneumoniamnist.npz --out data/pneumonia
  tl-radiology split data/pneumonia/manifest.csv --out runs/pneumonia
"""


def add_arguments(p, common) -> None:
    """The ``split`` command's arguments (its parser is made from HELP, DESCRIPTION and EPILOG)."""
    p.add_argument("manifest", metavar="MANIFEST", help="the manifest CSV")
    p.add_argument("--out", required=True, metavar="DIR", help="the run directory to write")
    p.add_argument("--val", default="0.15", metavar="F", help="validation fraction, 0 <= F < 1 (default 0.15)")
    p.add_argument("--test", default="0.15", metavar="F", help="test fraction, 0 < F < 1 (default 0.15)")
    p.add_argument("--seed", default="0", metavar="N", help="random seed (default 0)")
    p.add_argument("--group", default="patient", metavar="COL",
                   help="column no group may straddle splits: patient (default; the patient column), another "
                        "manifest column, or 'case' for none")
    p.add_argument("--stratify", default="label", metavar="COL",
                   help="column whose proportions are kept (default label; 'none' for no stratification)")
    p.add_argument("--patient-column", default="patient_id", metavar="COL", help="default patient_id")
    p.add_argument("--label-column", default="label", metavar="COL",
                   help="label column (default label); several comma-separated 0/1 columns make a multilabel task")
    p.add_argument("--image-columns", default="image", metavar="A,B",
                   help="comma-separated image columns (default image)")
    p.add_argument("--split-column", default="split", metavar="COL",
                   help="manifest column with train/val/test to honour (default split)")
    p.add_argument("--task", default=None, help="binary, multiclass, multilabel or regression (default inferred)")
    p.add_argument("--positive-class", default=None, metavar="NAME",
                   help="binary tasks: the class sensitivity, the threshold and the predicted probability refer to "
                        "(default: the second label in sorted order); give the same one as the recipe you will run")
    p.add_argument("--resplit", action="store_true", help="ignore the manifest's split column; make a new split")
    p.add_argument("--force", action="store_true",
                   help="replace a different split already sealed in DIR (re-seals the test set; recorded)")
    p.add_argument("--allow-outside-root", action="store_true",
                   help="accept image paths outside the manifest's folder")
    p.add_argument("--duplicates", default="warn", metavar="{warn,error}",
                   help="identical images across splits: report them (warn, default) or fail (error)")
    p.add_argument("--no-pixel-check", action="store_true",
                   help="compare file bytes only, not decoded pixels (faster for large DICOM sets)")
    p.add_argument("--write-id-map", default=None, metavar="FILE",
                   help="also write the pseudonym -> raw patient id table to FILE (outside DIR; keep it private)")


def run(args) -> int:
    """Run ``split`` with parsed arguments; returns the exit status."""
    from tl_radiology.data import Manifest, RunDir  # deferred: --help must not import the parts

    manifest = Manifest.from_csv(
        args.manifest,
        patient_column=args.patient_column,
        label_column=args.label_column,
        image_columns=args.image_columns,
        split_column=args.split_column or None,
        allow_outside_root=args.allow_outside_root,
        task=args.task,
        positive_class=args.positive_class,
    )
    group = "patient" if args.group in (args.patient_column, "patient", "patient_id") else args.group
    if manifest.has_split and not args.resplit:
        status(f"Honouring the manifest's {args.split_column!r} column (use --resplit for a new split).")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = RunDir(args.out).create_split(
            manifest,
            val=args.val,
            test=args.test,
            seed=args.seed,
            group=group,
            stratify=args.stratify,
            resplit=args.resplit,
            force=args.force,
            pixels=not args.no_pixel_check,
            duplicates=args.duplicates,
            id_map=args.write_id_map,
        )
    for w in caught:
        status(f"warning: {w.message}")
    positive = f", positive class {manifest.positive_class}" if manifest.positive_class else ""
    print(f"Split of {args.manifest} ({manifest.task}{positive}, {len(manifest)} cases, {manifest.num_patients} "
          "patients)")
    print(f"Method: {result.method}")
    print(result.summary.to_string())
    print(result.leakage.format(manifest.root))
    if result.state == "unchanged":
        print(f"{args.out} already holds this exact split and seal; nothing was written.")
    else:
        verb = "Re-sealed" if result.state == "resealed" else "Sealed"
        print(
            f"{verb} the test set ({int(result.summary.loc['test', 'cases'])} cases) in {args.out}/test.lock; "
            f"wrote {args.out}/splits.csv, split.json, audit.log."
        )
    if args.write_id_map:
        print(f"Wrote the id map (raw patient ids) to {args.write_id_map}; keep it private.")
    return 0
