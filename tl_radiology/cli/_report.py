"""``tl-radiology report``: one self-contained HTML report of a run."""

from __future__ import annotations


HELP = "write RUN_DIR/report/report.html (self-contained: data, split, model, validation, test, audit)"

DESCRIPTION = """\
Gather RUN_DIR into one HTML file with its images embedded (no external resources, no links out). It opens with
a summary a reader takes in at a glance (task and classes by name, the final test's headline metrics with 95%
intervals, sensitivity and specificity at the validation threshold, patients and cases, the seal's state, the
starting weights and any warning), then the details: the data
table and split, the leakage check, the search summary, the model and the weights it started from, training
curves, validation results and threshold, ROC / PR / reliability / confusion-matrix plots, Grad-CAM examples
(validation cases from run; test cases drawn by evaluate), the final test with 95% intervals or a banner saying the test set is still
sealed (or was reused, with the reason), external sites, and the seal's audit record. Parts that are missing
are shown as "not available (why)". Patients and cases appear only as pseudonyms; no image paths are shown.
"""

EPILOG = """\
examples:
  tl-radiology report runs/liver                 # after run (validation) or evaluate (the final test)
  tl-radiology explain runs/liver --split val --num 16 && tl-radiology report runs/liver   # more overlays
"""


def add_arguments(p, common) -> None:
    """The ``report`` command's arguments (its parser is made from HELP, DESCRIPTION and EPILOG)."""
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory")


def run(args) -> int:
    """Run ``report`` with parsed arguments; returns the exit status."""
    from tl_radiology.evaluation import write_report  # deferred: --help must not import the parts

    path = write_report(args.run_dir)
    print(f"report: {path}")
    return 0
