"""``tl-radiology explain``: Grad-CAM overlays for a sample of a run's validation (or, after evaluate, test) cases."""

from __future__ import annotations

from tl_radiology._errors import InputError

HELP = "write Grad-CAM overlays for a sample of validation cases (test cases only after evaluate)"

DESCRIPTION = """\
Load RUN_DIR's fine-tuned model and a sample of cases of one split (taken in turn from each class), compute
Grad-CAM heatmaps from the backbone's last convolutional layer (the class explained: the positive class for a
binary task, the predicted class otherwise) and write RUN_DIR/explain/SPLIT/<case_id>.png (model input beside
the overlay) and index.json. Test cases are refused (exit status 3) until `tl-radiology evaluate` has completed:
the sealed test set is not opened for pictures before its one evaluation.
"""

EPILOG = """\
examples:
  tl-radiology explain runs/liver --num 12
  tl-radiology explain runs/liver --split test      # after tl-radiology evaluate runs/liver
"""


def add_arguments(p, common) -> None:
    """The ``explain`` command's arguments (its parser is made from HELP, DESCRIPTION and EPILOG)."""
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (with a fine-tuned model)")
    p.add_argument("--split", default="val", metavar="SPLIT", help="val (default), train, or test (after evaluate)")
    p.add_argument("--num", default="8", metavar="N", help="number of cases (default 8)")
    p.add_argument("--seed", default="0", metavar="N", help="which cases are sampled (default 0)")
    p.add_argument("--layer", default=None, metavar="NAME",
                   help="a layer to use instead of the backbone's registered last convolutional layer")
    p.add_argument("--recipe", default=None, metavar="FILE",
                   help="the recipe .py file the run was started with, when it registers its own backbone "
                        "(default: the file the run recorded, if any)")


def run(args) -> int:
    """Run ``explain`` with parsed arguments; returns the exit status."""
    from tl_radiology.evaluation import explain_run, load_run_recipe_file  # deferred: --help must not import the parts

    try:
        num, seed = int(args.num), int(args.seed)
    except ValueError:
        raise InputError(f"--num and --seed must be integers; received --num {args.num!r} --seed {args.seed!r}.") \
            from None
    load_run_recipe_file(args.run_dir, args.recipe)  # its backbones, registered as `run` had them
    folder = explain_run(args.run_dir, split=args.split, num=num, seed=seed, layer=args.layer)
    print(f"Grad-CAM overlays: {folder} (index.json lists the cases)")
    return 0
