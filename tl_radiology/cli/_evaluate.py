"""``tl-radiology evaluate``: the one-shot final test on the sealed test set, or an external site's data."""

from __future__ import annotations

from pathlib import Path

from tl_radiology._errors import InputError

HELP = "evaluate the run's model once on its sealed test set (or on an external site's data)"

DESCRIPTION = """\
Open RUN_DIR's sealed test set once: check the seal (every test file and label against test.lock), record the
opening in audit.log, load the test cases with the model's saved preprocessing (never cached), predict, and
compute the metrics with the threshold chosen on VALIDATION (never re-tuned on the test set), with 95% intervals
from a bootstrap over patients. Writes RUN_DIR/final_test.json (atomically), the test plots and
test_predictions.csv under RUN_DIR/final/, then records the completed evaluation.

The test set is used once. A second `evaluate` is refused with exit status 3, saying when it was opened; re-open
only with --reopen --reason TEXT (recorded; the result is marked "reused_test_set": true).

With --external MANIFEST --name SITE the same frozen model and threshold are applied to another site's cases
(same image and label columns, the run's classes), sealed on first use in RUN_DIR/external/SITE/ and evaluated
once under the same rules.
"""

EPILOG = """\
examples:
  tl-radiology evaluate runs/liver
  tl-radiology evaluate runs/liver --reopen --reason "test labels corrected by a second reader"
  tl-radiology evaluate runs/liver --external ../site_b/manifest.csv --name site_b

exit status: 0 done; 2 bad input (one line naming the file or option); 3 the test set was already used, or its
seal is broken (a changed file or label is named).
"""


def add_arguments(p, common) -> None:
    """The ``evaluate`` command's arguments (its parser is made from HELP, DESCRIPTION and EPILOG)."""
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (with a trained, finalised model)")
    p.add_argument("--reopen", action="store_true",
                   help="evaluate a test set that was already used (needs --reason; the result is marked reused)")
    p.add_argument("--reason", default=None, metavar="TEXT", help="why the test set is opened again (recorded)")
    p.add_argument("--external", default=None, metavar="MANIFEST",
                   help="evaluate on another site's manifest instead of the run's own test set")
    p.add_argument("--name", default=None, metavar="SITE",
                   help="the external site's name (a folder name: letters, digits, '.', '_', '-')")
    p.add_argument("--patient-column", default="patient_id", metavar="COL",
                   help="patient id column of the external manifest (default patient_id)")
    p.add_argument("--n-bootstrap", default="2000", metavar="N",
                   help="bootstrap resamples of patients for the intervals (default 2000)")
    p.add_argument("--seed", default="0", metavar="N", help="bootstrap seed (default 0)")


def _integer(value: str, option: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"{option} must be an integer; received {value!r}.") from None


def run(args) -> int:
    """Run ``evaluate`` with parsed arguments; returns the exit status."""
    if args.reopen and not (args.reason or "").strip():
        raise InputError("--reopen needs --reason TEXT saying why the used test set is opened again (it is recorded "
                         "in audit.log and in final_test.json).")
    if args.reason is not None and not args.reopen:
        raise InputError("--reason is only used with --reopen (re-evaluating a test set that was already used).")
    if (args.external is None) != (args.name is None):
        raise InputError("--external MANIFEST and --name SITE go together: give both for an external site.")
    n_bootstrap = _integer(args.n_bootstrap, "--n-bootstrap")
    seed = _integer(args.seed, "--seed")
    reason = args.reason if args.reopen else None

    # deferred: --help must not import the parts
    from tl_radiology.evaluation import evaluate_external, evaluate_run, format_summary

    if args.external is not None:
        result = evaluate_external(args.run_dir, args.external, name=args.name, reopen_reason=reason,
                                   patient_column=args.patient_column, n_bootstrap=n_bootstrap, seed=seed)
        folder = Path(args.run_dir) / "external" / result["site"]
        title = f"External validation, site {result['site']}"
    else:
        result = evaluate_run(args.run_dir, reopen_reason=reason, n_bootstrap=n_bootstrap, seed=seed)
        folder = Path(args.run_dir)
        title = "Final test (sealed test set, evaluated once)"
    counts = result["counts"]
    print(f"{title}: {counts['cases']} cases, {counts['patients']} patients, task {result['task']}")
    if result.get("reused_test_set"):
        print(f"WARNING: reused test set (reason: {result.get('reopen_reason')!r}); not an independent estimate.")
    values = result["threshold"]["values"]
    if isinstance(values, dict):
        print("thresholds (chosen on validation): " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()))
    elif values is not None:
        print(f"threshold (chosen on validation): {values:.4g}")
    for name, summary in result["key_metrics"].items():
        print(f"  {name:<24} {format_summary(summary)}")
    warning = (result.get("baseline") or {}).get("warning")
    if warning:
        print(f"WARNING: {warning}")
    print(f"results: {folder / 'final_test.json'}")
    print(f"plots and predictions: {folder / 'final'}")
    print(f"Next: tl-radiology report {args.run_dir}   (the report, with the test set's results and Grad-CAM)")
    return 0
