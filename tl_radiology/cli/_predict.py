"""``tl-radiology predict``: apply a run's model and exact preprocessing to new images."""

from __future__ import annotations

from tl_radiology._errors import InputError

HELP = "predict new images (files, series folders or a manifest CSV) with a run's model"

DESCRIPTION = """\
Apply RUN_DIR's model to new cases with the run's exact preprocessing (the loader saved in model.json) and
write one CSV row per case: a pseudonymous case id, the input as you gave it, the probability of each class
(regression: the value), the predicted label at the threshold chosen on validation, and that threshold.

INPUT is image files or DICOM series folders (for models with one image column), or one manifest CSV with the
run's image columns (required for multi-column models such as triphasic CT; paths relative to the CSV). Nothing
is cached, and sealed test files of the run are refused until `tl-radiology evaluate` has completed.
"""

EPILOG = """\
examples:
  tl-radiology predict runs/pneumonia new/case1.png new/case2.png --out predictions.csv
  tl-radiology predict runs/liver new_cases.csv --out predictions.csv
"""


def add_arguments(p, common) -> None:
    """The ``predict`` command's arguments (its parser is made from HELP, DESCRIPTION and EPILOG)."""
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory with a trained, finalised model")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files / series folders, or one manifest CSV")
    p.add_argument("--out", required=True, metavar="FILE.csv", help="the predictions CSV to write")
    p.add_argument("--patient-column", default="patient_id", metavar="COL",
                   help="a manifest's patient id column, written as a pseudonym (default patient_id)")
    p.add_argument("--batch-size", default="32", metavar="N", help="images per batch (default 32)")


def run(args) -> int:
    """Run ``predict`` with parsed arguments; returns the exit status."""
    from tl_radiology.evaluation import predict  # deferred: --help must not import the parts

    try:
        batch_size = int(args.batch_size)
    except ValueError:
        raise InputError(f"--batch-size must be a positive integer; received {args.batch_size!r}.") from None
    if batch_size < 1:
        raise InputError(f"--batch-size must be a positive integer; received {batch_size}.")
    table = predict(args.run_dir, args.inputs, out_csv=args.out, patient_column=args.patient_column,
                    batch_size=batch_size)
    print(f"{len(table)} prediction(s) written to {args.out}")
    return 0
